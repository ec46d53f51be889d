//! Is someone else using the machine? Runnable-task samples and CPU-time accounting from procfs.
//!
//! A ceiling measured while other processes compete for the cores or the memory bus is low for
//! reasons that have nothing to do with the hardware. The harness samples `/proc/loadavg`'s
//! instantaneous runnable-task count between trials (when its own workers are parked), and the
//! probe compares system-wide busy time (`/proc/stat`) with its own CPU time
//! (`/proc/self/stat`) and the hypervisor's steal time. Linux only; elsewhere every reading is
//! `None` and nothing is flagged. Not a profiler.

/// System-wide CPU time, in clock ticks (USER_HZ).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice + system + irq + softirq (guest time is already inside user).
    pub busy: u64,
    /// Time the hypervisor ran something else while this VM wanted the CPU.
    pub steal: u64,
    /// Everything, idle included.
    pub total: u64,
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal guest guest_nice
    let busy = get(0) + get(1) + get(2) + get(5) + get(6);
    let total = (0..8).map(get).sum();
    Some(CpuTimes {
        busy,
        steal: get(7),
        total,
    })
}

pub fn system_times() -> Option<CpuTimes> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// This process's user + system CPU time, in clock ticks.
pub fn own_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // the command name (field 2) may contain spaces: fields after the last ')'
    let rest = text.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // after ')' the first field is state (field 3): utime is field 14, stime 15
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Runnable tasks right now, system-wide (the numerator of `/proc/loadavg`'s 4th field),
/// including the calling thread.
pub fn runnable_tasks() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace()
        .nth(3)?
        .split_once('/')?
        .0
        .parse()
        .ok()
}

/// Runnable tasks other than the calling thread and `own` other threads of ours known to be
/// runnable (spinning workers), read twice 100 us apart (the minimum), so a task that is just
/// going to sleep is not mistaken for a stranger.
pub fn foreign_runnable(own: u32) -> Option<u32> {
    let mine = own.saturating_add(1);
    let a = runnable_tasks()?.saturating_sub(mine);
    if a == 0 {
        return Some(0);
    }
    std::thread::sleep(std::time::Duration::from_micros(100));
    let b = runnable_tasks()?.saturating_sub(mine);
    Some(a.min(b))
}

/// System activity between two points in time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Activity {
    /// CPUs' worth of busy time spent by other processes, on average.
    pub foreign_cpus: f64,
    /// Fraction of all CPU time stolen by the hypervisor.
    pub steal_fraction: f64,
}

/// Snapshot to compare against later.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    sys: Option<CpuTimes>,
    own: Option<u64>,
}

impl Snapshot {
    pub fn now() -> Snapshot {
        Snapshot {
            sys: system_times(),
            own: own_ticks(),
        }
    }

    /// Activity since `self`, given the number of CPUs.
    pub fn activity_since(&self, cpus: u32) -> Option<Activity> {
        let now = Snapshot::now();
        let (a, b) = (self.sys?, now.sys?);
        let (oa, ob) = (self.own?, now.own?);
        let total = b.total.checked_sub(a.total)?;
        if total == 0 {
            return None;
        }
        let busy = b.busy.saturating_sub(a.busy);
        let own = ob.saturating_sub(oa);
        let foreign = busy.saturating_sub(own) as f64;
        // `total` sums over all CPUs: wall ticks = total / cpus
        let wall = total as f64 / cpus.max(1) as f64;
        Some(Activity {
            foreign_cpus: foreign / wall,
            steal_fraction: b.steal.saturating_sub(a.steal) as f64 / total as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_line_parses() {
        let t = "cpu  100 5 50 1000 10 3 2 7 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        let c = parse_proc_stat(t).unwrap();
        assert_eq!(c.busy, 100 + 5 + 50 + 3 + 2);
        assert_eq!(c.steal, 7);
        assert_eq!(c.total, 100 + 5 + 50 + 1000 + 10 + 3 + 2 + 7);
        assert_eq!(parse_proc_stat("cpu0 1 2"), None);
        assert_eq!(parse_proc_stat("cpu  x y"), None);
    }

    #[test]
    fn readings_are_available_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(runnable_tasks().is_some_and(|n| n >= 1));
            assert!(own_ticks().is_some());
            assert!(system_times().is_some());
        }
    }
}
