//! The API's OpenAPI 3 document read as plain JSON (3.0 and 3.1 alike): its operations, who may
//! call them, and request values built from its own schemas.

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::Check;
use crate::target::Target;

pub const CHECK: Check = Check {
    id: "openapi.document",
    control: "AUTH-4",
    title: "The OpenAPI document can be read, so every operation can be checked",
};

#[derive(Debug, Clone)]
pub struct Document {
    /// Where it was read from.
    pub source: String,
    pub root: Value,
    pub operations: Vec<Operation>,
}

/// A parameter the request must carry.
#[derive(Debug, Clone)]
pub struct Parameter {
    pub name: String,
    pub location: String,
    pub schema: Value,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub method: Method,
    /// The path template, e.g. `/v1/notes/{id}`.
    pub path: String,
    /// Callable without credentials: no security requirement, or an empty one among them.
    pub public: bool,
    /// The scopes its (first) security requirement names.
    pub scopes: Vec<String>,
    pub required_parameters: Vec<Parameter>,
    /// The JSON request body's schema, `$ref`s resolved at the top.
    pub json_body: Option<Value>,
}

impl Operation {
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    pub fn has_path_parameters(&self) -> bool {
        self.path.contains('{')
    }
}

/// Reads the document from a URL, a file, or `{base}/openapi.json`.
pub async fn load(target: &Target, source: Option<&str>) -> Result<Document> {
    let source = source
        .map(str::to_owned)
        .unwrap_or_else(|| target.url("/openapi.json"));
    let text = if source.starts_with("https://") || source.starts_with("http://") {
        let reply = target
            .send(target.request(Method::GET, &source))
            .await
            .with_context(|| format!("cannot fetch {source}"))?;
        if !reply.is_success() {
            bail!("{source} answered {}", reply.status);
        }
        reply.body
    } else {
        std::fs::read_to_string(&source).with_context(|| format!("cannot read {source}"))?
    };
    let root: Value = serde_json::from_str(&text).context("the document is not JSON")?;
    if !root["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3."))
    {
        bail!("not an OpenAPI 3 document");
    }
    let operations = operations(&root);
    Ok(Document {
        source,
        root,
        operations,
    })
}

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

