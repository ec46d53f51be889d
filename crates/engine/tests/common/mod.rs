//! Shared helpers of the engine's integration tests: tiny configs of every supported family and
//! a naive f64 reference forward pass written independently of the engine (plain loops over the
//! Hugging Face equations, no KV cache: every position recomputed from scratch).
#![allow(dead_code)]

use rooflinebench_engine::arch::RopeScaling;
use rooflinebench_engine::weights::{Mat, Norm, Weights};
use rooflinebench_engine::ModelDef;
use rooflinebench_model::spec::{Activation, NormKind};

/// Tiny configs, one per supported family and feature combination.
pub fn tiny_configs() -> Vec<(&'static str, String)> {
    let base = r#""hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 96, "vocab_size": 50, "max_position_embeddings": 64"#;
    vec![
        (
            "llama-gqa-untied",
            format!(
                r#"{{"model_type": "llama", {base}, "num_key_value_heads": 2,
                "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false}}"#
            ),
        ),
        (
            "llama3-scaled-tied-mqa",
            format!(
                r#"{{"model_type": "llama", {base}, "num_key_value_heads": 1,
                "tie_word_embeddings": true, "rope_theta": 500000.0,
                "rope_scaling": {{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}}}"#
            ),
        ),
        (
            "mistral-window",
            format!(
                r#"{{"model_type": "mistral", {base}, "num_key_value_heads": 2,
                "sliding_window": 4, "tie_word_embeddings": false}}"#
            ),
        ),
        (
            "qwen2-bias",
            format!(
                r#"{{"model_type": "qwen2", {base}, "num_key_value_heads": 2,
                "rope_theta": 1000000.0, "tie_word_embeddings": true}}"#
            ),
        ),
        (
            "qwen3-qknorm",
            format!(
                r#"{{"model_type": "qwen3", {base}, "num_key_value_heads": 2, "head_dim": 32,
                "tie_word_embeddings": true}}"#
            ),
        ),
        (
            "gemma-geglu",
            format!(
                r#"{{"model_type": "gemma", {base}, "num_key_value_heads": 1, "head_dim": 16,
                "hidden_act": "gelu"}}"#
            ),
        ),
        (
            "gemma2-softcap-window",
            format!(
                r#"{{"model_type": "gemma2", {base}, "num_key_value_heads": 2, "head_dim": 16,
                "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 24,
                "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
                "sliding_window": 3}}"#
            ),
        ),
        (
            "gemma3-qknorm-localrope",
            format!(
                r#"{{"model_type": "gemma3_text", {base}, "num_key_value_heads": 2,
                "head_dim": 16, "hidden_activation": "gelu_pytorch_tanh",
                "query_pre_attn_scalar": 16, "sliding_window": 4, "sliding_window_pattern": 2,
                "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
                "rope_scaling": {{"rope_type": "linear", "factor": 8.0}}}}"#
            ),
        ),
        (
            "phi3-partial-rotary",
            format!(
                r#"{{"model_type": "phi3", {base}, "num_key_value_heads": 4,
                "partial_rotary_factor": 0.5, "tie_word_embeddings": false}}"#
            ),
        ),
        (
            "gpt-neox-parallel",
            format!(
                r#"{{"model_type": "gpt_neox", {base}, "rotary_pct": 0.25,
                "rotary_emb_base": 10000, "layer_norm_eps": 1e-5, "hidden_act": "gelu",
                "use_parallel_residual": true, "tie_word_embeddings": false}}"#
            ),
        ),
        (
            "gpt-neox-sequential",
            format!(
                r#"{{"model_type": "gpt_neox", {base}, "rotary_pct": 0.5,
                "hidden_act": "gelu", "use_parallel_residual": false,
                "tie_word_embeddings": false}}"#
            ),
        ),
    ]
}

fn mat_vec(m: &Mat, x: &[f64], bias: Option<&Vec<f32>>) -> Vec<f64> {
    (0..m.rows)
        .map(|r| {
            let mut s = bias.map_or(0.0, |b| b[r] as f64);
            for (c, xv) in x.iter().enumerate() {
                s += m.get(r, c) as f64 * xv;
            }
            s
        })
        .collect()
}

