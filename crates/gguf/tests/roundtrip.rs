//! Writer -> reader round trips, synthetic models, and hostile input.

use rooflinebench_gguf::arch::{hf_config, ArchConfig};
use rooflinebench_gguf::summary::Summary;
use rooflinebench_gguf::tokenizer::Tokenizer;
use rooflinebench_gguf::writer::{
    fill_tensor, synthetic, write_synthetic, GgufWriter, Init, WeightFormat,
};
use rooflinebench_gguf::{Array, GgmlType, Gguf, GgufError, Value};
use rooflinebench_kernels::quant::{dequantize, QuantType};
use serde_json::json;

fn every_value_type() -> Vec<(String, Value)> {
    vec![
        ("t.u8".into(), Value::U8(200)),
        ("t.i8".into(), Value::I8(-5)),
        ("t.u16".into(), Value::U16(60000)),
        ("t.i16".into(), Value::I16(-30000)),
        ("t.u32".into(), Value::U32(4_000_000_000)),
        ("t.i32".into(), Value::I32(-2_000_000_000)),
        ("t.f32".into(), Value::F32(1.5e-5)),
        ("t.bool".into(), Value::Bool(true)),
        ("t.string".into(), Value::String("héllo".into())),
        ("t.u64".into(), Value::U64(u64::MAX)),
        ("t.i64".into(), Value::I64(i64::MIN)),
        ("t.f64".into(), Value::F64(-2.25)),
        ("t.arr_u8".into(), Value::Array(Array::U8(vec![1, 2, 3]))),
        ("t.arr_i32".into(), Value::Array(Array::I32(vec![-1, 7]))),
        (
            "t.arr_f32".into(),
            Value::Array(Array::F32(vec![0.5, -0.25])),
        ),
        (
            "t.arr_bool".into(),
            Value::Array(Array::Bool(vec![true, false])),
        ),
        (
            "t.arr_str".into(),
            Value::Array(Array::String(vec!["a".into(), "".into(), "ĠThe".into()])),
        ),
        ("t.arr_empty".into(), Value::Array(Array::U64(vec![]))),
        (
            "t.arr_nested".into(),
            Value::Array(Array::Array(vec![
                Array::I16(vec![1, -2]),
                Array::F64(vec![3.0]),
            ])),
        ),
    ]
}

fn small_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    for (k, v) in every_value_type() {
        w.meta(&k, v);
    }
    w.tensor("a.weight", &[64, 3], GgmlType::Q8_0, Init::Uniform(1.0))
        .unwrap();
    w.tensor("b.weight", &[256, 2], GgmlType::Q4_K, Init::Uniform(1.0))
        .unwrap();
    w.tensor("c.weight", &[5], GgmlType::F32, Init::Const(2.0))
        .unwrap();
    w.tensor("d.weight", &[32, 1, 2], GgmlType::F16, Init::Uniform(0.5))
        .unwrap();
    w
}

fn write_bytes(w: &GgufWriter, seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let n = w
        .write(&mut out, |t, sink| fill_tensor(t, seed, sink))
        .unwrap();
    assert_eq!(n as usize, out.len());
    out
}

#[test]
fn write_then_read_gives_the_same_metadata_and_tensors() {
    let w = small_writer();
    let bytes = write_bytes(&w, 1);
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.metadata, every_value_type());
    assert_eq!(g.alignment, 32);
    assert_eq!(g.data_offset % 32, 0);
    assert_eq!(g.tensors.len(), 4);
    for (p, t) in w.tensors.iter().zip(&g.tensors) {
        assert_eq!(
            (&p.name, &p.dims, p.ty, p.n_bytes),
            (&t.name, &t.dims, t.ty, t.n_bytes)
        );
        assert_eq!(t.offset % 32, 0);
        let data = g.tensor_data(&bytes, t).unwrap();
        let mut again = Vec::new();
        fill_tensor(p, 1, &mut |b| {
            again.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(data, &again[..], "{}", t.name);
    }
    // The constant F32 tensor reads back as written.
    let c = g.tensor("c.weight").unwrap();
    let d = g.tensor_data(&bytes, c).unwrap();
    assert!(d
        .chunks(4)
        .all(|x| f32::from_le_bytes(x.try_into().unwrap()) == 2.0));
    // Quantized data dequantizes to values in the written range.
    let a = g.tensor("a.weight").unwrap();
    let mut f = vec![0.0f32; 64 * 3];
    dequantize(QuantType::Q8_0, g.tensor_data(&bytes, a).unwrap(), &mut f).unwrap();
    assert!(f.iter().all(|v| v.abs() <= 1.01) && f.iter().any(|v| v.abs() > 0.5));
}

#[test]
fn version_2_files_are_read_too() {
    let mut bytes = write_bytes(&small_writer(), 2);
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(Gguf::parse(&bytes).unwrap().version, 2);
}

#[test]
fn custom_alignment_is_honoured() {
    let mut w = small_writer();
    w.alignment = 64;
    let bytes = write_bytes(&w, 3);
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.alignment, 64);
    assert_eq!(g.data_offset % 64, 0);
    assert!(g.tensors.iter().all(|t| t.offset % 64 == 0));
}

