//! MLA (absorbed and materialized) and MoE models: engine logits against a naive f64 reference
//! written here from the DeepSeek-V2/V3 and Qwen-MoE equations (no KV cache, every position
//! recomputed, `W_UK`/`W_UV` applied the materialized way), the two MLA forms against each
//! other, the operator join with the cost model, the KV cache size, router properties and the
//! bench's expert histogram.

// The reference indexes like the equations it follows.
#![allow(clippy::needless_range_loop)]

mod common;

use common::rel_err;
use rooflinebench_engine::arch::{RouterParams, Scoring, TopkMethod};
use rooflinebench_engine::bench::{cost_options, coverage, run_bench, BenchOptions};
use rooflinebench_engine::mla::MlaUp;
use rooflinebench_engine::moe::route;
use rooflinebench_engine::weights::{Mat, Weights};
use rooflinebench_engine::{
    load, KvCache, LoadOptions, Logits, Model, ModelDef, NoopRecorder, TimingRecorder, WeightsFrom,
};
use rooflinebench_kernels::engine::WeightDtype;
use rooflinebench_kernels::isa::Isa;
use rooflinebench_model::cost::{CostModel, CostOptions, MlaForm, Phase};
use rooflinebench_model::op::{OpId, OpKind};
use rooflinebench_model::spec::Attention;
use serde_json::Value;

const TOKENS: [u32; 9] = [3, 17, 42, 0, 49, 8, 8, 21, 30];
const FORMS: [MlaForm; 2] = [MlaForm::Absorbed, MlaForm::Materialized];

/// Tiny configs shaped like the real ones (crates/model/zoo, ../shared/models).
fn configs() -> Vec<(&'static str, String)> {
    let base = r#""hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
        "vocab_size": 50, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": false"#;
    vec![
        (
            // DeepSeek-V2-Lite: no q LoRA, YaRN, 2 shared experts, first layer dense, greedy
            // softmax routing without normalisation.
            "deepseek-v2-lite-like",
            format!(
                r#"{{"model_type": "deepseek_v2", {base}, "num_key_value_heads": 4,
                "kv_lora_rank": 32, "q_lora_rank": null, "qk_nope_head_dim": 16,
                "qk_rope_head_dim": 8, "v_head_dim": 12, "intermediate_size": 96,
                "moe_intermediate_size": 24, "n_routed_experts": 8, "num_experts_per_tok": 2,
                "n_shared_experts": 2, "first_k_dense_replace": 1, "moe_layer_freq": 1,
                "norm_topk_prob": false, "routed_scaling_factor": 1.0, "scoring_func": "softmax",
                "topk_method": "greedy", "n_group": 1, "topk_group": 1, "rope_theta": 10000,
                "rope_scaling": {{"type": "yarn", "factor": 4, "original_max_position_embeddings": 16,
                "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 1.0}}}}"#
            ),
        ),
        (
            // DeepSeek-V2/V3-style: q LoRA, group-limited sigmoid routing with the
            // correction bias, normalised and scaled weights.
            "deepseek-v3-like",
            format!(
                r#"{{"model_type": "deepseek_v3", {base}, "num_key_value_heads": 4,
                "kv_lora_rank": 24, "q_lora_rank": 40, "qk_nope_head_dim": 16,
                "qk_rope_head_dim": 8, "v_head_dim": 16, "intermediate_size": 96,
                "moe_intermediate_size": 24, "n_routed_experts": 8, "num_experts_per_tok": 3,
                "n_shared_experts": 1, "first_k_dense_replace": 1, "norm_topk_prob": true,
                "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "topk_method": "noaux_tc",
                "n_group": 4, "topk_group": 2}}"#
            ),
        ),
        (
            // PLM-style: MLA without q LoRA and a dense FFN.
            "plm-like",
            format!(
                r#"{{"model_type": "plm", {base}, "num_key_value_heads": 4, "kv_lora_rank": 16,
                "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8,
                "intermediate_size": 96, "rope_theta": 100000.0}}"#
            ),
        ),
        (
            // Qwen3-MoE: GQA with q/k norms, normalised softmax top-k, a dense layer by
            // mlp_only_layers.
            "qwen3-moe-like",
            format!(
                r#"{{"model_type": "qwen3_moe", {base}, "num_key_value_heads": 2, "head_dim": 16,
                "intermediate_size": 96, "moe_intermediate_size": 24, "num_experts": 8,
                "num_experts_per_tok": 2, "norm_topk_prob": true, "decoder_sparse_step": 1,
                "mlp_only_layers": [1], "rope_theta": 1000000.0}}"#
            ),
        ),
        (
            // Qwen2-MoE: q/k/v biases, a sigmoid-gated shared expert, unnormalised top-k.
            "qwen2-moe-like",
            format!(
                r#"{{"model_type": "qwen2_moe", {base}, "num_key_value_heads": 4,
                "intermediate_size": 96, "moe_intermediate_size": 24, "num_experts": 8,
                "num_experts_per_tok": 2, "shared_expert_intermediate_size": 40,
                "norm_topk_prob": false}}"#
            ),
        ),
    ]
}

