//! Metrics on a private listener (LOG-6).
//!
//! Threat: an attack in progress (credential stuffing, scope probing, a flood) goes unnoticed
//! until someone reads the logs; and metrics served on the public port show an attacker how the
//! attack is going and which routes exist.
//!
//! Control: counters and a latency histogram in the Prometheus text format, rendered by
//! `metrics-exporter-prometheus` and served by [`ServiceMetrics::admin_endpoint`] on the admin
//! listener only (loopback by default), never on the public port:
//! - `http_requests_total{method,route,status}` and `http_request_duration_seconds{method,route}`,
//!   from [`RequestMetrics`] in the middleware stack;
//! - `auth_failures_total{reason}` (`authn.*` denied), `authz_denials_total{event,reason}`
//!   (`authz.*` denied), `validation_failures_total{route}` (`input.validation`),
//!   `rate_limited_total{tier}` (`ratelimit.exceeded`), `rate_limit_store_failures_total{tier}`
//!   (`ratelimit.store_unavailable`), `rate_limit_pooled_total{tier}` (`ratelimit.key_pooled`:
//!   a full in-process key map) and `anomaly_alerts_total{detector}` (`security.anomaly`),
//!   from the audit events: [`ServiceMetrics`] is one of the service's [`AuditObserver`]s;
//! - `log_fields_dropped_total`: what the allowlist-only application log refused to write (LOG-5);
//! - `connections_open` and `connections_refused_total{cap}` (`per_address`, `total`): the
//!   connection caps of [`crate::transport::connection_limits`] at work.
//!
//! Label values come from fixed sets only: reason codes, tier and detector names, route templates
//! (`unmatched` for a request matching no operation), the usual methods (`other` for the rest), so
//! no client can grow the number of series. No label carries a raw path, an address, a principal
//! or a credential.
//!
//! Each service instance records into its own recorder, never the process-wide one, so instances
//! sharing a process (tests) count apart. The counters have no switch: `admin.enabled = false`
//! only stops serving them.
//!
//! Default: the admin listener on `127.0.0.1:9091` (`[admin]`), plain HTTP on loopback, serving
//! `GET /metrics` and nothing else; the public port answers 404 there. Start-up refuses an admin
//! port equal to the public one and, in production, a non-loopback `admin.host` unless
//! `admin.allow_non_loopback = true`: metrics beyond loopback show anyone who can reach them how
//! an attack is going.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use crate::json_error::json_error;
use crate::logging::audit::{AuditObserver, AuditRecord, Outcome, RouteTemplate};
use crate::transport::connection_limits::{ConnectionCounts, Refusal};

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The path the admin listener serves the metrics at.
pub const METRICS_PATH: &str = "/metrics";

/// The route label of a request that matched no operation.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// How often latencies recorded between scrapes are folded into the histogram buckets, so that
/// memory stays bounded when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

const REQUEST_DURATION: &str = "http_request_duration_seconds";

const DROPPED_LOG_FIELDS: &str = "log_fields_dropped_total";

const CONNECTIONS_OPEN: &str = "connections_open";

const CONNECTIONS_REFUSED: &str = "connections_refused_total";

