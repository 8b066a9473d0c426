//! Progress of the long operations, for a bar on a terminal and nowhere else.
//!
//! Two channels, because the work happens in two places:
//! - Work in this process (a download, a decompression, a checksum, a restore by etcdutl)
//!   reports to a [`Sink`] that the command line installs once with [`install`], and only when
//!   its standard error is a terminal. The server installs none, so its log never carries
//!   progress; with no sink every call here is a no-op costing one atomic load.
//! - A save runs in the server, so its progress is kept on a [`SaveBoard`] of the engine and
//!   served as [`SaveProgress`] by `GET /db/snapshot/progress`, which `etcd-snapshot save`
//!   polls while it waits for its answer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Where progress of work in this process goes: one task at a time, begun, advanced, ended.
pub trait Sink: Send + Sync {
    /// A task starts: `what` says what it does; `total` is the bytes it will handle, when known.
    fn begin(&self, what: &str, total: Option<u64>);
    /// `n` more bytes handled.
    fn advance(&self, n: u64);
    /// `n` bytes handled in all (for work measured from outside, such as a file's size).
    fn set_position(&self, n: u64);
    /// The task ended (done or failed).
    fn end(&self);
}

static SINK: OnceLock<Box<dyn Sink>> = OnceLock::new();
static BUSY: AtomicBool = AtomicBool::new(false);

/// Installs the process's sink; the first one stays.
pub fn install(sink: Box<dyn Sink>) {
    let _ = SINK.set(sink);
}

/// One task's progress; ends when dropped. Only the outermost task of a nest reports, so a
/// checksum inside a decompression does not replace the decompression's bar.
pub struct Task {
    reporting: bool,
    /// The sink of a task made by [`task_to`]; `None` for the process's.
    own: Option<Arc<dyn Sink>>,
}

/// Starts a task (see [`Sink::begin`]).
pub fn task(what: &str, total: Option<u64>) -> Task {
    let reporting = match SINK.get() {
        Some(sink) if !BUSY.swap(true, Ordering::AcqRel) => {
            sink.begin(what, total);
            true
        }
        _ => false,
    };
    Task {
        reporting,
        own: None,
    }
}

/// Starts a task that reports to `sink` rather than to the process's: for work whose caller
/// watches it itself (tests of the snapshot source). It does not nest with other tasks.
pub fn task_to(sink: Arc<dyn Sink>, what: &str, total: Option<u64>) -> Task {
    sink.begin(what, total);
    Task {
        reporting: true,
        own: Some(sink),
    }
}

impl Task {
    fn sink(&self) -> Option<&dyn Sink> {
        match &self.own {
            Some(sink) => Some(sink.as_ref()),
            None => SINK.get().map(|s| s.as_ref()),
        }
    }

    /// `n` more bytes handled.
    pub fn advance(&self, n: u64) {
        if self.reporting
            && let Some(sink) = self.sink()
        {
            sink.advance(n);
        }
    }

    /// `n` bytes handled in all.
    pub fn set_position(&self, n: u64) {
        if self.reporting
            && let Some(sink) = self.sink()
        {
            sink.set_position(n);
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if self.reporting {
            if let Some(sink) = self.sink() {
                sink.end();
            }
            if self.own.is_none() {
                BUSY.store(false, Ordering::Release);
            }
        }
    }
}

/// A reader that reports the bytes read through it to a [`Task`].
pub struct ReadProgress<'a, R> {
    inner: R,
    task: &'a Task,
}

impl<'a, R> ReadProgress<'a, R> {
    pub fn new(inner: R, task: &'a Task) -> Self {
        Self { inner, task }
    }
}

impl<R: std::io::Read> std::io::Read for ReadProgress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.task.advance(n as u64);
        Ok(n)
    }
}

/// What `GET /db/snapshot/progress` answers: the save in progress, or else the last one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaveProgress {
    /// Counts the saves this server started; a client compares it with the number it saw
    /// before asking for its own save.
    pub seq: u64,
    /// Whether that save is still running.
    pub active: bool,
    /// The snapshot's file name.
    pub name: String,
    /// The database size etcd reported when the stream opened: about what it will send.
    pub expected_bytes: u64,
    /// Bytes of database received from etcd so far.
    pub saved_bytes: u64,
    /// The file's size on disk once it is complete (0 before).
    pub file_bytes: u64,
    /// Where the copy goes (`s3://bucket/folder`), empty when there is none.
    pub upload_to: String,
    /// Bytes of the file handed to the upload so far.
    pub uploaded_bytes: u64,
    /// Milliseconds since the save started (to its end, for a finished one).
    pub elapsed_ms: u64,
    /// Whether a finished save succeeded.
    pub ok: bool,
}

