//! INPUT-2: error bodies say what was wrong and nothing about the inside: no stack traces, SQL,
//! file paths or framework internals, and no 5xx for anything the scan sent. Reads every error
//! response of the scan, after sending a few requests made to provoke one (malformed JSON, a
//! wrong content type, an oversized and an odd path segment).

use reqwest::Method;

use crate::target::Target;
use crate::{Check, Finding};

pub const CHECK: Check = Check {
    id: "errors.no-internals",
    control: "INPUT-2",
    title: "Error responses are never 5xx for client mistakes and reveal no internals",
};

/// What internals look like in a body: stack traces, SQL errors, source paths, ORM names.
const INTERNALS: [&str; 16] = [
    "panicked at",
    "stack backtrace",
    "RUST_BACKTRACE",
    "Traceback (most recent call last)",
    "Exception in thread",
    "at java.",
    "SQLSTATE",
    "syntax error at or near",
    "sqlx::",
    "sea_orm",
    "DbErr",
    "/home/",
    "/root/",
    "/usr/src/",
    ".rs:",
    "node_modules",
];

/// Sends the requests made to provoke an error. Called before the rate-limit check, which
/// would otherwise leave only 429s to read.
pub async fn provoke(target: &Target) {
    let provocations = [
        target
            .request(Method::POST, &target.url("/"))
            .header("content-type", "application/json")
            .body("{\"unterminated\": "),
        target
            .request(Method::POST, &target.url("/"))
            .header("content-type", "text/plain")
            .body("plain"),
        target.request(Method::GET, &target.url(&format!("/{}", "a".repeat(8192)))),
        target.request(
            Method::GET,
            &target.url("/%27%22%3B--%00%ff..%2f..%2fetc%2fpasswd"),
        ),
    ];
    for request in provocations {
        let _ = target.send(request).await;
    }
}

/// Reads every error response the scan received.
pub async fn run(target: &Target) -> Finding {
    let seen = target.errors_seen();
    let mut problems = Vec::new();
    for response in &seen {
        if response.status >= 500 {
            problems.push(format!(
                "{} {} answered {}",
                response.method, response.url, response.status
            ));
        }
        if let Some(internal) = INTERNALS
            .iter()
            .find(|pattern| response.body.contains(*pattern))
        {
            problems.push(format!(
                "{} {} ({}) has {internal:?} in its body",
                response.method, response.url, response.status
            ));
        }
    }
    problems.truncate(10);
    super::verdict(
        &CHECK,
        seen.len(),
        &problems,
        format!(
            "{} error responses, none 5xx or revealing internals",
            seen.len()
        ),
    )
}
