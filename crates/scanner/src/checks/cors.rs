//! TLS-4: CORS. A foreign origin gets no grant, neither on a preflight nor on an authenticated
//! request, and no response combines a wildcard origin with credentials.

use reqwest::Method;

use crate::openapi::{Document, request_path};
use crate::target::{Reply, Target};
use crate::tokens::Credentials;
use crate::{Check, Finding};

pub const FOREIGN_ORIGIN_REFUSED: Check = Check {
    id: "cors.foreign-origin-refused",
    control: "TLS-4",
    title: "A foreign origin gets no CORS grant on preflights or authenticated requests",
};
pub const NO_WILDCARD_WITH_CREDENTIALS: Check = Check {
    id: "cors.no-wildcard-with-credentials",
    control: "TLS-4",
    title: "No wildcard origin with credentials, and none on authenticated routes",
};

pub const FOREIGN_ORIGIN: &str = "https://scanner-foreign-origin.invalid";

pub async fn run(
    target: &Target,
    document: Option<&Document>,
    credentials: &Credentials,
) -> Vec<Finding> {
    let mut probes: Vec<(String, bool, reqwest::RequestBuilder)> = Vec::new();
    let protected = document.and_then(|document| {
        document
            .operations
            .iter()
            // A GET: this request carries credentials and must change nothing.
            .find(|operation| {
                operation.method == Method::GET
                    && !operation.public
                    && !operation.has_path_parameters()
            })
            .map(|operation| (document, operation))
    });
    let path = protected
        .map(|(document, operation)| request_path(document, operation))
        .unwrap_or_else(|| "/".to_owned());
    let url = target.url(&path);
    probes.push((
        format!("preflight OPTIONS {path}"),
        false,
        target
            .request(Method::OPTIONS, &url)
            .header("origin", FOREIGN_ORIGIN)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization"),
    ));
    if let Some((_, operation)) = protected {
        let request = target
            .request(operation.method.clone(), &url)
            .header("origin", FOREIGN_ORIGIN);
        match credentials.for_operation(operation) {
            Some(credential) => probes.push((
                format!("{} with {}", operation.label(), credential.describe()),
                true,
                credential.apply(request),
            )),
            None => probes.push((
                format!("{} without credentials", operation.label()),
                false,
                request,
            )),
        }
    }

    let mut replies: Vec<(String, bool, Reply)> = Vec::new();
    for (label, authenticated, request) in probes {
        // A 429 grants nothing because it was limited, not because of the origin.
        if let Ok(reply) = target.send(request).await
            && reply.status != 429
        {
            replies.push((format!("{label} ({})", reply.status), authenticated, reply));
        }
    }
    let (mut granted, mut wildcard) = (Vec::new(), Vec::new());
    for (label, authenticated, reply) in &replies {
        let origin = reply.header("access-control-allow-origin");
        let credentials = reply.header("access-control-allow-credentials") == Some("true");
        if origin == Some(FOREIGN_ORIGIN) {
            granted.push(format!(
                "{label}: Access-Control-Allow-Origin echoes {FOREIGN_ORIGIN}"
            ));
        }
        if origin == Some("*") {
            if credentials {
                wildcard.push(format!(
                    "{label}: Access-Control-Allow-Origin * with credentials"
                ));
            } else if *authenticated {
                wildcard.push(format!(
                    "{label}: Access-Control-Allow-Origin * on an authenticated route"
                ));
            } else {
                granted.push(format!("{label}: Access-Control-Allow-Origin *"));
            }
        }
    }
    let seen = replies
        .iter()
        .map(|(label, _, _)| label.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        super::verdict(
            &FOREIGN_ORIGIN_REFUSED,
            replies.len(),
            &granted,
            format!("no grant for {FOREIGN_ORIGIN} on {seen}"),
        ),
        super::verdict(
            &NO_WILDCARD_WITH_CREDENTIALS,
            replies.len(),
            &wildcard,
            format!("no wildcard on {seen}"),
        ),
    ]
}
