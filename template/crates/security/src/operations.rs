//! The operations of the published OpenAPI document, and which one a request is for.
//!
//! Controls that take their rules from the document ([`crate::input::strict_json`] for request
//! bodies, [`crate::auth::access_control`] for scopes) match requests here, so both read the
//! same operation for the same request. Matching is on the raw request path, as poem's router
//! matches it, and errs on the side of matching: empty segments are ignored, so `/v1//users/`
//! is checked as `/v1/users` (poem then answers it 404).

use std::fmt;

use poem::http::Method;
use serde_json::Value;

/// The methods an OpenAPI path item can hold, lowercase as in the document.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every `(path template, method, operation)` of the document (methods lowercase).
pub fn operations(document: &Value) -> impl Iterator<Item = (&str, &str, &Value)> {
    document["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.iter())
        .flat_map(|(template, item)| {
            METHODS.iter().filter_map(move |method| {
                item.get(*method)
                    .map(|operation| (template.as_str(), *method, operation))
            })
        })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Parameter,
}

fn template_segments(template: &str) -> Vec<Segment> {
    template
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                Segment::Parameter
            } else {
                Segment::Literal(segment.to_owned())
            }
        })
        .collect()
}

/// One operation's entry: its method, template and what a control keeps for it.
#[derive(Debug)]
struct Entry<T> {
    method: Method,
    template: String,
    segments: Vec<Segment>,
    value: T,
}

/// An operation a request matched.
#[derive(Debug)]
pub struct Matched<'a, T> {
    /// `GET /v1/users/{id}`, as the document names it.
    pub name: String,
    pub method: &'a Method,
    /// `/v1/users/{id}`.
    pub template: &'a str,
    pub value: &'a T,
}

/// A value per operation, found by method and request path.
pub struct OperationTable<T> {
    entries: Vec<Entry<T>>,
}

impl<T> Default for OperationTable<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T> fmt::Debug for OperationTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|entry| operation_name(&entry.method, &entry.template)),
            )
            .finish()
    }
}

/// `GET /v1/users/{id}`.
pub fn operation_name(method: &Method, template: &str) -> String {
    format!("{method} {template}")
}

/// A method of the document that is not an HTTP method.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an HTTP method")]
pub struct UnknownMethod(pub String);

impl<T> OperationTable<T> {
    /// Adds `value` for `method` (as in the document, any case) on `template`.
    pub fn insert(&mut self, method: &str, template: &str, value: T) -> Result<(), UnknownMethod> {
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| UnknownMethod(method.to_owned()))?;
        self.entries.push(Entry {
            method,
            template: template.to_owned(),
            segments: template_segments(template),
            value,
        });
        Ok(())
    }

    /// The operation a request is for: the most specific matching template wins
    /// (`/users/me` over `/users/{id}`).
    pub fn find(&self, method: &Method, path: &str) -> Option<Matched<'_, T>> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.entries
            .iter()
            .filter(|entry| {
                entry.method == method
                    && entry.segments.len() == segments.len()
                    && entry
                        .segments
                        .iter()
                        .zip(&segments)
                        .all(|(part, segment)| match part {
                            Segment::Literal(literal) => literal == segment,
                            Segment::Parameter => true,
                        })
            })
            .max_by_key(|entry| {
                entry
                    .segments
                    .iter()
                    .filter(|part| matches!(part, Segment::Literal(_)))
                    .count()
            })
            .map(|entry| Matched {
                name: operation_name(&entry.method, &entry.template),
                method: &entry.method,
                template: &entry.template,
                value: &entry.value,
            })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (String, &T)> {
        self.entries
            .iter()
            .map(|entry| (operation_name(&entry.method, &entry.template), &entry.value))
    }
}

