//! The listeners: every connection under bounds of count, time and size from its first byte to
//! its last (TLS-1, TLS-2, INPUT-4), and a graceful drain at shutdown.
//!
//! Threat: a connection costs a descriptor, buffers and a task for as long as it is open. A
//! client that opens connections and then says nothing (no ClientHello, no request, half an
//! HTTP/2 preface), sends its headers a byte at a time (slowloris), keeps an HTTP/2 connection
//! open with no request, or opens and resets HTTP/2 streams faster than they can be answered
//! (rapid reset), holds resources for free; enough of them and nobody else is served.
//!
//! Control: poem's `Server` exposes neither the TLS configuration nor hyper's limits, so this
//! module runs hyper itself and hands every request to the poem endpoint:
//! - every accepted connection is admitted by the [`ConnectionLimiter`] first (per address and
//!   in total; over a cap it is closed at once);
//! - each TLS handshake runs in its own task within [`ListenerLimits::handshake_timeout`], at
//!   most [`ListenerLimits::max_pending_handshakes`] at once;
//! - the protocol is the one TLS negotiated (ALPN `h2`, else HTTP/1.1; plaintext listeners speak
//!   HTTP/1.1), never guessed from the first bytes: guessing means reading with no timer;
//! - every connection, HTTP/1.1 and HTTP/2 alike, has [`ListenerLimits::first_request_timeout`]
//!   from the end of its handshake to its first complete request head, and is closed after
//!   [`ListenerLimits::idle_timeout`] with no request in flight (HTTP/2: GOAWAY first, so a
//!   request racing the close is still answered) or with answers the client does not take
//!   (nothing of them written for as long: an HTTP/2 flow-control window left at zero, an
//!   HTTP/1.1 client that stopped reading);
//! - HTTP/1.1 headers must arrive within [`ListenerLimits::header_read_timeout`] (also the
//!   longest wait between keep-alive requests), fit in [`ListenerLimits::max_header_bytes`] and
//!   number at most [`ListenerLimits::max_headers`] (431, or the connection is closed);
//! - HTTP/2 limits are explicit ([`Http2Limits`]): concurrent streams, header list size, streams
//!   reset before they were answered (past it: GOAWAY `ENHANCE_YOUR_CALM`), and keep-alive
//!   pings that close connections whose peer has gone;
//! - at shutdown the listener stops accepting, open connections finish their requests within the
//!   grace period (HTTP/2: GOAWAY), and whatever is left is cut.
//!
//! Defaults (`config/default.toml`): 10 s to the first request, 60 s idle, 100 concurrent
//! streams, 20 pending resets, pings every 20 s (`[connections]`); 10 s for a handshake
//! (`tls.handshake_timeout_seconds`) and for the headers, at most 16 KiB of headers and 64 of
//! them (`[limits]`). Longer bounds hold descriptors longer for every idle or hostile client;
//! there is no setting that removes them.
//!
//! The rest of INPUT-4 sits with what it bounds: body size (413) and read time (408) in
//! [`crate::input::body_limit`], JSON nesting depth in [`crate::input::strict_json`], the
//! content type (415) in the service's typed payloads, page sizes in each list operation's
//! declared maximum (400 above it), and database waits in the service's connection pool.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, Request, Response};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::transport::connection_limits::{ConnectionCaps, ConnectionLimiter};

/// Bounds on what a connection may cost.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Time for a client to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; further connections wait in the kernel's backlog.
    pub max_pending_handshakes: usize,
    /// From the end of the handshake (plaintext: the accept) to the first complete request head.
    pub first_request_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Time for a client to send a request's headers (HTTP/1.1), counted from the moment the
    /// connection waits for them: also the longest wait between keep-alive requests.
    pub header_read_timeout: Duration,
    /// The request line and headers together, in bytes (at least 8 KiB, hyper's floor).
    pub max_header_bytes: usize,
    /// Header fields per request (HTTP/1.1).
    pub max_headers: usize,
    pub http2: Http2Limits,
}

