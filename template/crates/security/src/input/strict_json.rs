//! Strict JSON request bodies, checked against the published OpenAPI document (INPUT-1, INPUT-2,
//! and the JSON-depth part of INPUT-4).
//!
//! Threat: a lenient parser is an attack surface. A number sent where a string is declared and
//! silently coerced, a duplicated key that one component reads first-wins and another last-wins
//! (`{"role":"user","role":"admin"}` checked by a gateway, acted on by the service), a field the
//! schema does not know, or a body nested ten thousand levels deep to exhaust the stack: each lets
//! a client get past validation, or cost the service more than the request is worth. Reporting
//! one error at a time, or quoting the rejected value back, helps attackers probe and leaks what
//! clients sent (a password typed into the wrong field ends up in a log or a screenshot).
//!
//! Control, in this order, before any handler or typed parsing sees the body:
//! 1. the body is parsed by a strict reader ([`parse_strict`]) that rejects invalid JSON (a form
//!    error with line and column, never the content), nesting deeper than the configured maximum,
//!    and any object key that appears twice (a field error under the key's path), and notes any
//!    string holding U+0000, which no API text needs and PostgreSQL cannot store;
//! 2. the value is checked against the operation's request schema taken from the service's own
//!    OpenAPI document, with the `jsonschema` crate: types without coercion, lengths, patterns,
//!    enums, ranges, formats, required fields; unknown fields too, because
//!    [`close_request_body_objects`] marks every request-body object `additionalProperties: false`
//!    in the document that is both published and enforced. One source: what clients read at
//!    `/openapi.json` is exactly what is enforced;
//! 3. every failure is reported at once as a [`ValidationFailure`] (status 400): form errors about
//!    the body as a whole, field errors keyed by the field's path as the API names it
//!    (`email`, `address.city`, `items[0].name`). Messages are built from the kind of failure
//!    ("must be a string", "must be at most 254 characters"), never from the rejected value;
//!    `jsonschema`'s own messages quote the value and are never used.
//!
//! Path, query and header parameters are typed and validated by poem-openapi from the same
//! declarations that publish them, so they too have one source. Schemathesis fuzzes every
//! variant's service against the published document in CI (OPS-2).
//!
//! Default: on for every operation whose request body is JSON; maximum depth
//! [`DEFAULT_MAX_JSON_DEPTH`]. Validators are compiled once, at start-up. Requests with another
//! content type pass through untouched (the typed payload answers 415). This middleware reads the
//! whole body, so it must sit inside [`BodyLimit`](super::body_limit::BodyLimit), which bounds its
//! size and read time.
//!
//! Turning it off (removing it from the stack) leaves only poem-openapi's typed parsing: numbers
//! are accepted for strings, duplicate keys are resolved silently, the first error hides the
//! others, and nothing bounds nesting but serde_json's fixed recursion limit.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Draft, Validator};
use poem::http::header::CONTENT_TYPE;
use poem::http::{Method, StatusCode};
use poem::{Body, Endpoint, Middleware, Request, Result};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::operations::{OperationTable, operations};

/// The default deepest nesting of objects and arrays accepted in a body: far more than any
/// honest request needs, far less than what would strain the parser or the validator.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 32;

/// Why a request body was refused: every problem found, at once. Answered with 400.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationFailure {
    /// Problems with the body as a whole (invalid JSON, too deep, wrong top-level type).
    pub form_errors: Vec<String>,
    /// Problems per field, keyed by the field's path (`email`, `address.city`, `items[0].name`).
    pub field_errors: BTreeMap<String, Vec<String>>,
}

impl ValidationFailure {
    fn form(message: impl Into<String>) -> Self {
        Self {
            form_errors: vec![message.into()],
            field_errors: BTreeMap::new(),
        }
    }

    fn add_field(&mut self, path: String, message: String) {
        let messages = self.field_errors.entry(path).or_default();
        if !messages.contains(&message) {
            messages.push(message);
        }
    }

    fn add_form(&mut self, message: String) {
        if !self.form_errors.contains(&message) {
            self.form_errors.push(message);
        }
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.form_errors.is_empty() && self.field_errors.is_empty()
    }
}

impl fmt::Display for ValidationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Field names and fixed messages only: this may be logged, and never holds a value.
        write!(
            f,
            "validation failed: {} form error(s), fields: ",
            self.form_errors.len()
        )?;
        let fields: Vec<&str> = self.field_errors.keys().map(String::as_str).collect();
        f.write_str(&fields.join(", "))
    }
}