fn is_mla(def: &ModelDef) -> bool {
    matches!(def.spec.attention, Attention::Mla(_))
}

fn forms_of(def: &ModelDef) -> &'static [MlaForm] {
    if is_mla(def) {
        &FORMS
    } else {
        &FORMS[..1]
    }
}

fn load_form(cfg: &str, form: MlaForm, dtype: WeightDtype, isa: Isa) -> (ModelDef, Model, KvCache) {
    let (mut def, _) = ModelDef::from_config_json(cfg).expect("tiny config parses");
    def.arch.mla_form = form;
    let (m, c) = load(
        &def,
        &WeightsFrom::Random { seed: 11 },
        &LoadOptions {
            dtype: Some(dtype),
            threads: 2,
            isa: Some(isa),
            positions: 32,
            max_tokens: 16,
        },
    )
    .expect("tiny model builds");
    (def, m, c)
}

fn best_isa() -> Isa {
    *Isa::all_available().last().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The f64 reference.

fn mv(m: &Mat, x: &[f64]) -> Vec<f64> {
    assert_eq!(m.cols, x.len());
    (0..m.rows)
        .map(|r| (0..m.cols).map(|c| m.get(r, c) as f64 * x[c]).sum())
        .collect()
}

fn rms(x: &[f64], w: &[f32], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, w)| v * r * *w as f64).collect()
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn cfg_num(cfg: &str, path: &[&str]) -> Option<f64> {
    let v: Value = serde_json::from_str(cfg).unwrap();
    let mut cur = &v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_f64()
}

/// `(inv_freq, cos/sin multiplier)` from the config, written from DeepSeek's YaRN code.
fn rope_freqs(cfg: &str, rot: usize) -> (Vec<f64>, f64) {
    let theta = cfg_num(cfg, &["rope_theta"]).unwrap_or(10000.0);
    let plain: Vec<f64> = (0..rot / 2)
        .map(|i| theta.powf(-(2.0 * i as f64) / rot as f64))
        .collect();
    let Some(factor) = cfg_num(cfg, &["rope_scaling", "factor"]) else {
        return (plain, 1.0);
    };
    let g = |k: &str, d: f64| cfg_num(cfg, &["rope_scaling", k]).unwrap_or(d);
    let (omax, fast, slow) = (
        g("original_max_position_embeddings", 4096.0),
        g("beta_fast", 32.0),
        g("beta_slow", 1.0),
    );
    let dim = rot as f64;
    let corr = |n: f64| dim * (omax / (n * 2.0 * std::f64::consts::PI)).ln() / (2.0 * theta.ln());
    let low = corr(fast).floor().max(0.0);
    let mut high = corr(slow).ceil().min(dim - 1.0);
    if low == high {
        high += 0.001;
    }
    let freqs = plain
        .iter()
        .enumerate()
        .map(|(i, &f)| {
            let mask = 1.0 - ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
            f / factor * (1.0 - mask) + f * mask
        })
        .collect();
    let ms = |m: f64| {
        if factor <= 1.0 {
            1.0
        } else {
            0.1 * m * factor.ln() + 1.0
        }
    };
    (freqs, ms(g("mscale", 1.0)) / ms(g("mscale_all_dim", 0.0)))
}

fn rope(x: &mut [f64], pos: usize, freqs: &[f64], m: f64) {
    let half = x.len() / 2;
    for i in 0..half {
        let a = pos as f64 * freqs[i];
        let (c, s) = (a.cos() * m, a.sin() * m);
        let (x1, x2) = (x[i], x[i + half]);
        x[i] = x1 * c - x2 * s;
        x[i + half] = x2 * c + x1 * s;
    }
}

/// `kv_b_proj[h * (nope + dv) + row][c]` rebuilt from the absorbed per-head maps.
fn kv_b_absorbed(up: &MlaUp, h: usize, nope: usize, row: usize, c: usize) -> f64 {
    match up {
        MlaUp::Absorbed { uk_t, uv } if row < nope => uk_t[h].get(c, row) as f64,
        MlaUp::Absorbed { uv, .. } => uv[h].get(row - nope, c) as f64,
        MlaUp::Materialized { .. } => unreachable!("materialized weights are read directly"),
    }
}

