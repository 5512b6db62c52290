//! TLS-1 (HSTS) and TLS-5 (security headers, no banners), on success and error responses alike:
//! a header set only by the happy path is missing exactly where attacks probe.

use reqwest::Method;

use crate::openapi::{Document, request_path};
use crate::target::{Reply, Target};
use crate::tokens::Credentials;
use crate::{Check, Finding};

pub const HSTS: Check = Check {
    id: "headers.hsts",
    control: "TLS-1",
    title: "Strict-Transport-Security of at least a year with includeSubDomains on every response",
};
pub const SECURITY_HEADERS: Check = Check {
    id: "headers.security",
    control: "TLS-5",
    title: "nosniff, a Content-Security-Policy, a Referrer-Policy, and no-store on API responses",
};
pub const NO_BANNER: Check = Check {
    id: "headers.no-banner",
    control: "TLS-5",
    title: "No Server, X-Powered-By or framework version banners",
};

const ONE_YEAR: u64 = 31_536_000;
const BANNERS: [&str; 4] = [
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
];

/// The responses the headers are read from: what the API answers a caller who is right, one who
/// is wrong, and one who asked for something that does not exist.
async fn samples(
    target: &Target,
    document: Option<&Document>,
    credentials: &Credentials,
) -> Vec<(String, Reply)> {
    let mut requests = vec![(
        "an unknown path".to_owned(),
        target.request(
            Method::GET,
            &target.url(&format!("/scanner-not-found-{}", uuid::Uuid::new_v4())),
        ),
    )];
    if let Some(document) = document {
        let protected = document
            .operations
            .iter()
            .filter(|operation| operation.method == Method::GET && !operation.public);
        if let Some(operation) = protected.clone().next() {
            let url = target.url(&request_path(document, operation));
            requests.push((
                format!("{} without credentials", operation.label()),
                target.request(Method::GET, &url),
            ));
        }
        // A success: a protected GET the credentials may call, else a public one.
        let authorized = protected
            .filter(|operation| !operation.has_path_parameters())
            .find_map(|operation| {
                credentials.for_operation(operation).map(|credential| {
                    let url = target.url(&request_path(document, operation));
                    (
                        format!("{} with {}", operation.label(), credential.describe()),
                        credential.apply(target.request(Method::GET, &url)),
                    )
                })
            });
        if let Some(request) = authorized {
            requests.push(request);
        } else if let Some(operation) = document.operations.iter().find(|operation| {
            operation.method == Method::GET && operation.public && !operation.has_path_parameters()
        }) {
            let url = target.url(&request_path(document, operation));
            requests.push((operation.label(), target.request(Method::GET, &url)));
        }
    }
    let mut replies = Vec::new();
    for (label, request) in requests {
        if let Ok(reply) = target.send(request).await {
            replies.push((format!("{label} ({})", reply.status), reply));
        }
    }
    replies
}

pub async fn run(
    target: &Target,
    document: Option<&Document>,
    credentials: &Credentials,
) -> Vec<Finding> {
    let replies = samples(target, document, credentials).await;
    let seen = replies
        .iter()
        .map(|(label, _)| label.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let (mut hsts, mut headers, mut banners) = (Vec::new(), Vec::new(), Vec::new());
    for (label, reply) in &replies {
        match reply.header("strict-transport-security") {
            None => hsts.push(format!("{label}: no Strict-Transport-Security")),
            Some(value) => {
                let max_age = value
                    .split(';')
                    .filter_map(|directive| directive.trim().strip_prefix("max-age="))
                    .find_map(|seconds| seconds.trim_matches('"').parse::<u64>().ok());
                if max_age.is_none_or(|seconds| seconds < ONE_YEAR) {
                    hsts.push(format!("{label}: max-age below a year in {value:?}"));
                }
                if !value.to_ascii_lowercase().contains("includesubdomains") {
                    hsts.push(format!("{label}: no includeSubDomains in {value:?}"));
                }
            }
        }
        if reply.header("x-content-type-options") != Some("nosniff") {
            headers.push(format!("{label}: X-Content-Type-Options is not nosniff"));
        }
        if reply.header("content-security-policy").is_none() {
            headers.push(format!("{label}: no Content-Security-Policy"));
        }
        if reply.header("referrer-policy").is_none() {
            headers.push(format!("{label}: no Referrer-Policy"));
        }
        if !reply
            .header("cache-control")
            .is_some_and(|value| value.contains("no-store"))
        {
            headers.push(format!("{label}: Cache-Control lacks no-store"));
        }
        for banner in BANNERS {
            if let Some(value) = reply.header(banner) {
                banners.push(format!("{label}: {banner}: {value}"));
            }
        }
    }
    let tried = replies.len();
    vec![
        super::verdict(&HSTS, tried, &hsts, format!("present on {seen}")),
        super::verdict(
            &SECURITY_HEADERS,
            tried,
            &headers,
            format!("present on {seen}"),
        ),
        super::verdict(&NO_BANNER, tried, &banners, format!("none on {seen}")),
    ]
}