impl std::error::Error for ValidationFailure {}

impl poem::error::ResponseError for ValidationFailure {
    fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

// ---------------------------------------------------------------------------------------------
// The strict parser.

/// One step of a path into a JSON value.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// `a.b[0].c` from steps; an empty path is the body itself.
fn render_path(steps: &[Step]) -> String {
    let mut path = String::new();
    for step in steps {
        match step {
            Step::Key(key) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Step::Index(index) => {
                path.push('[');
                path.push_str(&index.to_string());
                path.push(']');
            }
        }
    }
    path
}

struct ParseState {
    max_depth: usize,
    path: Vec<Step>,
    duplicates: Vec<String>,
    nul_strings: Vec<String>,
    too_deep: bool,
}

impl ParseState {
    /// Notes a string (value or key) holding U+0000, which no API text needs and PostgreSQL
    /// cannot store (it would fail the write with a 500).
    fn check_nul(&mut self, text: &str) {
        if text.contains('\0') {
            self.nul_strings.push(render_path(&self.path));
        }
    }
}

/// Builds a [`Value`] like serde_json does, but counts depth and notices repeated keys.
struct StrictValue<'s> {
    state: &'s mut ParseState,
    /// Containers enclosing the value being read.
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl StrictValue<'_> {
    /// Refuses to open one more container past the maximum depth.
    fn enter<E: de::Error>(&mut self) -> Result<usize, E> {
        let depth = self.depth + 1;
        if depth > self.state.max_depth {
            self.state.too_deep = true;
            return Err(E::custom("nesting too deep"));
        }
        Ok(depth)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        self.state.check_nul(value);
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        self.state.check_nul(&value);
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.enter()?;
        let state = self.state;
        let mut items = Vec::new();
        loop {
            state.path.push(Step::Index(items.len()));
            let item = seq.next_element_seed(StrictValue {
                state: &mut *state,
                depth,
            })?;
            state.path.pop();
            match item {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut access: A) -> Result<Value, A::Error> {
        let depth = self.enter()?;
        let state = self.state;
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            state.path.push(Step::Key(key));
            if let Some(Step::Key(key)) = state.path.last()
                && key.contains('\0')
            {
                state.nul_strings.push(render_path(&state.path));
            }
            let value = access.next_value_seed(StrictValue {
                state: &mut *state,
                depth,
            })?;
            let Some(Step::Key(key)) = state.path.last() else {
                unreachable!("the key pushed above");
            };
            if map.contains_key(key) {
                // First occurrence kept for further checks; the repeat is reported, never
                // resolved silently.
                state.duplicates.push(render_path(&state.path));
            } else {
                map.insert(key.clone(), value);
            }
            state.path.pop();
        }
        Ok(Value::Object(map))
    }
}

/// A body parsed strictly: the value (first occurrence of any repeated key) and the paths of
/// the repeated keys.
#[derive(Debug, Clone, PartialEq)]
pub struct StrictParse {
    pub value: Value,
    pub duplicate_keys: Vec<String>,
    /// Paths of strings (values or keys) holding the NUL character.
    pub nul_strings: Vec<String>,
}

/// Parses `bytes` as one JSON value, at most `max_depth` containers deep.
///
/// Invalid JSON and too-deep nesting are form errors (the first says where, by line and column;
/// neither repeats content). Repeated keys do not stop parsing: they come back in
/// [`StrictParse::duplicate_keys`] so they can be reported with every other problem.
pub fn parse_strict(bytes: &[u8], max_depth: usize) -> Result<StrictParse, ValidationFailure> {
    let mut state = ParseState {
        max_depth,
        path: Vec::new(),
        duplicates: Vec::new(),
        nul_strings: Vec::new(),
        too_deep: false,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictValue {
        state: &mut state,
        depth: 0,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(StrictParse {
            value,
            duplicate_keys: state.duplicates,
            nul_strings: state.nul_strings,
        }),
        Err(error) if state.too_deep || is_recursion_limit(&error) => {
            Err(ValidationFailure::form(format!(
                "The body is nested too deeply: at most {max_depth} levels of objects and arrays"
            )))
        }
        Err(error) if error.is_eof() && bytes.iter().all(u8::is_ascii_whitespace) => Err(
            ValidationFailure::form("The body is empty: a JSON document is expected"),
        ),
        Err(error) if error.is_eof() => Err(ValidationFailure::form(format!(
            "The body is not valid JSON: it ends early (line {}, column {})",
            error.line(),
            error.column()
        ))),
        // serde_json's syntax messages are fixed texts, but only the position is passed on.
        Err(error) => Err(ValidationFailure::form(format!(
            "The body is not valid JSON (line {}, column {})",
            error.line(),
            error.column()
        ))),
    }
}

/// serde_json's own, fixed recursion limit (128), reached when the configured maximum is higher.
fn is_recursion_limit(error: &serde_json::Error) -> bool {
    error.to_string().starts_with("recursion limit exceeded")
}

// ---------------------------------------------------------------------------------------------
// The OpenAPI document: closing request objects, translating OpenAPI 3.0 to JSON Schema.

const SCHEMA_REF_PREFIX: &str = "#/components/schemas/";

/// True for `application/json`, `application/json; charset=utf-8`, `application/problem+json`.
fn is_json_media_type(media_type: &str) -> bool {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The schema of an operation's JSON request body, and whether the body is required.
fn json_request_schema(operation: &Value) -> Option<(&Value, bool)> {
    let body = operation.get("requestBody")?;
    let schema = body["content"]
        .as_object()?
        .iter()
        .find(|(media_type, _)| is_json_media_type(media_type))
        .and_then(|(_, content)| content.get("schema"))?;
    Some((schema, body["required"].as_bool().unwrap_or(false)))
}

/// Marks every object schema a JSON request body can contain `additionalProperties: false`,
/// unless it already says what extra properties may hold.
///
/// poem-openapi rejects unknown fields of `#[oai(deny_unknown_fields)]` objects but does not say
/// so in the document; after this, the document states it, and [`StrictJson`] enforces it for
/// every request object. The members of an `allOf` with several members are left open: each
/// one describes only part of the object, and closing it would refuse the others' properties.
pub fn close_request_body_objects(document: &mut Value) {
    let mut pending: Vec<String> = Vec::new();
    let mut inline: Vec<(String, String)> = Vec::new();
    for (template, method, operation) in operations(document) {
        if json_request_schema(operation).is_some() {
            inline.push((template.to_owned(), method.to_owned()));
        }
    }
    for (template, method) in inline {
        let Some(content) =
            document["paths"][&template][&method]["requestBody"]["content"].as_object_mut()
        else {
            continue;
        };
        for (media_type, content) in content.iter_mut() {
            if is_json_media_type(media_type)
                && let Some(schema) = content.get_mut("schema")
            {
                close_schema(schema, &mut pending);
            }
        }
    }
    let mut closed = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !closed.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = document
            .pointer_mut("/components/schemas")
            .and_then(|schemas| schemas.get_mut(&name))
        {
            close_schema(schema, &mut pending);
        }
    }
}

fn close_schema(schema: &mut Value, pending: &mut Vec<String>) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(target) = object.get("$ref").and_then(Value::as_str) {
        // OpenAPI 3.0 ignores a `$ref`'s siblings: the target is what must be closed.
        if let Some(name) = target.strip_prefix(SCHEMA_REF_PREFIX) {
            pending.push(name.replace("~1", "/").replace("~0", "~"));
        }
        return;
    }
    let is_object = object.get("type").and_then(Value::as_str) == Some("object")
        || object.contains_key("properties");
    if is_object && !object.contains_key("additionalProperties") {
        object.insert("additionalProperties".to_owned(), Value::Bool(false));
    }
    if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
        for property in properties.values_mut() {
            close_schema(property, pending);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = object.get_mut(key) {
            close_schema(child, pending);
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(members) = object.get_mut(key).and_then(Value::as_array_mut) {
            for member in members {
                close_schema(member, pending);
            }
        }
    }
    if let Some(members) = object.get_mut("allOf").and_then(Value::as_array_mut)
        && members.len() == 1
    {
        close_schema(&mut members[0], pending);
    }
}

/// Rewrites the OpenAPI 3.0 schema keywords JSON Schema reads differently: `nullable: true`
/// becomes a type that admits `null`; a required `readOnly` property is not required of a
/// request (the server sets it). Only schema positions are visited, so a property that happens
/// to be called `nullable` or `type` is left alone.
fn translate_openapi_schema(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
        properties.values_mut().for_each(translate_openapi_schema);
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = object.get_mut(key) {
            translate_openapi_schema(child);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(members) = object.get_mut(key).and_then(Value::as_array_mut) {
            members.iter_mut().for_each(translate_openapi_schema);
        }
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        let read_only: Vec<String> = properties
            .iter()
            .filter(|(_, schema)| schema["readOnly"] == Value::Bool(true))
            .map(|(name, _)| name.clone())
            .collect();
        if let Some(required) = object.get_mut("required").and_then(Value::as_array_mut) {
            required.retain(|name| {
                name.as_str()
                    .is_none_or(|name| !read_only.iter().any(|r| r == name))
            });
        }
    }
    if object.get("nullable") == Some(&Value::Bool(true)) {
        object.remove("nullable");
        if let Some(Value::String(kind)) = object.get("type").cloned() {
            object.insert("type".to_owned(), serde_json::json!([kind, "null"]));
            if let Some(options) = object.get_mut("enum").and_then(Value::as_array_mut)
                && !options.contains(&Value::Null)
            {
                options.push(Value::Null);
            }
        } else {
            let rest = Value::Object(std::mem::take(object));
            object.insert(
                "anyOf".to_owned(),
                serde_json::json!([{"type": "null"}, rest]),
            );
        }
    }
}

/// The document's `components`, with every schema translated (requests refer to them).
fn translated_components(document: &Value) -> Value {
    let mut components = document.get("components").cloned().unwrap_or_default();
    if let Some(schemas) = components.get_mut("schemas").and_then(Value::as_object_mut) {
        schemas.values_mut().for_each(translate_openapi_schema);
    }
    components
}

// ---------------------------------------------------------------------------------------------
// Messages: built from the kind of failure, never from the value.

fn plural(count: u64, one: &str, many: &str) -> String {
    if count == 1 {
        format!("1 {one}")
    } else {
        format!("{count} {many}")
    }
}

fn type_name(kind: jsonschema::JsonType) -> &'static str {
    use jsonschema::JsonType;
    match kind {
        JsonType::Array => "an array",
        JsonType::Boolean => "a boolean",
        JsonType::Integer => "an integer",
        JsonType::Null => "null",
        JsonType::Number => "a number",
        JsonType::Object => "an object",
        JsonType::String => "a string",
    }
}

/// A schema-side value (an enum option, a limit) as text: strings bare, others as JSON.
fn schema_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// What was expected, for one failure. Only the schema (limits, patterns, options) is quoted.
fn expectation(kind: &ValidationErrorKind) -> String {
    match kind {
        ValidationErrorKind::Type {
            kind: TypeKind::Single(expected),
        } => format!("must be {}", type_name(*expected)),
        ValidationErrorKind::Type {
            kind: TypeKind::Multiple(expected),
        } => {
            let names: Vec<&str> = expected.iter().map(type_name).collect();
            format!("must be {}", names.join(" or "))
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!(
                "must be at most {}",
                plural(*limit, "character", "characters")
            )
        }
        ValidationErrorKind::MinLength { limit: 1 } => "must not be empty".to_owned(),
        ValidationErrorKind::MinLength { limit } => {
            format!(
                "must be at least {}",
                plural(*limit, "character", "characters")
            )
        }
        ValidationErrorKind::Pattern { pattern } => format!("must match the pattern {pattern}"),
        ValidationErrorKind::Enum { options } => {
            let options: Vec<String> = options
                .as_array()
                .map(|options| options.iter().map(schema_value).collect())
                .unwrap_or_default();
            format!("must be one of: {}", options.join(", "))
        }
        ValidationErrorKind::Constant { expected_value } => {
            format!("must be {}", schema_value(expected_value))
        }
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
        ValidationErrorKind::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            format!("must be greater than {limit}")
        }
        ValidationErrorKind::MultipleOf { multiple_of } => {
            format!("must be a multiple of {multiple_of}")
        }
        ValidationErrorKind::MaxItems { limit } => {
            format!("must have at most {}", plural(*limit, "item", "items"))
        }
        ValidationErrorKind::MinItems { limit } => {
            format!("must have at least {}", plural(*limit, "item", "items"))
        }
        ValidationErrorKind::MaxProperties { limit } => {
            format!(
                "must have at most {}",
                plural(*limit, "property", "properties")
            )
        }
        ValidationErrorKind::MinProperties { limit } => {
            format!(
                "must have at least {}",
                plural(*limit, "property", "properties")
            )
        }
        ValidationErrorKind::UniqueItems => "must not contain duplicate items".to_owned(),
        ValidationErrorKind::Format { format } => format!("must be a valid {format}"),
        ValidationErrorKind::Required { .. } => "is required".to_owned(),
        ValidationErrorKind::AdditionalProperties { .. }
        | ValidationErrorKind::UnevaluatedProperties { .. }
        | ValidationErrorKind::FalseSchema => "is not allowed".to_owned(),
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
            "must match one of the documented shapes".to_owned()
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => {
            "must match exactly one of the documented shapes".to_owned()
        }
        ValidationErrorKind::AdditionalItems { limit } => {
            format!(
                "must have at most {}",
                plural(*limit as u64, "item", "items")
            )
        }
        ValidationErrorKind::UnevaluatedItems { .. } => "has items that are not allowed".to_owned(),
        ValidationErrorKind::Contains => "must contain a matching item".to_owned(),
        ValidationErrorKind::PropertyNames { .. } => {
            "has a property name that is not allowed".to_owned()
        }
        _ => "is invalid".to_owned(),
    }
}