/// HTTP/2's own bounds.
#[derive(Debug, Clone)]
pub struct Http2Limits {
    /// Streams a client may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
    /// Streams the client reset before they were answered; past it the connection gets GOAWAY
    /// `ENHANCE_YOUR_CALM` (the rapid-reset attack, CVE-2023-44487).
    pub max_pending_reset_streams: usize,
    /// Streams the server had to reset for the client's protocol errors; past it, GOAWAY.
    pub max_local_error_reset_streams: usize,
    /// A ping is sent after this long without a frame from the client ...
    pub keep_alive_interval: Duration,
    /// ... and the connection closed if it is not answered within this.
    pub keep_alive_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_pending_handshakes: 1024,
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            http2: Http2Limits::default(),
        }
    }
}

impl Default for Http2Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_pending_reset_streams: 20,
            max_local_error_reset_streams: 256,
            keep_alive_interval: Duration::from_secs(20),
            keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

/// A bound TCP listener that speaks TLS (when given a configuration) or plaintext.
pub struct BoundListener {
    tcp: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    connections: Arc<ConnectionLimiter>,
}

impl std::fmt::Debug for BoundListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundListener")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl BoundListener {
    /// Binds `address`; with `tls`, every connection must complete a handshake first. Its
    /// connections are counted under the default caps until [`Self::sharing_caps`] says else.
    pub async fn bind(
        address: SocketAddr,
        tls: Option<Arc<ServerConfig>>,
    ) -> std::io::Result<Self> {
        let tcp = TcpListener::bind(address).await?;
        let local_addr = tcp.local_addr()?;
        Ok(Self {
            tcp,
            local_addr,
            tls: tls.map(TlsAcceptor::from),
            connections: ConnectionLimiter::new(ConnectionCaps::default(), &[]),
        })
    }

    /// Counts this listener's connections in `connections`, which the process's other listeners
    /// share: the caps hold for the process, not per port.
    pub fn sharing_caps(mut self, connections: Arc<ConnectionLimiter>) -> Self {
        self.connections = connections;
        self
    }

    /// The bound address (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `endpoint` until `shutdown` completes, then drains within `grace`.
    pub async fn serve<E>(
        self,
        endpoint: E,
        limits: ListenerLimits,
        shutdown: impl Future<Output = ()> + Send,
        grace: Duration,
    ) -> std::io::Result<()>
    where
        E: Endpoint<Output = Response> + 'static,
    {
        let protocols = Arc::new(Protocols::new(&limits));
        let limits = Arc::new(limits);
        let endpoint = Arc::new(endpoint);
        let handshakes = Arc::new(Semaphore::new(limits.max_pending_handshakes.max(1)));
        let (stop, stopping) = watch::channel(false);
        let scheme = if self.tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let local_addr = LocalAddr(Addr::SocketAddr(self.local_addr));
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);

        loop {
            while connections.try_join_next().is_some() {}
            let permit = tokio::select! {
                permit = Arc::clone(&handshakes).acquire_owned() => permit,
                () = &mut shutdown => break,
            };
            let Ok(permit) = permit else { break };
            let (stream, peer) = tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Over a cap: closed before it costs a handshake or a task.
            let admitted = match self.connections.admit(peer.ip()) {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    tracing::debug!(peer = %peer, cap = refusal.as_str(), "connection refused");
                    continue;
                }
            };
            let connection = Connection {
                endpoint: Arc::clone(&endpoint),
                local_addr: local_addr.clone(),
                remote_addr: RemoteAddr(Addr::SocketAddr(peer)),
                scheme: scheme.clone(),
                limits: Arc::clone(&limits),
                protocols: Arc::clone(&protocols),
                stopping: stopping.clone(),
            };
            let tls = self.tls.clone();
            let handshake_timeout = limits.handshake_timeout;
            connections.spawn(async move {
                let _admitted = admitted;
                let _ = stream.set_nodelay(true);
                let Some(acceptor) = tls else {
                    drop(permit);
                    return connection.serve(stream, Protocol::Http1).await;
                };
                let handshake =
                    tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
                drop(permit);
                match handshake {
                    Ok(Ok(stream)) => {
                        let protocol = match stream.get_ref().1.alpn_protocol() {
                            Some(b"h2") => Protocol::Http2,
                            _ => Protocol::Http1,
                        };
                        connection.serve(stream, protocol).await;
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(peer = %peer, error = %error, "TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                }
            });
        }

        drop(self.tcp);
        let _ = stop.send(true);
        let drained = tokio::time::timeout(grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "connections still open after the grace period are cut"
            );
        }
        connections.shutdown().await;
        Ok(())
    }
}

