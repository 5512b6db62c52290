//! The adapter to poem-openapi's error messages: the one place that knows their wording.
//!
//! When poem-openapi refuses a parameter (a path segment, a query value, a header) it says why in
//! text written for a log: `verification failed. maximum(100, exclusive: false)`,
//! `Type "string" expects an input value.`, `failed to parse "uuid": ...`. That text can quote the
//! rejected value (`found ...`), which may be a password, so it never reaches the client: only
//! the rule the schema declares or the expected type's name is read out of it, and worded anew
//! (`must be at most 100`, `is required`, `expected uuid`), with a fixed `invalid value` for
//! anything else. poem-openapi also names a refused path parameter by its position
//! ([`path_parameter_index`]).
//!
//! The tests parse bad requests through poem-openapi itself (the version in `Cargo.lock`) and
//! feed this module the messages it really produces: an upgrade that changes the wording fails
//! them, instead of quietly turning every message into `invalid value`.

use poem_openapi::error::{ParseParamError, ParsePathError};

/// A parameter poem-openapi refused, and what the client is told about it.
#[derive(Debug)]
pub(super) struct RefusedParameter {
    /// The parameter's name: the documented one, except for a path parameter, named by its
    /// position (`param0`).
    pub(super) name: &'static str,
    /// The message for the client, free of the rejected value.
    pub(super) message: String,
}

/// The parameter poem-openapi refused in `error`, if that is what `error` is.
pub(super) fn refused_parameter(error: &poem::Error) -> Option<RefusedParameter> {
    let (name, reason) = error
        .downcast_ref::<ParseParamError>()
        .map(|e| (e.name, e.reason.as_str()))
        .or_else(|| {
            error
                .downcast_ref::<ParsePathError>()
                .map(|e| (e.name, e.reason.as_str()))
        })?;
    Some(RefusedParameter {
        name,
        message: client_message(reason),
    })
}

/// The position among a path's parameters of poem-openapi's internal name `paramN`.
pub(super) fn path_parameter_index(internal: &str) -> Option<usize> {
    internal.strip_prefix("param")?.parse().ok()
}

/// The client's message for poem-openapi's `reason`.
fn client_message(reason: &str) -> String {
    verification_message(reason)
        .or_else(|| missing_message(reason))
        .unwrap_or_else(|| expected_type_message(reason))
}

/// `verification failed. maximum(100, exclusive: false)` becomes `must be at most 100`. The rule
/// poem-openapi names is the declared schema, never the rejected value.
fn verification_message(reason: &str) -> Option<String> {
    let rule = reason.strip_prefix("verification failed. ")?;
    let (name, arguments) = rule.strip_suffix(')')?.split_once('(')?;
    let number = |text: &str| text.parse::<f64>().is_ok().then(|| text.to_owned());
    Some(match name {
        "maximum" | "minimum" => {
            let (limit, exclusive) = arguments.split_once(", exclusive: ")?;
            let limit = number(limit)?;
            match (name, exclusive) {
                ("maximum", "true") => format!("must be less than {limit}"),
                ("maximum", _) => format!("must be at most {limit}"),
                ("minimum", "true") => format!("must be greater than {limit}"),
                _ => format!("must be at least {limit}"),
            }
        }
        "maxLength" => format!("must be at most {} characters", number(arguments)?),
        "minLength" => format!("must be at least {} characters", number(arguments)?),
        "maxItems" => format!("must have at most {} items", number(arguments)?),
        "minItems" => format!("must have at least {} items", number(arguments)?),
        "multipleOf" => format!("must be a multiple of {}", number(arguments)?),
        "pattern" => format!(
            "must match the pattern {}",
            arguments.strip_prefix('"')?.strip_suffix('"')?
        ),
        "uniqueItems" => "must not contain duplicate items".to_owned(),
        _ => return None,
    })
}

/// `Type "string" expects an input value.`, poem-openapi's text for a required parameter that
/// was not sent (a header such as `X-Trace-Tag`), becomes `is required`.
fn missing_message(reason: &str) -> Option<String> {
    reason
        .ends_with("expects an input value.")
        .then(|| "is required".to_owned())
}

/// `failed to parse "uuid": ...` becomes `expected uuid`; anything else a fixed text.
fn expected_type_message(reason: &str) -> String {
    reason
        .strip_prefix("failed to parse \"")
        .and_then(|rest| rest.split_once('"'))
        .map(|(type_name, _)| type_name)
        .filter(|type_name| {
            type_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "()_-<>, ".contains(c))
        })
        .map_or_else(
            || "invalid value".to_owned(),
            |type_name| format!("expected {type_name}"),
        )
}

#[cfg(test)]
mod tests {
    use poem::{Endpoint, Request, Route};
    use poem_openapi::param::{Header, Path, Query};
    use poem_openapi::payload::PlainText;
    use poem_openapi::{OpenApi, OpenApiService};

    use super::*;

    /// Operations whose parameters declare every rule the adapter words.
    struct Probe;

