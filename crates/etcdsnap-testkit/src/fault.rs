//! A TCP relay whose behaviour a test changes while it runs, to put a network fault between
//! etcdsnap and a real server (S3): pass through, close every connection at once, hold
//! connections without an answer, or cut a connection after the client has sent a number of
//! bytes (a failure in the middle of an upload). A change of behaviour closes the connections
//! already open. Plain threads, so it needs no runtime.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the relay does with the connections it accepts from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Relays both ways.
    Pass,
    /// Accepts and closes at once: a server going down.
    Close,
    /// Accepts, reads nothing and answers nothing until the relay is dropped: a server that hangs.
    Hang,
    /// Relays until the client has sent this many bytes on the connection, then cuts it.
    CutAfter(u64),
}

struct Shared {
    mode: Mutex<Fault>,
    stop: AtomicBool,
    accepted: AtomicUsize,
    cuts: AtomicUsize,
    /// Every socket still open, so that dropping the relay closes them all.
    open: Mutex<Vec<TcpStream>>,
}

/// The relay on a loopback port in front of `127.0.0.1:<upstream>`.
pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            mode: Mutex::new(Fault::Pass),
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            cuts: AtomicUsize::new(0),
            open: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                sh.accepted.fetch_add(1, Ordering::SeqCst);
                let mode = *sh.mode.lock().unwrap();
                let sh = sh.clone();
                std::thread::spawn(move || relay(client, upstream, mode, &sh));
            }
        });
        FaultProxy {
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:<port>`, as an S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Closes every open connection (a client's pooled ones too, as a network fault would) and
    /// applies `f` to the connections accepted from now on.
    pub fn set(&self, f: Fault) {
        *self.shared.mode.lock().unwrap() = f;
        for s in self.shared.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections cut by [`Fault::CutAfter`] so far.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }
}

fn keep(sh: &Shared, s: &TcpStream) {
    if let Ok(c) = s.try_clone() {
        sh.open.lock().unwrap().push(c);
    }
}

fn relay(client: TcpStream, upstream: u16, mode: Fault, sh: &Arc<Shared>) {
    let limit = match mode {
        Fault::Close => {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        Fault::Hang => {
            keep(sh, &client);
            while !sh.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        Fault::Pass => u64::MAX,
        Fault::CutAfter(n) => n,
    };
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    keep(sh, &client);
    keep(sh, &server);
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up_sh = sh.clone();
    let up = std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent = 0u64;
        loop {
            let n = match c_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let room = limit.saturating_sub(sent);
            let take = (n as u64).min(room) as usize;
            if s_write.write_all(&buf[..take]).is_err() {
                break;
            }
            sent += take as u64;
            if take < n {
                up_sh.cuts.fetch_add(1, Ordering::SeqCst);
                let _ = c_read.shutdown(Shutdown::Both);
                let _ = s_write.shutdown(Shutdown::Both);
                return;
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    let _ = std::io::copy(&mut s_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Write);
    let _ = up.join();
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for s in self.shared.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Wake the accept loop so that it sees the stop flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}
