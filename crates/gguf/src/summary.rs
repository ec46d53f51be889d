//! What a GGUF file really holds: tensors and bytes per ggml type, and effective bits per
//! weight. The file-type label ("Q4_1", "Q4_K_M") names a recipe, not a type: real files keep
//! norms in F32 and fall back per tensor where a row length is not a multiple of the block
//! (pitfall 24), so costs must be taken per tensor from the file.

use crate::{GgmlType, Gguf};
use std::collections::BTreeMap;

/// Tensors and bytes of one ggml type.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TypeStats {
    pub tensors: u64,
    pub elements: u64,
    pub bytes: u64,
}

/// Per-type totals of a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub by_type: BTreeMap<GgmlType, TypeStats>,
    pub tensors: u64,
    pub elements: u64,
    pub bytes: u64,
}

impl Summary {
    pub fn of(g: &Gguf) -> Summary {
        let mut by_type: BTreeMap<GgmlType, TypeStats> = BTreeMap::new();
        let (mut tensors, mut elements, mut bytes) = (0u64, 0u64, 0u64);
        for t in &g.tensors {
            let s = by_type.entry(t.ty).or_default();
            s.tensors += 1;
            // Sums of in-file sizes cannot overflow u64 for any file that exists; saturate.
            s.elements = s.elements.saturating_add(t.n_elements);
            s.bytes = s.bytes.saturating_add(t.n_bytes);
            tensors += 1;
            elements = elements.saturating_add(t.n_elements);
            bytes = bytes.saturating_add(t.n_bytes);
        }
        Summary {
            by_type,
            tensors,
            elements,
            bytes,
        }
    }

    /// Bits per weight over all tensors (what decode actually streams per parameter).
    pub fn bits_per_weight(&self) -> f64 {
        if self.elements == 0 {
            0.0
        } else {
            self.bytes as f64 * 8.0 / self.elements as f64
        }
    }
}

/// llama.cpp's `general.file_type` (`enum llama_ftype`) names, for display.
pub fn file_type_name(ftype: u64) -> Option<&'static str> {
    Some(match ftype {
        0 => "ALL_F32",
        1 => "MOSTLY_F16",
        2 => "MOSTLY_Q4_0",
        3 => "MOSTLY_Q4_1",
        7 => "MOSTLY_Q8_0",
        8 => "MOSTLY_Q5_0",
        9 => "MOSTLY_Q5_1",
        10 => "MOSTLY_Q2_K",
        11 => "MOSTLY_Q3_K_S",
        12 => "MOSTLY_Q3_K_M",
        13 => "MOSTLY_Q3_K_L",
        14 => "MOSTLY_Q4_K_S",
        15 => "MOSTLY_Q4_K_M",
        16 => "MOSTLY_Q5_K_S",
        17 => "MOSTLY_Q5_K_M",
        18 => "MOSTLY_Q6_K",
        32 => "MOSTLY_BF16",
        _ => return None,
    })
}