/// Every truncation of a valid file is an error, never a panic.
#[test]
fn every_truncation_is_a_clean_error() {
    let bytes = write_bytes(&small_writer(), 4);
    let g = Gguf::parse(&bytes).unwrap();
    for n in 0..bytes.len() {
        let r = Gguf::parse(&bytes[..n]);
        // Cutting only into the padding after the last tensor may still parse.
        if let Err(e) = r {
            assert!(!e.to_string().is_empty());
        } else {
            assert!(n as u64 >= g.data_offset);
        }
    }
}

fn expect_err(bytes: &[u8], needle: &str) {
    match Gguf::parse(bytes) {
        Ok(_) => panic!("expected an error containing {needle:?}"),
        Err(e) => {
            let s = e.to_string();
            assert!(s.contains(needle), "{s:?} lacks {needle:?}");
        }
    }
}

/// Offset of the first byte after `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap() + needle.len()
}

#[test]
fn hostile_headers_give_one_clear_error() {
    let good = write_bytes(&small_writer(), 5);
    let mut b = good.clone();
    b[0] = b'X';
    expect_err(&b, "not a GGUF file");
    let mut b = good.clone();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    expect_err(&b, "unsupported GGUF version 1");
    // Absurd counts: no allocation, an error naming the count.
    let mut b = good.clone();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    expect_err(&b, "tensor count");
    let mut b = good.clone();
    b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    expect_err(&b, "metadata key/value count");
    // A string length beyond the file.
    let mut b = good.clone();
    let at = find(&b, b"t.string") + 4; // past the value type
    b[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    expect_err(&b, "\"t.string\"");
    // An array count beyond the file.
    let mut b = good.clone();
    let at = find(&b, b"t.arr_u8") + 4 + 4;
    b[at..at + 8].copy_from_slice(&(1u64 << 50).to_le_bytes());
    expect_err(&b, "cannot fit");
    // Unknown value type.
    let mut b = good.clone();
    let at = find(&b, b"t.u8");
    b[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    expect_err(&b, "unknown value type 99");
    // Unknown tensor type, too many dims, absurd dims, offsets beyond the file.
    let name = b"a.weight";
    let mut b = good.clone();
    let at = find(&b, name) + 4 + 16;
    b[at..at + 4].copy_from_slice(&4u32.to_le_bytes());
    expect_err(&b, "tensor \"a.weight\": unknown ggml type 4");
    let mut b = good.clone();
    let at = find(&b, name);
    b[at..at + 4].copy_from_slice(&9u32.to_le_bytes());
    expect_err(&b, "9 dimensions");
    let mut b = good.clone();
    let at = find(&b, name) + 4 + 8;
    b[at..at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    expect_err(&b, "tensor \"a.weight\"");
    let mut b = good.clone();
    let at = find(&b, name) + 4;
    b[at..at + 8].copy_from_slice(&33u64.to_le_bytes());
    expect_err(&b, "multiple of the type's block size");
    let mut b = good.clone();
    let at = find(&b, name) + 4 + 16 + 4;
    b[at..at + 8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    expect_err(&b, "beyond the end of the file");
    let mut b = good;
    let at = find(&b, name) + 4 + 16 + 4;
    b[at..at + 8].copy_from_slice(&8u64.to_le_bytes());
    expect_err(&b, "not a multiple of the alignment");
}

fn qwen_like() -> serde_json::Value {
    json!({
        "model_type": "qwen2", "hidden_size": 256, "intermediate_size": 512,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 320, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "tie_word_embeddings": true
    })
}

#[test]
fn synthetic_model_round_trips_its_config_and_tokenizer() {
    let cfg = ArchConfig::from_hf(&qwen_like()).unwrap();
    let mut bytes = Vec::new();
    write_synthetic(&cfg, WeightFormat::Quant(QuantType::Q4_0), 7, &mut bytes).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.architecture().unwrap(), "qwen2");
    let hf = hf_config(&g).unwrap();
    for (k, v) in [
        ("model_type", json!("qwen2")),
        ("hidden_size", json!(256)),
        ("intermediate_size", json!(512)),
        ("num_hidden_layers", json!(2)),
        ("num_attention_heads", json!(4)),
        ("num_key_value_heads", json!(2)),
        ("vocab_size", json!(320)),
        ("tie_word_embeddings", json!(true)),
        ("attention_bias", json!(true)),
        ("head_dim", json!(64)),
    ] {
        assert_eq!(hf[k], v, "{k}");
    }
    assert!(g.tensor("output.weight").is_none());
    assert_eq!(
        g.tensor("blk.1.attn_k.weight").unwrap().dims,
        vec![256, 128]
    );
    assert_eq!(
        g.tensor("blk.0.ffn_down.weight").unwrap().dims,
        vec![512, 256]
    );
    assert_eq!(g.tensor("blk.0.attn_q.bias").unwrap().ty, GgmlType::F32);
    let s = Summary::of(&g);
    assert_eq!(s.by_type[&GgmlType::Q4_0].tensors, 1 + 2 * 7);
    let tok = Tokenizer::from_gguf(&g).unwrap();
    assert_eq!(tok.vocab_size(), 320);
    let ids = tok.encode("the cat", false).unwrap();
    assert_eq!(tok.decode(&ids), "the cat");
}

/// Pitfall 24: SmolLM2-135M's hidden size 576 is not a multiple of 256, so a Q4_K_M file
/// falls back per tensor, and the summary counts the real types.
#[test]
fn pitfall_24_k_quant_fallback_is_per_tensor_and_counted() {
    let cfg = ArchConfig::from_hf(&json!({
        "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
        "num_hidden_layers": 2, "num_attention_heads": 9, "num_key_value_heads": 3,
        "vocab_size": 300, "tie_word_embeddings": true
    }))
    .unwrap();
    let plan = synthetic(&cfg, WeightFormat::Q4KM).unwrap();
    let ty = |n: &str| plan.tensors.iter().find(|t| t.name == n).unwrap().ty;
    assert_eq!(ty("blk.0.attn_q.weight"), GgmlType::Q5_0); // ne0 = 576
                                                           // use_more_bits(i, 2) holds for layer 1 only.
    assert_eq!(ty("blk.0.ffn_down.weight"), GgmlType::Q4_K); // ne0 = 1536 = 6 x 256
    assert_eq!(ty("blk.1.ffn_down.weight"), GgmlType::Q6_K);
    assert_eq!(ty("blk.0.attn_v.weight"), GgmlType::Q5_0);
    assert_eq!(ty("blk.1.attn_v.weight"), GgmlType::Q8_0); // Q6_K falls back to Q8_0
    let mut bytes = Vec::new();
    plan.write(&mut bytes, |t, sink| fill_tensor(t, 1, sink))
        .unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let s = Summary::of(&g);
    assert!(s.by_type.contains_key(&GgmlType::Q5_0));
    assert!(s.by_type.contains_key(&GgmlType::Q6_K));
    assert!(s.by_type.contains_key(&GgmlType::Q8_0));
    // Only ffn_down has ne0 = 1536; every other matrix has ne0 = 576 and falls back.
    assert_eq!(s.by_type[&GgmlType::Q4_K].tensors, 1);
}

#[test]
fn mla_moe_synthetic_maps_back_to_deepseek_fields() {
    let hf = json!({
        "model_type": "deepseek_v2", "hidden_size": 256, "intermediate_size": 512,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
        "vocab_size": 300, "kv_lora_rank": 64, "q_lora_rank": null,
        "qk_nope_head_dim": 32, "qk_rope_head_dim": 16, "v_head_dim": 32,
        "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
        "n_shared_experts": 1, "first_k_dense_replace": 1
    });
    let cfg = ArchConfig::from_hf(&hf).unwrap();
    let mut bytes = Vec::new();
    write_synthetic(&cfg, WeightFormat::Quant(QuantType::Q8_0), 3, &mut bytes).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let back = hf_config(&g).unwrap();
    for k in [
        "kv_lora_rank",
        "qk_nope_head_dim",
        "qk_rope_head_dim",
        "v_head_dim",
        "n_routed_experts",
        "num_experts_per_tok",
        "moe_intermediate_size",
        "n_shared_experts",
        "first_k_dense_replace",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
    ] {
        assert_eq!(back[k], hf[k], "{k}");
    }
    assert_eq!(back["model_type"], "deepseek_v2");
    assert!(back["q_lora_rank"].is_null());
    assert!(g.tensor("blk.0.ffn_gate.weight").is_some());
    assert_eq!(
        g.tensor("blk.1.ffn_gate_exps.weight").unwrap().dims,
        vec![256, 64, 8]
    );
    assert_eq!(
        g.tensor("blk.1.attn_k_b.weight").unwrap().dims,
        vec![32, 64, 4]
    );
}

#[test]
fn bad_writer_configs_are_errors() {
    let mut c = qwen_like();
    c["num_key_value_heads"] = json!(3);
    assert!(matches!(
        ArchConfig::from_hf(&c),
        Err(GgufError::Config { .. })
    ));
    let mut c = qwen_like();
    c["vocab_size"] = json!(10);
    let cfg = ArchConfig::from_hf(&c).unwrap();
    assert!(synthetic(&cfg, WeightFormat::F16).is_err());
    let mut c = qwen_like();
    c["model_type"] = json!("bert");
    assert!(matches!(
        ArchConfig::from_hf(&c),
        Err(GgufError::UnsupportedArchitecture { .. })
    ));
}