/// The protocol of a connection, decided before its first byte is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// hyper's connection builders, configured once per listener.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(limits: &ListenerLimits) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .max_headers(limits.max_headers);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        let h2 = &limits.http2;
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(h2.max_concurrent_streams)
            .max_pending_accept_reset_streams(h2.max_pending_reset_streams)
            .max_local_error_reset_streams(h2.max_local_error_reset_streams)
            .keep_alive_interval(h2.keep_alive_interval)
            .keep_alive_timeout(h2.keep_alive_timeout);
        Self { http1, http2 }
    }
}

struct Connection<E> {
    endpoint: Arc<E>,
    local_addr: LocalAddr,
    remote_addr: RemoteAddr,
    scheme: Scheme,
    limits: Arc<ListenerLimits>,
    protocols: Arc<Protocols>,
    stopping: watch::Receiver<bool>,
}

impl<E: Endpoint<Output = Response> + 'static> Connection<E> {
    async fn serve<S>(self, stream: S, protocol: Protocol)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let activity = Arc::new(Activity::new());
        let Self {
            endpoint,
            local_addr,
            remote_addr,
            scheme,
            limits,
            protocols,
            stopping,
        } = self;
        let tracker = Arc::clone(&activity);
        let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            // The head is complete: hyper calls the service with nothing less.
            let mut in_flight = tracker.request_started();
            let request = Request::from((
                request,
                local_addr.clone(),
                remote_addr.clone(),
                scheme.clone(),
            ));
            let endpoint = Arc::clone(&endpoint);
            async move {
                let response: hyper::Response<_> = endpoint.get_response(request).await.into();
                // In flight until its body is written (or the request is abandoned); from now on
                // the client must take it.
                in_flight.response_ready();
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| InFlightBody { body, in_flight }),
                )
            }
        });
        let io = TokioIo::new(stream);
        match protocol {
            Protocol::Http1 => {
                let connection = protocols.http1.serve_connection(io, service);
                watch_deadlines(connection, &activity, &limits, stopping).await;
            }
            Protocol::Http2 => {
                let connection = protocols.http2.serve_connection(io, service);
                watch_deadlines(connection, &activity, &limits, stopping).await;
            }
        }
    }
}

/// Drives `connection` to its end, closing it when it misses a deadline or the listener stops.
async fn watch_deadlines<C>(
    connection: C,
    activity: &Activity,
    limits: &ListenerLimits,
    mut stopping: watch::Receiver<bool>,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(connection);
    let mut shutting_down = false;
    let mut closing_idle = false;
    let mut deadline = Instant::now() + limits.first_request_timeout;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
                return;
            }
            _ = stopping.wait_for(|stop| *stop), if !shutting_down => {
                // Shutdown: finish what is in flight (the listener's grace period bounds it).
                if !closing_idle {
                    connection.as_mut().graceful_shutdown();
                }
                shutting_down = true;
            }
            () = activity.changed.notified(), if !shutting_down && !closing_idle => {
                deadline = activity.next_check(limits);
            }
            () = tokio::time::sleep_until(deadline), if !shutting_down => {
                match activity.next_deadline(limits) {
                    // No complete request head in time (silence, half a preface or head): cut.
                    Deadline::Cut => return,
                    Deadline::At(next) => deadline = next,
                    // Idle, and the graceful close did not finish in its time either: cut.
                    Deadline::Idle if closing_idle => return,
                    Deadline::Idle => {
                        connection.as_mut().graceful_shutdown();
                        closing_idle = true;
                        deadline = Instant::now() + limits.first_request_timeout;
                    }
                }
            }
        }
    }
}

