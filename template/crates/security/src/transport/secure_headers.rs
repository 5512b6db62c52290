//! Security headers on every response, success or error (TLS-5, and HSTS for TLS-1).
//!
//! Threat: a browser that talks to the API can be talked into sniffing a JSON error as HTML,
//! framing a page, caching a response that held personal data, leaking URLs through the
//! Referer header, or downgrading to plaintext on its next visit. Banners such as `Server` tell
//! an attacker which exploits to try.
//!
//! Control: every response gets
//! - `Strict-Transport-Security: max-age=...; includeSubDomains[; preload]` (at least a year);
//! - `X-Content-Type-Options: nosniff`;
//! - `Cache-Control: no-store, max-age=0` and `Pragma: no-cache` (old HTTP/1.0 caches);
//! - `X-Frame-Options: DENY` and `X-XSS-Protection: 0` for browsers that predate CSP's
//!   `frame-ancestors` or still run the XSS auditor;
//! - `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'` (API responses) or the
//!   documentation page's own policy under its path prefix, which allows its inline script and
//!   style by SHA-256 hash only, never `'unsafe-inline'` ([`hashed_page_policy`]);
//! - `Referrer-Policy: no-referrer`, `Cross-Origin-Opener-Policy: same-origin`,
//!   `Cross-Origin-Resource-Policy: same-origin`;
//!
//! and loses any `Server` or `X-Powered-By` header. [`RefuseUnusedMethods`] answers TRACE, TRACK
//! and CONNECT with 405 before routing (TRACE reflects requests, including cookies, back to the
//! caller). [`AllowedMethods`] names the path's methods in `Allow` on every 405 (RFC 9110).
//!
//! Default: on, HSTS one year without `preload` (preload is hard to undo; opt in knowingly).
//! There is no switch to turn the headers off; weakening one means editing this module.

use std::sync::Arc;
use std::time::Duration;

use poem::http::header::{self, HeaderName, HeaderValue};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use crate::operations::OperationTable;

/// One year, the minimum HSTS lifetime the checklist accepts.
pub const ONE_YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The policy of API (JSON) responses: nothing may load, nothing may frame them.
pub const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Configuration of [`SecureHeaders`].
#[derive(Debug, Clone)]
pub struct SecureHeadersConfig {
    /// HSTS `max-age`; at least [`ONE_YEAR`] in production.
    pub hsts_max_age: Duration,
    /// Adds `preload` to HSTS (only once the domain is ready for the preload list).
    pub hsts_preload: bool,
    /// A path prefix (such as `/docs`) served with its own policy, for an HTML page.
    pub page: Option<PagePolicy>,
}

/// A Content-Security-Policy for the responses under one path prefix.
#[derive(Debug, Clone)]
pub struct PagePolicy {
    pub path_prefix: String,
    pub content_security_policy: String,
}

/// A Content-Security-Policy for one HTML page with inline `<script>` and `<style>` elements:
/// each is allowed by the SHA-256 hash of its exact content, and nothing else inline is (no
/// `'unsafe-inline'`), so a script injected into the page does not run. The page may fetch
/// from its own origin only and may not be framed.
pub fn hashed_page_policy(html: &str) -> String {
    let scripts = inline_element_hashes(html, "script");
    let styles = inline_element_hashes(html, "style");
    format!(
        "default-src 'none'; script-src {scripts}; style-src {styles}; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
}

/// `'sha256-...'` of the content of every `<tag ...>...</tag>` in `html`.
fn inline_element_hashes(html: &str, tag: &str) -> String {
    use base64::Engine;
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut hashes = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after_open = &rest[start + open.len()..];
        let Some(content_start) = after_open.find('>') else {
            break;
        };
        let content = &after_open[content_start + 1..];
        let Some(end) = content.find(&close) else {
            break;
        };
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &content.as_bytes()[..end]);
        let encoded = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        hashes.push(format!("'sha256-{encoded}'"));
        rest = &content[end + close.len()..];
    }
    if hashes.is_empty() {
        "'none'".to_owned()
    } else {
        hashes.join(" ")
    }
}

/// Middleware adding the security headers.
#[derive(Debug, Clone)]
pub struct SecureHeaders {
    hsts: HeaderValue,
    page: Option<(String, HeaderValue)>,
}

impl SecureHeaders {
    /// Builds the header values once; fails if a configured policy is not a valid header value.
    pub fn new(config: &SecureHeadersConfig) -> Result<Self, header::InvalidHeaderValue> {
        let mut hsts = format!(
            "max-age={}; includeSubDomains",
            config.hsts_max_age.as_secs()
        );
        if config.hsts_preload {
            hsts.push_str("; preload");
        }
        let page = config
            .page
            .as_ref()
            .map(|page| {
                HeaderValue::from_str(&page.content_security_policy)
                    .map(|csp| (page.path_prefix.clone(), csp))
            })
            .transpose()?;
        Ok(Self {
            hsts: HeaderValue::from_str(&hsts)?,
            page,
        })
    }
}

