//! The only `unsafe` of the binary: llama.cpp through its raw C API (`llama-cpp-sys-2`), for
//! what the safe `llama-cpp-2` wrapper does not offer: a context created with ggml's graph
//! evaluation callback (`llama_context_params.cb_eval`), which times every graph node.
//!
//! How the callback works (ggml `ggml_backend_sched_compute_splits`, ggml-backend.cpp): for each
//! node of a split the scheduler asks `cb(node, ask = true)`; nodes answered `false` are
//! gathered with the following ones, and when a node is answered `true` the gathered range is
//! computed, the backend synchronised, and `cb(node, ask = false)` called. We answer `true` for
//! every node that computes something (not for views, reshapes, permutes, transposes) and time
//! from the `ask = true` answer to the `ask = false` call, so a node's time is its own kernel
//! plus one thread-pool round trip: the CPU backend then runs one node per dispatch, not the
//! whole graph, which is the overhead [`super::llamacpp_nodes`] reports (pass time with the
//! recorder on against off).
//!
//! What this is not: a general binding. It loads a model, creates contexts, runs
//! `llama_decode` on a token list, clears or truncates the KV cache, and reads build info.
//! Each `unsafe` block carries a `SAFETY:` comment; every pointer is owned by one struct and
//! freed in its `Drop`.

use anyhow::{anyhow, bail, Context as _, Result};
use llama_cpp_sys_2 as sys;
use std::ffi::{c_void, CStr, CString};
use std::path::Path;
use std::time::Instant;

#[cfg(test)]
#[path = "llamacpp_logits_test.rs"]
mod logits_test;

/// One timed graph node of one `llama_decode` call.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSample {
    /// The tensor name llama.cpp gave the node (`Qcur-5`, `ffn_out-3`, `result_output`), or
    /// ggml's `node_<n>` for unnamed ones.
    pub name: String,
    /// ggml's operator name (`MUL_MAT`, `ROPE`, `FLASH_ATTN_EXT`, ...).
    pub op: String,
    /// Output shape `ne[0..4]`.
    pub ne: [i64; 4],
    pub seconds: f64,
}

/// What the evaluation callback writes to; owned (boxed, so its address is stable) by the
/// context whose `cb_eval_user_data` points at it.
#[derive(Default)]
struct Recorder {
    /// When false, every node is answered "not needed": the scheduler then computes the whole
    /// split in one dispatch, as without a callback.
    enabled: bool,
    started: Option<Instant>,
    /// First node started and last node finished since the last [`Context::take_span`].
    span: Option<(Instant, Instant)>,
    nodes: Vec<NodeSample>,
}

/// Operators that compute nothing (ggml's `ggml_op_is_empty`): never timed on their own.
fn is_empty_op(op: sys::ggml_op) -> bool {
    matches!(
        op,
        sys::GGML_OP_NONE
            | sys::GGML_OP_RESHAPE
            | sys::GGML_OP_VIEW
            | sys::GGML_OP_PERMUTE
            | sys::GGML_OP_TRANSPOSE
    )
}

fn c_str(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null pointers passed here come from llama.cpp/ggml functions documented to
    // return NUL-terminated static strings (op names, version, system info).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The graph evaluation callback (`ggml_backend_sched_eval_callback`).
unsafe extern "C" fn eval_callback(t: *mut sys::ggml_tensor, ask: bool, ud: *mut c_void) -> bool {
    if t.is_null() || ud.is_null() {
        return false;
    }
    // SAFETY: `ud` is the `Recorder` of the `Context` running this `llama_decode` (set at
    // context creation, freed only after the context); the scheduler calls back on the thread
    // that called `llama_decode`, which holds `&mut Context`, so no other reference exists.
    let rec = unsafe { &mut *ud.cast::<Recorder>() };
    // SAFETY: `t` is a live node of the graph being computed (checked non-null above).
    let tensor = unsafe { &*t };
    if ask {
        if !rec.enabled || is_empty_op(tensor.op) {
            return false;
        }
        let now = Instant::now();
        rec.started = Some(now);
        rec.span.get_or_insert((now, now));
        return true;
    }
    let end = Instant::now();
    let seconds = rec
        .started
        .take()
        .map_or(0.0, |s| end.duration_since(s).as_secs_f64());
    if let Some(span) = rec.span.as_mut() {
        span.1 = end;
    }
    let len = tensor
        .name
        .iter()
        .position(|c| *c == 0)
        .unwrap_or(tensor.name.len());
    // `c_char` is i8 or u8 depending on the platform: reinterpret each byte.
    let bytes: Vec<u8> = tensor.name[..len].iter().map(|c| *c as u8).collect();
    // SAFETY: `ggml_op_name` returns a static string for every valid op (the tensor's own op).
    let op = c_str(unsafe { sys::ggml_op_name(tensor.op) });
    rec.nodes.push(NodeSample {
        name: String::from_utf8_lossy(&bytes).into_owned(),
        op,
        ne: tensor.ne,
        seconds,
    });
    true
}

/// llama.cpp's build, for results: the crate versions, ggml's version and commit, and the CPU
/// features it was compiled with (`llama_print_system_info`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BuildInfo {
    pub bindings: String,
    pub ggml_version: String,
    pub ggml_commit: String,
    pub system_info: String,
}

