//! Serving the supervisor API: a TLS acceptor from the supervisor's certificate, and the accept
//! loop that hands each connection to hyper with the router. The loop takes a bound listener
//! and a stop signal from the caller, so tests bind port 0.
//!
//! Rules, so that no client without the token can stop the API from answering:
//! * at most [`Limits::max_connections`] connections are open; when a new one arrives at the
//!   limit, the oldest connection that has not yet sent a request is closed to make room (an
//!   idle or stalled client loses its place to one that talks);
//! * the TLS handshake and each request's headers must arrive within [`Limits::handshake`] and
//!   [`Limits::header_read`]; a connection idle between requests is closed after
//!   [`Limits::header_read`] as well;
//! * accept errors (a full descriptor table) back off, up to a second, and are logged at most
//!   once every ten seconds with a count, instead of spinning;
//! * plain HTTP sent to this TLS port gets a 400 that says to use https.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::{Error, Result};

/// The peer address of a request's connection (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Connection limits of the supervisor API.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake: Duration,
    pub header_read: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: connection_cap(),
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
        }
    }
}

/// Descriptors kept free for etcd clients, S3 connections and files.
const FD_RESERVE: u64 = 64;

/// Raises the soft descriptor limit to the hard one (many idle clients must not starve the
/// server of descriptors); returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit fill and read the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return lim.rlim_max;
            }
        }
        lim.rlim_cur
    }
}

/// Connections allowed at once: up to 1024, within the descriptor limit.
pub fn connection_cap() -> usize {
    let soft = raise_fd_limit();
    soft.saturating_sub(FD_RESERVE).clamp(8, 1024) as usize
}

/// A TLS acceptor serving `cert` with `key` (PEM files).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<std::result::Result<_, _>>())
        .map_err(|e| Error::Other(format!("cannot read {}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Other(format!("cannot read {}: {e}", key.display())))?;
    let cfg = rustls::ServerConfig::builder_with_provider(crate::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Other(format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Other(format!("TLS setup failed: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// One open connection, as the registry sees it.
struct Slot {
    /// Set once a request arrived: such a connection is never evicted.
    talked: AtomicBool,
    evict: Notify,
}

/// Open connections, oldest first (ids grow with time).
#[derive(Default)]
struct Registry {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Slot>>>,
}

impl Registry {
    /// Registers a connection; at the limit, first evicts the oldest one that has not talked.
    fn admit(&self, max: usize) -> (u64, Arc<Slot>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            talked: AtomicBool::new(false),
            evict: Notify::new(),
        });
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= max {
            let victim = open
                .iter()
                .find(|(_, s)| !s.talked.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            if let Some(v) = victim
                && let Some(s) = open.remove(&v)
            {
                s.evict.notify_one();
            }
        }
        open.insert(id, slot.clone());
        (id, slot)
    }

    fn leave(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    fn len(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }
}

/// Logs a recurring failure at most once every ten seconds, with how often it happened.
struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn warn(&mut self, what: impl std::fmt::Display) {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < Duration::from_secs(10) => self.suppressed += 1,
            _ => {
                if self.suppressed > 0 {
                    tracing::warn!(
                        "{what} (and {} more times in the last 10 s)",
                        self.suppressed
                    );
                } else {
                    tracing::warn!("{what}");
                }
                self.last = Some(now);
                self.suppressed = 0;
            }
        }
    }
}

/// Serves `router` on `listener` with TLS until `stop` flips.
pub async fn serve(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    router: axum::Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let registry = Arc::new(Registry::default());
    let mut accept_log = RateLimitedLog {
        last: None,
        suppressed: 0,
    };
    let mut backoff = Duration::ZERO;
    tracing::debug!(
        "supervisor API: at most {} connections",
        limits.max_connections
    );
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => { backoff = Duration::ZERO; x }
                Err(e) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    accept_log.warn(format_args!(
                        "accept failed: {e}; {} connections open; retrying in {backoff:?}",
                        registry.len()
                    ));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let (id, slot) = registry.admit(limits.max_connections);
        let registry = registry.clone();
        let tls = tls.clone();
        let router = router.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = slot.evict.notified() => {
                    tracing::debug!("closed idle connection from {peer} to make room");
                }
                _ = connection(tcp, peer, tls, router, limits, slot.clone()) => {}
            }
            registry.leave(id);
        });
    }
}

/// Answers plain HTTP on the TLS port with a hint, then closes.
async fn plain_http_hint(mut tcp: TcpStream) {
    let body = "this is the etcdsnap supervisor API, which speaks HTTPS only: use https://\n";
    let msg = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(msg.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: tokio_rustls::TlsAcceptor,
    router: axum::Router,
    limits: Limits,
    slot: Arc<Slot>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    // A TLS handshake starts with a record of type 22; letters mean plain HTTP.
    let mut first = [0u8; 1];
    match tokio::time::timeout(limits.handshake, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0].is_ascii_alphabetic() => return plain_http_hint(tcp).await,
        Ok(Ok(1)) => {}
        _ => return,
    }
    let stream = match tokio::time::timeout(limits.handshake, tls.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake with {peer} failed: {e}");
            return;
        }
        Err(_) => return,
    };
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        slot.talked.store(true, Ordering::Relaxed);
        req.extensions_mut().insert(PeerAddr(peer));
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .serve_connection(TokioIo::new(stream), svc)
        .await
    {
        tracing::debug!("connection from {peer}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_takes_the_oldest_silent_connection() {
        let r = Registry::default();
        let (a, sa) = r.admit(3);
        let (_b, sb) = r.admit(3);
        let (_c, _sc) = r.admit(3);
        sa.talked.store(true, Ordering::Relaxed);
        // At the limit: `a` talked, so `b` (the oldest silent one) goes.
        let (_d, _sd) = r.admit(3);
        assert_eq!(r.len(), 3);
        let open: Vec<u64> = r.open.lock().unwrap().keys().copied().collect();
        assert!(open.contains(&a) && !open.contains(&1), "{open:?}");
        drop(sb);
    }

    #[test]
    fn the_descriptor_limit_is_raised_and_bounds_the_cap() {
        let soft = raise_fd_limit();
        assert!(soft >= 8);
        assert!(connection_cap() as u64 <= soft.max(72));
    }
}
