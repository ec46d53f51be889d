//! Measuring a sweep point with the built-in engine (`rooflinebench_engine::bench::run_bench`):
//! the scenario's prefill, and `gen_steps` decode steps after a real prefill to the prompt's
//! depth (PITFALLS.md #15), random weights written before timing, every sample kept.

use super::plan::{MeasureSettings, PointPlan};
use super::Measured;
use anyhow::{bail, Context, Result};
use rooflinebench_engine::bench::{run_bench, BenchOptions};
use rooflinebench_engine::{ModelDef, WeightsFrom};
use rooflinebench_kernels::engine::WeightDtype;
use rooflinebench_model::format::{Recipe, WeightFormat};

/// Measures `p` (which must be measurable: see [`super::plan::cannot_measure`]).
pub fn measure_builtin(p: &PointPlan, m: &MeasureSettings) -> Result<Measured> {
    let dtype = match p.opts.weights {
        Recipe::Uniform(WeightFormat::F32) => WeightDtype::F32,
        Recipe::Uniform(WeightFormat::F16) => WeightDtype::F16,
        Recipe::Uniform(WeightFormat::Bf16) => WeightDtype::Bf16,
        other => bail!("the built-in engine cannot run {} weights", other.name()),
    };
    let def = match &p.config_json {
        Some(cfg) => ModelDef::from_spec_and_config(p.spec.clone(), cfg),
        None => ModelDef::from_spec(p.spec.clone()),
    }
    .with_context(|| format!("engine model for {}", p.spec.name))?;
    let prompt = usize::try_from(p.scenario.prompt).context("prompt too long")?;
    let gen = p.scenario.generate.min(m.gen_steps).max(1);
    let opts = BenchOptions {
        weights: WeightsFrom::Random { seed: 0 },
        dtype: Some(dtype),
        prompt,
        depth: prompt,
        gen: usize::try_from(gen).context("too many decode steps")?,
        reps: m.reps,
        warmup: m.warmup,
        threads: m.threads,
        isa: None,
        token_seed: 1,
    };
    let r = run_bench(&def, &opts).with_context(|| format!("measuring {}", p.id))?;
    let phase = |name: &str| r.phases.iter().find(|x| x.phase == name);
    Ok(Measured {
        engine: r.engine.clone(),
        threads: r.threads,
        prefill_seconds: phase("prefill").map(|x| x.seconds.clone()),
        decode_depth: phase("decode").map_or(0, |x| x.depth),
        decode_steps: phase("decode").map_or(0, |x| x.steps),
        decode_seconds: phase("decode").map(|x| x.seconds.clone()),
        points: r.points()?,
    })
}
