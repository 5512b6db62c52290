//! `[tls]`: where the public listener's certificate comes from (TLS-1, TLS-2). TLS 1.3 is the
//! only version offered and no setting changes that. The development default, `self_signed`, is
//! refused in production, where clients could not verify it; `terminated_by_proxy` turns this
//! listener's TLS off and so is accepted only with the proxy declared and no plain-HTTP listener
//! of its own.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::Refusals;
use super::{Environment, HttpRedirectSettings, ServerSettings};

/// Where the listener's TLS comes from (TLS-1, TLS-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// A certificate from a local development CA, generated on first run (refused in
    /// production).
    SelfSigned,
    /// `cert_path` and `key_path` (PEM), reloaded when they change or on SIGHUP.
    Files,
    /// No TLS here: plaintext is accepted only from `server.trusted_proxies` that report
    /// `https` in `server.forwarded_header` (`X-Forwarded-Proto`, or `Forwarded: proto=`).
    TerminatedByProxy,
}

/// TLS of the public listener. TLS 1.3 is the only version offered; there is no setting for it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub mode: TlsMode,
    /// `self_signed`: the folder holding the development CA and certificate.
    pub dev_dir: PathBuf,
    /// `files`: the certificate chain (PEM).
    pub cert_path: PathBuf,
    /// `files`: the private key (PEM).
    pub key_path: PathBuf,
    /// Time a client has to complete the TLS handshake.
    pub handshake_timeout_seconds: u64,
    /// How often the certificate files are checked for a replacement.
    pub reload_interval_seconds: u64,
}

impl TlsSettings {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_seconds)
    }

    pub fn reload_interval(&self) -> Duration {
        Duration::from_secs(self.reload_interval_seconds)
    }
}

impl TlsSettings {
    /// The rules of `[tls]`, including what `terminated_by_proxy` asks of `server` and
    /// `http_redirect`.
    pub(super) fn validate(
        &self,
        environment: Environment,
        server: &ServerSettings,
        http_redirect: &HttpRedirectSettings,
        refusals: &mut Refusals,
    ) {
        if self.handshake_timeout_seconds == 0 {
            refusals.refuse(
                "tls.handshake_timeout_seconds",
                "must be at least 1: a client that never completes its handshake would hold \
                 a connection forever",
            );
        }
        if self.reload_interval_seconds == 0 {
            refusals.refuse("tls.reload_interval_seconds", "must be at least 1");
        }
        match self.mode {
            TlsMode::Files => {
                if self.cert_path.as_os_str().is_empty() {
                    refusals.refuse(
                        "tls.cert_path",
                        "must name the certificate chain (PEM) in files mode",
                    );
                }
                if self.key_path.as_os_str().is_empty() {
                    refusals.refuse(
                        "tls.key_path",
                        "must name the private key (PEM) in files mode",
                    );
                }
            }
            TlsMode::TerminatedByProxy => {
                if server.trusted_proxies.is_empty() {
                    refusals.refuse(
                        "server.trusted_proxies",
                        "must list the TLS-terminating proxy: with tls.mode = \
                         \"terminated_by_proxy\" plaintext is accepted only from it",
                    );
                }
                if http_redirect.enabled {
                    refusals.refuse(
                        "http_redirect.enabled",
                        "must be false with tls.mode = \"terminated_by_proxy\": the proxy owns \
                         plain HTTP",
                    );
                }
            }
            TlsMode::SelfSigned => {
                if self.dev_dir.as_os_str().is_empty() {
                    refusals.refuse("tls.dev_dir", "must name a folder for the development CA");
                }
            }
        }
        if environment == Environment::Production && self.mode == TlsMode::SelfSigned {
            refusals.refuse(
                "tls.mode",
                "is self_signed in production: clients cannot verify a development CA; use \
                 \"files\" with a real certificate or \"terminated_by_proxy\"",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Environment;
    use crate::config::testing::{load, production, refused};

    #[test]
    fn production_refuses_the_development_certificate() {
        let prod = production("[tls]\nmode = \"self_signed\"");
        let error = refused(&prod, Environment::Production);
        assert!(error.names("tls.mode"), "{error}");
    }

    #[test]
    fn files_mode_needs_both_paths() {
        let error = refused(
            &production("[tls]\nkey_path = \"\""),
            Environment::Production,
        );
        assert!(error.names("tls.key_path"), "{error}");
    }

    #[test]
    fn plaintext_behind_a_proxy_needs_the_proxy_declared_and_no_redirect_listener() {
        let proxied = "[tls]\nmode = \"terminated_by_proxy\"";
        let error = refused(&production(proxied), Environment::Production);
        assert!(error.names("server.trusted_proxies"), "{error}");
        assert!(error.names("http_redirect.enabled"), "{error}");
        let fixed = format!(
            "{proxied}\n[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n\
             [http_redirect]\nenabled = false"
        );
        load(&production(&fixed), Environment::Production, &[]).expect("a declared proxy is fine");
    }
}
