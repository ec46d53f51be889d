//! Arbitrary bytes through the GGUF reader and everything that consumes its output: the
//! architecture mapping, the per-type summary, the tokenizer and dequantization of each
//! tensor's first row. Nothing may panic, hang or allocate beyond the input's size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rooflinebench_gguf::arch::hf_config;
use rooflinebench_gguf::summary::Summary;
use rooflinebench_gguf::tokenizer::Tokenizer;
use rooflinebench_gguf::Gguf;
use rooflinebench_kernels::quant::dequantize;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::parse(data) else { return };
    let _ = hf_config(&g);
    let _ = Summary::of(&g);
    for t in &g.tensors {
        let bytes = g
            .tensor_data(data, t)
            .expect("parse validated every tensor's extent");
        assert_eq!(bytes.len() as u64, t.n_bytes);
        if let (Some(q), Some(&ne0)) = (t.ty.quant(), t.dims.first()) {
            if ne0 > 0 && ne0 <= 4096 && t.n_elements >= ne0 {
                let row = (ne0 / t.ty.block_elems() * t.ty.block_bytes()) as usize;
                let mut out = vec![0.0f32; ne0 as usize];
                dequantize(q, &bytes[..row], &mut out).expect("whole blocks");
            }
        }
    }
    if let Ok(tok) = Tokenizer::from_gguf(&g) {
        if let Ok(ids) = tok.encode("Hello world 123 <|x|>", true) {
            let _ = tok.decode(&ids);
        }
    }
});