/// The document's template for poem's route pattern: `/v1/users/:id` becomes `/v1/users/{id}`.
pub fn template_of_route_pattern(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| match segment.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every `(METHOD, template)` of `document`, then of `routes` served beside it, each written
/// as `POST /oauth/token`.
pub fn operations_and_routes<'a>(
    document: &'a Value,
    routes: &'a [&'a str],
) -> impl Iterator<Item = (String, String)> + 'a {
    let documented = operations(document)
        .map(|(template, method, _)| (method.to_ascii_uppercase(), template.to_owned()));
    let plain = routes.iter().filter_map(|route| {
        let (method, template) = route.split_once(' ')?;
        Some((method.to_owned(), template.to_owned()))
    });
    documented.chain(plain)
}

/// Middleware setting [`crate::logging::audit::RouteTemplate`] on each request of a known
/// operation (the document's, and the plain routes served beside it), so audit events and
/// metrics name `/v1/notes/{id}`, never a raw path with its identifiers.
#[derive(Debug, Clone)]
pub struct RouteTemplates {
    table: std::sync::Arc<OperationTable<std::sync::Arc<str>>>,
}

impl RouteTemplates {
    /// Every operation of `document`, and `routes` such as `POST /oauth/token`.
    pub fn new(document: &Value, routes: &[&str]) -> Self {
        let mut table = OperationTable::default();
        for (method, template) in operations_and_routes(document, routes) {
            let _ = table.insert(&method, &template, std::sync::Arc::from(template.as_str()));
        }
        Self {
            table: std::sync::Arc::new(table),
        }
    }

    /// The template of the operation `method` and `path` name.
    pub fn template(&self, method: &Method, path: &str) -> Option<std::sync::Arc<str>> {
        let found = self.table.find(method, path).or_else(|| {
            (method == Method::HEAD)
                .then(|| self.table.find(&Method::GET, path))
                .flatten()
        })?;
        Some(std::sync::Arc::clone(found.value))
    }
}

impl<E: poem::Endpoint> poem::Middleware<E> for RouteTemplates {
    type Output = RouteTemplatesEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        RouteTemplatesEndpoint {
            next,
            templates: self.clone(),
        }
    }
}

/// The endpoint produced by [`RouteTemplates`].
#[derive(Debug)]
pub struct RouteTemplatesEndpoint<E> {
    next: E,
    templates: RouteTemplates,
}

impl<E: poem::Endpoint> poem::Endpoint for RouteTemplatesEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut request: poem::Request) -> poem::Result<Self::Output> {
        if let Some(template) = self
            .templates
            .template(request.method(), request.uri().path())
        {
            request
                .extensions_mut()
                .insert(crate::logging::audit::RouteTemplate(template));
        }
        self.next.call(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> OperationTable<u8> {
        let mut table = OperationTable::default();
        table.insert("get", "/users/{id}", 1).expect("method");
        table.insert("get", "/users/me", 2).expect("method");
        table.insert("post", "/users", 3).expect("method");
        table
    }

    #[test]
    fn the_most_specific_template_wins() {
        let table = table();
        let me = table.find(&Method::GET, "/users/me").expect("matches");
        assert_eq!((me.name.as_str(), *me.value), ("GET /users/me", 2));
        let other = table.find(&Method::GET, "/users/42").expect("matches");
        assert_eq!((other.name.as_str(), *other.value), ("GET /users/{id}", 1));
    }

    #[test]
    fn the_method_and_segment_count_must_match() {
        let table = table();
        assert!(table.find(&Method::POST, "/users/42").is_none());
        assert!(table.find(&Method::GET, "/users").is_none());
        assert!(table.find(&Method::GET, "/users/1/2").is_none());
    }

    #[test]
    fn empty_segments_do_not_escape_a_match() {
        let table = table();
        assert_eq!(
            table.find(&Method::POST, "//users/").map(|m| *m.value),
            Some(3)
        );
    }

    #[test]
    fn a_route_pattern_maps_to_the_document_template() {
        assert_eq!(template_of_route_pattern("/v1/users/:id"), "/v1/users/{id}");
        assert_eq!(template_of_route_pattern("/health/live"), "/health/live");
    }
}
