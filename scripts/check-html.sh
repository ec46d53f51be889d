#!/usr/bin/env bash
# Loads a rooflinebench HTML report in headless Chromium, takes a screenshot, and fails on any
# JavaScript error or console error. Chromium exits 0 even when the page throws, so its stderr
# is searched for "Uncaught" and console errors; --virtual-time-budget lets scripts run after
# load before the screenshot is taken.
#
# usage: scripts/check-html.sh [report.html]
#   Without an argument it builds rooflinebench, writes a report for a built-in device into a
#   temporary directory, and checks that.
#
# Chromium is Debian's `chromium` package, installed with apt-get when missing. Outside CI a
# machine where it cannot be installed skips the check with a message (exit 0); in CI
# (CI=true) it must install and run.
set -euo pipefail
cd "$(dirname "$0")/.."

in_ci() { [ "${CI:-}" = "true" ]; }

skip() {
    if in_ci; then
        echo "check-html: FAILED: $*" >&2
        exit 1
    fi
    echo "check-html: skipped: $*"
    exit 0
}

browser=""
for b in chromium chromium-browser; do
    if command -v "$b" >/dev/null 2>&1; then browser="$b"; break; fi
done
if [ -z "$browser" ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "check-html: installing Debian chromium..."
        export DEBIAN_FRONTEND=noninteractive
        if apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; then
            browser=chromium
        fi
    fi
fi
[ -n "$browser" ] || skip "chromium is not installed and could not be installed (apt-get install chromium)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

html="${1:-}"
if [ -z "$html" ]; then
    bin="${CARGO_TARGET_DIR:-target}/debug/rooflinebench"
    cargo build --quiet --locked --bin rooflinebench
    # Two devices so the cross-device section is exercised too. The fixture profiles are
    # hand-written test data, not measurements.
    fix=tests/fixtures/report
    "$bin" run --hw "$fix/test-cpu.json" --no-png -o "$work/a" >/dev/null
    "$bin" run --hw "$fix/rpi5-paper.json" --no-png --scenario SISO -o "$work/b" >/dev/null
    "$bin" report "$work/a/result.json" "$work/b/result.json" --no-png -o "$work/report" >/dev/null
    html="$work/report/report.html"
fi
[ -s "$html" ] || { echo "check-html: $html is missing or empty" >&2; exit 1; }

shot="$work/screenshot.png"
log="$work/chromium.log"
set +e
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile" --enable-logging=stderr --v=0 \
    --virtual-time-budget=2000 --window-size=1280,2400 \
    --screenshot="$shot" "file://$(realpath "$html")" >"$log" 2>&1
status=$?
set -e
if [ "$status" -ne 0 ]; then
    cat "$log" >&2
    echo "check-html: chromium exited with status $status" >&2
    exit 1
fi
# Page errors: Chromium logs every console message (log, warn and error alike) as
# "INFO:CONSOLE...", uncaught exceptions as "Uncaught ...". The report's script logs nothing,
# so any console line is an error; so is any attempt to reach the network (the report must be
# self-contained).
if grep -E "Uncaught|:CONSOLE|CONSOLE\(|net::ERR_" "$log" >"$work/errors"; then
    cat "$work/errors" >&2
    echo "check-html: page errors in $html" >&2
    exit 1
fi
[ -s "$shot" ] || { cat "$log" >&2; echo "check-html: no screenshot written" >&2; exit 1; }
size=$(stat -c %s "$shot")
if [ "$size" -lt 20000 ]; then
    echo "check-html: screenshot is only $size bytes: the page looks blank" >&2
    exit 1
fi
echo "check-html: ok ($html rendered without errors, screenshot $size bytes)"