/// Independent top-k routing in f64 (DeepSeek `MoEGate`, Qwen/Mixtral blocks).
fn ref_route(
    rp: &RouterParams,
    logits: &[f64],
    bias: Option<&[f32]>,
    k: usize,
) -> Vec<(usize, f64)> {
    let e = logits.len();
    let score: Vec<f64> = match rp.scoring {
        Scoring::Softmax => {
            let mx = logits.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = logits.iter().map(|x| (x - mx).exp()).sum();
            logits.iter().map(|x| (x - mx).exp() / z).collect()
        }
        Scoring::Sigmoid => logits.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect(),
    };
    let choice: Vec<f64> = (0..e)
        .map(|j| score[j] + bias.map_or(0.0, |b| b[j] as f64))
        .collect();
    let mut allowed = vec![true; e];
    if rp.method != TopkMethod::Greedy && rp.n_group > 1 {
        let per = e / rp.n_group;
        let mut gs: Vec<(f64, usize)> = (0..rp.n_group)
            .map(|g| {
                let mut m: Vec<f64> = choice[g * per..(g + 1) * per].to_vec();
                m.sort_by(|a, b| b.total_cmp(a));
                let s = if rp.method == TopkMethod::NoauxTc {
                    m[0] + m.get(1).copied().unwrap_or(0.0)
                } else {
                    m[0]
                };
                (s, g)
            })
            .collect();
        gs.sort_by(|a, b| b.0.total_cmp(&a.0));
        for &(_, g) in &gs[rp.topk_group..] {
            allowed[g * per..(g + 1) * per].fill(false);
        }
    }
    let mut idx: Vec<usize> = (0..e).filter(|&j| allowed[j]).collect();
    idx.sort_by(|&a, &b| choice[b].total_cmp(&choice[a]));
    let mut out: Vec<(usize, f64)> = idx[..k].iter().map(|&j| (j, score[j])).collect();
    let norm = rp.norm_topk_prob && (k > 1 || !rp.norm_needs_k_gt_1);
    if norm {
        let s: f64 = out.iter().map(|p| p.1).sum();
        out.iter_mut().for_each(|p| p.1 /= s);
    }
    if rp.method == TopkMethod::NoauxTc || !norm {
        out.iter_mut()
            .for_each(|p| p.1 *= rp.routed_scaling_factor as f64);
    }
    out
}

fn mlp(gate: &Mat, up: &Mat, down: &Mat, x: &[f64]) -> Vec<f64> {
    let g = mv(gate, x);
    let u = mv(up, x);
    let hmid: Vec<f64> = g.iter().zip(&u).map(|(g, u)| silu(*g) * u).collect();
    mv(down, &hmid)
}