/// What a connection is doing, as its requests start and finish.
struct Activity {
    state: Mutex<ActivityState>,
    /// Woken when a response is handed over or the last request in flight ends: a time to
    /// watch starts.
    changed: Notify,
}

struct ActivityState {
    requests_started: u64,
    in_flight: u64,
    idle_since: Instant,
    /// Responses handed to hyper and not yet written to the end.
    responses_unwritten: u64,
    /// When a response was last handed over or a frame of one taken for writing.
    last_write: Instant,
}

enum Deadline {
    /// No request head arrived in time, or the client stopped taking its responses (HTTP/2
    /// with a closed flow-control window, HTTP/1.1 not reading): close without a word.
    Cut,
    /// Idle past the limit: close gracefully.
    Idle,
    /// Nothing to do until then.
    At(Instant),
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(ActivityState {
                requests_started: 0,
                in_flight: 0,
                idle_since: Instant::now(),
                responses_unwritten: 0,
                last_write: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn request_started(self: &Arc<Self>) -> RequestInFlight {
        let mut state = self.lock();
        state.requests_started += 1;
        state.in_flight += 1;
        RequestInFlight {
            activity: Arc::clone(self),
            response_ready: false,
        }
    }

    /// When to look again, after a change: once the response handed over could have been taken,
    /// or the connection has been idle for its limit.
    fn next_check(&self, limits: &ListenerLimits) -> Instant {
        let state = self.lock();
        if state.in_flight == 0 {
            state.idle_since + limits.idle_timeout
        } else if state.responses_unwritten > 0 {
            state.last_write + limits.idle_timeout
        } else {
            Instant::now() + limits.idle_timeout
        }
    }

    /// Called when a deadline passed: what to do now.
    fn next_deadline(&self, limits: &ListenerLimits) -> Deadline {
        let state = self.lock();
        if state.requests_started == 0 {
            return Deadline::Cut;
        }
        if state.in_flight > 0 {
            // A handler's own time is bounded by its timeouts; a written response by the client
            // taking it: nothing written for the idle time is a client that stopped reading.
            if state.responses_unwritten > 0 {
                let stalled_at = state.last_write + limits.idle_timeout;
                if stalled_at <= Instant::now() {
                    return Deadline::Cut;
                }
                return Deadline::At(stalled_at.min(Instant::now() + limits.idle_timeout));
            }
            return Deadline::At(Instant::now() + limits.idle_timeout);
        }
        let idle_until = state.idle_since + limits.idle_timeout;
        if idle_until <= Instant::now() {
            Deadline::Idle
        } else {
            Deadline::At(idle_until)
        }
    }
}

/// A request between its head and the end of its response.
struct RequestInFlight {
    activity: Arc<Activity>,
    response_ready: bool,
}

impl RequestInFlight {
    fn response_ready(&mut self) {
        let mut state = self.activity.lock();
        state.responses_unwritten += 1;
        state.last_write = Instant::now();
        self.response_ready = true;
        self.activity.changed.notify_one();
    }

    fn wrote(&self) {
        self.activity.lock().last_write = Instant::now();
    }
}

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        let mut state = self.activity.lock();
        state.in_flight -= 1;
        if self.response_ready {
            state.responses_unwritten -= 1;
        }
        if state.in_flight == 0 {
            state.idle_since = Instant::now();
            self.activity.changed.notify_one();
        }
    }
}

/// A response body that keeps its request in flight until it is written or dropped.
struct InFlightBody<B> {
    body: B,
    in_flight: RequestInFlight,
}

impl<B: Body + Unpin> Body for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(_)) = frame {
            self.in_flight.wrote();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