#[derive(Debug, Default)]
struct Current {
    seq: u64,
    active: bool,
    name: String,
    expected: u64,
    file_bytes: u64,
    upload_to: String,
    started: Option<Instant>,
    ended_ms: u64,
    ok: bool,
}

/// The progress of the server's saves (one at a time: saves hold the engine's lock).
#[derive(Debug, Default)]
pub struct SaveBoard {
    current: Mutex<Current>,
    saved: Arc<AtomicU64>,
    uploaded: Arc<AtomicU64>,
}

impl SaveBoard {
    fn with<T>(&self, f: impl FnOnce(&mut Current) -> T) -> T {
        f(&mut self.current.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A save of `name` starts receiving about `expected` bytes; returns the counters of the
    /// bytes received and uploaded, and a guard that marks the save failed unless
    /// [`SaveGuard::succeeded`] is called.
    pub fn start(&self, name: &str, expected: u64, upload_to: Option<String>) -> SaveGuard<'_> {
        self.saved.store(0, Ordering::Relaxed);
        self.uploaded.store(0, Ordering::Relaxed);
        self.with(|c| {
            *c = Current {
                seq: c.seq + 1,
                active: true,
                name: name.to_string(),
                expected,
                upload_to: upload_to.unwrap_or_default(),
                started: Some(Instant::now()),
                ..Default::default()
            }
        });
        SaveGuard {
            board: self,
            ok: false,
        }
    }

    /// The counter of bytes received from etcd.
    pub fn saved_counter(&self) -> Arc<AtomicU64> {
        self.saved.clone()
    }

    /// The counter of bytes handed to the upload.
    pub fn uploaded_counter(&self) -> Arc<AtomicU64> {
        self.uploaded.clone()
    }

    /// The file is complete with `size` bytes.
    pub fn written(&self, size: u64) {
        self.with(|c| c.file_bytes = size);
    }

    /// What the API answers.
    pub fn snapshot(&self) -> SaveProgress {
        self.with(|c| SaveProgress {
            seq: c.seq,
            active: c.active,
            name: c.name.clone(),
            expected_bytes: c.expected,
            saved_bytes: self.saved.load(Ordering::Relaxed),
            file_bytes: c.file_bytes,
            upload_to: c.upload_to.clone(),
            uploaded_bytes: self.uploaded.load(Ordering::Relaxed),
            elapsed_ms: match (c.active, c.started) {
                (true, Some(t)) => t.elapsed().as_millis() as u64,
                _ => c.ended_ms,
            },
            ok: c.ok,
        })
    }
}

/// Ends a save on its [`SaveBoard`] when dropped.
pub struct SaveGuard<'a> {
    board: &'a SaveBoard,
    ok: bool,
}

impl SaveGuard<'_> {
    pub fn succeeded(mut self) {
        self.ok = true;
    }
}

impl Drop for SaveGuard<'_> {
    fn drop(&mut self) {
        let ok = self.ok;
        self.board.with(|c| {
            c.active = false;
            c.ok = ok;
            c.ended_ms = c.started.map_or(0, |t| t.elapsed().as_millis() as u64);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_counts_up_and_ends_failed_unless_told() {
        let board = SaveBoard::default();
        assert_eq!(board.snapshot().seq, 0);
        {
            let guard = board.start("a.zip", 100, Some("s3://b/f".into()));
            board.saved_counter().fetch_add(40, Ordering::Relaxed);
            let p = board.snapshot();
            assert!(p.active);
            assert_eq!((p.seq, p.saved_bytes, p.expected_bytes), (1, 40, 100));
            assert_eq!(p.upload_to, "s3://b/f");
            board.written(33);
            board.uploaded_counter().fetch_add(33, Ordering::Relaxed);
            guard.succeeded();
        }
        let p = board.snapshot();
        assert!(!p.active && p.ok);
        assert_eq!((p.file_bytes, p.uploaded_bytes), (33, 33));
        drop(board.start("b.zip", 10, None));
        let p = board.snapshot();
        assert!(!p.active && !p.ok);
        assert_eq!((p.seq, p.saved_bytes, p.name.as_str()), (2, 0, "b.zip"));
    }
}