/// Logits of every position, f64, no cache.
fn reference(cfg: &str, def: &ModelDef, w: &Weights, tokens: &[u32]) -> Vec<f64> {
    let s = &def.spec;
    let a = &def.arch;
    let eps = a.norm_eps as f64;
    let h = s.hidden_size as usize;
    let nh = s.num_attention_heads as usize;
    let t = tokens.len();
    let mut x: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&tok| {
            (0..h)
                .map(|c| w.embed.get(tok as usize, c) as f64)
                .collect()
        })
        .collect();
    let scale = a.attn_scale as f64;
    for (l, lw) in w.layers.iter().enumerate() {
        let xn: Vec<Vec<f64>> = x
            .iter()
            .map(|r| rms(r, &lw.attn_norm.weight, eps))
            .collect();
        let mut att: Vec<Vec<f64>> = vec![];
        if let Some(mw) = &lw.mla {
            let Attention::Mla(m) = s.attention else {
                unreachable!()
            };
            let (kvl, rope_d, nope, dv) = (
                m.kv_lora_rank as usize,
                m.qk_rope_head_dim as usize,
                m.qk_nope_head_dim as usize,
                m.v_head_dim as usize,
            );
            let qk = nope + rope_d;
            let (freqs, msc) = rope_freqs(cfg, rope_d);
            let mut q: Vec<Vec<f64>> = vec![];
            let mut lat: Vec<Vec<f64>> = vec![];
            let mut kpe: Vec<Vec<f64>> = vec![];
            for (i, xi) in xn.iter().enumerate() {
                let mut qi = match &mw.q_a {
                    Some((qa, qn)) => mv(&mw.q_b, &rms(&mv(qa, xi), qn, eps)),
                    None => mv(&mw.q_b, xi),
                };
                for hh in 0..nh {
                    rope(&mut qi[hh * qk + nope..(hh + 1) * qk], i, &freqs, msc);
                }
                q.push(qi);
                let ckv = mv(&mw.kv_a, xi);
                lat.push(rms(&ckv[..kvl], &mw.kv_a_norm, eps));
                let mut kp = ckv[kvl..].to_vec();
                rope(&mut kp, i, &freqs, msc);
                kpe.push(kp);
            }
            // Materialized per-head keys and values from kv_b.
            let w_at = |hh: usize, row: usize, c: usize| -> f64 {
                match &mw.up {
                    MlaUp::Materialized { kv_b } => kv_b.get(hh * (nope + dv) + row, c) as f64,
                    up @ MlaUp::Absorbed { .. } => kv_b_absorbed(up, hh, nope, row, c),
                }
            };
            let kn: Vec<Vec<Vec<f64>>> = lat
                .iter()
                .map(|c| {
                    (0..nh)
                        .map(|hh| {
                            (0..nope + dv)
                                .map(|r| (0..kvl).map(|j| w_at(hh, r, j) * c[j]).sum())
                                .collect()
                        })
                        .collect()
                })
                .collect();
            for i in 0..t {
                let mut row = vec![0.0; nh * dv];
                for hh in 0..nh {
                    let qh = &q[i][hh * qk..(hh + 1) * qk];
                    let sc: Vec<f64> = (0..=i)
                        .map(|j| {
                            let kk = &kn[j][hh];
                            let d1: f64 = (0..nope).map(|d| qh[d] * kk[d]).sum();
                            let d2: f64 = (0..rope_d).map(|d| qh[nope + d] * kpe[j][d]).sum();
                            (d1 + d2) * scale
                        })
                        .collect();
                    let mx = sc.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = sc.iter().map(|v| (v - mx).exp()).sum();
                    for j in 0..=i {
                        let p = (sc[j] - mx).exp() / z;
                        for d in 0..dv {
                            row[hh * dv + d] += p * kn[j][hh][nope + d];
                        }
                    }
                }
                att.push(row);
            }
        } else {
            let hd = s.head_dim as usize;
            let nkv = s.num_key_value_heads as usize;
            let (freqs, msc) = rope_freqs(cfg, hd);
            let bias = |v: &mut Vec<f64>, b: &Option<Vec<f32>>| {
                if let Some(b) = b {
                    v.iter_mut().zip(b).for_each(|(x, y)| *x += *y as f64);
                }
            };
            let mut qs = vec![];
            let mut ks = vec![];
            let mut vs = vec![];
            for (i, xi) in xn.iter().enumerate() {
                let (mut q, mut k, mut v) = (mv(&lw.q, xi), mv(&lw.k, xi), mv(&lw.v, xi));
                bias(&mut q, &lw.q_bias);
                bias(&mut k, &lw.k_bias);
                bias(&mut v, &lw.v_bias);
                if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
                    q = q.chunks(hd).flat_map(|c| rms(c, qn, eps)).collect();
                    k = k.chunks(hd).flat_map(|c| rms(c, kn, eps)).collect();
                }
                q.chunks_mut(hd).for_each(|c| rope(c, i, &freqs, msc));
                k.chunks_mut(hd).for_each(|c| rope(c, i, &freqs, msc));
                qs.push(q);
                ks.push(k);
                vs.push(v);
            }
            let g = nh / nkv;
            for i in 0..t {
                let mut row = vec![0.0; nh * hd];
                for hh in 0..nh {
                    let kvh = hh / g;
                    let qh = &qs[i][hh * hd..(hh + 1) * hd];
                    let sc: Vec<f64> = (0..=i)
                        .map(|j| (0..hd).map(|d| qh[d] * ks[j][kvh * hd + d]).sum::<f64>() * scale)
                        .collect();
                    let mx = sc.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = sc.iter().map(|v| (v - mx).exp()).sum();
                    for j in 0..=i {
                        let p = (sc[j] - mx).exp() / z;
                        for d in 0..hd {
                            row[hh * hd + d] += p * vs[j][kvh * hd + d];
                        }
                    }
                }
                att.push(row);
            }
        }
        for i in 0..t {
            let o = mv(&lw.o, &att[i]);
            x[i].iter_mut().zip(&o).for_each(|(a, b)| *a += b);
        }
        for xi in x.iter_mut() {
            let xf = rms(xi, &lw.ffn_norm.weight, eps);
            let y = match &lw.moe {
                Some(mw) => {
                    assert!(s.layers[l].moe);
                    let m = s.ffn.moe().unwrap();
                    let logits = mv(&mw.router, &xf);
                    let picks = ref_route(
                        a.router.as_ref().unwrap(),
                        &logits,
                        mw.router_bias.as_deref(),
                        m.top_k as usize,
                    );
                    let mut y = vec![0.0; h];
                    for (e, wt) in picks {
                        let ex = &mw.experts[e];
                        let o = mlp(&ex.gate, &ex.up, &ex.down, &xf);
                        y.iter_mut().zip(&o).for_each(|(a, b)| *a += wt * b);
                    }
                    if let Some(sh) = &mw.shared {
                        let o = mlp(&sh.gate, &sh.up, &sh.down, &xf);
                        let g = mw.shared_gate.as_ref().map_or(1.0, |gw| {
                            let z: f64 = xf.iter().zip(gw).map(|(a, b)| a * *b as f64).sum();
                            1.0 / (1.0 + (-z).exp())
                        });
                        y.iter_mut().zip(&o).for_each(|(a, b)| *a += g * b);
                    }
                    y
                }
                None => {
                    assert!(!s.layers[l].moe, "layer {l} should be MoE");
                    mlp(lw.gate.as_ref().unwrap(), &lw.up, &lw.down, &xf)
                }
            };
            xi.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
        }
    }
    let mut out = vec![];
    for xi in &x {
        let xf = rms(xi, &w.final_norm.weight, eps);
        out.extend(mv(w.head(), &xf));
    }
    out
}

