//! RATE-1, RATE-6: requests from one address without credentials are limited, and the refusal
//! is a 429 with `Retry-After`. Sent last: it spends the scanning address's budget.

use reqwest::Method;

use crate::openapi::{Document, request_path};
use crate::target::Target;
use crate::{Check, Finding, ScanConfig, Status};

pub const CHECK: Check = Check {
    id: "rate-limit.trips-with-retry-after",
    control: "RATE-1",
    title: "Repeated anonymous requests from one address get 429 with Retry-After",
};

pub async fn run(target: &Target, document: Option<&Document>, config: &ScanConfig) -> Finding {
    let path = config.rate_limit_path.clone().or_else(|| {
        let document = document?;
        document
            .operations
            .iter()
            .find(|operation| {
                operation.method == Method::GET
                    && !operation.public
                    && !operation.has_path_parameters()
            })
            .map(|operation| request_path(document, operation))
    });
    let Some(path) = path else {
        return Finding::new(
            &CHECK,
            Status::NotApplicable,
            "no protected GET without parameters in the document; name one with --rate-limit-path",
        );
    };
    let url = target.url(&path);
    for sent in 1..=config.rate_limit_requests {
        let reply = match target.send_once(target.request(Method::GET, &url)).await {
            Ok(reply) => reply,
            Err(error) => {
                return Finding::new(&CHECK, Status::Fail, format!("request {sent}: {error:#}"));
            }
        };
        if reply.status == 429 {
            let detail = format!(
                "request {sent} to GET {path} answered 429, Retry-After {:?}, RateLimit {:?}",
                reply.header("retry-after"),
                reply.header("ratelimit")
            );
            // Seconds, or an HTTP-date (RFC 9110, section 10.2.3).
            let date_form = reply
                .header("retry-after")
                .is_some_and(|value| value.trim_end().ends_with(" GMT"));
            return match crate::target::retry_after(&reply) {
                Some(_) => Finding::new(&CHECK, Status::Pass, detail),
                None if date_form => Finding::new(&CHECK, Status::Pass, detail),
                None => Finding::new(
                    &CHECK,
                    Status::Fail,
                    format!("{detail}: no Retry-After (seconds or an HTTP-date)"),
                ),
            };
        }
        if reply.status >= 500 {
            return Finding::new(
                &CHECK,
                Status::Fail,
                format!("request {sent} to GET {path} answered {}", reply.status),
            );
        }
    }
    Finding::new(
        &CHECK,
        Status::Fail,
        format!(
            "{} requests to GET {path} without credentials, none refused with 429",
            config.rate_limit_requests
        ),
    )
}