fn norm(x: &[f64], n: &Norm, kind: NormKind, eps: f64) -> Vec<f64> {
    let len = x.len() as f64;
    match kind {
        NormKind::RmsNorm => {
            let ms = x.iter().map(|v| v * v).sum::<f64>() / len;
            let inv = 1.0 / (ms + eps).sqrt();
            x.iter()
                .zip(&n.weight)
                .map(|(v, w)| v * inv * *w as f64)
                .collect()
        }
        NormKind::LayerNorm => {
            let mean = x.iter().sum::<f64>() / len;
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / len;
            let inv = 1.0 / (var + eps).sqrt();
            x.iter()
                .enumerate()
                .map(|(i, v)| {
                    (v - mean) * inv * n.weight[i] as f64
                        + n.bias.as_ref().map_or(0.0, |b| b[i] as f64)
                })
                .collect()
        }
    }
}

/// erf by its Maclaurin series (converges fast for the |x| < 6 these tests see), and 1 beyond.
fn erf(x: f64) -> f64 {
    if x.abs() > 6.0 {
        return x.signum();
    }
    let mut sum = 0.0f64;
    let mut term = x;
    let mut n = 0.0f64;
    while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 3.0 {
        sum += term / (2.0 * n + 1.0);
        n += 1.0;
        term *= -x * x / n;
        if n > 400.0 {
            break;
        }
    }
    2.0 / std::f64::consts::PI.sqrt() * sum
}

fn gelu(x: f64, tanh: bool) -> f64 {
    if tanh {
        0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
    } else {
        0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
    }
}

fn inv_freq(rot: usize, theta: f64, scaling: &RopeScaling) -> Vec<f64> {
    (0..rot / 2)
        .map(|i| {
            let f = theta.powf(-(2.0 * i as f64) / rot as f64);
            match *scaling {
                RopeScaling::None => f,
                RopeScaling::Linear { factor } => f / factor,
                RopeScaling::Llama3 {
                    factor,
                    low_freq_factor: lo,
                    high_freq_factor: hi,
                    original_max_position_embeddings: old,
                } => {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < old / hi {
                        f
                    } else if wavelen > old / lo {
                        f / factor
                    } else {
                        let s = (old / wavelen - lo) / (hi - lo);
                        (1.0 - s) * f / factor + s * f
                    }
                }
                RopeScaling::Yarn { .. } => panic!("no YaRN here: MLA models use tests/mla_moe.rs"),
            }
        })
        .collect()
}

fn rope(x: &mut [f64], hd: usize, rot: usize, pos: usize, freqs: &[f64]) {
    let half = rot / 2;
    for head in x.chunks_exact_mut(hd) {
        for i in 0..half {
            let a = pos as f64 * freqs[i];
            let (c, s) = (a.cos(), a.sin());
            let (x1, x2) = (head[i], head[i + half]);
            head[i] = x1 * c - x2 * s;
            head[i + half] = x2 * c + x1 * s;
        }
    }
}

