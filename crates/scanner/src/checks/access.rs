//! AUTH-4: default deny, read from the document itself. Every operation not marked public
//! refuses a request without credentials, and a token without the operation's declared scopes
//! is refused: declared scopes that are only documentation show up here.

use reqwest::Method;

use crate::openapi::{Document, Operation, request_path, required_headers};
use crate::target::Target;
use crate::tokens::Credentials;
use crate::{Check, Finding, Status};

pub const CREDENTIALS_REQUIRED: Check = Check {
    id: "auth.credentials-required",
    control: "AUTH-4",
    title: "Every operation not marked public refuses a request without credentials",
};
pub const SCOPES_ENFORCED: Check = Check {
    id: "auth.scopes-enforced",
    control: "AUTH-4",
    title: "A token without an operation's declared scopes is refused",
};

/// The request for an operation with example parameters and, for a JSON body, an empty object:
/// access is decided before the body is looked at.
pub fn request(
    target: &Target,
    document: &Document,
    operation: &Operation,
) -> reqwest::RequestBuilder {
    let url = target.url(&request_path(document, operation));
    let mut request = target.request(operation.method.clone(), &url);
    for (name, value) in required_headers(document, operation) {
        request = request.header(name, value);
    }
    if operation.json_body.is_some() {
        request = request
            .header("content-type", "application/json")
            .body("{}");
    }
    request
}

pub async fn run(
    target: &Target,
    document: Option<&Document>,
    credentials: &Credentials,
) -> Vec<Finding> {
    let Some(document) = document else {
        let detail = "no OpenAPI document";
        return vec![
            Finding::new(&CREDENTIALS_REQUIRED, Status::NotApplicable, detail),
            Finding::new(&SCOPES_ENFORCED, Status::NotApplicable, detail),
        ];
    };
    let protected: Vec<&Operation> = document
        .operations
        .iter()
        .filter(|operation| !operation.public && operation.method != Method::OPTIONS)
        .collect();

    let (mut open, mut refused, mut limited) = (Vec::new(), 0, 0);
    for operation in &protected {
        match target.send(request(target, document, operation)).await {
            Ok(reply) if matches!(reply.status, 401 | 403) => refused += 1,
            // A rate limit answered instead: this operation says nothing either way.
            Ok(reply) if reply.status == 429 => limited += 1,
            Ok(reply) => open.push(format!(
                "{} answered {} without credentials",
                operation.label(),
                reply.status
            )),
            Err(error) => open.push(format!("{}: {error:#}", operation.label())),
        }
    }
    let public = document.operations.len() - protected.len();
    let required = super::verdict(
        &CREDENTIALS_REQUIRED,
        refused + open.len(),
        &open,
        format!(
            "{refused} protected operations answered 401/403 without credentials ({public} \
             marked public, {limited} rate-limited)"
        ),
    );

    let (mut refused, mut limited) = (0, 0);
    let mut allowed = Vec::new();
    for operation in &protected {
        let Some((token, missing)) = credentials.lacking_scopes(operation) else {
            continue;
        };
        match target
            .send(request(target, document, operation).bearer_auth(token))
            .await
        {
            Ok(reply) if reply.status == 403 => refused += 1,
            Ok(reply) if reply.status == 429 => limited += 1,
            Ok(reply) => allowed.push(format!(
                "{} answered {} to a token without [{}]",
                operation.label(),
                reply.status,
                missing.join(" ")
            )),
            Err(error) => allowed.push(format!("{}: {error:#}", operation.label())),
        }
    }
    let tried = refused + allowed.len();
    let scopes = if credentials
        .bearer_tokens()
        .all(|(_, scopes)| scopes.is_none())
    {
        Finding::new(
            &SCOPES_ENFORCED,
            Status::NotApplicable,
            "no token whose scopes can be read (a `scope` or `scp` claim) was given (--token)",
        )
    } else if tried == 0 {
        Finding::new(
            &SCOPES_ENFORCED,
            Status::NotApplicable,
            format!(
                "no token lacking an operation's scopes could be tried ({limited} rate-limited); \
                 give one with fewer scopes"
            ),
        )
    } else {
        super::verdict(
            &SCOPES_ENFORCED,
            tried,
            &allowed,
            format!(
                "{refused} operations answered 403 to a token lacking their scopes \
                 ({limited} rate-limited)"
            ),
        )
    };
    vec![required, scopes]
}
