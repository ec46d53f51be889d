//! The points of each experiment family (ROOFLINEBENCH.md §2), with the model variants built
//! from the zoo: depth by `ModelSpec::with_layers`, the matched-size attention trio, and an
//! MLA model from PLM-1.8B's published shape (its config is not available; see [`plm_like`]).

use super::{fnv1a, EngineKind, Family, POINT_SCHEMA_VERSION};
use anyhow::{Context, Result};
use rooflinebench_model::cost::CostOptions;
use rooflinebench_model::format::{Recipe, WeightFormat};
use rooflinebench_model::hardware::HardwareProfile;
use rooflinebench_model::spec::{Activation, Attention, Ffn, LayerKind, MlaSpec, ModelSpec};
use rooflinebench_model::workload::Scenario;
use rooflinebench_model::zoo;
use serde::Serialize;

/// One point to compute.
#[derive(Clone, Debug)]
pub struct PointPlan {
    /// Unique within the family; a file name.
    pub id: String,
    pub family: Family,
    pub variant: String,
    pub x: f64,
    pub spec: ModelSpec,
    /// The config the spec came from (the engine's value parameters), when there is one.
    pub config_json: Option<String>,
    pub opts: CostOptions,
    pub scenario: Scenario,
    /// The device this point is predicted on.
    pub profile: HardwareProfile,
    /// Whether the engine can and should measure this point.
    pub measure: bool,
    pub notes: Vec<String>,
}

/// How measurements are taken (part of the fingerprint).
#[derive(Clone, Debug, Default, Serialize)]
pub struct MeasureSettings {
    pub engine: String,
    pub threads: usize,
    pub reps: usize,
    pub warmup: usize,
    /// Decode steps measured per repetition (at most the scenario's).
    pub gen_steps: u64,
}

impl PointPlan {
    /// Changes whenever the model, options, workload, ceilings or measurement settings do.
    pub fn fingerprint(&self, m: &MeasureSettings) -> String {
        #[derive(Serialize)]
        struct Key<'a> {
            v: u32,
            id: &'a str,
            spec: &'a ModelSpec,
            opts: &'a CostOptions,
            scenario: &'a Scenario,
            profile: &'a HardwareProfile,
            measure: Option<&'a MeasureSettings>,
        }
        let key = Key {
            v: POINT_SCHEMA_VERSION,
            id: &self.id,
            spec: &self.spec,
            opts: &self.opts,
            scenario: &self.scenario,
            profile: &self.profile,
            measure: self.measure.then_some(m),
        };
        fnv1a(serde_json::to_string(&key).unwrap_or_default().as_bytes())
    }
}

/// What the user asked for.
pub struct PlanInput<'a> {
    pub family: Family,
    /// The model for scenarios/depth/precision/devices (ignored by attention).
    pub spec: &'a ModelSpec,
    pub config_json: Option<&'a str>,
    pub scenarios: &'a [Scenario],
    pub weights: Recipe,
    pub layers: &'a [u64],
    pub profile: &'a HardwareProfile,
    /// For the devices family: the profiles to compare (this machine's included by the caller).
    pub devices: &'a [HardwareProfile],
    /// The engine measuring the points, if any.
    pub engine: Option<EngineKind>,
}

/// File-safe lowercase slug.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// Why `engine` cannot measure this model in these weights (`None`: it can).
pub fn cannot_measure(
    engine: EngineKind,
    spec: &ModelSpec,
    weights: Recipe,
    has_config: bool,
) -> Option<&'static str> {
    match engine {
        EngineKind::Builtin => {
            let float = matches!(
                weights,
                Recipe::Uniform(WeightFormat::F32 | WeightFormat::F16 | WeightFormat::Bf16)
            );
            (!float || matches!(spec.attention, Attention::Mla(_)) || spec.ffn.moe().is_some())
                .then_some(
                    "not measured: the built-in engine runs dense f32/f16/bf16 models with \
                     standard attention only (quantized formats, MLA and MoE come with the \
                     quantized engine)",
                )
        }
        EngineKind::Llamacpp => (!has_config).then_some(
            "not measured: llama.cpp needs a GGUF, written here from a config.json, and this \
             model variant has none",
        ),
    }
}