/// Upper bounds of the latency buckets, in seconds: 5 ms to 30 s.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The metrics of one service instance: its own recorder and the handle that renders it.
#[derive(Debug, Clone)]
pub struct ServiceMetrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    /// The application log's count of fields it refused to write (LOG-5), if it is watched.
    dropped_log_fields: Option<Arc<AtomicU64>>,
    /// The listeners' connection counts, if they are watched.
    connections: Option<Arc<ConnectionCounts>>,
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServiceMetrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), &LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let metrics = Self {
            handle: recorder.handle(),
            recorder: Arc::new(recorder),
            dropped_log_fields: None,
            connections: None,
        };
        metrics.record(|| {
            metrics::describe_counter!("http_requests_total", "Requests answered");
            metrics::describe_histogram!(
                REQUEST_DURATION,
                metrics::Unit::Seconds,
                "Time to answer a request"
            );
            metrics::describe_counter!("auth_failures_total", "Credentials refused");
            metrics::describe_counter!("authz_denials_total", "Authorization denials");
            metrics::describe_counter!("validation_failures_total", "Requests failing validation");
            metrics::describe_counter!("rate_limited_total", "Requests refused by a rate limit");
            metrics::describe_counter!(
                "rate_limit_store_failures_total",
                "Rate-limit decisions made without the store"
            );
            metrics::describe_counter!(
                "rate_limit_pooled_total",
                "Requests of keys new to a full in-process key map, charged to a shared bucket"
            );
            metrics::describe_counter!("anomaly_alerts_total", "Alerts of the anomaly detectors");
            metrics::describe_counter!(
                DROPPED_LOG_FIELDS,
                "Log fields and dependency messages the allowlist refused to write"
            );
            metrics::describe_gauge!(CONNECTIONS_OPEN, "Connections open on every listener");
            metrics::describe_counter!(
                CONNECTIONS_REFUSED,
                "Connections closed on arrival by a connection cap"
            );
        });
        metrics
    }

    /// Also exports `counter` (the allowlist layer's, see
    /// [`crate::logging::allowlist::AllowlistLayer::dropped_fields`]) as
    /// `log_fields_dropped_total`: a rise after a deploy shows code trying to log a field that is
    /// not on the list.
    #[must_use]
    pub fn watching_dropped_log_fields(mut self, counter: Arc<AtomicU64>) -> Self {
        self.dropped_log_fields = Some(counter);
        self
    }

    /// Also exports the listeners' connection counts: a rise of refusals by `per_address` is one
    /// client (or NAT) holding many connections, by `total` the process at its cap.
    #[must_use]
    pub fn watching_connections(mut self, counts: Arc<ConnectionCounts>) -> Self {
        self.connections = Some(counts);
        self
    }

    /// Runs `f` with this instance's recorder as the one the `metrics` macros record into.
    fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.recorder, f)
    }

    /// Everything recorded so far, in the Prometheus text format.
    pub fn render(&self) -> String {
        if let Some(dropped) = &self.dropped_log_fields {
            let dropped = dropped.load(Ordering::Relaxed);
            self.record(|| metrics::counter!(DROPPED_LOG_FIELDS).absolute(dropped));
        }
        if let Some(connections) = &self.connections {
            let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            self.record(|| {
                metrics::gauge!(CONNECTIONS_OPEN).set(load(&connections.open) as f64);
                for (cap, counter) in [
                    (Refusal::AddressFull, &connections.refused_per_address),
                    (Refusal::TotalFull, &connections.refused_total),
                ] {
                    metrics::counter!(CONNECTIONS_REFUSED, "cap" => cap.as_str())
                        .absolute(load(counter));
                }
            });
        }
        self.handle.render()
    }

    /// Folds recorded latencies into the histogram every [`UPKEEP_INTERVAL`]; abort the task to
    /// stop it.
    pub fn spawn_upkeep(&self) -> tokio::task::JoinHandle<()> {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                every.tick().await;
                handle.run_upkeep();
            }
        })
    }

    /// The middleware counting and timing every request.
    pub fn requests(&self) -> RequestMetrics {
        RequestMetrics {
            metrics: self.clone(),
        }
    }

    /// The admin listener's endpoint: `GET /metrics` in the Prometheus text format, a JSON 404
    /// for anything else.
    pub fn admin_endpoint(&self) -> impl Endpoint<Output = Response> + use<> {
        let metrics = self.clone();
        poem::endpoint::make_sync(move |request: Request| {
            let is_scrape = request.uri().path() == METRICS_PATH
                && matches!(*request.method(), Method::GET | Method::HEAD);
            if is_scrape {
                Response::builder()
                    .content_type(PROMETHEUS_TEXT)
                    .body(metrics.render())
            } else {
                json_error(StatusCode::NOT_FOUND, "Not found", &request)
            }
        })
    }

    fn count_request(&self, method: &'static str, route: RouteLabel, status: u16, took: Duration) {
        self.record(|| {
            metrics::counter!(
                "http_requests_total",
                "method" => method,
                "route" => route.clone(),
                "status" => status.to_string()
            )
            .increment(1);
            metrics::histogram!(REQUEST_DURATION, "method" => method, "route" => route)
                .record(took.as_secs_f64());
        });
    }
}

impl AuditObserver for ServiceMetrics {
    fn observe(&self, record: &AuditRecord) {
        let denied = record.outcome == Outcome::Denied;
        // The tier of a rate-limit event, the detector of an anomaly: names fixed in code.
        let decided_by = || {
            record
                .policy
                .clone()
                .unwrap_or_else(|| "unknown".to_owned())
        };
        self.record(|| match record.event {
            event if denied && event.starts_with("authn.") => {
                metrics::counter!("auth_failures_total", "reason" => record.reason).increment(1);
            }
            event if denied && event.starts_with("authz.") => {
                metrics::counter!(
                    "authz_denials_total",
                    "event" => event,
                    "reason" => record.reason
                )
                .increment(1);
            }
            "input.validation" => {
                let route = route_label(record.route.as_deref().map(Arc::from));
                metrics::counter!("validation_failures_total", "route" => route).increment(1);
            }
            "ratelimit.exceeded" => {
                metrics::counter!("rate_limited_total", "tier" => decided_by()).increment(1);
            }
            "ratelimit.store_unavailable" => {
                metrics::counter!("rate_limit_store_failures_total", "tier" => decided_by())
                    .increment(1);
            }
            "ratelimit.key_pooled" => {
                metrics::counter!("rate_limit_pooled_total", "tier" => decided_by()).increment(1);
            }
            "security.anomaly" => {
                metrics::counter!("anomaly_alerts_total", "detector" => decided_by()).increment(1);
            }
            _ => {}
        });
    }
}

