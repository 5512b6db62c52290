//! How many connections one client, and all clients together, may hold open (TLS-1).
//!
//! Threat: a connection costs a file descriptor, buffers and a task for as long as it is open.
//! One address opening thousands of connections (each within every time bound) exhausts the
//! process's file descriptors; then `accept` fails for everybody, and the service is down while
//! its CPU is idle.
//!
//! Control: every accepted TCP connection is admitted by [`ConnectionLimiter::admit`] before
//! anything else happens (before the TLS handshake), and counted until it closes:
//! - at most [`ConnectionCaps::per_address`] open connections per peer address (IPv6 per /64,
//!   the block one subscriber usually holds); a peer in `server.trusted_proxies` speaks for many
//!   clients and has [`ConnectionCaps::per_trusted_proxy`] instead, counted per exact address;
//! - at most [`ConnectionCaps::total`] over every listener of the process, kept below the file
//!   descriptor limit ([`total_below_descriptor_limit`]) so the database pool, Redis and files
//!   always find a descriptor.
//!
//! A connection past a cap is closed at once, never queued: a queue would hold the descriptor
//! the cap exists to save. Refusals are counted by reason (`connections_refused_total` on the
//! admin listener).
//!
//! Defaults: 64 per address, 4096 per trusted proxy, the total at 90% of the descriptor limit.
//! Raising them (or the limit) trades memory and descriptors for room for large NATs; there is
//! no setting to remove them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

/// The caps a [`ConnectionLimiter`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Open connections per peer address (IPv6 per /64).
    pub per_address: u32,
    /// Open connections per trusted proxy address.
    pub per_trusted_proxy: u32,
    /// Open connections over every listener.
    pub total: u32,
}

impl Default for ConnectionCaps {
    fn default() -> Self {
        Self {
            per_address: 64,
            per_trusted_proxy: 4096,
            total: total_below_descriptor_limit(descriptor_limit()),
        }
    }
}

/// Why a connection was closed on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address (or /64) already holds its cap.
    AddressFull,
    /// The process holds [`ConnectionCaps::total`].
    TotalFull,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AddressFull => "per_address",
            Self::TotalFull => "total",
        }
    }
}

/// What the connections are counted under: an IPv4 address, an IPv6 /64, or a trusted proxy's
/// exact address (each proxy node has its own cap, and no client shares it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PeerKey {
    V4(u32),
    V6Prefix(u64),
    TrustedProxy(IpAddr),
}

impl PeerKey {
    fn of(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => Self::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

/// Connection counts, for the metrics.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    pub open: AtomicU64,
    pub refused_per_address: AtomicU64,
    pub refused_total: AtomicU64,
}

#[derive(Debug, Default)]
struct Open {
    total: u32,
    per_peer: HashMap<PeerKey, u32>,
}

/// Admits connections within the caps and counts them until they close.
#[derive(Debug)]
pub struct ConnectionLimiter {
    caps: ConnectionCaps,
    trusted_proxies: Vec<IpNet>,
    open: Mutex<Open>,
    counts: Arc<ConnectionCounts>,
}

impl ConnectionLimiter {
    pub fn new(caps: ConnectionCaps, trusted_proxies: &[IpNet]) -> Arc<Self> {
        Arc::new(Self {
            caps,
            trusted_proxies: trusted_proxies.to_vec(),
            open: Mutex::new(Open::default()),
            counts: Arc::default(),
        })
    }

    /// The counts the metrics read.
    pub fn counts(&self) -> Arc<ConnectionCounts> {
        Arc::clone(&self.counts)
    }

    /// Counts a connection from `peer`, or refuses it when a cap is reached. The connection is
    /// counted until the returned guard is dropped.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<AdmittedConnection, Refusal> {
        let peer = peer.to_canonical();
        let (key, cap) = if self.trusted_proxies.iter().any(|net| net.contains(&peer)) {
            (PeerKey::TrustedProxy(peer), self.caps.per_trusted_proxy)
        } else {
            (PeerKey::of(peer), self.caps.per_address)
        };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let refusal = if open.total >= self.caps.total {
            Some(Refusal::TotalFull)
        } else if open.per_peer.get(&key).copied().unwrap_or(0) >= cap {
            Some(Refusal::AddressFull)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            let counter = match refusal {
                Refusal::AddressFull => &self.counts.refused_per_address,
                Refusal::TotalFull => &self.counts.refused_total,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return Err(refusal);
        }
        open.total += 1;
        *open.per_peer.entry(key).or_insert(0) += 1;
        self.counts.open.fetch_add(1, Ordering::Relaxed);
        Ok(AdmittedConnection {
            limiter: Arc::clone(self),
            key,
        })
    }

