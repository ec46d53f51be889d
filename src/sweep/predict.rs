//! The roofline prediction of one sweep point: the scenario's prefill and every decode step at
//! its own context (the co-design paper's sum, ROOFLINEBENCH.md §4), each operator on the roof
//! of its own arithmetic path, on one ceiling source of one profile.

use super::{PhaseNumbers, Predicted};
use anyhow::Result;
use rooflinebench_model::cost::{CostModel, CostOptions, Phase};
use rooflinebench_model::roofline::{combine_request, Ceilings, PhaseAccumulator, PhasePrediction};
use rooflinebench_model::spec::ModelSpec;
use rooflinebench_model::units::{Bytes, Flops};
use rooflinebench_model::workload::Scenario;

fn numbers(p: &PhasePrediction) -> PhaseNumbers {
    let oi = p.flops / p.bytes;
    PhaseNumbers {
        flops: p.flops.0,
        bytes: p.bytes.0,
        intensity_flops_per_byte: oi.0,
        seconds: p.seconds.0,
        flops_per_second: if p.seconds.0 > 0.0 {
            p.flops.as_f64() / p.seconds.0
        } else {
            0.0
        },
        bound: p.roof.bound(oi),
    }
}

fn phase(model: &CostModel<'_>, phase: Phase, c: &Ceilings) -> Result<PhasePrediction> {
    let mut acc = PhaseAccumulator::new(c);
    model.visit(phase, |op, n| {
        acc.add(op, n);
    })?;
    Ok(acc.finish())
}

/// Predicts `scenario` for `spec` under `opts` against `c`.
pub fn predict(
    spec: &ModelSpec,
    opts: &CostOptions,
    scenario: &Scenario,
    c: &Ceilings,
) -> Result<Predicted> {
    let opts = CostOptions {
        batch: scenario.batch,
        ..*opts
    };
    let model = CostModel::new(spec, &opts)?;
    let pre = phase(
        &model,
        Phase::Prefill {
            tokens: scenario.prompt,
            cached: 0,
        },
        c,
    )?;
    let mut steps = Vec::new();
    let (mut df, mut db) = (0u64, 0u64);
    let mut decode_seconds = 0.0;
    let (mut first, mut last) = (None, None);
    let n = scenario.decode_steps();
    for j in 1..=n {
        let context = scenario.decode_context(j);
        let p = phase(&model, Phase::Decode { context }, c)?;
        df = df.saturating_add(p.flops.0);
        db = db.saturating_add(p.bytes.0);
        decode_seconds += p.seconds.0;
        if j == 1 {
            first = Some(numbers(&p));
        }
        if j == n {
            last = Some(numbers(&p));
        }
        steps.push((context, p));
    }
    let main_roof = pre.roof;
    let prefill = numbers(&pre);
    let req = combine_request(pre, steps, scenario.batch, c.source);
    let decode_numbers = (n > 0).then(|| {
        let (f, b) = (Flops(df), Bytes(db));
        let oi = f / b;
        PhaseNumbers {
            flops: f.0,
            bytes: b.0,
            intensity_flops_per_byte: oi.0,
            seconds: decode_seconds,
            flops_per_second: if decode_seconds > 0.0 {
                f.as_f64() / decode_seconds
            } else {
                0.0
            },
            bound: main_roof.bound(oi),
        }
    });
    let roi = req.flops / req.bytes;
    Ok(Predicted {
        prefill,
        decode_first: first,
        decode_last: last,
        decode: decode_numbers,
        request: PhaseNumbers {
            flops: req.flops.0,
            bytes: req.bytes.0,
            intensity_flops_per_byte: roi.0,
            seconds: req.request_seconds.0,
            flops_per_second: if req.request_seconds.0 > 0.0 {
                req.flops.as_f64() / req.request_seconds.0
            } else {
                0.0
            },
            bound: main_roof.bound(roi),
        },
        ttft_seconds: req.ttft_seconds.0,
        tpot_mean_seconds: req.tpot_mean_seconds.0,
        decode_tokens_per_second: req.decode_tokens_per_second,
        mbu: req.mbu,
        mfu: req.mfu,
        roof_flops_per_second: main_roof.peak_flops_per_second.0,
        roof_bytes_per_second: main_roof.bandwidth_bytes_per_second.0,
        ridge_flops_per_byte: main_roof.ridge().0,
        precision: main_roof.precision.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rooflinebench_model::hardware::{CeilingSource, HardwareProfile};
    use rooflinebench_model::roofline::RoofOptions;
    use rooflinebench_model::zoo;

    /// A device with ridge 10 FLOP/byte at every precision (100 GFLOP/s, 10 GB/s).
    pub fn toy_profile() -> HardwareProfile {
        HardwareProfile::from_json(
            r#"{"schema_version": 1, "name": "toy",
            "compute": [
              {"precision": "f32", "source": "measured", "flops_per_second": 1e11},
              {"precision": "f16", "source": "measured", "flops_per_second": 1e11},
              {"precision": "int8", "source": "measured", "flops_per_second": 1e11}],
            "bandwidth": [{"level": "dram", "source": "measured", "pattern": "read",
              "bytes_per_second": 1e10}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn request_is_prefill_plus_every_step() {
        let spec = zoo::lookup("smollm2-135m").unwrap().spec().unwrap().0;
        let p = toy_profile();
        let c = Ceilings::from_profile(&p, &RoofOptions::new(CeilingSource::Measured)).unwrap();
        let sc = Scenario::new("t", 16, 5, 1).unwrap();
        let r = predict(&spec, &CostOptions::default(), &sc, &c).unwrap();
        let d = r.decode.as_ref().unwrap();
        assert_eq!(r.request.flops, r.prefill.flops + d.flops);
        assert!((r.request.seconds - (r.prefill.seconds + d.seconds)).abs() < 1e-12);
        assert!(r.decode_last.as_ref().unwrap().flops > r.decode_first.as_ref().unwrap().flops);
        // Decode at batch 1 is memory-bound on any sane device; this one has ridge 10.
        assert_eq!(r.ridge_flops_per_byte, 10.0);
        assert_eq!(d.bound, rooflinebench_model::roofline::Bound::Memory);
    }
}