fn operations(root: &Value) -> Vec<Operation> {
    let mut found = Vec::new();
    let Some(paths) = root["paths"].as_object() else {
        return found;
    };
    for (path, item) in paths {
        let shared_parameters = item["parameters"].as_array().cloned().unwrap_or_default();
        for method in METHODS {
            let Some(operation) = item.get(method).filter(|o| o.is_object()) else {
                continue;
            };
            let security = operation
                .get("security")
                .or_else(|| root.get("security"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let public = security.is_empty()
                || security
                    .iter()
                    .any(|requirement| requirement.as_object().is_some_and(Map::is_empty));
            let scopes = security
                .first()
                .and_then(Value::as_object)
                .map(|requirement| {
                    requirement
                        .values()
                        .filter_map(Value::as_array)
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let mut required_parameters = Vec::new();
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for parameter in shared_parameters.iter().chain(&parameters) {
                let parameter = resolve(root, parameter);
                let location = parameter["in"].as_str().unwrap_or_default();
                if location == "path" || parameter["required"].as_bool() == Some(true) {
                    required_parameters.push(Parameter {
                        name: parameter["name"].as_str().unwrap_or_default().to_owned(),
                        location: location.to_owned(),
                        schema: resolve(root, &parameter["schema"]).clone(),
                    });
                }
            }
            let body = resolve(root, &operation["requestBody"]);
            let json_body = body["content"]
                .as_object()
                .and_then(|content| {
                    content
                        .iter()
                        .find(|(media, _)| media.starts_with("application/json"))
                })
                .map(|(_, media)| resolve(root, &media["schema"]).clone());
            found.push(Operation {
                method: Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .unwrap_or(Method::GET),
                path: path.clone(),
                public,
                scopes,
                required_parameters,
                json_body,
            });
        }
    }
    found
}

/// Follows local `$ref`s (`#/components/...`) until a value that is not a reference.
pub fn resolve<'a>(root: &'a Value, value: &'a Value) -> &'a Value {
    let mut current = value;
    for _ in 0..16 {
        let Some(reference) = current.get("$ref").and_then(Value::as_str) else {
            return current;
        };
        let Some(pointer) = reference.strip_prefix('#') else {
            return current;
        };
        match root.pointer(pointer) {
            Some(next) => current = next,
            None => return current,
        }
    }
    current
}

/// A value the schema accepts, as plain as it can be: required properties only, the first enum
/// member, the smallest lengths and numbers allowed. Formats the scan knows are honoured.
pub fn example(root: &Value, schema: &Value, depth: usize) -> Value {
    let schema = resolve(root, schema);
    if depth > 8 {
        return Value::Null;
    }
    for combinator in ["allOf", "oneOf", "anyOf"] {
        if let Some(first) = schema[combinator].as_array().and_then(|all| all.first()) {
            if combinator == "allOf" {
                let mut merged = Map::new();
                for part in schema[combinator].as_array().into_iter().flatten() {
                    if let Value::Object(object) = example(root, part, depth + 1) {
                        merged.extend(object);
                    }
                }
                return Value::Object(merged);
            }
            return example(root, first, depth + 1);
        }
    }
    if let Some(value) = schema.get("example").or_else(|| schema.get("default")) {
        return value.clone();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|all| all.first()) {
        return first.clone();
    }
    match schema_type(schema).as_deref() {
        Some("string") => {
            let format = schema["format"].as_str().unwrap_or_default();
            let value = match format {
                // Unique each time: a repeated address could be refused as a duplicate, which a
                // check would mistake for validation.
                "email" => format!(
                    "scanner-{}@example.com",
                    &uuid::Uuid::new_v4().simple().to_string()[..12]
                ),
                "uuid" => uuid::Uuid::new_v4().to_string(),
                "date-time" => "2030-01-01T00:00:00Z".to_owned(),
                "date" => "2030-01-01".to_owned(),
                "uri" | "url" => "https://example.com/".to_owned(),
                _ => {
                    let min = schema["minLength"].as_u64().unwrap_or(1).max(8) as usize;
                    let max = schema["maxLength"]
                        .as_u64()
                        .map_or(usize::MAX, |m| m as usize);
                    // Letters only: the commonest patterns (names, codes) accept them.
                    "Scanner".repeat(min.div_ceil(7))[..min.min(max).max(1)].to_owned()
                }
            };
            Value::String(value)
        }
        Some("integer") => json!(number_in(schema, 1.0) as i64),
        Some("number") => json!(number_in(schema, 1.0)),
        Some("boolean") => json!(true),
        Some("array") => {
            if schema["minItems"].as_u64().unwrap_or(0) > 0 {
                json!([example(root, &schema["items"], depth + 1)])
            } else {
                json!([])
            }
        }
        Some("object") | None => {
            let mut object = Map::new();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    if required.contains(&name.as_str()) {
                        object.insert(name.clone(), example(root, property, depth + 1));
                    }
                }
            }
            Value::Object(object)
        }
        Some(_) => Value::Null,
    }
}

/// The `type` of a schema, reading 3.1's type arrays (`["string", "null"]`) as their first
/// non-null member.
pub fn schema_type(schema: &Value) -> Option<String> {
    match &schema["type"] {
        Value::String(kind) => Some(kind.clone()),
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|kind| *kind != "null")
            .map(str::to_owned),
        _ => None,
    }
}

fn number_in(schema: &Value, preferred: f64) -> f64 {
    let minimum = schema["minimum"].as_f64().unwrap_or(f64::MIN);
    let maximum = schema["maximum"].as_f64().unwrap_or(f64::MAX);
    preferred.clamp(minimum, maximum)
}

/// A property value outside the schema's own constraints, and what it breaks; `None` when the
/// schema constrains nothing the scan can break without guessing.
pub fn violations(root: &Value, schema: &Value) -> Vec<(&'static str, Value)> {
    let schema = resolve(root, schema);
    let mut found = Vec::new();
    if let Some(allowed) = schema["enum"].as_array()
        && allowed.iter().all(Value::is_string)
    {
        found.push(("a value outside its enum", json!("scanner-not-a-member")));
    }
    match schema_type(schema).as_deref() {
        Some("string") => {
            // A number where a string is declared: accepted only by coercion.
            found.push(("a number where a string is declared", json!(12345)));
            if let Some(max) = schema["maxLength"].as_u64() {
                found.push((
                    "a string longer than its maxLength",
                    Value::String("x".repeat(max as usize + 1)),
                ));
            }
        }
        Some("integer") | Some("number") => {
            found.push(("a string where a number is declared", json!("12")));
            let integer = schema_type(schema).as_deref() == Some("integer");
            let number = |value: f64| {
                if integer {
                    json!(value as i64)
                } else {
                    json!(value)
                }
            };
            if let Some(max) = schema["maximum"].as_f64() {
                found.push(("a number above its maximum", number(max + 1.0)));
            } else if let Some(min) = schema["minimum"].as_f64() {
                found.push(("a number below its minimum", number(min - 1.0)));
            }
        }
        Some("boolean") => found.push(("a string where a boolean is declared", json!("true"))),
        _ => {}
    }
    found
}

/// The operation's path with example values for its parameters, and its required query string.
pub fn request_path(document: &Document, operation: &Operation) -> String {
    let mut path = operation.path.clone();
    let mut query = Vec::new();
    for parameter in &operation.required_parameters {
        let value = match example(&document.root, &parameter.schema, 0) {
            Value::String(text) => text,
            other => other.to_string(),
        };
        match parameter.location.as_str() {
            "path" => path = path.replace(&format!("{{{}}}", parameter.name), &value),
            "query" => query.push(format!("{}={}", parameter.name, value)),
            _ => {}
        }
    }
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// Required header parameters with example values (an `Idempotency-Key`, say).
pub fn required_headers(document: &Document, operation: &Operation) -> Vec<(String, String)> {
    operation
        .required_parameters
        .iter()
        .filter(|parameter| parameter.location == "header")
        .map(|parameter| {
            let value = match example(&document.root, &parameter.schema, 0) {
                Value::String(text) => text,
                other => other.to_string(),
            };
            // A fresh value each time: such headers are usually idempotency keys.
            let value = if value.len() < 16 {
                uuid::Uuid::new_v4().to_string()
            } else {
                value
            };
            (parameter.name.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> Value {
        json!({
            "openapi": "3.0.0",
            "security": [{"bearer": ["read"]}],
            "paths": {
                "/open": {"get": {"security": []}},
                "/either": {"get": {"security": [{}, {"bearer": []}]}},
                "/notes/{id}": {
                    "parameters": [{"name": "id", "in": "path", "required": true,
                                    "schema": {"type": "string", "format": "uuid"}}],
                    "put": {
                        "security": [{"bearer": ["notes:write"]}],
                        "requestBody": {"content": {"application/json; charset=utf-8": {
                            "schema": {"$ref": "#/components/schemas/Note"}}}}
                    }
                },
                "/inherits": {"delete": {}}
            },
            "components": {"schemas": {"Note": {
                "type": "object", "required": ["title", "count"],
                "properties": {
                    "title": {"type": "string", "maxLength": 3},
                    "count": {"type": "integer", "minimum": 2, "maximum": 5},
                    "kind": {"type": "string", "enum": ["a", "b"]}
                }
            }}}
        })
    }

    #[test]
    fn operations_say_who_may_call_them() {
        let root = document();
        let operations = operations(&root);
        let find = |label: &str| {
            operations
                .iter()
                .find(|operation| operation.label() == label)
                .expect(label)
        };
        assert!(find("GET /open").public);
        assert!(
            find("GET /either").public,
            "an empty requirement is an anonymous alternative"
        );
        let put = find("PUT /notes/{id}");
        assert!(!put.public);
        assert_eq!(put.scopes, ["notes:write"]);
        assert_eq!(put.required_parameters[0].location, "path");
        assert!(put.json_body.is_some());
        let inherits = find("DELETE /inherits");
        assert!(!inherits.public, "the document's own requirement applies");
        assert_eq!(inherits.scopes, ["read"]);
    }

    #[test]
    fn examples_satisfy_the_schema_and_violations_break_it() {
        let root = document();
        let note = &root["components"]["schemas"]["Note"];
        let value = example(&root, note, 0);
        assert_eq!(value, json!({"title": "Sca", "count": 2}));
        let title = violations(&root, &note["properties"]["title"]);
        assert!(title.iter().any(|(_, v)| v == &json!("xxxx")));
        assert!(title.iter().any(|(_, v)| v.is_number()));
        let count = violations(&root, &note["properties"]["count"]);
        assert!(count.iter().any(|(_, v)| v == &json!(6)));
        let kind = violations(&root, &note["properties"]["kind"]);
        assert!(
            kind.iter()
                .any(|(_, v)| v == &json!("scanner-not-a-member"))
        );
    }
}