// ---------------------------------------------------------------------------------------------

#[test]
fn mla_and_moe_models_match_the_f64_reference_in_both_forms() {
    for (name, cfg) in configs() {
        let (def0, _) = ModelDef::from_config_json(&cfg).unwrap();
        for &form in forms_of(&def0) {
            let (def, mut m, mut cache) = load_form(&cfg, form, WeightDtype::F32, best_isa());
            let want = reference(&cfg, &def, &m.weights, &TOKENS);
            let got = m
                .forward(&TOKENS, &mut cache, Logits::All, &mut NoopRecorder)
                .unwrap()
                .to_vec();
            assert!(
                got.iter().all(|v| v.is_finite()),
                "{name} {form:?}: non-finite"
            );
            let e = rel_err(&got, &want);
            assert!(e < 1e-4, "{name} {form:?}: relative error {e}");
        }
    }
}

#[test]
fn absorbed_and_materialized_give_the_same_logits_in_prefill_and_decode() {
    for (name, cfg) in configs() {
        let (def0, _) = ModelDef::from_config_json(&cfg).unwrap();
        if !is_mla(&def0) {
            continue;
        }
        for dtype in [WeightDtype::F32, WeightDtype::Bf16] {
            for isa in Isa::all_available() {
                let mut outs = vec![];
                for form in FORMS {
                    let (_, mut m, mut cache) = load_form(&cfg, form, dtype, isa);
                    let mut o = m
                        .forward(&TOKENS[..6], &mut cache, Logits::All, &mut NoopRecorder)
                        .unwrap()
                        .to_vec();
                    for tok in &TOKENS[6..] {
                        let step = m
                            .forward(
                                std::slice::from_ref(tok),
                                &mut cache,
                                Logits::Last,
                                &mut NoopRecorder,
                            )
                            .unwrap();
                        o.extend_from_slice(step);
                    }
                    outs.push(o);
                }
                let want: Vec<f64> = outs[1].iter().map(|&v| v as f64).collect();
                let e = rel_err(&outs[0], &want);
                assert!(
                    e < 1e-4,
                    "{name} {dtype:?} {isa}: absorbed vs materialized {e}"
                );
            }
        }
    }
}

#[test]
fn decode_after_prefill_matches_one_long_prefill() {
    for (name, cfg) in configs() {
        let (def0, _) = ModelDef::from_config_json(&cfg).unwrap();
        for &form in forms_of(&def0) {
            let (_, mut m, mut cache) = load_form(&cfg, form, WeightDtype::F32, best_isa());
            let all = m
                .forward(&TOKENS, &mut cache, Logits::All, &mut NoopRecorder)
                .unwrap()
                .to_vec();
            let vocab = all.len() / TOKENS.len();
            cache.truncate(0);
            m.forward(&TOKENS[..4], &mut cache, Logits::Last, &mut NoopRecorder)
                .unwrap();
            for (i, tok) in TOKENS.iter().enumerate().skip(4) {
                let got = m
                    .forward(
                        std::slice::from_ref(tok),
                        &mut cache,
                        Logits::Last,
                        &mut NoopRecorder,
                    )
                    .unwrap();
                let want: Vec<f64> = all[i * vocab..(i + 1) * vocab]
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                let e = rel_err(got, &want);
                assert!(e < 1e-5, "{name} {form:?}: step {i} differs by {e}");
            }
        }
    }
}