/// The field path (`a.b[0]`) of a JSON pointer into `instance`: a token is an index only where
/// the value there is an array, so an object key `"0"` stays a key.
fn field_path(instance: &Value, pointer: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut current = Some(instance);
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        match (current, token.parse::<usize>()) {
            (Some(Value::Array(items)), Ok(index)) => {
                current = items.get(index);
                steps.push(Step::Index(index));
            }
            (value, _) => {
                current = value.and_then(|value| value.get(&token));
                steps.push(Step::Key(token));
            }
        }
    }
    steps
}

/// Every schema violation of `parsed`, plus its repeated keys and NUL characters, as one
/// failure.
fn collect_failures(validator: &Validator, parsed: &StrictParse) -> ValidationFailure {
    let (instance, duplicate_keys) = (&parsed.value, &parsed.duplicate_keys);
    let mut failure = ValidationFailure::default();
    for error in validator.iter_errors(instance) {
        let at = field_path(instance, error.instance_path().as_str());
        let message = expectation(error.kind());
        // Failures about a named member are reported under that member.
        let members: Vec<String> = match error.kind() {
            ValidationErrorKind::Required { property } => {
                vec![property.as_str().unwrap_or_default().to_owned()]
            }
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => unexpected.clone(),
            _ => Vec::new(),
        };
        if matches!(error.kind(), ValidationErrorKind::Referencing(_)) {
            tracing::error!("a request schema has an unresolvable reference");
        }
        if members.is_empty() {
            let path = render_path(&at);
            if path.is_empty() {
                failure.add_form(format!("The body {message}"));
            } else {
                failure.add_field(path, message);
            }
        } else {
            for member in members {
                let mut steps = at.clone();
                steps.push(Step::Key(member));
                failure.add_field(render_path(&steps), message.clone());
            }
        }
    }
    for path in duplicate_keys {
        // A repeated key is ambiguous: whatever else was said about it is replaced.
        failure.field_errors.retain(|field, _| {
            field != path
                && !field.starts_with(&format!("{path}."))
                && !field.starts_with(&format!("{path}["))
        });
        failure.add_field(path.clone(), "appears more than once".to_owned());
    }
    for path in &parsed.nul_strings {
        let message = "must not contain the NUL character (U+0000)".to_owned();
        if path.is_empty() {
            failure.add_form(format!("The body {message}"));
        } else {
            failure.add_field(path.clone(), message);
        }
    }
    failure
}