impl<E: Endpoint> Middleware<E> for SecureHeaders {
    type Output = SecureHeadersEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        SecureHeadersEndpoint {
            next,
            headers: self.clone(),
        }
    }
}

/// The endpoint produced by [`SecureHeaders`].
#[derive(Debug)]
pub struct SecureHeadersEndpoint<E> {
    next: E,
    headers: SecureHeaders,
}

const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");
const X_XSS_PROTECTION: HeaderName = HeaderName::from_static("x-xss-protection");
/// Responses are never stored by browsers or shared caches.
pub const CACHE_CONTROL_VALUE: &str = "no-store, max-age=0";
const CROSS_ORIGIN_OPENER_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-opener-policy");
const CROSS_ORIGIN_RESOURCE_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-resource-policy");

impl<E: Endpoint> Endpoint for SecureHeadersEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let csp = match &self.headers.page {
            Some((prefix, csp)) if path_is_under(req.uri().path(), prefix) => csp.clone(),
            _ => HeaderValue::from_static(API_CONTENT_SECURITY_POLICY),
        };
        let mut response = match self.next.call(req).await {
            Ok(output) => output.into_response(),
            Err(error) => error.into_response(),
        };
        let headers = response.headers_mut();
        headers.insert(header::STRICT_TRANSPORT_SECURITY, self.headers.hsts.clone());
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        // `max-age=0` and `Pragma` for old HTTP/1.0 caches that do not know `no-store`.
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL_VALUE),
        );
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        // Legacy browsers: framing refused where `frame-ancestors` is unknown, and the old XSS
        // auditor (itself a source of leaks) off, as OWASP's secure-headers project advises.
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(X_XSS_PROTECTION, HeaderValue::from_static("0"));
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(
            CROSS_ORIGIN_OPENER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        headers.insert(
            CROSS_ORIGIN_RESOURCE_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        headers.remove(header::SERVER);
        headers.remove(X_POWERED_BY);
        Ok(response)
    }
}

/// True if `path` is `prefix` or below it (`/docs`, `/docs/x`; not `/docsx`).
fn path_is_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Middleware answering TRACE, TRACK and CONNECT with 405 before they reach any route.
#[derive(Debug, Clone, Copy, Default)]
pub struct RefuseUnusedMethods;

impl<E: Endpoint> Middleware<E> for RefuseUnusedMethods {
    type Output = RefuseUnusedMethodsEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        RefuseUnusedMethodsEndpoint { next }
    }
}

/// The endpoint produced by [`RefuseUnusedMethods`].
#[derive(Debug)]
pub struct RefuseUnusedMethodsEndpoint<E> {
    next: E,
}

impl<E: Endpoint> Endpoint for RefuseUnusedMethodsEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let method = req.method();
        if method == Method::TRACE || method == Method::CONNECT || method.as_str() == "TRACK" {
            return Err(poem::Error::from_status(StatusCode::METHOD_NOT_ALLOWED));
        }
        self.next.call(req).await
    }
}

/// Adds `Allow` to every 405, listing the methods the document and the plain routes declare for
/// the request's path, as RFC 9110 (section 15.5.6) requires: a client learns what it may send.
#[derive(Debug, Clone)]
pub struct AllowedMethods {
    table: Arc<OperationTable<()>>,
}

impl AllowedMethods {
    /// From `(METHOD, /path/{template})` pairs, as [`crate::operations::operations_and_routes`]
    /// gives them.
    pub fn new(operations: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut table = OperationTable::default();
        for (method, template) in operations {
            // Methods outside the known set cannot be routed either: nothing to announce.
            let _ = table.insert(&method, &template, ());
        }
        Self {
            table: Arc::new(table),
        }
    }

    fn allowed(&self, path: &str) -> String {
        let mut allowed: Vec<&str> = [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ]
        .iter()
        .filter(|method| self.table.find(method, path).is_some())
        .map(Method::as_str)
        .collect();
        if allowed.contains(&"GET") {
            allowed.insert(1, "HEAD");
        }
        allowed.join(", ")
    }
}

impl<E: Endpoint> Middleware<E> for AllowedMethods {
    type Output = AllowedMethodsEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        AllowedMethodsEndpoint {
            next,
            allowed: self.clone(),
        }
    }
}

/// The endpoint produced by [`AllowedMethods`].
#[derive(Debug)]
pub struct AllowedMethodsEndpoint<E> {
    next: E,
    allowed: AllowedMethods,
}