fn executed(m: &mut Model, cache: &mut KvCache, tokens: &[u32]) -> Vec<OpId> {
    let mut rec = TimingRecorder::new();
    m.forward(tokens, cache, Logits::Last, &mut rec).unwrap();
    rec.take().into_iter().map(|(id, _)| id).collect()
}

#[test]
fn every_executed_op_is_costed_and_every_costed_op_is_executed_in_each_mla_form() {
    for (name, cfg) in configs() {
        let (def0, _) = ModelDef::from_config_json(&cfg).unwrap();
        for &form in forms_of(&def0) {
            let (def, mut m, mut cache) = load_form(&cfg, form, WeightDtype::Bf16, best_isa());
            let opts = CostOptions {
                mla_form: form,
                ..cost_options(WeightDtype::Bf16)
            };
            let cm = CostModel::new(&def.spec, &opts).unwrap();
            for (phase, tokens) in [
                (
                    Phase::Prefill {
                        tokens: 5,
                        cached: 0,
                    },
                    &TOKENS[..5],
                ),
                (Phase::Decode { context: 6 }, &TOKENS[5..6]),
            ] {
                let ex = executed(&mut m, &mut cache, tokens);
                let table = cm.table(phase).unwrap();
                let (extra, missing) = coverage(&ex, &table.ops);
                assert!(
                    extra.is_empty() && missing.is_empty(),
                    "{name} {form:?} {phase:?}: executed-not-costed {extra:?}, costed-not-executed {missing:?}"
                );
                let order: Vec<OpId> = table.ops.iter().map(|o| o.id).collect();
                assert_eq!(ex, order, "{name} {form:?}: execution order");
            }
            // The form shows in the operators: absorbed runs the absorb maps, materialized kv_b.
            let ex = executed(&mut m, &mut cache, &TOKENS[6..7]);
            let has = |k| ex.iter().any(|id| id.kind == k);
            if is_mla(&def) {
                assert_eq!(has(OpKind::MlaQAbsorb), form == MlaForm::Absorbed, "{name}");
                assert_eq!(
                    has(OpKind::MlaKvUp),
                    form == MlaForm::Materialized,
                    "{name}"
                );
            }
            if def.spec.ffn.moe().is_some() {
                assert!(has(OpKind::MoeRouter) && has(OpKind::MoeExperts), "{name}");
            }
        }
    }
}

#[test]
fn pitfall_04_kv_cache_bytes_match_the_cost_model_in_each_form() {
    for (name, cfg) in configs() {
        let (def0, _) = ModelDef::from_config_json(&cfg).unwrap();
        for &form in forms_of(&def0) {
            let (def, m, cache) = load_form(&cfg, form, WeightDtype::F32, best_isa());
            let s = &def.spec;
            let want = s.kv_elems_per_token_per_layer(form) * s.num_hidden_layers * 32 * 4;
            assert_eq!(cache.bytes(), want, "{name} {form:?}");
            assert_eq!(m.new_cache(32).unwrap().bytes(), want);
            if let Attention::Mla(ml) = s.attention {
                let per = if form == MlaForm::Absorbed {
                    ml.kv_lora_rank + ml.qk_rope_head_dim
                } else {
                    s.num_attention_heads
                        * (ml.qk_nope_head_dim + ml.qk_rope_head_dim + ml.v_head_dim)
                };
                assert_eq!(
                    want,
                    per * s.num_hidden_layers * 32 * 4,
                    "{name}: hand count"
                );
            }
            // And the cost model's decode KV read at full context is one read of that cache.
            let copts = CostOptions {
                mla_form: form,
                ..cost_options(WeightDtype::F32)
            };
            let cm = CostModel::new(s, &copts).unwrap();
            let t = cm.table(Phase::Decode { context: 32 }).unwrap();
            let score_read: u64 = t
                .ops
                .iter()
                .filter(|o| o.id.kind == OpKind::AttnScore || o.id.kind == OpKind::AttnValue)
                .map(|o| o.kv_read_bytes.0)
                .sum();
            assert_eq!(
                score_read, want,
                "{name} {form:?}: decode reads the whole cache once"
            );
        }
    }
}

