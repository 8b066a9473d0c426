//! Serving the supervisor API: a TLS acceptor from the supervisor's certificate, and the accept
//! loop that hands each connection to hyper with the router. The loop takes a bound listener
//! and a stop signal from the caller, so tests bind port 0.
//!
//! Rules, so that no client, with the token or without, can stop the API from answering or the
//! server from opening its own files:
//! * the cap is hard: at most [`Limits::max_connections`] connections are open, a number taken
//!   from the descriptor limit after a reserve ([`Limits::for_this_process`]: the descriptors
//!   open when the API starts, for etcd, logs and the listener, plus [`FD_HEADROOM`] for etcd
//!   clients, S3 connections and files opened later);
//! * one client address holds at most [`Limits::per_address`] (half the cap), so a flood from
//!   one address leaves the other half to every other address;
//! * a connection arriving at the cap (or at its address's share) takes the place of an idle
//!   one: a connection still silent after [`Limits::grace`] first, then one waiting between
//!   requests, from the address holding most connections, oldest first. A connection with a
//!   request in flight, or new and still within its grace, is never closed for room. When no
//!   connection can be closed, the newcomer waits (in a room of a few places, where a newcomer
//!   takes the place of the oldest) up to a grace for one, and is then closed (the client sees
//!   the connection closed and may retry); at most [`Limits::max_closing`] connections closed
//!   for room may still be closing, so that descriptors, not just places, stay bounded;
//! * when fewer than [`Limits::min_free_fds`] descriptors are free (something else in the
//!   process took them), accepting pauses and idle connections are closed until the reserve is
//!   back, so that the server can still read its CA, write snapshots and reach etcd;
//! * the TLS handshake and each request's headers must arrive within [`Limits::handshake`] and
//!   [`Limits::header_read`], its body within [`Limits::body_read`], and a client must take
//!   some of a response at least every [`Limits::write_stall`] (a trickled body or a client
//!   that pipelines requests and never reads would keep its connection busy, so never closed
//!   for room); a connection idle between requests is closed after [`Limits::header_read`];
//! * accept errors (a full descriptor table) back off, up to a second, and are logged at most
//!   once every ten seconds with a count, instead of spinning;
//! * plain HTTP sent to this TLS port gets a 400 that says to use https.
//!
//! Clients on this host all come from 127.0.0.1, the CLI and a local attacker alike: the share
//! does not separate them, the eviction order does (a new connection is kept through its grace
//! and a connection serving a request is never closed; chatty idle connections are).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::{Error, Result};

/// The peer address of a request's connection (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Connection limits of the supervisor API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, never more.
    pub max_connections: usize,
    /// Connections one client address may hold.
    pub per_address: usize,
    /// Accepting pauses while fewer descriptors than this are free.
    pub min_free_fds: u64,
    /// Connections told to close but not yet closed, at most (they still hold descriptors).
    pub max_closing: usize,
    /// The soft descriptor limit the numbers above come from.
    pub fd_limit: u64,
    pub handshake: Duration,
    pub header_read: Duration,
    /// A request's body must arrive whole within this (from when its headers did).
    pub body_read: Duration,
    /// A client that takes nothing of a response for this long loses its connection.
    pub write_stall: Duration,
    /// A new connection is not closed for room before it had this long to send a request.
    pub grace: Duration,
}

/// Descriptors kept free, beyond those open when the API starts, for etcd clients, S3
/// connections and the files the server opens (CA, snapshots, metadata).
pub const FD_HEADROOM: u64 = 64;
/// The cap when descriptors are plenty.
const MAX_CAP: u64 = 1024;
/// The cap however low the descriptor limit (the server warns then).
const MIN_CAP: u64 = 8;

impl Limits {
    /// Limits from this process's descriptor limit (raised to the hard limit first) and the
    /// descriptors open now: call it once etcd and its clients are up.
    pub fn for_this_process() -> Limits {
        let soft = raise_fd_limit();
        let open = open_fds().unwrap_or(32);
        let l = Limits::from_descriptors(soft, open);
        if l.max_connections as u64 + open + FD_HEADROOM > soft {
            tracing::warn!(
                "the descriptor limit is {soft} and {open} are already open: the supervisor API takes at most {} connections; raise the limit (LimitNOFILE= in the unit, or ulimit -n) for more",
                l.max_connections
            );
        }
        l
    }