/// Logits of every position of `tokens` (row-major `tokens.len() x vocab`), in f64.
pub fn reference_forward(def: &ModelDef, w: &Weights, tokens: &[u32]) -> Vec<f64> {
    let s = &def.spec;
    let a = &def.arch;
    let (h, hd) = (s.hidden_size as usize, s.head_dim as usize);
    let (nh, nkv) = (
        s.num_attention_heads as usize,
        s.num_key_value_heads as usize,
    );
    let rot = s.rotary_dims as usize;
    let eps = a.norm_eps as f64;
    let n = tokens.len();
    let mut x: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&t| {
            (0..h)
                .map(|c| {
                    w.embed.get(t as usize, c) as f64 * a.embed_scale.map_or(1.0, |v| v as f64)
                })
                .collect()
        })
        .collect();
    for (l, lw) in w.layers.iter().enumerate() {
        let window = s.layers[l].window.map(|v| v as usize);
        let freqs = match (window, a.rope_local_theta) {
            (Some(_), Some(theta)) => inv_freq(rot, theta, &a.rope_local_scaling),
            _ => inv_freq(rot, a.rope_theta, &a.rope_scaling),
        };
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (p, xp) in x.iter().enumerate() {
            let xn = norm(xp, &lw.attn_norm, s.norm, eps);
            let mut q = mat_vec(&lw.q, &xn, lw.q_bias.as_ref());
            let mut k = mat_vec(&lw.k, &xn, lw.k_bias.as_ref());
            let v = mat_vec(&lw.v, &xn, lw.v_bias.as_ref());
            if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
                let qn = Norm {
                    weight: qn.clone(),
                    bias: None,
                };
                let kn = Norm {
                    weight: kn.clone(),
                    bias: None,
                };
                q = q
                    .chunks(hd)
                    .flat_map(|c| norm(c, &qn, NormKind::RmsNorm, eps))
                    .collect();
                k = k
                    .chunks(hd)
                    .flat_map(|c| norm(c, &kn, NormKind::RmsNorm, eps))
                    .collect();
            }
            rope(&mut q, hd, rot, p, &freqs);
            rope(&mut k, hd, rot, p, &freqs);
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        let g = nh / nkv;
        let mut new_x = Vec::with_capacity(n);
        for p in 0..n {
            let lo = window.map_or(0, |wd| (p + 1).saturating_sub(wd));
            let mut att = vec![0.0f64; nh * hd];
            for head in 0..nh {
                let kvh = head / g;
                let q = &qs[p][head * hd..(head + 1) * hd];
                let mut sc: Vec<f64> = (lo..=p)
                    .map(|j| {
                        let kk = &ks[j][kvh * hd..(kvh + 1) * hd];
                        let mut d =
                            q.iter().zip(kk).map(|(a, b)| a * b).sum::<f64>() * a.attn_scale as f64;
                        if let Some(cap) = a.attn_softcap {
                            d = cap as f64 * (d / cap as f64).tanh();
                        }
                        d
                    })
                    .collect();
                let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = sc
                    .iter_mut()
                    .map(|v| {
                        *v = (*v - m).exp();
                        *v
                    })
                    .sum();
                for (jj, j) in (lo..=p).enumerate() {
                    let pr = sc[jj] / sum;
                    for d in 0..hd {
                        att[head * hd + d] += pr * vs[j][kvh * hd + d];
                    }
                }
            }
            let mut o = mat_vec(&lw.o, &att, lw.o_bias.as_ref());
            if let Some(pn) = &lw.attn_post_norm {
                o = norm(&o, pn, s.norm, eps);
            }
            let xp = &x[p];
            let after_attn: Vec<f64> = xp.iter().zip(&o).map(|(a, b)| a + b).collect();
            let ffn_in = if s.parallel_residual { xp } else { &after_attn };
            let xn = norm(ffn_in, &lw.ffn_norm, s.norm, eps);
            let up = mat_vec(&lw.up, &xn, lw.up_bias.as_ref());
            let hidden: Vec<f64> = match &lw.gate {
                Some(gw) => {
                    let gt = mat_vec(gw, &xn, lw.gate_bias.as_ref());
                    gt.iter()
                        .zip(&up)
                        .map(|(gv, uv)| {
                            let act = match s.ffn.act() {
                                Activation::Silu => gv / (1.0 + (-gv).exp()),
                                _ => {
                                    gelu(*gv, a.gelu == rooflinebench_engine::arch::GeluForm::Tanh)
                                }
                            };
                            act * uv
                        })
                        .collect()
                }
                None => up
                    .iter()
                    .map(|uv| gelu(*uv, a.gelu == rooflinebench_engine::arch::GeluForm::Tanh))
                    .collect(),
            };
            let mut f = mat_vec(&lw.down, &hidden, lw.down_bias.as_ref());
            if let Some(pn) = &lw.ffn_post_norm {
                f = norm(&f, pn, s.norm, eps);
            }
            new_x.push(
                after_attn
                    .iter()
                    .zip(&f)
                    .map(|(a, b)| a + b)
                    .collect::<Vec<f64>>(),
            );
        }
        x = new_x;
    }
    let head = w.head();
    let mut out = Vec::with_capacity(n * s.vocab_size as usize);
    for xp in &x {
        let xn = norm(xp, &w.final_norm, s.norm, eps);
        let mut logits = mat_vec(head, &xn, None);
        if let Some(cap) = a.final_softcap {
            logits
                .iter_mut()
                .for_each(|v| *v = cap as f64 * (*v / cap as f64).tanh());
        }
        out.extend(logits);
    }
    out
}

/// `||got - want|| / ||want||` (Euclidean norms, in f64).
pub fn l2_rel_err(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Largest `|a - b|` relative to the largest `|b|`.
pub fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-9);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - y).abs()))
        / scale
}