/// The build info of the linked llama.cpp.
pub fn build_info(bindings: &str) -> BuildInfo {
    // SAFETY: these functions take no arguments and return static NUL-terminated strings.
    let (v, c, s) = unsafe {
        (
            sys::ggml_version(),
            sys::ggml_commit(),
            sys::llama_print_system_info(),
        )
    };
    BuildInfo {
        bindings: bindings.to_string(),
        ggml_version: c_str(v),
        ggml_commit: c_str(c),
        system_info: c_str(s).trim().to_string(),
    }
}

/// A loaded model (`llama_model *`), freed on drop. The backend must be initialised first
/// (`llama-cpp-2`'s `LlamaBackend::init`).
pub struct Model {
    ptr: *mut sys::llama_model,
}

impl Model {
    pub fn load(path: &Path) -> Result<Model> {
        let cpath = CString::new(path.as_os_str().as_encoded_bytes())
            .with_context(|| format!("{}: path contains a NUL byte", path.display()))?;
        // SAFETY: plain value returned by llama.cpp.
        let mut params = unsafe { sys::llama_model_default_params() };
        params.n_gpu_layers = 0;
        // SAFETY: `cpath` is a valid C string for the duration of the call; `params` is a
        // fully initialised value from `llama_model_default_params`.
        let ptr = unsafe { sys::llama_model_load_from_file(cpath.as_ptr(), params) };
        if ptr.is_null() {
            bail!("llama.cpp cannot load {}", path.display());
        }
        Ok(Model { ptr })
    }

    /// Tokens in the model's vocabulary.
    pub fn n_vocab(&self) -> u32 {
        // SAFETY: `self.ptr` is a live model; the vocab pointer lives as long as the model.
        let n = unsafe { sys::llama_vocab_n_tokens(sys::llama_model_get_vocab(self.ptr)) };
        u32::try_from(n).unwrap_or(0)
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `llama_model_load_from_file` and is freed once; every
        // `Context` borrows the model, so none outlives it.
        unsafe { sys::llama_model_free(self.ptr) }
    }
}

/// Sizes and threads of a context.
#[derive(Clone, Copy, Debug)]
pub struct ContextSettings {
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub threads: i32,
    /// Install the node-timing callback.
    pub profile: bool,
}

/// A context (`llama_context *`) on a [`Model`], optionally with the node-timing callback.
pub struct Context<'m> {
    ptr: *mut sys::llama_context,
    /// The model's vocabulary size: the length of a logits row.
    #[cfg_attr(not(test), allow(dead_code))]
    n_vocab: usize,
    /// From `Box::into_raw`, freed in `Drop` after the context: the callback's user data.
    recorder: *mut Recorder,
    _model: std::marker::PhantomData<&'m Model>,
}

impl<'m> Context<'m> {
    pub fn new(model: &'m Model, s: ContextSettings) -> Result<Context<'m>> {
        Context::create(model, s, false)
    }

    /// A context with an f32 KV cache and flash attention off (llama.cpp's defaults store K
    /// and V in f16), for logit comparisons with our engine that f16 rounding would blur.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn new_f32_kv(model: &'m Model, s: ContextSettings) -> Result<Context<'m>> {
        Context::create(model, s, true)
    }

