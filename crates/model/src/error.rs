//! The error type of the analytic model: one structured variant per way an input can be wrong.
//!
//! Every variant names the culprit (a `config.json` field, an option, a format name) so the
//! binary can print one line `error: <file>: <this message>`. There is deliberately no
//! catch-all string variant.

/// Why a model configuration, an option or a cost query cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The text is not valid JSON.
    #[error("malformed JSON at line {line}, column {column}: {reason}")]
    Json {
        line: usize,
        column: usize,
        reason: String,
    },
    /// The JSON is valid but not an object (`config.json` is always an object).
    #[error("the config is not a JSON object")]
    NotAnObject,
    /// A field the model cannot be analysed without is absent (or `null`).
    #[error("missing required field `{field}`")]
    MissingField { field: String },
    /// A field has the wrong JSON type, e.g. a string where an integer is needed.
    #[error("field `{field}` must be {expected}")]
    BadType {
        field: String,
        expected: &'static str,
    },
    /// A size that must be positive is zero.
    #[error("field `{field}` must be greater than zero")]
    Zero { field: String },
    /// A size beyond any real model: refused so that arithmetic can never overflow.
    #[error("field `{field}` = {value} is absurdly large (at most {max} is accepted)")]
    TooLarge { field: String, value: u64, max: u64 },
    /// `field` must be divisible by `by_field`.
    #[error("field `{field}` = {value} is not divisible by `{by_field}` = {by}")]
    NotDivisible {
        field: String,
        value: u64,
        by_field: String,
        by: u64,
    },
    /// `field` must not exceed `limit_field`.
    #[error("field `{field}` = {value} exceeds `{limit_field}` = {limit}")]
    Exceeds {
        field: String,
        value: u64,
        limit_field: String,
        limit: u64,
    },
    /// A field holds a value outside its documented set (e.g. an unknown `layer_types` entry).
    #[error("field `{field}` has unsupported value {value:?} (expected {expected})")]
    BadValue {
        field: String,
        value: String,
        expected: &'static str,
    },
    /// A count or a byte total does not fit in 64 bits: the configuration or query is absurd.
    #[error("{what} overflows 64 bits: the configuration or the query is absurdly large")]
    Overflow { what: &'static str },
    /// A weight format or recipe name that is not known.
    #[error("unknown weight format {name:?} (expected one of {expected})")]
    UnknownWeightFormat {
        name: String,
        expected: &'static str,
    },
    /// A KV-cache format name that is not known.
    #[error("unknown KV-cache format {name:?} (expected one of {expected})")]
    UnknownKvFormat {
        name: String,
        expected: &'static str,
    },
    /// A scenario that is neither a built-in name nor `P/G` (or `P/G/B`).
    #[error("unknown scenario {name:?} (expected SISO, LISO, SILO, LILO, or prompt/generated[/batch] such as 512/64)")]
    UnknownScenario { name: String },
    /// A query option out of range, e.g. zero tokens or a batch of zero.
    #[error("option `{option}` = {value} is invalid: {reason}")]
    BadOption {
        option: &'static str,
        value: u64,
        reason: &'static str,
    },
}

impl ModelError {
    pub(crate) fn missing(field: &str) -> ModelError {
        ModelError::MissingField {
            field: field.to_string(),
        }
    }
    pub(crate) fn zero(field: &str) -> ModelError {
        ModelError::Zero {
            field: field.to_string(),
        }
    }
    pub(crate) fn bad_type(field: &str, expected: &'static str) -> ModelError {
        ModelError::BadType {
            field: field.to_string(),
            expected,
        }
    }
}
