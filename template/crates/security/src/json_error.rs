//! The uniform JSON error body, for responses the controls in this crate answer themselves
//! (`{"error": "...", "request_id": "..."}`; the service's OpenAPI document describes the same
//! shape as `ErrorBody`).

use poem::http::StatusCode;
use poem::http::header::{CONTENT_TYPE, HeaderValue};
use poem::{Request, Response};

use crate::logging::request_id::RequestId;

/// A JSON error response with a fixed, client-safe message and the request id.
pub fn json_error(status: StatusCode, message: &str, request: &Request) -> Response {
    let mut body = serde_json::json!({ "error": message });
    if let Some(id) = request.extensions().get::<RequestId>() {
        body["request_id"] = serde_json::Value::from(id.as_str());
    }
    Response::builder()
        .status(status)
        .header(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )
        .body(body.to_string())
}