    fn create(model: &'m Model, s: ContextSettings, f32_kv: bool) -> Result<Context<'m>> {
        let recorder = Box::into_raw(Box::<Recorder>::default());
        // SAFETY: plain value returned by llama.cpp.
        let mut p = unsafe { sys::llama_context_default_params() };
        p.n_ctx = s.n_ctx;
        p.n_batch = s.n_batch;
        p.n_ubatch = s.n_ubatch;
        p.n_seq_max = 1;
        p.n_threads = s.threads;
        p.n_threads_batch = s.threads;
        p.no_perf = true;
        if f32_kv {
            p.type_k = sys::GGML_TYPE_F32;
            p.type_v = sys::GGML_TYPE_F32;
            p.flash_attn_type = sys::LLAMA_FLASH_ATTN_TYPE_DISABLED;
        }
        if s.profile {
            p.cb_eval = Some(eval_callback);
            p.cb_eval_user_data = recorder.cast::<c_void>();
        }
        // SAFETY: `model.ptr` is a live model that outlives the context ('m); `p` is fully
        // initialised; the callback's user data is `recorder`, owned by the returned context
        // and freed in its `Drop` only after `llama_free`.
        let ptr = unsafe { sys::llama_init_from_model(model.ptr, p) };
        if ptr.is_null() {
            // SAFETY: from `Box::into_raw` above; no context holds it.
            drop(unsafe { Box::from_raw(recorder) });
            bail!(
                "llama.cpp cannot create a context of {} tokens (batch {}, micro-batch {})",
                s.n_ctx,
                s.n_batch,
                s.n_ubatch
            );
        }
        Ok(Context {
            ptr,
            n_vocab: model.n_vocab() as usize,
            recorder,
            _model: std::marker::PhantomData,
        })
    }

    /// Turns node timing on or off (no effect without the callback).
    pub fn record(&mut self, on: bool) {
        self.recorder_mut().enabled = on;
    }

    /// The nodes timed since the last call.
    pub fn take_nodes(&mut self) -> Vec<NodeSample> {
        std::mem::take(&mut self.recorder_mut().nodes)
    }

    /// Seconds from the first timed node's start to the last one's end since the last call
    /// (0 when nothing was timed): the graph's execution, without graph building, allocation
    /// and input setup before it.
    pub fn take_span(&mut self) -> f64 {
        self.recorder_mut()
            .span
            .take()
            .map_or(0.0, |(a, b)| b.duration_since(a).as_secs_f64())
    }

    fn recorder_mut(&mut self) -> &mut Recorder {
        // SAFETY: `recorder` is live until drop; the callback only runs inside `decode`, which
        // takes `&mut self` like this function, so the two never overlap.
        unsafe { &mut *self.recorder }
    }

    /// One `llama_decode` of `tokens` appended to sequence 0 (positions follow the cache),
    /// logits for the last token only, then a synchronise: the call's wall time is complete.
    pub fn decode(&mut self, tokens: &[i32]) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        let n = i32::try_from(tokens.len()).context("too many tokens for one llama_decode")?;
        let mut toks = tokens.to_vec();
        // SAFETY: `toks` outlives the batch, which only borrows it (llama_batch_get_one does
        // not allocate); `n` is its length.
        let batch = unsafe { sys::llama_batch_get_one(toks.as_mut_ptr(), n) };
        // SAFETY: live context, batch valid for the call (above).
        let rc = unsafe { sys::llama_decode(self.ptr, batch) };
        // SAFETY: live context.
        unsafe { sys::llama_synchronize(self.ptr) };
        if rc != 0 {
            return Err(anyhow!("llama_decode of {n} tokens failed (code {rc})"));
        }
        Ok(())
    }

    /// The logits of the last token of the last [`Context::decode`] (`n_vocab` values).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn last_logits(&self) -> Result<Vec<f32>> {
        // SAFETY: live context; index -1 is the last output row, and llama.cpp returns null
        // (after logging) when there is none rather than reading out of bounds.
        let p = unsafe { sys::llama_get_logits_ith(self.ptr, -1) };
        if p.is_null() {
            bail!("llama.cpp has no logits for the last token (no decode yet?)");
        }
        // SAFETY: a non-null logits row of the context holds `n_vocab` f32 values and stays
        // valid until the next decode, which needs `&mut self`; we copy it out at once.
        Ok(unsafe { std::slice::from_raw_parts(p, self.n_vocab) }.to_vec())
    }

    /// Empties the KV cache.
    pub fn clear(&mut self) {
        // SAFETY: live context; the memory handle lives as long as the context.
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.ptr), true) }
    }

    /// Drops cached positions from `pos` on (sequence 0), so the next decode continues at `pos`.
    pub fn truncate(&mut self, pos: u32) -> Result<()> {
        let p0 = i32::try_from(pos).context("position too large")?;
        // SAFETY: live context; p1 = -1 means "to the end".
        let ok = unsafe { sys::llama_memory_seq_rm(sys::llama_get_memory(self.ptr), 0, p0, -1) };
        if !ok {
            bail!("llama.cpp could not rewind its KV cache to position {pos}");
        }
        Ok(())
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `llama_init_from_model` and is freed once; then the
        // recorder (from `Box::into_raw`), which no callback can reach any more.
        unsafe {
            sys::llama_free(self.ptr);
            drop(Box::from_raw(self.recorder));
        }
    }
}
