//! The engine executes exactly the operators the cost model lists, in both directions, for every
//! supported family, in prefill and in decode (the join key of measured and predicted costs).

mod common;

use common::tiny_configs;
use rooflinebench_engine::bench::{cost_options, coverage, run_bench, BenchOptions};
use rooflinebench_engine::{load, LoadOptions, Logits, ModelDef, TimingRecorder, WeightsFrom};
use rooflinebench_kernels::engine::WeightDtype;
use rooflinebench_model::cost::{CostModel, Phase};
use rooflinebench_model::op::OpId;

#[test]
fn every_executed_op_is_costed_and_every_costed_op_is_executed() {
    for (name, cfg) in tiny_configs() {
        let (def, _) = ModelDef::from_config_json(&cfg).unwrap();
        let (mut m, mut cache) = load(
            &def,
            &WeightsFrom::Random { seed: 1 },
            &LoadOptions {
                dtype: Some(WeightDtype::Bf16),
                threads: 1,
                isa: None,
                positions: 16,
                max_tokens: 8,
            },
        )
        .unwrap();
        let cm = CostModel::new(&def.spec, &cost_options(WeightDtype::Bf16)).unwrap();
        let mut rec = TimingRecorder::new();
        m.forward(&[1, 2, 3, 4, 5], &mut cache, Logits::Last, &mut rec)
            .unwrap();
        let executed: Vec<OpId> = rec.take().into_iter().map(|(id, _)| id).collect();
        let table = cm
            .table(Phase::Prefill {
                tokens: 5,
                cached: 0,
            })
            .unwrap();
        let (extra, missing) = coverage(&executed, &table.ops);
        assert!(
            extra.is_empty(),
            "{name} prefill: executed but not costed: {extra:?}"
        );
        assert!(
            missing.is_empty(),
            "{name} prefill: costed but not executed: {missing:?}"
        );
        assert_eq!(executed.len(), table.ops.len(), "{name}: same count");

        m.forward(&[6], &mut cache, Logits::Last, &mut rec).unwrap();
        let executed: Vec<OpId> = rec.take().into_iter().map(|(id, _)| id).collect();
        let table = cm.table(Phase::Decode { context: 6 }).unwrap();
        let (extra, missing) = coverage(&executed, &table.ops);
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{name} decode: {extra:?} / {missing:?}"
        );
        // Same order too: the engine runs operators in the table's order.
        let order: Vec<OpId> = table.ops.iter().map(|o| o.id).collect();
        assert_eq!(executed, order, "{name}: execution order");
    }
}

#[test]
fn bench_reports_every_op_with_samples_and_no_mismatch() {
    let (def, _) = ModelDef::from_config_json(&tiny_configs()[0].1).unwrap();
    let r = run_bench(
        &def,
        &BenchOptions {
            prompt: 6,
            depth: 5,
            gen: 3,
            reps: 3,
            warmup: 1,
            threads: 2,
            ..BenchOptions::default()
        },
    )
    .unwrap();
    assert!(
        r.warnings
            .iter()
            .all(|w| w.code != "op_mismatch" && w.code != "no_warmup"),
        "{:?}",
        r.warnings
    );
    assert_eq!(r.phases.len(), 2);
    let decode = &r.phases[1];
    assert_eq!((decode.context_first, decode.context_last), (6, 8));
    for p in &r.phases {
        assert_eq!(p.seconds.samples.len(), 3, "all samples kept");
        for op in &p.ops {
            assert_eq!(op.seconds.samples.len(), 3);
            assert!(op.seconds.median > 0.0);
        }
        assert!(p.flops.0 > 0 && p.bytes.0 > 0);
    }
    // Decode costs are the sum of the steps' own contexts (PITFALLS.md #10), not 3x the last.
    let cm = CostModel::new(&def.spec, &cost_options(WeightDtype::F32)).unwrap();
    let want: u64 = (6..=8)
        .map(|c| cm.table(Phase::Decode { context: c }).unwrap().flops().0)
        .sum();
    assert_eq!(decode.flops.0, want);
    let points = r.points().unwrap();
    assert!(points.iter().any(|p| p.phase == "decode" && p.op.is_none()));
    assert!(points.iter().filter(|p| p.op.is_some()).count() > 10);
}

#[test]
fn bad_options_are_errors_not_panics() {
    let (def, _) = ModelDef::from_config_json(&tiny_configs()[0].1).unwrap();
    let base = BenchOptions {
        prompt: 4,
        depth: 4,
        gen: 2,
        reps: 1,
        warmup: 0,
        threads: 1,
        ..BenchOptions::default()
    };
    let err = |o: BenchOptions| run_bench(&def, &o).unwrap_err().to_string();
    assert!(err(BenchOptions {
        reps: 0,
        ..base.clone()
    })
    .contains("reps"));
    assert!(err(BenchOptions {
        threads: 0,
        ..base.clone()
    })
    .contains("threads"));
    let e = err(BenchOptions {
        prompt: 65,
        ..base.clone()
    });
    assert!(e.contains("max_position_embeddings = 64"), "{e}");
    let e = err(BenchOptions {
        depth: 63,
        gen: 2,
        ..base.clone()
    });
    assert!(e.contains("depth + gen"), "{e}");
    assert!(err(BenchOptions {
        prompt: 0,
        gen: 0,
        ..base
    })
    .contains("nothing to measure"));
}
