//! Input validation controls (checklist section "Input Validation", INPUT-*).

pub mod body_limit;
pub mod strict_json;
