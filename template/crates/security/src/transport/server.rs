//! The listeners: TLS handshakes and request headers under time and size bounds (TLS-2, INPUT-4),
//! and a graceful drain at shutdown.
//!
//! Threat: a client that opens a connection and then says nothing (no ClientHello), or sends its
//! request headers one byte at a time (slowloris), holds a connection slot for free; enough of
//! them and nobody else is served. Huge or numerous headers cost memory before any handler runs.
//!
//! Control: poem's `Server` exposes neither the TLS configuration nor hyper's header limits, so
//! this module runs hyper itself and hands every request to the poem endpoint:
//! - each TLS handshake runs in its own task under [`ListenerLimits::handshake_timeout`], so a
//!   silent client never blocks the accept loop and is dropped when its time is up; at most
//!   [`ListenerLimits::max_pending_handshakes`] run at once;
//! - HTTP/1.1 request headers must arrive within [`ListenerLimits::header_read_timeout`], fit in
//!   [`ListenerLimits::max_header_bytes`] and number at most [`ListenerLimits::max_headers`]
//!   (hyper answers 431 or closes the connection); HTTP/2 header lists have the same byte bound;
//! - at shutdown the listener stops accepting, open connections finish their requests within the
//!   grace period, and whatever is left is cut.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, Request, Response};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// Bounds on what a connection may cost before a handler runs.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Time for a client to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; further connections wait in the kernel's backlog.
    pub max_pending_handshakes: usize,
    /// Time for a client to send a request's headers (HTTP/1.1).
    pub header_read_timeout: Duration,
    /// The request line and headers together, in bytes (at least 8 KiB, hyper's floor).
    pub max_header_bytes: usize,
    /// Header fields per request.
    pub max_headers: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_pending_handshakes: 1024,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
        }
    }
}

/// A bound TCP listener that speaks TLS (when given a configuration) or plaintext.
pub struct BoundListener {
    tcp: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
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
    /// Binds `address`; with `tls`, every connection must complete a handshake first.
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
        })
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
        let endpoint = Arc::new(endpoint);
        let http = http_builder(&limits);
        let graceful = GracefulShutdown::new();
        let handshakes = Arc::new(Semaphore::new(limits.max_pending_handshakes.max(1)));
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
            let connection = Connection {
                endpoint: Arc::clone(&endpoint),
                local_addr: local_addr.clone(),
                remote_addr: RemoteAddr(Addr::SocketAddr(peer)),
                scheme: scheme.clone(),
            };
            let tls = self.tls.clone();
            let http = http.clone();
            let watcher = graceful.watcher();
            let handshake_timeout = limits.handshake_timeout;
            connections.spawn(async move {
                let _ = stream.set_nodelay(true);
                match tls {
                    None => {
                        drop(permit);
                        connection.serve(stream, &http, watcher).await;
                    }
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
                        drop(permit);
                        match handshake {
                            Ok(Ok(stream)) => connection.serve(stream, &http, watcher).await,
                            Ok(Err(error)) => {
                                tracing::debug!(peer = %peer, error = %error, "TLS handshake failed");
                            }
                            Err(_) => {
                                tracing::debug!(peer = %peer, "TLS handshake timed out");
                            }
                        }
                    }
                }
            });
        }

        drop(self.tcp);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "connections still open after the grace period are cut"
            );
        }
        connections.shutdown().await;
        Ok(())
    }
}

fn http_builder(limits: &ListenerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

struct Connection<E> {
    endpoint: Arc<E>,
    local_addr: LocalAddr,
    remote_addr: RemoteAddr,
    scheme: Scheme,
}

impl<E: Endpoint<Output = Response> + 'static> Connection<E> {
    async fn serve<S>(
        self,
        stream: S,
        http: &auto::Builder<TokioExecutor>,
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let this = Arc::new(self);
        let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let this = Arc::clone(&this);
            async move {
                let request = Request::from((
                    request,
                    this.local_addr.clone(),
                    this.remote_addr.clone(),
                    this.scheme.clone(),
                ));
                let response: hyper::Response<_> = this.endpoint.get_response(request).await.into();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let connection = http
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        if let Err(error) = watcher.watch(connection).await {
            tracing::debug!(error = %error, "connection ended with an error");
        }
    }
}