    /// Limits for a soft descriptor limit `soft` with `open` descriptors in use already.
    pub fn from_descriptors(soft: u64, open: u64) -> Limits {
        let cap = soft
            .saturating_sub(open + FD_HEADROOM)
            .clamp(MIN_CAP, MAX_CAP);
        Limits {
            max_connections: cap as usize,
            per_address: (cap / 2).max(1) as usize,
            min_free_fds: FD_HEADROOM / 2,
            max_closing: (FD_HEADROOM / 4) as usize,
            fd_limit: soft,
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            write_stall: Duration::from_secs(30),
            grace: Duration::from_secs(2),
        }
    }
}

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

/// Descriptors this process has open (Linux: the entries of /proc/self/fd, less the one that
/// lists them); `None` when that cannot be read, which with a full table is itself the answer.
pub fn open_fds() -> Option<u64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(n.saturating_sub(1))
}

/// The supervisor's serving certificate and key, replaceable while the server runs: each TLS
/// handshake takes the one in force.
pub struct ServingCert {
    cert: PathBuf,
    key: PathBuf,
    current: std::sync::RwLock<(Vec<u8>, Arc<rustls::sign::CertifiedKey>)>,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// The PEM text of `cert` and the certified key from it and `key`.
fn load_certified(cert: &Path, key: &Path) -> Result<(Vec<u8>, Arc<rustls::sign::CertifiedKey>)> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem = std::fs::read(cert).map_err(|e| Error::io("read certificate", cert, e))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Other(format!("cannot read {}: {e}", cert.display())))?;
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Other(format!("cannot read {}: {e}", key.display())))?;
    let certified =
        rustls::sign::CertifiedKey::from_der(certs, der, &crate::tls::crypto_provider()).map_err(
            |e| {
                Error::Other(format!(
                    "TLS setup failed: {} and {} do not make a certificate and its key: {e}",
                    cert.display(),
                    key.display()
                ))
            },
        )?;
    Ok((pem, Arc::new(certified)))
}

impl ServingCert {
    /// Loads `cert` with `key` (PEM files).
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServingCert>> {
        Ok(Arc::new(ServingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: std::sync::RwLock::new(load_certified(cert, key)?),
        }))
    }

    /// Serves the files' certificate from the next handshake on, when it changed; true then.
    pub fn reload(&self) -> Result<bool> {
        let (pem, certified) = load_certified(&self.cert, &self.key)?;
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        if cur.0 == pem {
            return Ok(false);
        }
        *cur = (pem, certified);
        Ok(true)
    }
}

impl rustls::server::ResolvesServerCert for ServingCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let cur = self.current.read().unwrap_or_else(|p| p.into_inner());
        Some(cur.1.clone())
    }
}