    fn release(&self, key: PeerKey) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_peer.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                open.per_peer.remove(&key);
            }
        }
        self.counts.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An admitted connection: counted until dropped.
#[derive(Debug)]
pub struct AdmittedConnection {
    limiter: Arc<ConnectionLimiter>,
    key: PeerKey,
}

impl Drop for AdmittedConnection {
    fn drop(&mut self) {
        self.limiter.release(self.key);
    }
}

/// Descriptors kept free for everything that is not a client connection: the database pool,
/// Redis, log and audit files, the listeners, DNS.
pub const RESERVED_DESCRIPTORS: u64 = 128;

/// The process's soft limit on open file descriptors, where the platform tells.
pub fn descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The default total: 90% of the descriptor limit, and at least [`RESERVED_DESCRIPTORS`] below
/// it; `u32::MAX` (no cap of this kind) where the limit is unknown or unlimited.
pub fn total_below_descriptor_limit(limit: Option<u64>) -> u32 {
    match limit {
        Some(limit) => {
            let total = (limit / 10 * 9).min(limit.saturating_sub(RESERVED_DESCRIPTORS));
            u32::try_from(total.max(1)).unwrap_or(u32::MAX)
        }
        None => u32::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    fn limiter(per_address: u32, total: u32) -> Arc<ConnectionLimiter> {
        ConnectionLimiter::new(
            ConnectionCaps {
                per_address,
                per_trusted_proxy: 5,
                total,
            },
            &["10.0.0.0/8".parse().expect("net")],
        )
    }

    #[test]
    fn an_address_gets_its_cap_and_another_address_is_still_admitted() {
        let limiter = limiter(2, 100);
        let first = limiter.admit(ip("198.51.100.7")).expect("first");
        let _second = limiter.admit(ip("198.51.100.7")).expect("second");
        assert_eq!(
            limiter.admit(ip("198.51.100.7")).err(),
            Some(Refusal::AddressFull)
        );
        assert!(limiter.admit(ip("198.51.100.8")).is_ok());
        drop(first);
        assert!(limiter.admit(ip("198.51.100.7")).is_ok(), "room again");
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let limiter = limiter(1, 100);
        let _held = limiter.admit(ip("2001:db8:1:2::1")).expect("first");
        assert_eq!(
            limiter.admit(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Refusal::AddressFull),
            "same /64"
        );
        assert!(limiter.admit(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        let _v4 = limiter.admit(ip("192.0.2.1")).expect("IPv4");
        assert_eq!(
            limiter.admit(ip("::ffff:192.0.2.1")).err(),
            Some(Refusal::AddressFull)
        );
    }

    #[test]
    fn trusted_proxies_have_their_own_cap() {
        let limiter = limiter(1, 100);
        let held: Vec<_> = (0..5)
            .map(|_| limiter.admit(ip("10.1.2.3")).expect("within the proxy cap"))
            .collect();
        assert_eq!(
            limiter.admit(ip("10.1.2.3")).err(),
            Some(Refusal::AddressFull)
        );
        assert!(
            limiter.admit(ip("10.1.2.4")).is_ok(),
            "another proxy node has its own cap"
        );
        drop(held);
    }

    #[test]
    fn a_trusted_proxy_and_a_client_in_its_64_do_not_share_a_count() {
        let limiter = ConnectionLimiter::new(
            ConnectionCaps {
                per_address: 1,
                per_trusted_proxy: 3,
                total: 100,
            },
            &["2001:db8::10/128".parse().expect("net")],
        );
        let _proxy: Vec<_> = (0..3)
            .map(|_| limiter.admit(ip("2001:db8::10")).expect("the proxy's cap"))
            .collect();
        assert!(
            limiter.admit(ip("2001:db8::99")).is_ok(),
            "a client in the proxy's /64 is counted on its own"
        );
    }

    #[test]
    fn the_total_cap_refuses_everyone_until_a_connection_closes() {
        let limiter = limiter(10, 2);
        let first = limiter.admit(ip("192.0.2.1")).expect("first");
        let _second = limiter.admit(ip("192.0.2.2")).expect("second");
        assert_eq!(
            limiter.admit(ip("192.0.2.3")).err(),
            Some(Refusal::TotalFull)
        );
        assert_eq!(limiter.counts().refused_total.load(Ordering::Relaxed), 1);
        drop(first);
        let _third = limiter.admit(ip("192.0.2.3")).expect("room again");
        assert_eq!(limiter.counts().open.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_default_total_stays_below_the_descriptor_limit() {
        assert_eq!(total_below_descriptor_limit(Some(1024)), 896);
        assert_eq!(total_below_descriptor_limit(Some(65_536)), 58_977);
        assert_eq!(total_below_descriptor_limit(Some(100)), 1);
        assert_eq!(total_below_descriptor_limit(None), u32::MAX);
    }
}