/// An MLA model of PLM-1.8B's shape, cut to `layers` (the paper uses 26 for its ~1.5B match).
///
/// PLM-1.8B's config is not available here. Sources of each value:
/// - hidden 2048, 16 heads, `qk_nope_head_dim` 128, `qk_rope_head_dim` 64, 32 layers: the
///   RooflineBench paper (ROOFLINEBENCH.md §2);
/// - full-rank queries (`q_lora_rank` none): the PLM paper (arXiv 2503.12167, "preserving the
///   full-rank structure of the query projections"); squared-ReLU, non-gated FFN: same paper;
/// - `kv_lora_rank` 512: ASSUMED, DeepSeek-V2's value, which third-party notes also report for
///   PLM-1.8B; `v_head_dim` 128: ASSUMED equal to `qk_nope_head_dim` as in DeepSeek-V2;
/// - `intermediate_size` 8192, `vocab_size` 151936, tied embeddings: DERIVED from the published
///   `PLM-1.8B-Instruct-Q4_K_M.gguf` (1,182,708,992 bytes, 290 tensors = 32 x 9 + 2, i.e. no
///   `output.weight`; 97 F32, 176 Q4_K, 17 Q6_K tensors; a Qwen2 tokenizer): with the values
///   above, 2048 x I weights per FFN matrix give that size only for I = 8192.
///
/// Squared ReLU is counted as ReLU (1 FLOP per element instead of 2: a rounding error next to
/// the matrices). Everything else follows DeepSeek-V2-Lite's spec in the zoo (RMSNorm, no
/// biases, RoPE on `qk_rope_head_dim`).
pub fn plm_like(layers: u64) -> Result<ModelSpec> {
    let base = zoo::lookup("deepseek-v2-lite")
        .context("built-in model deepseek-v2-lite")?
        .spec()?
        .0;
    let mla = MlaSpec {
        kv_lora_rank: 512,
        q_lora_rank: None,
        qk_nope_head_dim: 128,
        qk_rope_head_dim: 64,
        v_head_dim: 128,
    };
    let mut s = base;
    s.name = format!("plm-1.8b-like-{layers}L");
    s.hidden_size = 2048;
    s.num_hidden_layers = 32;
    s.num_attention_heads = 16;
    s.num_key_value_heads = 16;
    s.head_dim = mla.qk_head_dim();
    s.v_head_dim = 128;
    s.vocab_size = 151_936;
    s.intermediate_size = 8192;
    s.tie_word_embeddings = true;
    s.max_position_embeddings = 4096;
    s.attention = Attention::Mla(mla);
    s.ffn = Ffn::Dense {
        gated: false,
        act: Activation::Relu,
    };
    s.rotary_dims = 64;
    s.qkv_bias = false;
    s.o_bias = false;
    s.mlp_bias = false;
    s.qk_norm = None;
    s.sliding_window = None;
    s.layers = vec![
        LayerKind {
            moe: false,
            window: None,
        };
        32
    ];
    s.validate()?;
    Ok(s.with_layers(layers)?)
}

/// The matched-size trio (~1.5B parameters): GQA Qwen2.5-1.5B (28 layers), MHA SmolLM2-1.7B
/// cut to 21 layers, MLA PLM-1.8B-like cut to 26 layers (the paper's choices).
pub fn attention_trio() -> Result<Vec<(String, ModelSpec, Option<&'static str>)>> {
    let qwen = zoo::lookup("qwen2.5-1.5b").context("qwen2.5-1.5b")?;
    let smol = zoo::lookup("smollm2-1.7b").context("smollm2-1.7b")?;
    let mut smol_spec = smol.spec()?.0.with_layers(21)?;
    smol_spec.name = "smollm2-1.7b-21L".into();
    Ok(vec![
        (
            "GQA qwen2.5-1.5b (28 layers)".into(),
            qwen.spec()?.0,
            Some(qwen.config_json),
        ),
        (
            "MHA smollm2-1.7b cut to 21 layers".into(),
            smol_spec,
            Some(smol.config_json),
        ),
        (
            "MLA plm-1.8b-like cut to 26 layers (assumed shape)".into(),
            plm_like(26)?,
            None,
        ),
    ])
}