// ---------------------------------------------------------------------------------------------
// The middleware.

struct Operation {
    body_required: bool,
    validator: Validator,
}

impl fmt::Debug for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operation")
            .field("body_required", &self.body_required)
            .finish_non_exhaustive()
    }
}

/// A request schema of the document that does not compile.
#[derive(Debug)]
pub struct SchemaError {
    /// `POST /v1/users`.
    pub operation: String,
    /// What the compiler said about the schema (the schema is ours, not client input).
    pub reason: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the request schema of {} does not compile: {}",
            self.operation, self.reason
        )
    }
}

impl std::error::Error for SchemaError {}

/// Middleware validating JSON request bodies strictly against an OpenAPI document.
#[derive(Debug, Clone)]
pub struct StrictJson {
    operations: Arc<OperationTable<Operation>>,
    max_depth: usize,
}

impl StrictJson {
    /// Compiles a validator for every operation of `document` whose request body is JSON. Pass
    /// the document after [`close_request_body_objects`], the one served to clients.
    pub fn from_openapi(document: &Value, max_depth: usize) -> Result<Self, SchemaError> {
        let components = translated_components(document);
        let mut compiled = OperationTable::default();
        for (template, method, operation) in operations(document) {
            let Some((schema, body_required)) = json_request_schema(operation) else {
                continue;
            };
            let mut schema = schema.clone();
            translate_openapi_schema(&mut schema);
            // The document's components travel with the schema so `#/components/schemas/...`
            // references resolve as JSON pointers into this root.
            let root = serde_json::json!({ "components": components, "allOf": [schema] });
            let name = format!("{} {template}", method.to_ascii_uppercase());
            // OpenAPI 3.0 schemas follow draft 4 (boolean exclusiveMaximum, `$ref` siblings
            // ignored); formats are asserted, not just annotated.
            let validator = jsonschema::options()
                .with_draft(Draft::Draft4)
                .should_validate_formats(true)
                .build(&root)
                .map_err(|error| SchemaError {
                    operation: name.clone(),
                    reason: error.to_string(),
                })?;
            compiled
                .insert(
                    method,
                    template,
                    Operation {
                        body_required,
                        validator,
                    },
                )
                .map_err(|error| SchemaError {
                    operation: name.clone(),
                    reason: error.to_string(),
                })?;
        }
        Ok(Self {
            operations: Arc::new(compiled),
            max_depth,
        })
    }