/// A route label: a route template or [`UNMATCHED_ROUTE`].
type RouteLabel = metrics::SharedString;

fn route_label(template: Option<Arc<str>>) -> RouteLabel {
    template.map_or(RouteLabel::const_str(UNMATCHED_ROUTE), RouteLabel::from)
}

/// The method label: one of the usual methods, or `other`, so invented methods add no series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware counting requests and timing them by method, route template and status. Inside
/// [`crate::operations::RouteTemplates`], which names the route.
#[derive(Debug, Clone)]
pub struct RequestMetrics {
    metrics: ServiceMetrics,
}

impl<E: Endpoint> Middleware<E> for RequestMetrics {
    type Output = RequestMetricsEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        RequestMetricsEndpoint {
            next,
            metrics: self.metrics.clone(),
        }
    }
}

/// The endpoint produced by [`RequestMetrics`].
#[derive(Debug)]
pub struct RequestMetricsEndpoint<E> {
    next: E,
    metrics: ServiceMetrics,
}

impl<E: Endpoint> Endpoint for RequestMetricsEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Self::Output> {
        let started = Instant::now();
        let method = method_label(request.method());
        let route = route_label(
            request
                .extensions()
                .get::<RouteTemplate>()
                .map(|template| Arc::clone(&template.0)),
        );
        let response = match self.next.call(request).await {
            Ok(output) => output.into_response(),
            Err(error) => error.into_response(),
        };
        self.metrics
            .count_request(method, route, response.status().as_u16(), started.elapsed());
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use poem::test::TestClient;
    use poem::{EndpointExt, Route, get, handler};

    use super::*;
    use crate::operations::RouteTemplates;

    fn event(event: &'static str, outcome: Outcome, reason: &'static str) -> AuditRecord {
        AuditRecord {
            at: std::time::SystemTime::now(),
            event,
            outcome,
            reason,
            principal: Some("user-1".to_owned()),
            client_ip: Some("192.0.2.7".parse().expect("ip")),
            route: Some("/v1/notes/{id}".to_owned()),
            request_id: Some("r-1".to_owned()),
            policy: None,
        }
    }

