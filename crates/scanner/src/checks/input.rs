//! INPUT-1: strict input. For every operation with a JSON body the scan may call, a body built
//! from the document's own schema is sent first and must be accepted (else the operation cannot
//! be judged and is listed as not tried); then the same body plus one unknown field, and bodies
//! with one value outside the schema's own constraints (type, enum, length, range), must each be
//! refused (400, or 422), never accepted and never a 5xx. These are real writes: scan a test
//! instance.

use serde_json::{Value, json};

use crate::checks::access::request;
use crate::openapi::{Document, example, resolve, violations};
use crate::target::Target;
use crate::tokens::Credentials;
use crate::{Check, Finding, Status};

pub const UNKNOWN_FIELDS: Check = Check {
    id: "input.unknown-fields-rejected",
    control: "INPUT-1",
    title: "A body with a field the schema does not declare is refused (400 or 422)",
};
pub const CONSTRAINTS: Check = Check {
    id: "input.constraints-enforced",
    control: "INPUT-1",
    title: "Values outside the document's own constraints are refused (400 or 422)",
};

/// A validation refusal: 400, or 422 as some frameworks answer (the checklist's uniform body,
/// INPUT-2, asks 400; this check asks only that the value is refused).
fn is_rejection(status: u16) -> bool {
    matches!(status, 400 | 422)
}

/// Answers that say nothing about validation: no access, no such resource, rate-limited.
fn not_conclusive(status: u16) -> bool {
    matches!(status, 401 | 403 | 404 | 429)
}

/// At most this many constraint violations are sent per operation.
const VIOLATIONS_PER_OPERATION: usize = 4;

pub async fn run(
    target: &Target,
    document: Option<&Document>,
    credentials: &Credentials,
) -> Vec<Finding> {
    let Some(document) = document else {
        return vec![
            Finding::new(
                &UNKNOWN_FIELDS,
                Status::NotApplicable,
                "no OpenAPI document",
            ),
            Finding::new(&CONSTRAINTS, Status::NotApplicable, "no OpenAPI document"),
        ];
    };
    let (mut unknown_tried, mut unknown_problems) = (0, Vec::new());
    let (mut constraint_tried, mut constraint_problems) = (0, Vec::new());
    let mut skipped = Vec::new();
    for operation in &document.operations {
        let Some(schema) = &operation.json_body else {
            continue;
        };
        let credential = if operation.public {
            None
        } else {
            match credentials.for_operation(operation) {
                Some(credential) => Some(credential),
                None => {
                    skipped.push(format!(
                        "{} (no credential with its scopes)",
                        operation.label()
                    ));
                    continue;
                }
            }
        };
        let schema = resolve(&document.root, schema);
        // A fresh example for every body: unique values (emails, ids) are never sent twice.
        let fresh = || match example(&document.root, schema, 0) {
            Value::Object(object) => Some(object),
            _ => None,
        };
        let Some(base) = fresh() else {
            continue;
        };
        let send = |body: Value| {
            let request = request(target, document, operation).body(body.to_string());
            match credential {
                Some(credential) => credential.apply(request),
                None => request,
            }
        };

        // The example alone first: were it refused as invalid, a 400 below would prove nothing.
        match target.send(send(Value::Object(base))).await {
            Ok(reply) if reply.status >= 500 => {
                unknown_tried += 1;
                unknown_problems.push(format!(
                    "{} answered {} to a body its schema allows",
                    operation.label(),
                    reply.status
                ));
                continue;
            }
            Ok(reply) if reply.status >= 400 => {
                skipped.push(format!(
                    "{} (answered {} to the scanner's example body)",
                    operation.label(),
                    reply.status
                ));
                continue;
            }
            Ok(_) => {}
            Err(error) => {
                unknown_tried += 1;
                unknown_problems.push(format!("{}: {error:#}", operation.label()));
                continue;
            }
        }

        let mut with_unknown = fresh().unwrap_or_default();
        with_unknown.insert("scanner_unknown_field".to_owned(), json!("x"));
        match target.send(send(Value::Object(with_unknown))).await {
            Ok(reply) if is_rejection(reply.status) => unknown_tried += 1,
            Ok(reply) if not_conclusive(reply.status) => {
                skipped.push(format!("{} ({})", operation.label(), reply.status));
            }
            Ok(reply) => {
                unknown_tried += 1;
                unknown_problems.push(format!(
                    "{} answered {} to an unknown field",
                    operation.label(),
                    reply.status
                ));
            }
            Err(error) => {
                unknown_tried += 1;
                unknown_problems.push(format!("{}: {error:#}", operation.label()));
            }
        }

        let mut sent = 0;
        if let Some(properties) = schema["properties"].as_object() {
            'properties: for (name, property) in properties {
                for (broken, value) in violations(&document.root, property) {
                    if sent == VIOLATIONS_PER_OPERATION {
                        break 'properties;
                    }
                    sent += 1;
                    let mut body = fresh().unwrap_or_default();
                    body.insert(name.clone(), value);
                    match target.send(send(Value::Object(body))).await {
                        Ok(reply) if is_rejection(reply.status) => constraint_tried += 1,
                        Ok(reply) if not_conclusive(reply.status) => {}
                        Ok(reply) => {
                            constraint_tried += 1;
                            constraint_problems.push(format!(
                                "{} answered {} to {broken} in {name:?}",
                                operation.label(),
                                reply.status
                            ));
                        }
                        Err(error) => {
                            constraint_tried += 1;
                            constraint_problems.push(format!("{}: {error:#}", operation.label()));
                        }
                    }
                }
            }
        }
    }
    let skipped = if skipped.is_empty() {
        String::new()
    } else {
        format!("; not tried: {}", skipped.join(", "))
    };
    vec![
        super::verdict(
            &UNKNOWN_FIELDS,
            unknown_tried,
            &unknown_problems,
            format!("{unknown_tried} operations refused an unknown field{skipped}"),
        ),
        super::verdict(
            &CONSTRAINTS,
            constraint_tried,
            &constraint_problems,
            format!("{constraint_tried} out-of-constraint values refused{skipped}"),
        ),
    ]
}
