//! Request body size and read-time limits (INPUT-4).
//!
//! Threat: without a limit, one client can make the service buffer gigabytes (poem has no
//! default body limit), or hold a connection and a worker for ever by sending its body one byte
//! at a time.
//!
//! Control: a body larger than the limit is refused with 413: at once when `Content-Length`
//! announces it, and as soon as the limit is crossed when the body is chunked. A body that has
//! not fully arrived within the read timeout is refused with 408. The body is read here, once,
//! and handed on as bytes, so handlers never see more than the limit.
//!
//! Default: 64 KiB and 10 seconds for every route; a route that needs more (an upload) gets an
//! explicit, visible override with [`BodyLimit::with_route_limit`].

use std::time::Duration;

use poem::http::StatusCode;
use poem::http::header::CONTENT_LENGTH;
use poem::{Body, Endpoint, Middleware, Request, Result};

/// The default largest accepted body: 64 KiB, ample for JSON API requests.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// The default time a client has to deliver its whole body.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Middleware enforcing the body limits.
#[derive(Debug, Clone)]
pub struct BodyLimit {
    default_max_bytes: usize,
    read_timeout: Duration,
    /// `(path prefix, max bytes)`, longest prefix first.
    route_limits: Vec<(String, usize)>,
}

impl Default for BodyLimit {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BODY_BYTES, DEFAULT_BODY_READ_TIMEOUT)
    }
}

impl BodyLimit {
    pub fn new(default_max_bytes: usize, read_timeout: Duration) -> Self {
        Self {
            default_max_bytes,
            read_timeout,
            route_limits: Vec::new(),
        }
    }

    /// A different limit for the routes under `path_prefix` (`/v1/uploads` covers
    /// `/v1/uploads/...`).
    #[must_use]
    pub fn with_route_limit(mut self, path_prefix: impl Into<String>, max_bytes: usize) -> Self {
        self.route_limits.push((path_prefix.into(), max_bytes));
        self.route_limits
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        self
    }

    fn limit_for(&self, path: &str) -> usize {
        self.route_limits
            .iter()
            .find(|(prefix, _)| {
                path.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .map_or(self.default_max_bytes, |(_, limit)| *limit)
    }
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        BodyLimitEndpoint {
            next,
            limits: self.clone(),
        }
    }
}

/// The endpoint produced by [`BodyLimit`].
#[derive(Debug)]
pub struct BodyLimitEndpoint<E> {
    next: E,
    limits: BodyLimit,
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> Result<Self::Output> {
        let limit = self.limits.limit_for(req.uri().path());
        let announced = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if announced.is_some_and(|length| length > limit as u64) {
            // Refused before a byte of the body is read.
            return Err(poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE));
        }
        let body = req.take_body();
        let bytes = match tokio::time::timeout(
            self.limits.read_timeout,
            body.into_bytes_limit(limit),
        )
        .await
        {
            Err(_) => return Err(poem::Error::from_status(StatusCode::REQUEST_TIMEOUT)),
            Ok(Err(poem::error::ReadBodyError::PayloadTooLarge)) => {
                return Err(poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE));
            }
            Ok(Err(_)) => return Err(poem::Error::from_status(StatusCode::BAD_REQUEST)),
            Ok(Ok(bytes)) => bytes,
        };
        req.set_body(Body::from_bytes(bytes));
        self.next.call(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_util::{StreamExt, stream};
    use poem::{EndpointExt, handler, test::TestClient};

    #[handler]
    async fn length(body: Body) -> String {
        body.into_bytes()
            .await
            .map(|b| b.len())
            .unwrap_or(0)
            .to_string()
    }

    fn client() -> TestClient<impl Endpoint> {
        TestClient::new(
            length.with(BodyLimit::new(16, Duration::from_secs(5)).with_route_limit("/big", 64)),
        )
    }

    #[tokio::test]
    async fn a_body_within_the_limit_reaches_the_handler_intact() {
        let response = client().post("/").body("0123456789abcdef").send().await;
        response.assert_status_is_ok();
        response.assert_text("16").await;
    }

    #[tokio::test]
    async fn an_announced_oversized_body_is_refused_with_413() {
        let response = client().post("/").body("0123456789abcdefX").send().await;
        response.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_chunked_oversized_body_is_refused_with_413() {
        let chunks = stream::iter([
            Ok::<_, std::io::Error>(Bytes::from_static(b"0123456789")),
            Ok(Bytes::from_static(b"0123456789")),
        ]);
        let response = client()
            .post("/")
            .body(Body::from_bytes_stream(chunks))
            .send()
            .await;
        response.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_route_override_raises_the_limit_for_its_prefix_only() {
        let body = "x".repeat(40);
        client()
            .post("/big/upload")
            .body(body.clone())
            .send()
            .await
            .assert_status_is_ok();
        client()
            .post("/bigger")
            .body(body)
            .send()
            .await
            .assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_body_that_never_finishes_is_refused_with_408() {
        let client = TestClient::new(length.with(BodyLimit::new(1024, Duration::from_millis(50))));
        // One byte, then silence: a client trickling its body.
        let stalled = stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"{")) })
            .chain(stream::pending());
        let response = client
            .post("/")
            .body(Body::from_bytes_stream(stalled))
            .send()
            .await;
        response.assert_status(StatusCode::REQUEST_TIMEOUT);
    }
}