    /// The operation a request is for (see [`OperationTable::find`]).
    fn operation(&self, method: &Method, path: &str) -> Option<&Operation> {
        self.operations
            .find(method, path)
            .map(|matched| matched.value)
    }

    /// Checks one body for `operation`: `Ok` when it may go on to typed parsing.
    fn check(&self, operation: &Operation, bytes: &[u8]) -> Result<(), ValidationFailure> {
        let parsed = parse_strict(bytes, self.max_depth)?;
        let failure = collect_failures(&operation.validator, &parsed);
        if failure.is_empty() {
            Ok(())
        } else {
            Err(failure)
        }
    }
}

impl<E: Endpoint> Middleware<E> for StrictJson {
    type Output = StrictJsonEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        StrictJsonEndpoint {
            next,
            strict: self.clone(),
        }
    }
}

/// The endpoint produced by [`StrictJson`].
#[derive(Debug)]
pub struct StrictJsonEndpoint<E> {
    next: E,
    strict: StrictJson,
}

impl<E: Endpoint> Endpoint for StrictJsonEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(is_json_media_type);
        let Some(operation) = is_json
            .then(|| self.strict.operation(req.method(), req.uri().path()))
            .flatten()
        else {
            // Not a JSON body for a documented operation: the typed payload decides (415, 404).
            return self.next.call(req).await;
        };
        // Already bounded in size and time by `BodyLimit`, which sits outside.
        let bytes = req.take_body().into_bytes().await?;
        // An optional body may be absent; anything sent is checked.
        if !bytes.is_empty() || operation.body_required {
            self.strict.check(operation, &bytes)?;
        }
        req.set_body(Body::from_bytes(bytes));
        self.next.call(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::{EndpointExt, handler, test::TestClient};
    use serde_json::json;

    fn parse(body: &str) -> Result<StrictParse, ValidationFailure> {
        parse_strict(body.as_bytes(), 4)
    }

    #[test]
    fn a_well_formed_body_parses_like_serde_json() {
        let body = r#"{"a": [1, -2, 3.5, "x", null, true], "b": {"c": {}}}"#;
        let parsed = parse(body).expect("valid");
        assert_eq!(
            parsed.value,
            serde_json::from_str::<Value>(body).expect("valid")
        );
        assert!(parsed.duplicate_keys.is_empty());
    }

    #[test]
    fn a_repeated_key_is_reported_under_its_path_at_any_depth() {
        let parsed =
            parse(r#"{"a": 1, "a": 2, "b": {"items": [{"n": 1, "n": 2}]}}"#).expect("parses");
        assert_eq!(parsed.duplicate_keys, vec!["a", "b.items[0].n"]);
        assert_eq!(parsed.value["a"], 1, "the first occurrence is kept");
    }

    #[test]
    fn a_nul_character_is_reported_under_its_path_in_values_and_keys() {
        let parsed =
            parse(r#"{"a": "x\u0000y", "b": [{"n\u0000": 1}], "c": "fine\n"}"#).expect("parses");
        assert_eq!(parsed.nul_strings, vec!["a", "b[0].n\u{0}"]);
        assert!(parse(r#""\u0000""#).expect("parses").nul_strings == vec![String::new()]);
    }

    #[test]
    fn nesting_up_to_the_limit_is_accepted_and_beyond_it_refused() {
        parse("[[[[1]]]]").expect("4 levels");
        parse(r#"{"a":{"b":{"c":{}}}}"#).expect("4 levels");
        let failure = parse("[[[[[1]]]]]").expect_err("5 levels");
        assert_eq!(failure.form_errors.len(), 1, "{failure:?}");
        assert!(failure.form_errors[0].contains("at most 4 levels"));
        assert!(failure.field_errors.is_empty());
    }

    #[test]
    fn nesting_past_serde_jsons_own_limit_is_a_depth_error_too() {
        let body = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let failure = parse_strict(body.as_bytes(), 1000).expect_err("too deep");
        assert!(
            failure.form_errors[0].contains("nested too deeply"),
            "{failure:?}"
        );
    }

    #[test]
    fn invalid_json_is_a_form_error_with_its_position_and_no_content() {
        for (body, why) in [
            (r#"{"password": "hunter2" "#, "ends early"),
            (r#"{"password": hunter2}"#, "a bare word"),
            (r#"{"password": "hunter2"} hunter2"#, "trailing characters"),
            ("", "empty"),
        ] {
            let failure = parse(body).expect_err(why);
            assert_eq!(failure.form_errors.len(), 1, "{why}");
            assert!(failure.field_errors.is_empty(), "{why}");
            let message = &failure.form_errors[0];
            assert!(!message.contains("hunter2"), "{why}: {message}");
            assert!(
                body.is_empty() || message.contains("line 1, column"),
                "{why}: {message}"
            );
        }
    }

    fn users_document() -> Value {
        json!({
            "openapi": "3.0.0",
            "paths": {
                "/users": {"post": {"requestBody": {"required": true, "content": {
                    "application/json; charset=utf-8": {
                        "schema": {"$ref": "#/components/schemas/NewUser"}
                    }
                }}}},
                "/users/{id}/tags": {"put": {"requestBody": {"content": {
                    "application/json": {"schema": {"type": "array", "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string", "maxLength": 3}},
                        "required": ["name"]
                    }}}
                }}}}
            },
            "components": {"schemas": {
                "NewUser": {
                    "type": "object",
                    "required": ["email", "role"],
                    "properties": {
                        "email": {"type": "string", "maxLength": 10, "pattern": "^[a-z@.]+$"},
                        "age": {"type": "integer", "format": "int32", "maximum": 150},
                        "nickname": {"type": "string", "nullable": true},
                        "role": {"$ref": "#/components/schemas/Role"},
                        "address": {"$ref": "#/components/schemas/Address"}
                    }
                },
                "Role": {"type": "string", "enum": ["user", "admin"]},
                "Address": {
                    "type": "object",
                    "properties": {"city": {"type": "string", "minLength": 1}}
                }
            }}
        })
    }

    fn strict() -> StrictJson {
        let mut document = users_document();
        close_request_body_objects(&mut document);
        StrictJson::from_openapi(&document, 8).expect("compiles")
    }

    fn check(path: &str, method: Method, body: &str) -> ValidationFailure {
        let strict = strict();
        let operation = strict.operation(&method, path).expect("an operation");
        strict
            .check(operation, body.as_bytes())
            .err()
            .unwrap_or_default()
    }

    #[test]
    fn request_objects_are_closed_through_references_and_nesting() {
        let mut document = users_document();
        close_request_body_objects(&mut document);
        for pointer in [
            "/components/schemas/NewUser",
            "/components/schemas/Address",
            "/paths/~1users~1{id}~1tags/put/requestBody/content/application~1json/schema/items",
        ] {
            assert_eq!(
                document.pointer(pointer).expect(pointer)["additionalProperties"],
                false,
                "{pointer}"
            );
        }
        assert!(
            document["components"]["schemas"]["Role"]
                .get("additionalProperties")
                .is_none(),
            "not an object"
        );
    }

    #[test]
    fn a_valid_body_passes() {
        let failure = check(
            "/users",
            Method::POST,
            r#"{"email": "a@b.co", "role": "user", "nickname": null, "address": {"city": "X"}}"#,
        );
        assert!(failure.is_empty(), "{failure:?}");
    }

    #[test]
    fn every_violation_is_reported_at_once_under_its_path() {
        let failure = check(
            "/users",
            Method::POST,
            r#"{"email": 12, "age": 200, "role": "root", "extra": 1, "address": {"city": ""}}"#,
        );
        let expected: BTreeMap<String, Vec<String>> = [
            ("email", "must be a string"),
            ("age", "must be at most 150"),
            ("role", "must be one of: user, admin"),
            ("extra", "is not allowed"),
            ("address.city", "must not be empty"),
        ]
        .into_iter()
        .map(|(field, message)| (field.to_owned(), vec![message.to_owned()]))
        .collect();
        assert_eq!(failure.field_errors, expected);
        assert!(failure.form_errors.is_empty());
    }

    #[test]
    fn array_items_are_named_by_index() {
        let failure = check(
            "/users/7/tags",
            Method::PUT,
            r#"[{"name": "ok"}, {"name": "toolong"}, {}]"#,
        );
        assert_eq!(
            failure.field_errors["[1].name"],
            vec!["must be at most 3 characters"]
        );
        assert_eq!(failure.field_errors["[2].name"], vec!["is required"]);
    }

    #[test]
    fn messages_never_contain_the_rejected_value() {
        let secret = "Sup3rS3cret!";
        let failure = check(
            "/users",
            Method::POST,
            &format!(
                r#"{{"email": "{secret}", "role": "{secret}", "age": "{secret}", "{secret}": 1}}"#
            ),
        );
        let mut text: Vec<String> = failure.form_errors.clone();
        for (field, messages) in &failure.field_errors {
            text.extend(messages.iter().cloned());
            if field != secret {
                text.push(field.clone());
            }
        }
        assert!(!failure.is_empty());
        assert!(
            text.iter().all(|message| !message.contains(secret)),
            "{failure:?}"
        );
    }

    #[test]
    fn a_repeated_key_replaces_other_errors_for_that_field() {
        let failure = check(
            "/users",
            Method::POST,
            r#"{"email": 1, "email": "a@b.co", "role": "user"}"#,
        );
        assert_eq!(
            failure.field_errors["email"],
            vec!["appears more than once"]
        );
        assert_eq!(failure.field_errors.len(), 1);
    }

    #[test]
    fn the_wrong_top_level_type_is_a_form_error() {
        let failure = check("/users", Method::POST, "[]");
        assert_eq!(failure.form_errors, vec!["The body must be an object"]);
    }

    #[test]
    fn openapi_nullable_admits_null() {
        let mut schema = json!({"type": "string", "enum": ["a"], "nullable": true});
        translate_openapi_schema(&mut schema);
        assert_eq!(
            schema,
            json!({"type": ["string", "null"], "enum": ["a", null]})
        );
    }

    #[test]
    fn properties_named_like_keywords_are_not_translated() {
        let mut schema = json!({
            "type": "object",
            "properties": {"nullable": {"type": "boolean"}, "type": {"type": "string"}}
        });
        let before = schema.clone();
        translate_openapi_schema(&mut schema);
        assert_eq!(schema, before);
    }

    #[test]
    fn the_most_specific_template_matches() {
        let strict = strict();
        assert!(strict.operation(&Method::POST, "/users").is_some());
        assert!(strict.operation(&Method::GET, "/users").is_none());
        assert!(strict.operation(&Method::PUT, "/users/1/tags").is_some());
        assert!(strict.operation(&Method::PUT, "/users/1/other").is_none());
    }

    #[handler]
    async fn echo(body: Body) -> String {
        String::from_utf8(body.into_vec().await.unwrap_or_default()).unwrap_or_default()
    }

    #[tokio::test]
    async fn the_middleware_refuses_with_400_and_hands_valid_bodies_on_intact() {
        let client = TestClient::new(echo.with(strict()));
        let body = r#"{"email":"a@b.co","role":"user"}"#;
        let response = client
            .post("/users")
            .content_type("application/json")
            .body(body)
            .send()
            .await;
        response.assert_status_is_ok();
        response.assert_text(body).await;

        let response = client
            .post("/users")
            .content_type("application/json")
            .body(r#"{"email":"a@b.co","role":"user","role":"admin"}"#)
            .send()
            .await;
        response.assert_status(StatusCode::BAD_REQUEST);

        let response = client
            .post("/users")
            .content_type("text/plain")
            .body("not json")
            .send()
            .await;
        response.assert_status_is_ok();
        response.assert_text("not json").await;
    }
}