impl<E: Endpoint> Endpoint for AllowedMethodsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let path = req.uri().path().to_owned();
        // Outside the JSON error mapping in the service, so an error here is already a body.
        let mut response = match self.next.call(req).await {
            Ok(output) => output.into_response(),
            Err(error) => error.into_response(),
        };
        if response.status() == StatusCode::METHOD_NOT_ALLOWED
            && !response.headers().contains_key(header::ALLOW)
            && let Ok(allow) = HeaderValue::from_str(&self.allowed.allowed(&path))
        {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::{EndpointExt, Route, get, handler, test::TestClient};

    #[handler]
    fn ok() -> Response {
        Response::builder()
            .header(header::SERVER, "poem/3")
            .header(X_POWERED_BY, "rust")
            .body("ok")
    }

    #[handler]
    fn fail() -> Result<()> {
        Err(poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR))
    }

    fn config(preload: bool) -> SecureHeadersConfig {
        SecureHeadersConfig {
            hsts_max_age: ONE_YEAR,
            hsts_preload: preload,
            page: Some(PagePolicy {
                path_prefix: "/docs".to_owned(),
                content_security_policy: "default-src 'self'".to_owned(),
            }),
        }
    }

    fn client(preload: bool) -> TestClient<impl Endpoint> {
        let app = Route::new()
            .at("/ok", get(ok))
            .at("/fail", get(fail))
            .at("/docs", get(ok))
            .with(RefuseUnusedMethods)
            .with(SecureHeaders::new(&config(preload)).expect("valid"));
        TestClient::new(app)
    }

    #[tokio::test]
    async fn every_header_is_set_on_success_and_on_error() {
        let client = client(false);
        for path in ["/ok", "/fail", "/missing"] {
            let response = client.get(path).send().await;
            response.assert_header(
                header::STRICT_TRANSPORT_SECURITY,
                "max-age=31536000; includeSubDomains",
            );
            response.assert_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
            response.assert_header(header::CACHE_CONTROL, CACHE_CONTROL_VALUE);
            response.assert_header(header::PRAGMA, "no-cache");
            response.assert_header(header::X_FRAME_OPTIONS, "DENY");
            response.assert_header(X_XSS_PROTECTION, "0");
            response.assert_header(header::CONTENT_SECURITY_POLICY, API_CONTENT_SECURITY_POLICY);
            response.assert_header(header::REFERRER_POLICY, "no-referrer");
            response.assert_header(CROSS_ORIGIN_OPENER_POLICY, "same-origin");
            response.assert_header(CROSS_ORIGIN_RESOURCE_POLICY, "same-origin");
        }
    }

    #[tokio::test]
    async fn banners_are_removed() {
        let response = client(false).get("/ok").send().await;
        response.assert_header_is_not_exist(header::SERVER);
        response.assert_header_is_not_exist(X_POWERED_BY);
    }

    #[tokio::test]
    async fn preload_is_added_only_when_configured() {
        client(true).get("/ok").send().await.assert_header(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains; preload",
        );
    }

    #[tokio::test]
    async fn the_page_prefix_gets_its_own_policy_and_only_it() {
        let client = client(false);
        client
            .get("/docs")
            .send()
            .await
            .assert_header(header::CONTENT_SECURITY_POLICY, "default-src 'self'");
        client
            .get("/docsx")
            .send()
            .await
            .assert_header(header::CONTENT_SECURITY_POLICY, API_CONTENT_SECURITY_POLICY);
    }

    #[tokio::test]
    async fn trace_track_and_connect_are_refused_with_405() {
        let client = client(false);
        for method in ["TRACE", "TRACK", "CONNECT"] {
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            let response = client.request(method.clone(), "/ok").send().await;
            response.assert_status(StatusCode::METHOD_NOT_ALLOWED);
        }
    }

    #[test]
    fn a_page_policy_allows_exactly_its_inline_elements_by_hash() {
        let html = "<html><style>p{}</style><script charset=\"UTF-8\">run()</script>\
                    <script>more()</script></html>";
        let policy = hashed_page_policy(html);
        // sha256("run()") and sha256("p{}"), base64.
        assert!(policy.contains("script-src 'sha256-"), "{policy}");
        assert_eq!(policy.matches("'sha256-").count(), 3, "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        let other = hashed_page_policy(&html.replace("run()", "evil()"));
        assert_ne!(policy, other, "a changed script no longer matches");
    }

    #[tokio::test]
    async fn a_405_names_the_methods_the_path_allows() {
        let app = Route::new()
            .at("/notes/:id", get(ok).delete(ok))
            .with(RefuseUnusedMethods)
            .with(AllowedMethods::new([
                ("GET".to_owned(), "/notes/{id}".to_owned()),
                ("DELETE".to_owned(), "/notes/{id}".to_owned()),
            ]));
        let client = TestClient::new(app);
        for method in [Method::TRACE, Method::PUT] {
            let response = client.request(method.clone(), "/notes/7").send().await;
            response.assert_status(StatusCode::METHOD_NOT_ALLOWED);
            response.assert_header(header::ALLOW, "GET, HEAD, DELETE");
        }
        client
            .get("/notes/7")
            .send()
            .await
            .assert_header_is_not_exist(header::ALLOW);
    }
}