#[test]
fn pitfall_06_experts_use_moe_intermediate_size_and_dense_layers_stay_dense() {
    for (name, cfg) in configs() {
        let (def, m, _) = load_form(&cfg, MlaForm::Absorbed, WeightDtype::F32, best_isa());
        let Some(spec_moe) = def.spec.ffn.moe() else {
            continue;
        };
        for (l, lw) in m.weights.layers.iter().enumerate() {
            assert_eq!(lw.moe.is_some(), def.spec.layers[l].moe, "{name} L{l}");
            match &lw.moe {
                Some(mw) => {
                    assert_eq!(mw.experts.len() as u64, spec_moe.num_experts);
                    for e in &mw.experts {
                        assert_eq!(e.gate.rows as u64, spec_moe.expert_intermediate_size);
                        assert_eq!(e.down.cols as u64, spec_moe.expert_intermediate_size);
                    }
                    let sh = mw.shared.as_ref().map_or(0, |s| s.up.rows as u64);
                    assert_eq!(sh, spec_moe.shared_intermediate_size, "{name}");
                    assert_eq!(lw.up.rows, 0, "no dense MLP in a MoE layer");
                }
                None => assert_eq!(lw.up.rows as u64, def.spec.intermediate_size),
            }
        }
        // first_k_dense_replace / mlp_only_layers
        let dense: Vec<usize> = (0..3).filter(|&l| !def.spec.layers[l].moe).collect();
        match name {
            "qwen3-moe-like" => assert_eq!(dense, [1]),
            "deepseek-v2-lite-like" | "deepseek-v3-like" => assert_eq!(dense, [0]),
            _ => assert!(dense.is_empty()),
        }
    }
}

#[test]
fn deepseek_yarn_sets_the_softmax_scale_and_other_families_refuse_yarn() {
    let cfg = &configs()[0].1;
    let (def, _) = ModelDef::from_config_json(cfg).unwrap();
    // softmax_scale = qk_head_dim^-0.5 * (0.1 * mscale_all_dim * ln(factor) + 1)^2
    let m = 0.1 * 1.0 * 4f64.ln() + 1.0;
    let want = (24f64).powf(-0.5) * m * m;
    assert!((def.arch.attn_scale as f64 - want).abs() < 1e-6);
    let llama = r#"{"model_type":"llama","hidden_size":64,"num_hidden_layers":2,
        "num_attention_heads":4,"vocab_size":50,"intermediate_size":96,
        "rope_scaling":{"type":"yarn","factor":4.0}}"#;
    let e = ModelDef::from_config_json(llama).unwrap_err().to_string();
    assert!(e.contains("yarn") && !e.contains('\n'), "{e}");
}

fn router(
    method: TopkMethod,
    scoring: Scoring,
    n_group: usize,
    topk_group: usize,
    norm: bool,
) -> RouterParams {
    RouterParams {
        scoring,
        method,
        n_group,
        topk_group,
        norm_topk_prob: norm,
        norm_needs_k_gt_1: true,
        routed_scaling_factor: 1.5,
    }
}

