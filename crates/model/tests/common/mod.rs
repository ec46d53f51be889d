//! Helpers shared by the model crate's integration tests.
#![allow(dead_code)]

use rooflinebench_model::cost::{CostModel, CostOptions, CostTable, CostTotals, Phase};
use rooflinebench_model::op::{OpCost, OpKind};
use rooflinebench_model::spec::ModelSpec;
use rooflinebench_model::zoo;

pub fn spec(name: &str) -> ModelSpec {
    let (s, warnings) = zoo::lookup(name)
        .unwrap_or_else(|| panic!("no zoo model {name}"))
        .spec()
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    s
}

pub fn parse(json: &str) -> ModelSpec {
    ModelSpec::from_config_json(json).unwrap().0
}

pub fn table(spec: &ModelSpec, phase: Phase, opts: &CostOptions) -> CostTable {
    CostModel::new(spec, opts).unwrap().table(phase).unwrap()
}

pub fn prefill(tokens: u64) -> Phase {
    Phase::Prefill { tokens, cached: 0 }
}

pub fn decode(context: u64) -> Phase {
    Phase::Decode { context }
}

/// The operator `kind` of `layer` (`None` = global).
pub fn op(t: &CostTable, layer: Option<u32>, kind: OpKind) -> OpCost {
    *t.ops
        .iter()
        .find(|o| o.id.layer == layer && o.id.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} in layer {layer:?}"))
}

pub fn has(t: &CostTable, layer: Option<u32>, kind: OpKind) -> bool {
    t.ops
        .iter()
        .any(|o| o.id.layer == layer && o.id.kind == kind)
}

/// Sum of every operator of `kind` over all layers.
pub fn sum_kind(t: &CostTable, kind: OpKind) -> CostTotals {
    let mut s = CostTotals::default();
    for o in t.ops.iter().filter(|o| o.id.kind == kind) {
        s.add_op(o, 1);
    }
    s
}
