//! The checks, one module per group, each tagged with its control id.

pub mod access;
pub mod cors;
pub mod errors;
pub mod headers;
pub mod input;
pub mod jwt;
pub mod plaintext;
pub mod rate_limit;
pub mod tls;

use crate::{Check, Finding, Status};

/// A finding from a list of problems: a failure naming them, else a pass with `evidence`; not
/// applicable when nothing could be tried.
pub(crate) fn verdict(
    check: &Check,
    tried: usize,
    problems: &[String],
    evidence: String,
) -> Finding {
    if tried == 0 {
        Finding::new(check, Status::NotApplicable, evidence)
    } else if problems.is_empty() {
        Finding::new(check, Status::Pass, evidence)
    } else {
        Finding::new(check, Status::Fail, problems.join("; "))
    }
}