    /// The value of the series `series` (name and labels as rendered), 0 when absent.
    fn value(metrics: &ServiceMetrics, series: &str) -> f64 {
        metrics
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    #[test]
    fn audit_events_move_their_counters_and_only_theirs() {
        let metrics = ServiceMetrics::new();
        metrics.observe(&event("authn.password", Outcome::Denied, "wrong_password"));
        metrics.observe(&event("authn.password", Outcome::Allowed, "valid"));
        metrics.observe(&event("authz.scope", Outcome::Denied, "missing_scope"));
        metrics.observe(&event("authz.scope", Outcome::Allowed, "scopes_held"));
        metrics.observe(&event("input.validation", Outcome::Denied, "schema"));
        let mut limited = event("ratelimit.exceeded", Outcome::Denied, "client_ip");
        limited.policy = Some("anonymous".to_owned());
        metrics.observe(&limited);
        let mut unavailable = event("ratelimit.store_unavailable", Outcome::Allowed, "client_ip");
        unavailable.policy = Some("anonymous".to_owned());
        metrics.observe(&unavailable);
        let mut pooled = event("ratelimit.key_pooled", Outcome::Allowed, "account");
        pooled.policy = Some("login_account".to_owned());
        metrics.observe(&pooled);
        let mut anomaly = event("security.anomaly", Outcome::Denied, "threshold");
        anomaly.policy = Some("login_failures".to_owned());
        metrics.observe(&anomaly);
        metrics.observe(&event("token.issued", Outcome::Allowed, "password"));

        for (series, expected) in [
            (r#"auth_failures_total{reason="wrong_password"}"#, 1.0),
            (r#"auth_failures_total{reason="valid"}"#, 0.0),
            (
                r#"authz_denials_total{event="authz.scope",reason="missing_scope"}"#,
                1.0,
            ),
            (r#"validation_failures_total{route="/v1/notes/{id}"}"#, 1.0),
            (r#"rate_limited_total{tier="anonymous"}"#, 1.0),
            (r#"rate_limit_store_failures_total{tier="anonymous"}"#, 1.0),
            (r#"rate_limit_pooled_total{tier="login_account"}"#, 1.0),
            (r#"anomaly_alerts_total{detector="login_failures"}"#, 1.0),
        ] {
            assert_eq!(value(&metrics, series), expected, "{series}");
        }
        let rendered = metrics.render();
        for private in ["user-1", "192.0.2.7", "r-1", "token"] {
            assert!(!rendered.contains(private), "{private} in:\n{rendered}");
        }
    }

    #[test]
    fn the_log_allowlists_drops_are_exported_as_they_are_at_each_scrape() {
        let dropped = Arc::new(AtomicU64::new(3));
        let metrics = ServiceMetrics::new().watching_dropped_log_fields(Arc::clone(&dropped));
        assert!(metrics.render().contains("log_fields_dropped_total 3"));
        dropped.fetch_add(4, Ordering::Relaxed);
        assert!(metrics.render().contains("log_fields_dropped_total 7"));
        assert!(
            !ServiceMetrics::new()
                .render()
                .contains("log_fields_dropped_total ")
        );
    }

    #[test]
    fn two_instances_count_apart() {
        let one = ServiceMetrics::new();
        let other = ServiceMetrics::new();
        one.observe(&event("authn.missing", Outcome::Denied, "no_credential"));
        assert_eq!(
            value(&one, r#"auth_failures_total{reason="no_credential"}"#),
            1.0
        );
        assert_eq!(
            value(&other, r#"auth_failures_total{reason="no_credential"}"#),
            0.0
        );
    }

    #[handler]
    fn ok() -> &'static str {
        "ok"
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_the_rest_as_unmatched() {
        let metrics = ServiceMetrics::new();
        let document = serde_json::json!({
            "paths": { "/v1/notes/{id}": { "get": {} } }
        });
        let app = Route::new()
            .at("/v1/notes/:id", get(ok))
            .with(metrics.requests())
            .with(RouteTemplates::new(&document, &[]));
        let client = TestClient::new(app);
        client
            .get("/v1/notes/42")
            .send()
            .await
            .assert_status_is_ok();
        client
            .get("/v1/notes/43")
            .send()
            .await
            .assert_status_is_ok();
        client
            .get("/nope/1234")
            .send()
            .await
            .assert_status(StatusCode::NOT_FOUND);
        client
            .request(Method::from_bytes(b"INVENTED").expect("method"), "/x")
            .send()
            .await
            .assert_status(StatusCode::NOT_FOUND);

        assert_eq!(
            value(
                &metrics,
                r#"http_requests_total{method="GET",route="/v1/notes/{id}",status="200"}"#
            ),
            2.0
        );
        assert_eq!(
            value(
                &metrics,
                r#"http_requests_total{method="GET",route="unmatched",status="404"}"#
            ),
            1.0
        );
        assert_eq!(
            value(
                &metrics,
                r#"http_requests_total{method="other",route="unmatched",status="404"}"#
            ),
            1.0
        );
        assert_eq!(
            value(
                &metrics,
                r#"http_request_duration_seconds_count{method="GET",route="/v1/notes/{id}"}"#
            ),
            2.0
        );
        let rendered = metrics.render();
        let bucket = r#"_bucket{method="GET",route="/v1/notes/{id}",le="0.005"}"#;
        assert!(
            rendered.contains(&format!("{REQUEST_DURATION}{bucket}")),
            "{rendered}"
        );
        for raw in ["/v1/notes/42", "/nope", "INVENTED"] {
            assert!(!rendered.contains(raw), "{raw} in:\n{rendered}");
        }
    }

    #[tokio::test]
    async fn the_admin_endpoint_serves_metrics_only() {
        let metrics = ServiceMetrics::new();
        metrics.observe(&event("authn.missing", Outcome::Denied, "no_credential"));
        let client = TestClient::new(metrics.admin_endpoint());
        let response = client.get("/metrics").send().await;
        response.assert_status_is_ok();
        response.assert_content_type(PROMETHEUS_TEXT);
        let body = response.0.into_body().into_string().await.expect("text");
        assert!(
            body.contains("# TYPE auth_failures_total counter"),
            "{body}"
        );
        for path in ["/", "/metrics/", "/health"] {
            client
                .get(path)
                .send()
                .await
                .assert_status(StatusCode::NOT_FOUND);
        }
        client
            .post("/metrics")
            .send()
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
}