    #[OpenApi]
    impl Probe {
        /// Each query parameter optional, so that a request breaks one rule at a time.
        #[allow(clippy::too_many_arguments)]
        #[oai(path = "/probe", method = "get")]
        async fn probe(
            &self,
            #[oai(validator(maximum(value = "100")))] at_most: Query<Option<u32>>,
            #[oai(validator(maximum(value = "100", exclusive)))] below: Query<Option<u32>>,
            #[oai(validator(minimum(value = "1")))] at_least: Query<Option<u32>>,
            #[oai(validator(minimum(value = "1", exclusive)))] above: Query<Option<u32>>,
            #[oai(validator(multiple_of = "5"))] fives: Query<Option<u32>>,
            #[oai(validator(max_length = 8))] short: Query<Option<String>>,
            #[oai(validator(min_length = 3))] long: Query<Option<String>>,
            #[oai(validator(pattern = "^[a-z]+$"))] lower: Query<Option<String>>,
            #[oai(validator(max_items = 2))] few: Query<Option<Vec<u32>>>,
            #[oai(validator(min_items = 2))] several: Query<Option<Vec<u32>>>,
            #[oai(validator(unique_items))] distinct: Query<Option<Vec<u32>>>,
            count: Query<Option<u32>>,
        ) -> PlainText<&'static str> {
            // Only the parsing matters.
            let _ = (
                at_most, below, at_least, above, fives, short, long, lower, few, several, distinct,
                count,
            );
            PlainText("accepted")
        }

        #[oai(path = "/header", method = "get")]
        async fn header(
            &self,
            #[oai(name = "X-Trace-Tag")] trace_tag: Header<String>,
        ) -> PlainText<String> {
            PlainText(trace_tag.0)
        }

        #[oai(path = "/items/:id", method = "get")]
        async fn item(&self, id: Path<uuid::Uuid>) -> PlainText<String> {
            PlainText(id.0.to_string())
        }
    }

    /// What the adapter reads from poem-openapi's refusal of a request to `uri`.
    async fn refusal(uri: &str) -> RefusedParameter {
        let endpoint = Route::new().nest("/", OpenApiService::new(Probe, "probe", "1"));
        let request = Request::builder().uri(uri.parse().expect("a URI")).finish();
        let error = endpoint
            .call(request)
            .await
            .expect_err("poem-openapi refuses the request");
        refused_parameter(&error).unwrap_or_else(|| panic!("{uri}: no refused parameter: {error}"))
    }

    /// Every rule's refusal, worded by the adapter as the client reads it.
    async fn assert_refusals(cases: &[(&str, &str, &str)]) {
        for (uri, name, message) in cases {
            let refused = refusal(uri).await;
            assert_eq!(
                (refused.name, refused.message.as_str()),
                (*name, *message),
                "{uri}"
            );
        }
    }

    #[tokio::test]
    async fn a_parameter_outside_its_declared_range_is_told_the_range() {
        assert_refusals(&[
            ("/probe?at_most=101", "at_most", "must be at most 100"),
            ("/probe?below=100", "below", "must be less than 100"),
            ("/probe?at_least=0", "at_least", "must be at least 1"),
            ("/probe?above=1", "above", "must be greater than 1"),
            ("/probe?fives=7", "fives", "must be a multiple of 5"),
        ])
        .await;
    }

    #[tokio::test]
    async fn a_parameter_breaking_its_declared_form_is_told_the_rule() {
        assert_refusals(&[
            (
                "/probe?short=123456789",
                "short",
                "must be at most 8 characters",
            ),
            ("/probe?long=ab", "long", "must be at least 3 characters"),
            (
                "/probe?lower=ABC",
                "lower",
                "must match the pattern ^[a-z]+$",
            ),
            (
                "/probe?few=1&few=2&few=3",
                "few",
                "must have at most 2 items",
            ),
            ("/probe?several=1", "several", "must have at least 2 items"),
            (
                "/probe?distinct=1&distinct=1",
                "distinct",
                "must not contain duplicate items",
            ),
        ])
        .await;
    }

    #[tokio::test]
    async fn a_missing_header_is_required() {
        assert_refusals(&[("/header", "X-Trace-Tag", "is required")]).await;
    }

    #[tokio::test]
    async fn the_expected_type_is_named_without_the_rejected_value() {
        assert_refusals(&[("/probe?count=hunter2", "count", "expected integer(uint32)")]).await;
        let refused = refusal("/items/hunter2").await;
        assert_eq!(refused.message, "expected string_uuid");
        // Wording the adapter does not know: a fixed text, whatever it quotes.
        assert_eq!(client_message("anything else: hunter2"), "invalid value");
        assert_eq!(
            client_message(r#"failed to parse "hunter2; DROP": x"#),
            "invalid value",
            "a type name is only ever letters, digits and brackets"
        );
    }

    #[tokio::test]
    async fn a_path_parameter_is_named_by_its_position() {
        let refused = refusal("/items/not-a-uuid").await;
        assert_eq!(
            path_parameter_index(refused.name),
            Some(0),
            "{}",
            refused.name
        );
        assert_eq!(path_parameter_index("limit"), None);
    }
}
