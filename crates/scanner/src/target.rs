//! The API under scan: its addresses, an HTTP client that trusts what the caller said to trust
//! and never follows redirects, and a record of every response for the error-body check.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use url::Url;

use crate::ScanConfig;

/// A response as the checks see it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A response kept for the error-body check.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub url: String,
    pub status: u16,
    pub body: String,
}

/// The longest `Retry-After` a check waits out before retrying once; longer waits make the
/// request's check not applicable for that operation instead of stalling the scan.
const LONGEST_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub struct Target {
    pub base: Url,
    pub http_base: Option<Url>,
    pub ca_pem: Option<Vec<u8>>,
    client: reqwest::Client,
    seen: Mutex<Vec<Seen>>,
}

impl Target {
    pub fn new(config: &ScanConfig) -> Result<Self> {
        let base = Url::parse(config.base_url.trim_end_matches('/'))
            .with_context(|| format!("the base URL {:?} is not a URL", config.base_url))?;
        if !matches!(base.scheme(), "https" | "http") || base.host_str().is_none() {
            bail!("the base URL must be http(s)://host[:port][/prefix]");
        }
        let http_base = match &config.http_url {
            Some(url) => Some(Url::parse(url).context("--http-url is not a URL")?),
            // Port 80 is where browsers go for http:// of a site served on 443.
            None if base.scheme() == "https" && base.port_or_known_default() == Some(443) => {
                let mut url = base.clone();
                url.set_scheme("http").ok();
                url.set_port(None).ok();
                Some(url)
            }
            None => None,
        };
        let ca_pem = config
            .ca_cert
            .as_ref()
            .map(|path| {
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
            })
            .transpose()?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .user_agent(concat!("rampart-scanner/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .context("the CA file holds no PEM certificate")?;
            builder = builder.tls_certs_only(certificates);
        }
        Ok(Self {
            base,
            http_base,
            ca_pem,
            client: builder.build().context("cannot build the HTTP client")?,
            seen: Mutex::new(Vec::new()),
        })
    }

    /// The URL of `path` (absolute, starting with `/`) under the base URL, keeping its prefix.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    pub fn host(&self) -> &str {
        self.base.host_str().unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.base.port_or_known_default().unwrap_or(443)
    }

    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.client.request(method, url)
    }

    /// A plain client for `http://` requests: never redirected, never upgraded.
    pub fn plain_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default()
    }

    /// Sends the request and records the answer. A 429 whose `Retry-After` is short is waited
    /// out and the request sent once more; a longer one is returned as it is.
    pub async fn send(&self, request: RequestBuilder) -> Result<Reply> {
        let retry = request.try_clone();
        let reply = self.send_once(request).await?;
        if reply.status == 429
            && let Some(retry) = retry
            && let Some(wait) = retry_after(&reply)
            && wait <= LONGEST_WAIT
        {
            tokio::time::sleep(wait).await;
            return self.send_once(retry).await;
        }
        Ok(reply)
    }

    /// Sends the request once, without waiting out a 429.
    pub async fn send_once(&self, request: RequestBuilder) -> Result<Reply> {
        let (client, request) = request.build_split();
        let request = request.context("cannot build the request")?;
        let (method, url) = (request.method().clone(), request.url().to_string());
        let response = client
            .execute(request)
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        if status >= 400 {
            self.seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(Seen {
                    method,
                    url,
                    status,
                    body: body.chars().take(4096).collect(),
                });
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Every error response received so far.
    pub fn errors_seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// `Retry-After` in seconds (RFC 9110 also allows a date; APIs answering 429 use seconds).
pub fn retry_after(reply: &Reply) -> Option<Duration> {
    reply
        .header("retry-after")?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