/// A TLS acceptor serving the certificate in force in `serving`.
pub fn tls_acceptor(serving: Arc<ServingCert>) -> Result<tokio_rustls::TlsAcceptor> {
    let cfg = rustls::ServerConfig::builder_with_provider(crate::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Other(format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(serving);
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// How often a running server looks at its serving certificate's end.
pub const RENEWAL_CHECK_EVERY: Duration = Duration::from_secs(12 * 3600);

/// One look: renews the supervisor certificate under `tls_dir` when it is within
/// [`crate::tls::RENEW_WITHIN_DAYS`] of its end (as at start) and serves the new one.
pub fn renew_serving_cert(serving: &ServingCert, tls_dir: &Path, hosts: &[String]) -> Result<bool> {
    // At start a missing CA is made; while running that would be a new CA that no token pins.
    for f in ["server-ca.crt", "server-ca.key"] {
        let p = tls_dir.join(f);
        if !p.exists() {
            return Err(Error::Other(format!(
                "{} is gone, so the supervisor certificate is not renewed: put the CA back (from a snapshot's bootstrap data or a backup of {})",
                p.display(),
                tls_dir.display()
            )));
        }
    }
    crate::tls::ensure_supervisor_certs(tls_dir, hosts)?;
    serving.reload()
}

/// Renews the supervisor certificate of a running server every [`RENEWAL_CHECK_EVERY`], so a
/// server that runs for a year needs no restart for it (etcd's are renewed at its next start).
pub async fn keep_serving_cert_fresh(
    serving: Arc<ServingCert>,
    tls_dir: PathBuf,
    hosts: Vec<String>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RENEWAL_CHECK_EVERY) => {}
            _ = stop.changed() => return,
        }
        let (s, d, h) = (serving.clone(), tls_dir.clone(), hosts.clone());
        match tokio::task::spawn_blocking(move || renew_serving_cert(&s, &d, &h)).await {
            Ok(Ok(true)) => tracing::info!("the supervisor API serves its renewed certificate"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!("could not renew the supervisor certificate: {e}"),
            Err(e) => tracing::warn!("could not renew the supervisor certificate: {e}"),
        }
    }
}

/// One open connection, as the registry sees it.
struct Slot {
    addr: IpAddr,
    admitted: Instant,
    /// Set once a request arrived.
    talked: AtomicBool,
    /// Requests whose response is not yet fully sent: such a connection is never evicted.
    busy: AtomicUsize,
    evict: Notify,
}

impl Slot {
    /// May be closed to make room at `now`: nothing in flight, and either it already talked
    /// (it waits between requests) or it stayed silent through its grace.
    fn evictable(&self, now: Instant, grace: Duration) -> bool {
        self.busy.load(Ordering::Acquire) == 0
            && (self.talked.load(Ordering::Acquire)
                || now.saturating_duration_since(self.admitted) >= grace)
    }
}

#[derive(Default)]
struct Open {
    /// Oldest first (ids grow with time).
    slots: BTreeMap<u64, Arc<Slot>>,
    per_addr: HashMap<IpAddr, usize>,
    /// Connections told to close whose task has not ended yet: they still hold a descriptor.
    closing: usize,
}

impl Open {
    /// Tells connection `id` to close; it counts as closing until its task leaves.
    fn evict(&mut self, id: u64) {
        if let Some(s) = self.remove(id) {
            self.closing += 1;
            s.evict.notify_one();
        }
    }

    fn remove(&mut self, id: u64) -> Option<Arc<Slot>> {
        let s = self.slots.remove(&id)?;
        if let Some(n) = self.per_addr.get_mut(&s.addr) {
            *n -= 1;
            if *n == 0 {
                self.per_addr.remove(&s.addr);
            }
        }
        Some(s)
    }

    /// The connection to close for room: among the evictable ones (of `only` if given), from
    /// the address holding most, silent before talked, oldest first.
    fn victim(&self, only: Option<IpAddr>, now: Instant, grace: Duration) -> Option<u64> {
        self.slots
            .iter()
            .filter(|(_, s)| only.is_none_or(|a| s.addr == a) && s.evictable(now, grace))
            .min_by_key(|(id, s)| {
                let held = self.per_addr.get(&s.addr).copied().unwrap_or(0);
                (
                    std::cmp::Reverse(held),
                    s.talked.load(Ordering::Relaxed),
                    **id,
                )
            })
            .map(|(id, _)| *id)
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Every slot is taken by a connection that may not be closed.
    Full,
    /// The address holds its share and none of its connections may be closed.
    AddressShare,
}

/// Open connections.
#[derive(Default)]
struct Registry {
    next: AtomicU64,
    open: Mutex<Open>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection from `addr`, closing an idle one first when the cap or the
    /// address's share is reached; refuses it when none may be closed.
    fn admit(
        &self,
        addr: IpAddr,
        now: Instant,
        limits: &Limits,
    ) -> std::result::Result<(u64, Arc<Slot>), Refused> {
        let mut open = self.lock();
        let held = open.per_addr.get(&addr).copied().unwrap_or(0);
        // Room made by closing others counts once they are closed: at most `max_closing` at
        // a time, so the descriptors held stay within the cap plus that.
        let may_close = open.closing < limits.max_closing;
        if held >= limits.per_address {
            let v = open
                .victim(Some(addr), now, limits.grace)
                .filter(|_| may_close)
                .ok_or(Refused::AddressShare)?;
            open.evict(v);
        } else if open.slots.len() >= limits.max_connections {
            // Room at the cap comes from the newcomer's own address or from one holding more
            // than it: a flood whose connections are all busy must not push out the idle
            // keep-alive connections of an address that holds fewer (seen under load).
            let v = open
                .victim(None, now, limits.grace)
                .filter(|v| {
                    let from = open.slots[v].addr;
                    from == addr || open.per_addr.get(&from).copied().unwrap_or(0) > held
                })
                .filter(|_| may_close)
                .ok_or(Refused::Full)?;
            open.evict(v);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            addr,
            admitted: now,
            talked: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            evict: Notify::new(),
        });
        open.slots.insert(id, slot.clone());
        *open.per_addr.entry(addr).or_default() += 1;
        Ok((id, slot))
    }

    /// Closes up to `n` evictable connections (descriptor pressure); returns how many.
    fn shed(&self, n: usize, now: Instant, grace: Duration) -> usize {
        let mut open = self.lock();
        let mut done = 0;
        while done < n {
            let Some(v) = open.victim(None, now, grace) else {
                break;
            };
            open.evict(v);
            done += 1;
        }
        done
    }

    /// A connection's task ended (its descriptor is closed).
    fn leave(&self, id: u64) {
        let mut open = self.lock();
        if open.remove(id).is_none() {
            open.closing = open.closing.saturating_sub(1);
        }
    }

    fn len(&self) -> usize {
        self.lock().slots.len()
    }
}

/// Marks its connection busy from the moment a request arrives until its response body is
/// sent (or dropped).
struct Busy(Arc<Slot>);

impl Busy {
    fn enter(slot: &Arc<Slot>) -> Busy {
        slot.talked.store(true, Ordering::Release);
        slot.busy.fetch_add(1, Ordering::AcqRel);
        Busy(slot.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection marked busy while it streams.
struct TrackedBody {
    inner: axum::body::Body,
    _busy: Busy,
}

impl hyper::body::Body for TrackedBody {
    type Data = hyper::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that must arrive whole before a deadline.
struct DeadlineBody {
    inner: hyper::body::Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl hyper::body::Body for DeadlineBody {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let limit = self.limit;
            return Poll::Ready(Some(Err(format!(
                "the request body did not arrive within {limit:?}"
            )
            .into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's stream whose writes fail once the client has taken nothing for `limit`.
struct StallGuard<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> StallGuard<S> {
    fn new(inner: S, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes a write's outcome on; a write pending for `limit` becomes an error.
    fn watch<T>(
        &mut self,
        r: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client took nothing of the response for {limit:?}"),
            )));
        }
        Poll::Pending
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for StallGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for StallGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(r, cx)
    }
}

/// Logs a recurring failure at most once every ten seconds, with how often it happened.
#[derive(Default)]
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

/// Free descriptors, counted at most every [`FdGauge::EVERY`] (a directory listing per
/// accepted connection would cost more than the connection).
struct FdGauge {
    limit: u64,
    last: Option<(Instant, u64)>,
}

impl FdGauge {
    const EVERY: Duration = Duration::from_millis(20);

    fn free(&mut self) -> u64 {
        let now = Instant::now();
        if let Some((t, free)) = self.last
            && now.duration_since(t) < Self::EVERY
        {
            return free;
        }
        let free = open_fds().map_or(0, |open| self.limit.saturating_sub(open));
        self.last = Some((now, free));
        free
    }
}

/// A connection accepted at the cap, waiting for a place.
struct Waiting {
    tcp: TcpStream,
    peer: SocketAddr,
    since: Instant,
}

/// What the accept loop shares with the connection tasks.
struct Acceptor {
    registry: Arc<Registry>,
    tls: tokio_rustls::TlsAcceptor,
    router: axum::Router,
    limits: Limits,
    refused_log: RateLimitedLog,
}

impl Acceptor {
    /// Starts serving `tcp` if it gets a place; hands it back otherwise.
    fn place(
        &mut self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> std::result::Result<(), (TcpStream, Refused)> {
        let (id, slot) = match self.registry.admit(peer.ip(), Instant::now(), &self.limits) {
            Ok(x) => x,
            Err(why) => return Err((tcp, why)),
        };
        let registry = self.registry.clone();
        let tls = self.tls.clone();
        let router = self.router.clone();
        let limits = self.limits;
        tokio::spawn(async move {
            connection(tcp, peer, tls, router, limits, slot).await;
            registry.leave(id);
        });
        Ok(())
    }

    fn refuse(&mut self, tcp: TcpStream, peer: SocketAddr, why: Refused) {
        let why = match why {
            Refused::Full => format!(
                "all {} connections are serving requests or new",
                self.limits.max_connections
            ),
            Refused::AddressShare => format!(
                "{} holds its share of {} connections, all serving requests or new",
                peer.ip(),
                self.limits.per_address
            ),
        };
        self.refused_log
            .warn(format_args!("refused a connection from {peer}: {why}"));
        drop(tcp);
    }

    /// Places the waiting connections that now fit; refuses those that waited through a grace.
    fn place_waiting(&mut self, waiting: &mut Vec<Waiting>) {
        for w in std::mem::take(waiting) {
            match self.place(w.tcp, w.peer) {
                Ok(()) => {}
                Err((tcp, why)) if w.since.elapsed() >= self.limits.grace => {
                    self.refuse(tcp, w.peer, why)
                }
                Err((tcp, _)) => waiting.push(Waiting { tcp, ..w }),
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
    let mut acc = Acceptor {
        registry: Arc::new(Registry::default()),
        tls,
        router,
        limits,
        refused_log: RateLimitedLog::default(),
    };
    // Connections that arrived when every place was busy or new wait here, at most a grace, for
    // a place (a new connection's grace ends, a connection closes); their descriptors come out
    // of the headroom.
    let room = (limits.min_free_fds / 2) as usize;
    let mut waiting: Vec<Waiting> = Vec::with_capacity(room);
    let mut accept_log = RateLimitedLog::default();
    let mut pressure_log = RateLimitedLog::default();
    let mut gauge = FdGauge {
        limit: limits.fd_limit,
        last: None,
    };
    let mut backoff = Duration::ZERO;
    tracing::info!(
        "supervisor API: at most {} connections, {} per client address (descriptor limit {}, {} kept free)",
        limits.max_connections,
        limits.per_address,
        limits.fd_limit,
        limits.min_free_fds
    );
    loop {
        acc.place_waiting(&mut waiting);
        // Descriptors others in this process need come first: stop taking new connections and
        // give back idle ones until enough are free again.
        let free = gauge.free();
        if free < limits.min_free_fds {
            let shed = acc.registry.shed(
                (limits.min_free_fds - free) as usize,
                Instant::now(),
                limits.grace,
            );
            pressure_log.warn(format_args!(
                "only {free} descriptors free (limit {}): not accepting connections for now, closed {shed} idle ones; {} connections open",
                limits.fd_limit,
                acc.registry.len()
            ));
            tokio::select! {
                _ = tokio::time::sleep(FdGauge::EVERY * 2) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => { backoff = Duration::ZERO; x }
                Err(e) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    accept_log.warn(format_args!(
                        "accept failed: {e}; {} connections open; retrying in {backoff:?}",
                        acc.registry.len()
                    ));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(50)), if !waiting.is_empty() => continue,
            _ = stop.changed() => return,
        };
        if let Err((tcp, why)) = acc.place(tcp, peer) {
            // A full room gives up its oldest: as with open connections, the newest is the
            // last to go, so a burst cannot keep a later client out.
            if waiting.len() >= room.max(1) {
                let old = waiting.remove(0);
                acc.refuse(old.tcp, old.peer, why);
            }
            waiting.push(Waiting {
                tcp,
                peer,
                since: Instant::now(),
            });
        }
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
    let evicted = || async {
        slot.evict.notified().await;
        tracing::debug!("closed idle connection from {peer} to make room");
    };
    let handshake = async {
        // A TLS handshake starts with a record of type 22; letters mean plain HTTP.
        let mut first = [0u8; 1];
        match tokio::time::timeout(limits.handshake, tcp.peek(&mut first)).await {
            Ok(Ok(1)) if first[0].is_ascii_alphabetic() => {
                plain_http_hint(tcp).await;
                return None;
            }
            Ok(Ok(1)) => {}
            _ => return None,
        }
        match tokio::time::timeout(limits.handshake, tls.accept(tcp)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake with {peer} failed: {e}");
                None
            }
            Err(_) => None,
        }
    };
    let stream = tokio::select! {
        s = handshake => match s { Some(s) => s, None => return },
        _ = evicted() => return,
    };
    let svc_slot = slot.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let busy = Busy::enter(&svc_slot);
        req.extensions_mut().insert(PeerAddr(peer));
        let limit = limits.body_read;
        let answer = router.clone().oneshot(req.map(|inner| {
            axum::body::Body::new(DeadlineBody {
                inner,
                deadline: Box::pin(tokio::time::sleep(limit)),
                limit,
            })
        }));
        async move {
            let resp = answer.await?;
            Ok::<_, std::convert::Infallible>(resp.map(|inner| TrackedBody { inner, _busy: busy }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .serve_connection(
            TokioIo::new(StallGuard::new(stream, limits.write_stall)),
            svc,
        );
    tokio::pin!(conn);
    let outcome = tokio::select! {
        r = conn.as_mut() => r,
        _ = evicted() => {
            // Idle when chosen; a request that slipped in since is answered before closing.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = outcome {
        tracing::debug!("connection from {peer}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_address: usize) -> Limits {
        Limits {
            max_connections: max,
            per_address,
            ..Limits::from_descriptors(1 << 16, 0)
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn ids(r: &Registry) -> Vec<u64> {
        r.lock().slots.keys().copied().collect()
    }

    #[test]
    fn the_cap_is_hard_when_every_connection_serves_a_request() {
        let r = Registry::default();
        let l = limits(3, 3);
        let now = Instant::now();
        let held: Vec<_> = (0..3).map(|_| r.admit(A, now, &l).unwrap()).collect();
        let _busy: Vec<Busy> = held.iter().map(|(_, s)| Busy::enter(s)).collect();
        // Today's soft cap admitted a fourth one here.
        let later = now + Duration::from_secs(60);
        assert_eq!(r.admit(B, later, &l).err(), Some(Refused::Full));
        assert_eq!(r.len(), 3);
        drop(_busy);
        // Once one is idle between requests, it makes room.
        let (_, s) = r.admit(B, later, &l).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(s.addr, B);
    }

    #[test]
    fn eviction_takes_silent_before_idle_and_spares_new_connections() {
        let r = Registry::default();
        let l = limits(3, 3);
        let t0 = Instant::now();
        let (a, sa) = r.admit(A, t0, &l).unwrap();
        let (b, _sb) = r.admit(A, t0, &l).unwrap();
        let (c, sc) = r.admit(A, t0, &l).unwrap();
        // `a` talked and waits between requests; `b` never said anything; `c` serves a request.
        drop(Busy::enter(&sa));
        let _busy = Busy::enter(&sc);
        // Within the grace `b` is spared: `a`, idle between requests, goes.
        let (d, _sd) = r.admit(A, t0 + Duration::from_millis(500), &l).unwrap();
        assert_eq!(ids(&r), vec![b, c, d]);
        // After the grace, the silent `b` goes before anything else; `d` is new and spared.
        let t1 = t0 + l.grace;
        let (e, _se) = r.admit(A, t1, &l).unwrap();
        assert_eq!(ids(&r), vec![c, d, e]);
        // `d`, silent past its grace, goes next; then `c` serves a request and `e` and `f` are
        // new: the next one is refused.
        let (f, _sf) = r.admit(B, t1 + Duration::from_millis(600), &l).unwrap();
        assert_eq!(ids(&r), vec![c, e, f]);
        assert_eq!(
            r.admit(B, t1 + Duration::from_millis(700), &l).err(),
            Some(Refused::Full)
        );
        assert!(!ids(&r).contains(&a));
    }

    #[test]
    fn one_address_holds_at_most_its_share() {
        let r = Registry::default();
        let l = limits(4, 2);
        let t0 = Instant::now();
        let (_, s1) = r.admit(A, t0, &l).unwrap();
        let (_, s2) = r.admit(A, t0, &l).unwrap();
        let _b1 = Busy::enter(&s1);
        let _b2 = Busy::enter(&s2);
        // A third from A is refused although two slots are free...
        assert_eq!(
            r.admit(A, t0 + Duration::from_secs(5), &l).err(),
            Some(Refused::AddressShare)
        );
        // ... which are B's.
        r.admit(B, t0, &l).unwrap();
        r.admit(B, t0, &l).unwrap();
        assert_eq!(r.len(), 4);
        // At its share, A's newcomer replaces A's own idle connection, never B's.
        drop(_b2);
        let (_, s) = r.admit(A, t0 + Duration::from_secs(5), &l).unwrap();
        assert_eq!(s.addr, A);
        let open = r.lock();
        assert_eq!(open.per_addr.get(&A), Some(&2));
        assert_eq!(open.per_addr.get(&B), Some(&2));
    }

    #[test]
    fn at_the_cap_the_address_holding_most_gives_way() {
        let r = Registry::default();
        let l = limits(4, 3);
        let t0 = Instant::now();
        let (b, sb) = r.admit(B, t0, &l).unwrap();
        for _ in 0..3 {
            let (_, s) = r.admit(A, t0, &l).unwrap();
            drop(Busy::enter(&s));
        }
        drop(Busy::enter(&sb));
        // B's connection is the oldest idle one, but A holds more: A gives way.
        r.admit(B, t0 + Duration::from_secs(1), &l).unwrap();
        let open = r.lock();
        assert!(open.slots.contains_key(&b));
        assert_eq!(open.per_addr.get(&A), Some(&2));
    }

    #[test]
    fn room_made_by_closing_counts_once_closed() {
        let r = Registry::default();
        let l = Limits {
            max_closing: 2,
            ..limits(2, 2)
        };
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        let (a, _) = r.admit(A, t0, &l).unwrap();
        let (b, _) = r.admit(A, t0, &l).unwrap();
        // Two silent connections make room for two newcomers; their tasks have not ended.
        let (c, _) = r.admit(A, later, &l).unwrap();
        let (_d, _) = r.admit(A, later, &l).unwrap();
        assert_eq!(r.lock().closing, 2);
        // A third newcomer waits although `c` could go: two are still closing.
        let much_later = later + Duration::from_secs(5);
        assert_eq!(
            r.admit(A, much_later, &l).err(),
            Some(Refused::AddressShare)
        );
        // Once one of them is closed, room is made again.
        r.leave(a);
        r.admit(A, much_later, &l).unwrap();
        assert!(!ids(&r).contains(&c));
        r.leave(b);
        r.leave(c);
        assert_eq!(r.lock().closing, 0);
    }

    #[test]
    fn shedding_closes_only_idle_connections() {
        let r = Registry::default();
        let l = limits(8, 8);
        let t0 = Instant::now();
        let (_, s) = r.admit(A, t0, &l).unwrap();
        let _busy = Busy::enter(&s);
        for _ in 0..3 {
            r.admit(B, t0, &l).unwrap();
        }
        assert_eq!(r.shed(10, t0 + l.grace, l.grace), 3);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn at_the_cap_a_busy_flood_does_not_push_out_the_idle_of_an_address_holding_fewer() {
        let r = Registry::default();
        let l = limits(8, 8);
        let t0 = Instant::now();
        let mut busy = Vec::new();
        for _ in 0..5 {
            let (_, s) = r.admit(A, t0, &l).unwrap();
            busy.push(Busy::enter(&s));
        }
        for _ in 0..3 {
            r.admit(B, t0, &l).unwrap();
        }
        let later = t0 + l.grace;
        // A's newcomer finds only B's idle connections evictable: B holds fewer, so no room.
        assert_eq!(r.admit(A, later, &l).err(), Some(Refused::Full));
        assert_eq!(r.lock().per_addr.get(&B), Some(&3));
        // B's newcomer may replace B's own idle one.
        r.admit(B, later, &l).unwrap();
        assert_eq!(r.lock().per_addr.get(&B), Some(&3));
        drop(busy);
    }

    /// A TLS server with `router` on a loopback port; its address, a client configuration that
    /// trusts it, and its stop switch.
    async fn test_server(
        router: axum::Router,
        limits: Limits,
    ) -> (SocketAddr, Arc<rustls::ClientConfig>, watch::Sender<bool>) {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let dir = tempfile::tempdir().unwrap();
        let sup = crate::tls::ensure_supervisor_certs(dir.path(), &crate::tls::default_hosts(&[]))
            .unwrap();
        let serving = ServingCert::load(&sup.cert, &sup.key).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(serve(
            listener,
            tls_acceptor(serving).unwrap(),
            router,
            limits,
            stop_rx,
        ));
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(sup.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (addr, Arc::new(cfg), stop_tx)
    }

    async fn tls_connect(
        addr: SocketAddr,
        cfg: &Arc<rustls::ClientConfig>,
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(name, tcp)
            .await
            .unwrap()
    }

    /// The end of the certificate the server at `addr` presents, in days from now.
    async fn served_days_left(addr: SocketAddr, ca_pem: &str) -> i64 {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .unwrap();
        let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
        (c.validity().not_after.timestamp() - chrono::Utc::now().timestamp()) / 86400
    }

    #[tokio::test]
    async fn a_running_server_serves_its_renewed_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = crate::tls::default_hosts(&[]);
        let sup = crate::tls::ensure_supervisor_certs(dir.path(), &hosts).unwrap();
        // The certificate in force ends in 30 days.
        let ca =
            crate::tls::Ca::load_or_create(dir.path(), "server-ca", "etcdsnap-server-ca").unwrap();
        let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&sup.key).unwrap()).unwrap();
        let pem = ca
            .issue(
                &key,
                "etcdsnap-supervisor",
                &hosts,
                &[rcgen::ExtendedKeyUsagePurpose::ServerAuth],
                30,
            )
            .unwrap();
        std::fs::write(&sup.cert, pem).unwrap();
        let serving = ServingCert::load(&sup.cert, &sup.key).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve(
            listener,
            tls_acceptor(serving.clone()).unwrap(),
            axum::Router::new(),
            Limits::from_descriptors(1 << 16, 0),
            stop_rx,
        ));
        assert!(served_days_left(addr, &sup.ca_pem).await < 30);
        // Nothing to do while more than 90 days are left; renewed and served when fewer.
        assert!(renew_serving_cert(&serving, dir.path(), &hosts).unwrap());
        assert!(served_days_left(addr, &sup.ca_pem).await > 360);
        assert!(!renew_serving_cert(&serving, dir.path(), &hosts).unwrap());
        // A CA that vanished is not replaced by a new one behind the tokens' back.
        std::fs::remove_file(dir.path().join("server-ca.key")).unwrap();
        let e = renew_serving_cert(&serving, dir.path(), &hosts).unwrap_err();
        assert!(e.to_string().contains("server-ca.key is gone"), "{e}");
        assert!(!dir.path().join("server-ca.key").exists());
        let _ = stop_tx.send(true);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_trickled_request_body_is_cut_off() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let router = axum::Router::new().route(
            "/echo",
            axum::routing::post(|body: String| async move { body }),
        );
        let limits = Limits {
            body_read: Duration::from_millis(500),
            ..Limits::from_descriptors(1 << 16, 0)
        };
        let (addr, cfg, stop_tx) = test_server(router, limits).await;
        let connect = || tls_connect(addr, &cfg);
        // A whole body is answered.
        let mut t = connect().await;
        t.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\ncontent-length: 2\r\n\r\nhi")
            .await
            .unwrap();
        let mut buf = vec![0u8; 512];
        let n = t.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        // Two bytes of ten, then nothing: a 400 once the deadline passes.
        let mut t = connect().await;
        t.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\ncontent-length: 10\r\n\r\nhi")
            .await
            .unwrap();
        let started = Instant::now();
        let n = tokio::time::timeout(Duration::from_secs(5), t.read(&mut buf))
            .await
            .expect("the server waited for the body")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        assert!(started.elapsed() >= Duration::from_millis(400));
        let _ = stop_tx.send(true);
    }

    #[tokio::test]
    async fn a_client_that_reads_nothing_loses_its_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (addr, cfg, stop) = test_server(
            axum::Router::new().route("/big", axum::routing::get(|| async { vec![7u8; 64 << 20] })),
            Limits {
                write_stall: Duration::from_millis(500),
                ..Limits::from_descriptors(1 << 16, 0)
            },
        )
        .await;
        let mut t = tls_connect(addr, &cfg).await;
        t.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // Nothing read for two seconds; then what was sent, and the end of the connection.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match t.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got += n,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the connection stayed open");
        assert!(got < 64 << 20, "the whole response was sent ({got} bytes)");
        let _ = stop.send(true);
    }

    #[test]
    fn limits_keep_a_reserve_of_descriptors() {
        // `ulimit -n 300` with 40 descriptors open at start.
        let l = Limits::from_descriptors(300, 40);
        assert_eq!(l.max_connections, 300 - 40 - FD_HEADROOM as usize);
        assert_eq!(l.per_address, l.max_connections / 2);
        assert!(l.min_free_fds > 0 && l.min_free_fds < FD_HEADROOM);
        // Plenty of descriptors: 1024 at most.
        assert_eq!(Limits::from_descriptors(1 << 20, 40).max_connections, 1024);
        // Very few: a handful still, and the server warns.
        assert_eq!(Limits::from_descriptors(64, 40).max_connections, 8);
        let soft = raise_fd_limit();
        assert!(soft >= 8);
        let open = open_fds().expect("/proc/self/fd");
        assert!(open >= 3 && open < soft, "{open}");
    }
}
