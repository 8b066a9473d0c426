//! Progress bars on a terminal: bytes, rate and time left for a save (read from the server,
//! which does the work), and for downloads, decompression, checksums and restores done here.
//! Nothing is drawn when standard error is not a terminal, nor when `ETCDSNAP_NO_PROGRESS` is
//! set; log lines are printed above the bars instead of through them.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use etcdsnap_core::api::paths::PROGRESS_PATH;
use etcdsnap_core::progress::{SaveProgress, Sink};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::client::SupervisorClient;

/// How often a save's progress is asked for.
const POLL: Duration = Duration::from_millis(200);

/// Whether bars are drawn: on a terminal, unless turned off.
pub fn enabled() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("ETCDSNAP_NO_PROGRESS").is_none_or(|v| v.is_empty() || v == "0")
}

fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| {
        if enabled() {
            MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10))
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        }
    })
}

fn style(known_total: bool) -> ProgressStyle {
    let template = if known_total {
        "{msg:.bold} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}"
    } else {
        "{spinner} {msg:.bold} {binary_bytes} {binary_bytes_per_sec} {elapsed}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn new_bar(what: &str, total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(t) => ProgressBar::new(t).with_style(style(true)),
        None => ProgressBar::no_length().with_style(style(false)),
    };
    let bar = bars().add(bar.with_message(what.to_string()));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Writes log lines above the bars, so a bar is never torn by a line.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        bars().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The bars of work done in this process (see [`etcdsnap_core::progress`]).
struct LocalBars {
    current: Mutex<Option<ProgressBar>>,
}

impl Sink for LocalBars {
    fn begin(&self, what: &str, total: Option<u64>) {
        let bar = new_bar(what, total);
        if let Some(old) = self.lock().replace(bar) {
            old.finish_and_clear();
        }
    }
    fn advance(&self, n: u64) {
        if let Some(bar) = self.lock().as_ref() {
            bar.inc(n);
        }
    }
    fn set_position(&self, n: u64) {
        if let Some(bar) = self.lock().as_ref() {
            bar.set_position(n);
        }
    }
    fn end(&self) {
        if let Some(bar) = self.lock().take() {
            bar.finish();
        }
    }
}

impl LocalBars {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Shows the progress of this process's work, when bars are enabled.
pub fn install() {
    if enabled() {
        etcdsnap_core::progress::install(Box::new(LocalBars {
            current: Mutex::new(None),
        }));
    }
}

async fn read(c: &SupervisorClient) -> Option<SaveProgress> {
    let body = c
        .request(reqwest::Method::GET, PROGRESS_PATH, None)
        .await
        .ok()?;
    serde_json::from_slice(&body).ok()
}

/// The bars of one save, drawn from the server's answers.
struct SaveBars {
    seq: u64,
    save: Option<ProgressBar>,
    upload: Option<ProgressBar>,
}

impl SaveBars {
    fn show(&mut self, p: &SaveProgress) {
        if p.seq != self.seq {
            // Another save (a scheduled one ran first, holding the lock): its bars end here.
            for bar in [self.save.take(), self.upload.take()].into_iter().flatten() {
                bar.finish();
            }
            self.seq = p.seq;
        }
        let expected = p.expected_bytes.max(p.saved_bytes);
        let save = self
            .save
            .get_or_insert_with(|| new_bar(&format!("save {}", p.name), Some(expected)));
        save.set_length(expected);
        save.set_position(p.saved_bytes);
        if p.file_bytes > 0 && p.upload_to.is_empty() {
            save.set_length(p.saved_bytes);
        }
        if !p.upload_to.is_empty() && (p.uploaded_bytes > 0 || p.file_bytes > 0) {
            let up = self
                .upload
                .get_or_insert_with(|| new_bar(&format!("upload to {}", p.upload_to), None));
            if p.file_bytes > 0 && up.length().is_none() {
                up.set_style(style(true));
                up.set_length(p.file_bytes);
            }
            up.set_position(p.uploaded_bytes);
        }
    }

    fn finish(&mut self, p: &SaveProgress) {
        self.show(p);
        for bar in [self.save.take(), self.upload.take()].into_iter().flatten() {
            if p.ok {
                bar.set_length(bar.position());
                bar.finish();
            } else {
                bar.abandon();
            }
        }
    }
}

/// Runs `save` (the request for an on-demand save) while drawing the server's progress of it.
/// The save is told apart from earlier ones by the server's save counter, read first. A server
/// without the progress endpoint just shows no bar.
pub async fn follow_save<T>(c: &SupervisorClient, save: impl std::future::Future<Output = T>) -> T {
    if !enabled() {
        return save.await;
    }
    let Some(before) = read(c).await.map(|p| p.seq) else {
        return save.await;
    };
    let mut shown = SaveBars {
        seq: before,
        save: None,
        upload: None,
    };
    let mut save = std::pin::pin!(save);
    let mut tick = tokio::time::interval(POLL);
    let answer = loop {
        tokio::select! {
            answer = &mut save => break answer,
            _ = tick.tick() => {
                if let Some(p) = read(c).await.filter(|p| p.seq > before && p.active) {
                    shown.show(&p);
                }
            }
        }
    };
    if let Some(p) = read(c).await.filter(|p| p.seq > before) {
        shown.finish(&p);
    }
    answer
}