#[test]
fn router_properties_hold_on_random_logits() {
    let mut seed = 0x1234_5678u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        ((seed >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
    };
    for case in 0..200 {
        let e = 16;
        let logits: Vec<f32> = (0..e).map(|_| rnd()).collect();
        let bias: Vec<f32> = (0..e).map(|_| rnd() * 0.1).collect();
        let k = 1 + case % 4;
        for (method, scoring, ng, tg, norm) in [
            (TopkMethod::Greedy, Scoring::Softmax, 1, 1, false),
            (TopkMethod::Greedy, Scoring::Softmax, 1, 1, true),
            (TopkMethod::GroupLimited, Scoring::Softmax, 4, 2, true),
            (TopkMethod::NoauxTc, Scoring::Sigmoid, 4, 2, true),
            (TopkMethod::NoauxTc, Scoring::Sigmoid, 8, 3, false),
        ] {
            let p = router(method, scoring, ng, tg, norm);
            let b = (method == TopkMethod::NoauxTc).then_some(&bias[..]);
            let mut sc = vec![0.0; 2 * e];
            let mut chosen = vec![0u32; k];
            let mut w = vec![0.0; k];
            route(&p, &logits, b, &mut sc, &mut chosen, &mut w);
            // distinct experts
            let mut c = chosen.clone();
            c.sort();
            c.dedup();
            assert_eq!(c.len(), k, "{p:?}: duplicates {chosen:?}");
            // group limit: at most topk_group groups used
            let per = e / ng;
            let mut groups: Vec<u32> = chosen.iter().map(|&x| x / per as u32).collect();
            groups.sort();
            groups.dedup();
            if method != TopkMethod::Greedy {
                assert!(groups.len() <= tg, "{p:?}: groups {groups:?}");
            }
            // top-k picks the largest choice scores among the allowed experts, in order
            let choice = |j: usize| {
                let s = match scoring {
                    Scoring::Softmax => logits[j],
                    Scoring::Sigmoid => 1.0 / (1.0 + (-logits[j]).exp()),
                };
                s + b.map_or(0.0, |b| b[j])
            };
            for pair in chosen.windows(2) {
                assert!(
                    choice(pair[0] as usize) >= choice(pair[1] as usize),
                    "{p:?}: order"
                );
            }
            let worst = chosen
                .iter()
                .map(|&j| choice(j as usize))
                .fold(f32::MAX, f32::min);
            for j in 0..e {
                let in_kept_group =
                    method == TopkMethod::Greedy || groups.contains(&(j as u32 / per as u32));
                if in_kept_group && !chosen.contains(&(j as u32)) {
                    assert!(choice(j) <= worst, "{p:?}: expert {j} beats a chosen one");
                }
            }
            // weights: normalised (then scaled with noaux_tc) when configured
            let sum: f32 = w.iter().sum();
            let normalized = norm && k > 1;
            if normalized {
                let want = if method == TopkMethod::NoauxTc {
                    1.5
                } else {
                    1.0
                };
                assert!((sum - want).abs() < 1e-5, "{p:?}: sum {sum}");
            }
            assert!(w.iter().all(|&x| x > 0.0));
            // matches the f64 reference router
            let lg: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
            let r = ref_route(&p, &lg, b, k);
            let got: Vec<usize> = chosen.iter().map(|&x| x as usize).collect();
            let want: Vec<usize> = r.iter().map(|p| p.0).collect();
            assert_eq!(got, want, "{p:?}");
            for (a, (_, bw)) in w.iter().zip(&r) {
                assert!((*a as f64 - bw).abs() < 1e-5);
            }
        }
    }
}

#[test]
fn bench_labels_the_mla_form_and_records_the_expert_histogram() {
    let (name, cfg) = &configs()[0];
    for form in FORMS {
        let (mut def, _) = ModelDef::from_config_json(cfg).unwrap();
        def.arch.mla_form = form;
        let r = run_bench(
            &def,
            &BenchOptions {
                prompt: 6,
                depth: 5,
                gen: 3,
                reps: 2,
                warmup: 1,
                threads: 2,
                ..BenchOptions::default()
            },
        )
        .unwrap();
        assert!(
            r.warnings.iter().all(|w| w.code != "op_mismatch"),
            "{name}: {:?}",
            r.warnings
        );
        assert_eq!(r.mla_form.as_deref(), Some(form.name()));
        assert!(r.engine.ends_with(&format!("mla-{}", form.name())));
        assert!(r.mla_text().contains(form.name()));
        let want_kv = KvCache::bytes_for_form(&def.spec, 8, form).unwrap();
        assert_eq!(r.kv_cache_bytes, want_kv);
        let m = def.spec.ffn.moe().unwrap();
        for p in &r.phases {
            let x = p.experts.as_ref().expect("MoE phases carry expert hits");
            // MoE layers only (layer 0 is dense), each token routed to top_k experts.
            let layers: Vec<u32> = x.layers.iter().map(|l| l.layer).collect();
            assert_eq!(layers, [1, 2]);
            for l in &x.layers {
                assert_eq!(l.counts.len() as u64, m.num_experts);
                assert_eq!(
                    l.counts.iter().sum::<u64>(),
                    p.tokens * m.top_k,
                    "{}",
                    p.phase
                );
            }
            if p.phase == "decode" {
                // PITFALLS.md #7: one token reads exactly top_k experts per layer per step.
                assert_eq!(x.measured_distinct_experts, 2 * p.steps * m.top_k);
                assert_eq!(x.model_distinct_experts, x.measured_distinct_experts as f64);
                assert_eq!(x.measured_expert_bytes, x.model_expert_bytes);
            } else {
                assert!(x.measured_distinct_experts <= 2 * m.num_experts);
                assert!(x.model_distinct_experts < (2 * p.tokens * m.top_k) as f64);
            }
            assert!(p.experts_text().contains("experts hit"));
        }
    }
}