/// Every point of a family, in display order.
pub fn plan(input: &PlanInput<'_>) -> Result<Vec<PointPlan>> {
    let opts = CostOptions {
        weights: input.weights,
        ..CostOptions::default()
    };
    let mut out = Vec::new();
    let mut push = |variant: String,
                    key: String,
                    x: f64,
                    spec: ModelSpec,
                    config: Option<&str>,
                    opts: CostOptions,
                    profile: &HardwareProfile,
                    measure: bool,
                    notes: Vec<String>| {
        for sc in input.scenarios {
            let mut notes = notes.clone();
            let why_not = input
                .engine
                .and_then(|e| cannot_measure(e, &spec, opts.weights, config.is_some()));
            if let (Some(why), true) = (why_not, measure) {
                notes.push(why.to_string());
            }
            out.push(PointPlan {
                id: slug(&format!("{}-{key}-{}", input.family.name(), sc.name)),
                family: input.family,
                variant: variant.clone(),
                x,
                spec: spec.clone(),
                config_json: config.map(str::to_string),
                opts,
                scenario: sc.clone(),
                profile: profile.clone(),
                measure: input.engine.is_some() && measure && why_not.is_none(),
                notes,
            });
        }
    };
    let base = input.spec;
    match input.family {
        Family::Scenarios => {
            push(
                base.name.clone(),
                base.name.clone(),
                0.0,
                base.clone(),
                input.config_json,
                opts,
                input.profile,
                true,
                vec![],
            );
        }
        Family::Depth => {
            for &l in input.layers {
                let mut s = base.with_layers(l)?;
                s.name = format!("{}-{l}L", base.name);
                let note = if l > base.num_hidden_layers {
                    vec![format!(
                        "grown from {} layers by repeating the last layer",
                        base.num_hidden_layers
                    )]
                } else {
                    vec![]
                };
                push(
                    format!("{l} layers"),
                    format!("{}-L{l:03}", base.name),
                    l as f64,
                    s,
                    input.config_json,
                    opts,
                    input.profile,
                    true,
                    note,
                );
            }
        }
        Family::Precision => {
            for (i, r) in [
                Recipe::Uniform(WeightFormat::F16),
                Recipe::Uniform(WeightFormat::Q8_0),
                Recipe::Q4KM,
            ]
            .into_iter()
            .enumerate()
            {
                push(
                    r.name(),
                    format!("{}-{}", base.name, r.name()),
                    i as f64,
                    base.clone(),
                    input.config_json,
                    CostOptions { weights: r, ..opts },
                    input.profile,
                    true,
                    vec![],
                );
            }
        }
        Family::Attention => {
            for (i, (label, spec, cfg)) in attention_trio()?.into_iter().enumerate() {
                let notes = if matches!(spec.attention, Attention::Mla(_)) {
                    vec![
                        "MLA shape assumed: kv_lora_rank 512 and v_head_dim 128 (DeepSeek-V2's), \
                         intermediate 8192 and vocab 151936 derived from the published Q4_K_M \
                         GGUF; absorbed form"
                            .to_string(),
                    ]
                } else {
                    vec![]
                };
                push(
                    label,
                    spec.name.clone(),
                    i as f64,
                    spec,
                    cfg,
                    opts,
                    input.profile,
                    true,
                    notes,
                );
            }
        }
        Family::Devices => {
            for (i, d) in input.devices.iter().enumerate() {
                let this = d.name == input.profile.name;
                let notes = if this || input.engine.is_none() {
                    vec![]
                } else {
                    vec!["not measured: another device (prediction only)".to_string()]
                };
                push(
                    d.name.clone(),
                    format!("{}-{}", base.name, d.name),
                    i as f64,
                    base.clone(),
                    input.config_json,
                    opts,
                    d,
                    this,
                    notes,
                );
            }
        }
    }
    Ok(out)
}

/// `2..64:2` (inclusive range with a step), `a..b` (step 1) or a comma list `2,4,8`.
pub fn parse_layers(s: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("{s:?}: expected FROM..TO[:STEP] or a comma list, e.g. 2..64:2");
    let t = s.trim();
    let v: Vec<u64> = if let Some((a, rest)) = t.split_once("..") {
        let (b, step) = match rest.split_once(':') {
            Some((b, st)) => (b, st.trim().parse::<u64>().map_err(|_| bad())?),
            None => (rest, 1),
        };
        let a: u64 = a.trim().parse().map_err(|_| bad())?;
        let b: u64 = b.trim().parse().map_err(|_| bad())?;
        if step == 0 || a > b {
            return Err(bad());
        }
        (a..=b).step_by(step as usize).collect()
    } else {
        t.split(',')
            .map(|x| x.trim().parse::<u64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?
    };
    if v.is_empty() || v.contains(&0) || v.iter().any(|&l| l > 1024) {
        return Err(format!("{s:?}: layer counts must be between 1 and 1024"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rooflinebench_model::params::count_params;

    #[test]
    fn layer_lists_parse() {
        assert_eq!(parse_layers("2..8:2").unwrap(), vec![2, 4, 6, 8]);
        assert_eq!(parse_layers("2..64:2").unwrap().len(), 32);
        assert_eq!(parse_layers("3,5").unwrap(), vec![3, 5]);
        assert_eq!(parse_layers("1..3").unwrap(), vec![1, 2, 3]);
        assert!(parse_layers("0..4").is_err());
        assert!(parse_layers("8..2").is_err());
        assert!(parse_layers("2..8:0").is_err());
        assert!(parse_layers("x").is_err());
    }

    #[test]
    fn the_attention_trio_is_matched_at_about_1_5b() {
        let trio = attention_trio().unwrap();
        let kinds: Vec<&str> = trio.iter().map(|(_, s, _)| s.attention.name()).collect();
        assert_eq!(kinds, ["GQA", "MHA", "MLA"]);
        for (label, s, _) in &trio {
            let p = count_params(s).unwrap().total as f64;
            assert!((1.4e9..1.8e9).contains(&p), "{label}: {p}");
        }
    }

    #[test]
    fn plm_like_full_size_is_1_8b_and_caches_the_latent() {
        let s = plm_like(32).unwrap();
        let p = count_params(&s).unwrap().total as f64;
        assert!((1.75e9..1.9e9).contains(&p), "{p}");
        // PITFALLS.md #4: kv_lora_rank + qk_rope_head_dim per token per layer.
        assert_eq!(
            s.kv_elems_per_token_per_layer(rooflinebench_model::cost::MlaForm::Absorbed),
            512 + 64
        );
    }

    #[test]
    fn slugs_are_file_safe() {
        assert_eq!(
            slug("MHA smollm2-1.7b (21 L)/SISO"),
            "mha-smollm2-1.7b-21-l-siso"
        );
    }
}
