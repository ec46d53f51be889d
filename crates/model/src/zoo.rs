//! The built-in model zoo: real Hugging Face `config.json` files compiled into the binary.
//!
//! The files are the upstream configs as published (hyperparameters only, no weights), copied
//! from `shared/models` into `crates/model/zoo/`; their provenance is recorded in the research
//! notes. Short names are ours; `hf_id` is the repository they come from.

use crate::error::ModelError;
use crate::hardware::Warning;
use crate::spec::ModelSpec;

/// One built-in model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZooEntry {
    /// Short name used on the command line, e.g. `qwen2.5-0.5b`.
    pub name: &'static str,
    /// Hugging Face repository id.
    pub hf_id: &'static str,
    /// The verbatim `config.json`.
    pub config_json: &'static str,
}

impl ZooEntry {
    /// Parses the entry's config; the spec's `name` is the zoo name.
    pub fn spec(&self) -> Result<(ModelSpec, Vec<Warning>), ModelError> {
        let (mut spec, warnings) = ModelSpec::from_config_json(self.config_json)?;
        spec.name = self.name.to_string();
        Ok((spec, warnings))
    }
}

/// The model analysed when none is named (small enough to run anywhere).
pub const DEFAULT_MODEL: &str = "smollm2-135m";

static ZOO: &[ZooEntry] = &[
    ZooEntry {
        name: "pythia-160m",
        hf_id: "EleutherAI/pythia-160m",
        config_json: include_str!("../zoo/EleutherAI--pythia-160m.json"),
    },
    ZooEntry {
        name: "smollm2-135m",
        hf_id: "HuggingFaceTB/SmolLM2-135M",
        config_json: include_str!("../zoo/HuggingFaceTB--SmolLM2-135M.json"),
    },
    ZooEntry {
        name: "smollm2-360m",
        hf_id: "HuggingFaceTB/SmolLM2-360M",
        config_json: include_str!("../zoo/HuggingFaceTB--SmolLM2-360M.json"),
    },
    ZooEntry {
        name: "smollm2-1.7b",
        hf_id: "HuggingFaceTB/SmolLM2-1.7B-Instruct",
        config_json: include_str!("../zoo/HuggingFaceTB--SmolLM2-1.7B-Instruct.json"),
    },
    ZooEntry {
        name: "qwen2.5-0.5b",
        hf_id: "Qwen/Qwen2.5-0.5B-Instruct",
        config_json: include_str!("../zoo/Qwen--Qwen2.5-0.5B-Instruct.json"),
    },
    ZooEntry {
        name: "qwen2.5-1.5b",
        hf_id: "Qwen/Qwen2.5-1.5B-Instruct",
        config_json: include_str!("../zoo/Qwen--Qwen2.5-1.5B-Instruct.json"),
    },
    ZooEntry {
        name: "qwen2.5-3b",
        hf_id: "Qwen/Qwen2.5-3B-Instruct",
        config_json: include_str!("../zoo/Qwen--Qwen2.5-3B-Instruct.json"),
    },
    ZooEntry {
        name: "qwen2.5-7b",
        hf_id: "Qwen/Qwen2.5-7B-Instruct",
        config_json: include_str!("../zoo/Qwen--Qwen2.5-7B-Instruct.json"),
    },
    ZooEntry {
        name: "qwen3-0.6b",
        hf_id: "Qwen/Qwen3-0.6B",
        config_json: include_str!("../zoo/Qwen--Qwen3-0.6B.json"),
    },
    ZooEntry {
        name: "qwen3-1.7b",
        hf_id: "Qwen/Qwen3-1.7B",
        config_json: include_str!("../zoo/Qwen--Qwen3-1.7B.json"),
    },
    ZooEntry {
        name: "qwen3-4b",
        hf_id: "Qwen/Qwen3-4B",
        config_json: include_str!("../zoo/Qwen--Qwen3-4B.json"),
    },
    ZooEntry {
        name: "qwen3-30b-a3b",
        hf_id: "Qwen/Qwen3-30B-A3B",
        config_json: include_str!("../zoo/Qwen--Qwen3-30B-A3B.json"),
    },
    ZooEntry {
        name: "tinyllama-1.1b",
        hf_id: "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
        config_json: include_str!("../zoo/TinyLlama--TinyLlama-1.1B-Chat-v1.0.json"),
    },
    ZooEntry {
        name: "llama-3.2-1b",
        hf_id: "meta-llama/Llama-3.2-1B",
        config_json: include_str!("../zoo/meta-llama--Llama-3.2-1B.json"),
    },
    ZooEntry {
        name: "llama-3.2-3b",
        hf_id: "meta-llama/Llama-3.2-3B",
        config_json: include_str!("../zoo/meta-llama--Llama-3.2-3B.json"),
    },
    ZooEntry {
        name: "llama-3.1-8b",
        hf_id: "meta-llama/Llama-3.1-8B",
        config_json: include_str!("../zoo/meta-llama--Llama-3.1-8B.json"),
    },
    ZooEntry {
        name: "llama-3.1-8b-instruct",
        hf_id: "meta-llama/Llama-3.1-8B-Instruct",
        config_json: include_str!("../zoo/meta-llama--Llama-3.1-8B-Instruct.json"),
    },
    ZooEntry {
        name: "mistral-7b",
        hf_id: "mistralai/Mistral-7B-v0.1",
        config_json: include_str!("../zoo/mistralai--Mistral-7B-v0.1.json"),
    },
    ZooEntry {
        name: "deepseek-v2-lite",
        hf_id: "deepseek-ai/DeepSeek-V2-Lite",
        config_json: include_str!("../zoo/deepseek-ai--DeepSeek-V2-Lite.json"),
    },
];

/// Every built-in model, smallest families first.
pub fn all() -> &'static [ZooEntry] {
    ZOO
}

/// Finds a model by short name (case-insensitive) or by its Hugging Face id.
pub fn lookup(name: &str) -> Option<&'static ZooEntry> {
    ZOO.iter()
        .find(|e| e.name.eq_ignore_ascii_case(name) || e.hf_id.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_zoo_config_parses_without_warnings() {
        for e in all() {
            let (spec, warnings) = e.spec().unwrap_or_else(|err| panic!("{}: {err}", e.name));
            assert!(warnings.is_empty(), "{}: {warnings:?}", e.name);
            assert_eq!(spec.name, e.name);
        }
        assert!(lookup(DEFAULT_MODEL).is_some());
        assert!(lookup("Qwen/Qwen2.5-0.5B-Instruct").is_some());
        assert!(lookup("nope").is_none());
    }
}
