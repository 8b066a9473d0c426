//! The status page: `GET /ui` (HTML) and `GET /ui.json` (the same data), behind the viewer
//! token (or the server token) and the failure limiter of [`super::auth`]. Rules:
//! * The page is rendered here, whole, with no script and no external asset (the network may
//!   be closed); a `Content-Security-Policy` admits only its own stylesheet, by hash.
//! * Every value is HTML-escaped: file names come from disk and S3, messages from errors.
//! * A page load is cheap and bounded: the S3 listing is shared by concurrent loads, kept for
//!   [`S3_CACHE_TTL`] and given [`LIST_TIMEOUT`]; each table shows at most [`MAX_ROWS`] rows.

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::Digest as _;

use super::ServerState;
use super::extract::{Authed, level};
use super::reply::json;
use crate::snapshot::metrics::SaveEntry;
use crate::store::{ListDetail, SnapshotRecord, SnapshotStatus, SnapshotStore};

/// Most snapshots a store's table shows (the newest); the rest are counted.
pub const MAX_ROWS: usize = 500;
/// Bound on listing one store for the page (S3: connecting included).
pub const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an S3 listing serves later page loads.
pub const S3_CACHE_TTL: Duration = Duration::from_secs(30);
/// How many next scheduled runs the page shows.
const NEXT_RUNS: usize = 3;

/// The S3 listing shared by page loads; the lock also makes concurrent loads wait for one
/// listing instead of starting one each.
#[derive(Default)]
pub struct UiCache {
    s3: tokio::sync::Mutex<Option<(Instant, StoreView)>>,
}

/// Everything the page shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UiStatus {
    pub generated: String,
    pub node: String,
    pub etcd: EtcdView,
    pub schedule: ScheduleView,
    pub stores: Vec<StoreView>,
    pub drills: DrillView,
    /// This process's last saves, oldest first.
    pub saves: Vec<SaveView>,
}

/// Restore drills (`--etcd-snapshot-drill-schedule-cron`), from the server's drill metrics.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillView {
    /// Seconds between scheduled drills; 0 when none are scheduled.
    pub interval_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// How long the last passing drill took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EtcdView {
    pub healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleView {
    pub disabled: bool,
    pub cron: String,
    pub retention: i64,
    /// The next runs (RFC 3339, UTC); each may start up to 5 s later (jitter).
    pub next: Vec<String>,
}

/// One store: its snapshots, newest first, and how its saves went.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreView {
    /// `local` or `s3`.
    pub store: String,
    pub location: String,
    pub snapshots: Vec<SnapshotView>,
    /// Snapshots beyond [`MAX_ROWS`], not shown.
    pub omitted: usize,
    /// Why the store could not be listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure_message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotView {
    pub name: String,
    pub location: String,
    pub size: u64,
    pub created: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SaveView {
    pub started: String,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl StoreView {
    fn new(store: &str, location: String) -> StoreView {
        StoreView {
            store: store.into(),
            location,
            snapshots: Vec::new(),
            omitted: 0,
            error: None,
            last_success: None,
            last_failure: None,
            last_failure_message: None,
        }
    }

    /// The listing's newest [`MAX_ROWS`] snapshots, newest first.
    fn listed(mut self, mut recs: Vec<SnapshotRecord>) -> StoreView {
        recs.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.name.cmp(&b.name))
        });
        self.omitted = recs.len().saturating_sub(MAX_ROWS);
        recs.truncate(MAX_ROWS);
        self.snapshots = recs
            .into_iter()
            .map(|r| SnapshotView {
                name: r.name,
                location: r.location,
                size: r.size,
                created: rfc3339(r.created_at),
                status: match r.status {
                    SnapshotStatus::Successful => "successful".into(),
                    SnapshotStatus::Failed => "failed".into(),
                },
                message: r.message,
            })
            .collect();
        self
    }

    fn outcomes(mut self, state: &ServerState, store: &'static str) -> StoreView {
        let (ok, failed, why) = state.engine.metrics.last_outcomes(store);
        self.last_success = ok.map(rfc3339);
        self.last_failure = failed.map(rfc3339);
        self.last_failure_message = failed.and(why);
        self
    }
}

async fn list_bounded(store: &dyn SnapshotStore) -> crate::Result<Vec<SnapshotRecord>> {
    match tokio::time::timeout(LIST_TIMEOUT, store.list(ListDetail::Basic)).await {
        Ok(r) => r,
        Err(_) => Err(crate::Error::Timeout(format!(
            "listing {} took more than {}s",
            store.describe(),
            LIST_TIMEOUT.as_secs()
        ))),
    }
}

async fn local_view(state: &ServerState) -> StoreView {
    let view = match state.engine.local(state.snapshots.dir.as_deref(), true) {
        Ok(local) => {
            let view = StoreView::new("local", local.dir().display().to_string());
            match list_bounded(&local).await {
                Ok(recs) => view.listed(recs),
                Err(e) => StoreView {
                    error: Some(e.to_string()),
                    ..view
                },
            }
        }
        Err(e) => StoreView {
            error: Some(e.to_string()),
            ..StoreView::new("local", String::new())
        },
    };
    view.outcomes(state, "local")
}

/// The server's S3 store, listed at most once per [`S3_CACHE_TTL`].
async fn s3_view(state: &ServerState, target: &crate::store::remote::S3Target) -> StoreView {
    let mut cached = state.ui.s3.lock().await;
    if let Some((at, view)) = cached.as_ref()
        && at.elapsed() < S3_CACHE_TTL
    {
        return view.clone().outcomes(state, "s3");
    }
    let cfg = target.config();
    let fallback = format!("s3://{}/{}", cfg.bucket, cfg.folder);
    let list = async {
        let store = state.engine.connect(target).await?;
        let recs = store.list(ListDetail::Basic).await?;
        crate::Result::<(String, Vec<SnapshotRecord>)>::Ok((store.location(""), recs))
    };
    let listed = tokio::time::timeout(LIST_TIMEOUT, list).await;
    let view = match listed {
        Ok(Ok((location, recs))) => StoreView::new("s3", location).listed(recs),
        Ok(Err(e)) => StoreView {
            error: Some(e.to_string()),
            ..StoreView::new("s3", fallback)
        },
        Err(_) => StoreView {
            error: Some(format!(
                "listing S3 took more than {}s",
                LIST_TIMEOUT.as_secs()
            )),
            ..StoreView::new("s3", fallback)
        },
    };
    *cached = Some((Instant::now(), view.clone()));
    view.outcomes(state, "s3")
}

/// Gathers the page's data: etcd health, the schedule, each store, this process's saves.
pub async fn collect(state: &ServerState) -> UiStatus {
    let now = Utc::now();
    let healthy = state.ready.get() && state.etcd_healthy().await;
    let s = &state.snapshots;
    let mut next = Vec::new();
    let mut after = now;
    while next.len() < NEXT_RUNS
        && !s.disabled
        && let Some(t) = s.schedule.next_after(after)
    {
        next.push(rfc3339(t));
        after = t;
    }
    let m = &state.engine.metrics;
    let at = |v: f64| {
        (v > 0.0)
            .then(|| DateTime::<Utc>::from_timestamp_millis((v * 1000.0) as i64))
            .flatten()
            .map(rfc3339)
    };
    let drills = DrillView {
        interval_seconds: m.drill_interval.get(),
        last_success: at(m.drill_last_success.get()),
        last_failure: at(m.drill_last_failure.get()),
        seconds: (m.drill_duration.get() > 0.0).then(|| m.drill_duration.get()),
    };
    let mut stores = vec![local_view(state).await];
    if let Some(target) = &s.s3 {
        stores.push(s3_view(state, target).await);
    }
    UiStatus {
        generated: rfc3339(now),
        node: state.engine.config().node_name.clone(),
        etcd: EtcdView {
            healthy,
            message: (!healthy).then(|| state.ready.cause()),
        },
        schedule: ScheduleView {
            disabled: s.disabled,
            cron: s.schedule.to_string(),
            retention: s.retention,
            next,
        },
        stores,
        drills,
        saves: state
            .engine
            .metrics
            .history()
            .into_iter()
            .map(save_view)
            .collect(),
    }
}

fn save_view(e: SaveEntry) -> SaveView {
    SaveView {
        // Milliseconds: saves a second apart stay apart on the chart.
        started: e.started.to_rfc3339_opts(SecondsFormat::Millis, true),
        seconds: e.duration.as_secs_f64(),
        size: e.file.as_ref().map(|f| f.1),
        file: e.file.map(|f| f.0),
        error: e.error,
    }
}

/// The text of `v` safe inside an element or a quoted attribute.
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0}caption{text-align:left;padding:.2em 0}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}\
td.size{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#17692b}.bad{color:#b3261e}.muted{color:#666}\
svg{border:1px solid #ccc;background:#fafafa;margin:.5em 1em .5em 0}\
svg text{font-size:11px;fill:#444}";

/// The page's Content-Security-Policy: nothing but its own stylesheet.
static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(CSS));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
});

fn or_never(t: &Option<String>) -> String {
    t.as_deref().map(escape).unwrap_or_else(|| "never".into())
}

/// The page. Pure: everything it shows is in `st`.
pub fn render(st: &UiStatus) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let node = escape(&st.node);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>etcdsnap status: {node}</title><style>{CSS}</style></head><body>\
         <h1>etcdsnap status: {node}</h1><p class=\"muted\">Generated {}.</p>",
        escape(&st.generated)
    );
    let (class, text) = if st.etcd.healthy {
        ("ok", "healthy".to_string())
    } else {
        (
            "bad",
            format!(
                "not ready: {}",
                escape(st.etcd.message.as_deref().unwrap_or(""))
            ),
        )
    };
    let _ = write!(
        h,
        "<p id=\"etcd\">etcd: <span class=\"{class}\">{text}</span></p>"
    );
    render_schedule(&mut h, &st.schedule);
    render_drills(&mut h, &st.drills);
    for s in &st.stores {
        render_store(&mut h, s);
    }
    render_charts(&mut h, st);
    h.push_str("</body></html>\n");
    h
}

fn render_schedule(h: &mut String, s: &ScheduleView) {
    h.push_str("<h2>Schedule</h2><div id=\"schedule\">");
    if s.disabled {
        h.push_str(
            "<p>Scheduled snapshots are disabled (<code>--etcd-disable-snapshots</code>).</p>",
        );
    } else {
        let _ = write!(
            h,
            "<p>Cron: <code id=\"cron\">{}</code>, retention {}.</p><p>Next run{}: ",
            escape(&s.cron),
            s.retention,
            if s.next.len() == 1 { "" } else { "s" }
        );
        if s.next.is_empty() {
            h.push_str("none (the schedule has no future run)");
        }
        for (i, t) in s.next.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(h, "{sep}<time class=\"next-run\">{}</time>", escape(t));
        }
        h.push_str("</p>");
    }
    h.push_str("</div>");
}

fn render_drills(h: &mut String, d: &DrillView) {
    h.push_str("<h2>Restore drills</h2><div id=\"drills\"><p>");
    if d.interval_seconds <= 0.0 && d.last_success.is_none() && d.last_failure.is_none() {
        h.push_str(
            "Not scheduled: set <code>--etcd-snapshot-drill-schedule-cron</code>, or run \
             <code>etcdsnap etcd-snapshot drill</code> by hand.</p></div>",
        );
        return;
    }
    // The last drill failed when its failure is the newer (RFC 3339 in UTC sorts by time).
    let failing = match (&d.last_success, &d.last_failure) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(ok), Some(bad)) => bad > ok,
    };
    let _ = write!(
        h,
        "Every {}: last passed <span class=\"drill-pass {}\">{}</span>",
        crate::duration::format_go_duration(Duration::from_secs_f64(d.interval_seconds)),
        if d.last_success.is_some() {
            "ok"
        } else {
            "bad"
        },
        or_never(&d.last_success),
    );
    if let Some(secs) = d.seconds {
        let _ = write!(h, " (took {secs:.1} s)");
    }
    let _ = write!(
        h,
        ". Last failed <span class=\"drill-fail {}\">{}</span>.</p>",
        if failing { "bad" } else { "ok" },
        or_never(&d.last_failure),
    );
    if failing {
        h.push_str(
            "<p class=\"bad\" id=\"drill-failing\">The last restore drill failed: the \
             server's log line <code>Restore drill failed</code> says why.</p>",
        );
    }
    h.push_str("</div>");
}

fn render_store(h: &mut String, s: &StoreView) {
    let store = escape(&s.store);
    let _ = write!(
        h,
        "<h2>Store {store}</h2><div class=\"store\" id=\"store-{store}\" data-store=\"{store}\">\
         <p>Location: <code>{}</code></p>\
         <p>Last success: <span class=\"last-success {}\">{}</span>. \
         Last failure: <span class=\"last-failure {}\">{}</span>",
        escape(&s.location),
        if s.last_success.is_some() {
            "ok"
        } else {
            "bad"
        },
        or_never(&s.last_success),
        if s.last_failure.is_some() {
            "bad"
        } else {
            "ok"
        },
        or_never(&s.last_failure),
    );
    if let Some(m) = &s.last_failure_message {
        let _ = write!(h, ": <span class=\"failure-message\">{}</span>", escape(m));
    }
    h.push_str(".</p>");
    if let Some(e) = &s.error {
        let _ = write!(
            h,
            "<p class=\"bad list-error\">Cannot list this store: {}</p>",
            escape(e)
        );
    }
    let total: u64 = s.snapshots.iter().map(|r| r.size).sum();
    let _ = write!(
        h,
        "<table class=\"snapshots\"><caption>{} snapshot{} shown, {} in all</caption>\
         <thead><tr><th>Name</th><th>Size</th><th>Created</th><th>Status</th></tr></thead><tbody>",
        s.snapshots.len(),
        if s.snapshots.len() == 1 { "" } else { "s" },
        crate::units::iec_bytes(total)
    );
    for r in &s.snapshots {
        let (class, status) = match &r.message {
            Some(m) => ("bad", format!("{}: {}", escape(&r.status), escape(m))),
            None if r.status == "successful" => ("ok", escape(&r.status)),
            None => ("bad", escape(&r.status)),
        };
        let _ = write!(
            h,
            "<tr class=\"snapshot\"><td class=\"name\" title=\"{}\">{}</td>\
             <td class=\"size\" data-bytes=\"{}\" title=\"{} bytes\">{}</td>\
             <td class=\"created\">{}</td><td class=\"status {class}\">{status}</td></tr>",
            escape(&r.location),
            escape(&r.name),
            r.size,
            r.size,
            crate::units::iec_bytes(r.size),
            escape(&r.created),
        );
    }
    h.push_str("</tbody></table>");
    if s.omitted > 0 {
        let _ = write!(
            h,
            "<p class=\"muted\">{} older snapshots are not shown; <code>etcdsnap etcd-snapshot ls</code> lists them all.</p>",
            s.omitted
        );
    }
    h.push_str("</div>");
}

/// One point of a chart: x (unix seconds), y, its label, and whether it marks a failure.
struct Point {
    x: f64,
    y: f64,
    label: String,
    failed: bool,
}

const CHART_W: f64 = 640.0;
const CHART_H: f64 = 200.0;
const PAD_L: f64 = 70.0;
const PAD_R: f64 = 15.0;
const PAD_T: f64 = 24.0;
const PAD_B: f64 = 30.0;

fn render_charts(h: &mut String, st: &UiStatus) {
    h.push_str("<h2>Saves by this server</h2>");
    let saves = &st.saves;
    if saves.is_empty() {
        h.push_str(
            "<p id=\"no-saves\" class=\"muted\">No snapshot was saved since this server started.</p>",
        );
        return;
    }
    let ts = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis() as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    let sizes: Vec<Point> = saves
        .iter()
        .filter_map(|s| {
            let (file, size) = (s.file.as_ref()?, s.size?);
            Some(Point {
                x: ts(&s.started),
                y: size as f64,
                label: format!("{file}: {} at {}", crate::units::iec_bytes(size), s.started),
                failed: false,
            })
        })
        .collect();
    let durations: Vec<Point> = saves
        .iter()
        .map(|s| Point {
            x: ts(&s.started),
            y: s.seconds,
            label: match (&s.file, &s.error) {
                (_, Some(e)) => format!("failed after {:.2} s at {}: {e}", s.seconds, s.started),
                (Some(f), None) => format!("{f}: {:.2} s at {}", s.seconds, s.started),
                (None, None) => format!("{:.2} s at {}", s.seconds, s.started),
            },
            failed: s.error.is_some(),
        })
        .collect();
    chart(h, "size-chart", "Snapshot size", &sizes, human_axis);
    chart(
        h,
        "duration-chart",
        "Save duration",
        &durations,
        seconds_axis,
    );
    let failed = saves.iter().filter(|s| s.error.is_some()).count();
    let _ = write!(
        h,
        "<p class=\"muted\">{} save{} ({failed} failed); the newest {} are kept. Red points are failures.</p>",
        saves.len(),
        if saves.len() == 1 { "" } else { "s" },
        crate::snapshot::metrics::HISTORY
    );
}

fn human_axis(v: f64) -> String {
    crate::units::iec_bytes(v.max(0.0) as u64)
}

/// A duration in seconds in the unit that suits it: saves of a small etcd take milliseconds,
/// and "0.0 s" says nothing.
fn seconds_axis(v: f64) -> String {
    let v = v.max(0.0);
    if v < 0.01 {
        format!("{:.1} ms", v * 1000.0)
    } else if v < 1.0 {
        format!("{:.0} ms", v * 1000.0)
    } else if v < 120.0 {
        format!("{v:.1} s")
    } else {
        format!("{:.1} min", v / 60.0)
    }
}

/// An SVG line chart with one `<circle class="point">` per point, each with a `<title>`.
fn chart(h: &mut String, id: &str, title: &str, pts: &[Point], fmt_y: fn(f64) -> String) {
    let _ = write!(
        h,
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_W}\" height=\"{CHART_H}\" \
         viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"{title}\"><title>{title}</title>"
    );
    let (x0, x1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.x), b.max(p.x)));
    let y_max = pts.iter().fold(0.0f64, |m, p| m.max(p.y));
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let (pw, ph) = (CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B);
    let sx = |x: f64| {
        if x1 > x0 {
            PAD_L + (x - x0) / (x1 - x0) * pw
        } else {
            PAD_L + pw / 2.0
        }
    };
    let sy = |y: f64| PAD_T + ph - y / y_max * ph;
    // Axes, the top and bottom values, and the first and last times.
    let _ = write!(
        h,
        "<line x1=\"{PAD_L}\" y1=\"{PAD_T}\" x2=\"{PAD_L}\" y2=\"{b}\" stroke=\"#888\"/>\
         <line x1=\"{PAD_L}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#888\"/>\
         <text x=\"4\" y=\"{ty}\">{top}</text><text x=\"4\" y=\"{b}\">0</text>\
         <text x=\"{mid}\" y=\"14\" text-anchor=\"middle\">{title}</text>",
        mid = CHART_W / 2.0,
        b = PAD_T + ph,
        r = PAD_L + pw,
        ty = PAD_T + 4.0,
        top = escape(&fmt_y(y_max)),
    );
    if let (Some(first), Some(last)) = (pts.first(), pts.last()) {
        let when = |x: f64| {
            DateTime::from_timestamp(x as i64, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default()
        };
        let _ = write!(
            h,
            "<text x=\"{PAD_L}\" y=\"{ly}\">{}</text>",
            when(first.x),
            ly = CHART_H - 8.0
        );
        if x1 > x0 {
            let _ = write!(
                h,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                PAD_L + pw,
                CHART_H - 8.0,
                when(last.x)
            );
        }
    }
    if pts.len() > 1 {
        h.push_str("<polyline fill=\"none\" stroke=\"#3465a4\" stroke-width=\"1.5\" points=\"");
        for p in pts {
            let _ = write!(h, "{:.1},{:.1} ", sx(p.x), sy(p.y));
        }
        h.push_str("\"/>");
    }
    for p in pts {
        let fill = if p.failed { "#b3261e" } else { "#3465a4" };
        let class = if p.failed { "point failed" } else { "point" };
        let _ = write!(
            h,
            "<circle class=\"{class}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{fill}\"><title>{}</title></circle>",
            sx(p.x),
            sy(p.y),
            escape(&p.label)
        );
    }
    h.push_str("</svg>");
}

/// Headers of every `/ui` answer, refusals included (the router puts it around both
/// endpoints): no caching, no sniffing, no referrer, the strict policy.
pub async fn harden(mut r: Response) -> Response {
    let hs = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&CSP) {
        hs.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    hs.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    hs.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    hs.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// `GET /ui`.
pub async fn page(_: Authed<level::View>, State(state): State<Arc<ServerState>>) -> Response {
    let st = collect(&state).await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        render(&st),
    )
        .into_response()
}

/// `GET /ui.json`: the data of `/ui`.
pub async fn data(_: Authed<level::View>, State(state): State<Arc<ServerState>>) -> Response {
    json(StatusCode::OK, &collect(&state).await)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::server::http::tests::{SECRET, api, basic};
    use crate::server::serve::PeerAddr;

    const HOSTILE: &str = "<img src=x onerror=alert(1)>\"'&";

    fn status(saves: Vec<SaveView>) -> UiStatus {
        UiStatus {
            generated: "2026-12-05T10:00:00Z".into(),
            node: "n1".into(),
            etcd: EtcdView {
                healthy: false,
                message: Some(format!("down {HOSTILE}")),
            },
            schedule: ScheduleView {
                disabled: false,
                cron: "0 */12 * * *".into(),
                retention: 5,
                next: vec!["2026-12-05T12:00:00Z".into(), "2026-12-06T00:00:00Z".into()],
            },
            stores: vec![StoreView {
                snapshots: vec![SnapshotView {
                    name: HOSTILE.into(),
                    location: format!("file:///x/{HOSTILE}"),
                    size: 2048,
                    created: "2026-12-05T09:00:00Z".into(),
                    status: "failed".into(),
                    message: Some(HOSTILE.into()),
                }],
                last_failure: Some("2026-12-05T09:30:00Z".into()),
                last_failure_message: Some(HOSTILE.into()),
                ..StoreView::new("local", "/var/lib/etcdsnap/server/db/snapshots".into())
            }],
            drills: DrillView {
                interval_seconds: 86400.0,
                last_success: Some("2026-12-04T03:30:00Z".into()),
                last_failure: Some("2026-12-05T03:30:00Z".into()),
                seconds: Some(12.5),
            },
            saves,
        }
    }

    fn save(
        started: &str,
        seconds: f64,
        file: Option<(&str, u64)>,
        error: Option<&str>,
    ) -> SaveView {
        SaveView {
            started: started.into(),
            seconds,
            file: file.map(|f| f.0.to_string()),
            size: file.map(|f| f.1),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn every_value_is_escaped() {
        let page = render(&status(vec![save(
            "2026-12-05T09:00:00Z",
            1.5,
            Some((HOSTILE, 2048)),
            Some(HOSTILE),
        )]));
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("onerror=alert(1)>"), "{page}");
        let escaped = "&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;";
        // Name, location, status message, failure message, etcd message, chart titles.
        assert!(page.matches(escaped).count() >= 7, "{page}");
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn page_has_tables_points_and_schedule() {
        let page = render(&status(vec![
            save("2026-12-05T09:00:00Z", 1.5, Some(("a.db", 1000)), None),
            save("2026-12-05T09:10:00Z", 0.2, None, Some("etcd is down")),
            save("2026-12-05T09:20:00Z", 2.5, Some(("b.db", 3000)), None),
        ]));
        let chart = |id: &str| {
            let start = page.find(&format!("<svg id=\"{id}\"")).unwrap();
            let end = start + page[start..].find("</svg>").unwrap();
            page[start..end].to_string()
        };
        let sizes = chart("size-chart");
        let durations = chart("duration-chart");
        // Sizes of the files written; durations of every save, the failure marked.
        assert_eq!(sizes.matches("<circle class=\"point\"").count(), 2);
        assert_eq!(durations.matches("<circle class=\"point").count(), 3);
        assert_eq!(durations.matches("class=\"point failed\"").count(), 1);
        assert!(sizes.contains("b.db: 2.9 KiB"), "{sizes}");
        assert!(page.contains("<code id=\"cron\">0 */12 * * *</code>"));
        assert_eq!(page.matches("class=\"next-run\"").count(), 2);
        assert!(page.contains("data-bytes=\"2048\""));
        assert!(page.contains("Last success: <span class=\"last-success bad\">never</span>"));
        assert!(page.contains("<span class=\"last-failure bad\">2026-12-05T09:30:00Z</span>"));
        // The drill that failed after the last pass is shown as failing.
        assert!(page.contains("Every 24h0m0s: last passed"), "{page}");
        assert!(page.contains("<span class=\"drill-fail bad\">2026-12-05T03:30:00Z</span>"));
        assert!(page.contains("(took 12.5 s)") && page.contains("id=\"drill-failing\""));
        let mut passing = status(Vec::new());
        passing.drills.last_success = Some("2026-12-05T04:30:00Z".into());
        let passing = render(&passing);
        assert!(!passing.contains("id=\"drill-failing\""));
        assert!(passing.contains("<span class=\"drill-fail ok\">2026-12-05T03:30:00Z</span>"));
        let mut none = status(Vec::new());
        none.drills = DrillView::default();
        assert!(render(&none).contains("Not scheduled: set <code>--etcd-snapshot-drill"));
        assert!(page.contains("etcd: <span class=\"bad\">not ready"));
        let empty = render(&status(Vec::new()));
        assert!(empty.contains("id=\"no-saves\""));
        assert!(!empty.contains("<svg"));
        let mut off = status(Vec::new());
        off.schedule.disabled = true;
        let off = render(&off);
        assert!(off.contains("Scheduled snapshots are disabled"), "{off}");
        assert!(!off.contains("next-run"));
    }

    #[test]
    fn history_is_bounded() {
        let m = crate::snapshot::metrics::Metrics::default();
        for i in 0..(crate::snapshot::metrics::HISTORY + 7) {
            m.saved(SaveEntry {
                started: Utc::now(),
                duration: Duration::from_millis(i as u64),
                file: None,
                error: None,
            });
        }
        let h = m.history();
        assert_eq!(h.len(), crate::snapshot::metrics::HISTORY);
        assert_eq!(
            h[0].duration,
            Duration::from_millis(7),
            "the oldest go first"
        );
    }

    async fn get(state: &Arc<ServerState>, path: &str, auth: Option<&str>) -> (Response, String) {
        let mut req = Request::get(path);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let mut req = req.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(PeerAddr("192.0.2.7:40000".parse().unwrap()));
        let resp = super::super::http::router(state.clone())
            .oneshot(req)
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            Response::from_parts(parts, Body::empty()),
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn page_needs_the_token_and_shows_the_saves() {
        let a = api();
        let (code, body) = a.post(r#"{"operation":"save"}"#).await;
        assert_eq!(code, 200, "{body}");
        let name = body["created"][0].as_str().unwrap().to_string();
        let dir = a
            .state
            .engine
            .local(None, false)
            .unwrap()
            .dir()
            .to_path_buf();
        std::fs::write(dir.join(HOSTILE), b"x").unwrap();

        for path in ["/ui", "/ui.json"] {
            let (resp, text) = get(&a.state, path, None).await;
            assert_eq!(resp.status(), 401, "{path}");
            assert_eq!(
                resp.headers()[header::WWW_AUTHENTICATE],
                "Basic realm=\"etcdsnap\""
            );
            // A refusal carries the page's security headers too.
            assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store", "{path}");
            assert_eq!(resp.headers()[header::X_FRAME_OPTIONS], "DENY", "{path}");
            assert!(!text.contains(&name), "{text}");
            let wrong = basic("server", "wrong");
            let (resp, text) = get(&a.state, path, Some(&wrong)).await;
            assert_eq!(resp.status(), 401, "{path}");
            assert!(!text.contains(&name) && !text.contains(SECRET), "{text}");
        }

        let auth = basic("server", SECRET);
        let (resp, page) = get(&a.state, "/ui", Some(&auth)).await;
        assert_eq!(resp.status(), 200, "{page}");
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.starts_with("default-src 'none'; style-src 'sha256-"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(
            page.contains(&format!(
                "<td class=\"name\" title=\"file://{}/{name}\">{name}</td>",
                dir.display()
            )),
            "{page}"
        );
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!page.contains("<img"));
        assert!(!page.contains(SECRET));
        assert!(page.contains("<code id=\"cron\">@every 1h</code>"));
        assert_eq!(page.matches("class=\"next-run\"").count(), NEXT_RUNS);
        assert!(
            !page.contains("<span class=\"last-success bad\">never"),
            "{page}"
        );
        assert!(
            page.contains("etcd: <span class=\"ok\">healthy</span>"),
            "{page}"
        );

        let (resp, json) = get(&a.state, "/ui.json", Some(&auth)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let local = &v["stores"][0];
        assert_eq!(local["store"], "local");
        let names: Vec<&str> = local["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&name.as_str()) && names.contains(&HOSTILE),
            "{names:?}"
        );
        assert_eq!(v["saves"].as_array().unwrap().len(), 1);
        assert_eq!(v["saves"][0]["file"], name.as_str());
        assert!(
            v["stores"].as_array().unwrap().len() == 1,
            "no S3 store configured"
        );

        // A failed save is shown with its message.
        a.etcd.set_down(true);
        let (code, _) = a.post(r#"{"operation":"save"}"#).await;
        assert_eq!(code, 503);
        a.etcd.set_down(false);
        let (_, page) = get(&a.state, "/ui", Some(&auth)).await;
        assert!(page.contains("class=\"failure-message\""), "{page}");
        assert!(page.contains("connection refused"), "{page}");
        assert_eq!(page.matches("class=\"point failed\"").count(), 1);
    }

    #[tokio::test]
    async fn failed_logins_are_slowed_and_the_right_one_passes_at_once() {
        let a = api();
        let wrong = basic("viewer", "wrong-wrong-wrong-wrong");
        let started = Instant::now();
        let guesses: Vec<_> = (0..6)
            .map(|_| {
                let (state, wrong) = (a.state.clone(), wrong.clone());
                tokio::spawn(async move { get(&state, "/ui", Some(&wrong)).await.0.status() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // No credential at all is no guess: answered at once, not queued behind the guesses.
        let asked = Instant::now();
        assert_eq!(get(&a.state, "/ui", None).await.0.status(), 401);
        assert!(asked.elapsed() < Duration::from_millis(300));
        // The viewer token passes at once, while the wrong answers to its address still wait.
        let right = crate::server::http::tests::login(&a.state, crate::server::auth::Role::Viewer);
        let (resp, text) = get(&a.state, "/ui", Some(&right)).await;
        assert_eq!(resp.status(), 200, "{text}");
        assert!(started.elapsed() < Duration::from_millis(500));
        for g in guesses {
            assert_eq!(g.await.unwrap(), 401);
        }
        // Six failures from one address are answered one after another.
        let waited: Duration = (1..=6).map(crate::server::auth::AuthGuard::delay).sum();
        assert!(started.elapsed() >= waited, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn an_unreachable_s3_store_is_a_message_on_the_page() {
        let mut a = api();
        let cfg = crate::store::remote::S3Config {
            bucket: "gone".into(),
            folder: "f".into(),
            ..Default::default()
        };
        let target = crate::store::remote::S3Target::new(cfg).unwrap();
        Arc::get_mut(&mut a.state).unwrap().snapshots.s3 = Some(target);
        *a.remotes.fail_connect.lock().unwrap() = Some(|b| {
            crate::Error::remote_unavailable(format!("cannot connect to S3 endpoint for {b} <x>"))
        });
        let (resp, page) = get(&a.state, "/ui", Some(&basic("server", SECRET))).await;
        assert_eq!(resp.status(), 200);
        let s3 = &page[page.find("id=\"store-s3\"").unwrap()..];
        assert!(s3.contains("<code>s3://gone/f</code>"), "{s3}");
        let error = &s3[s3.find("Cannot list this store: ").expect(s3)..];
        assert!(error.contains("gone &lt;x&gt;"), "{error}");
        assert!(!s3.contains("<x>"), "{s3}");
        // The local store is listed all the same.
        assert!(page.contains("id=\"store-local\""));
    }

    #[tokio::test]
    async fn a_table_shows_the_newest_rows_only() {
        let a = api();
        let dir = a
            .state
            .engine
            .local(None, true)
            .unwrap()
            .dir()
            .to_path_buf();
        for i in 0..(MAX_ROWS + 3) {
            let name = format!("etcd-snapshot-n1-{}", 1_700_000_000 + i);
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let st = collect(&a.state).await;
        let local = &st.stores[0];
        assert_eq!(local.snapshots.len(), MAX_ROWS);
        assert_eq!(local.omitted, 3);
        let newest = format!("etcd-snapshot-n1-{}", 1_700_000_000 + MAX_ROWS + 2);
        assert_eq!(local.snapshots[0].name, newest, "newest first");
        assert!(render(&st).contains("3 older snapshots are not shown"));
    }

    #[tokio::test]
    async fn the_s3_listing_is_cached() {
        let mut a = api();
        let cfg = crate::store::remote::S3Config {
            bucket: "bkt".into(),
            ..Default::default()
        };
        let target = crate::store::remote::S3Target::new(cfg).unwrap();
        Arc::get_mut(&mut a.state).unwrap().snapshots.s3 = Some(target);
        let (code, body) = a
            .post(r#"{"operation":"save","s3":{"bucket":"bkt","timeout":"5m","accessKey":"AK","secretKey":"SK"}}"#)
            .await;
        assert_eq!(code, 200, "{body}");
        let auth = basic("server", SECRET);
        let (_, json) = get(&a.state, "/ui.json", Some(&auth)).await;
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["stores"][1]["store"], "s3", "{v}");
        assert_eq!(
            v["stores"][1]["snapshots"].as_array().unwrap().len(),
            1,
            "{v}"
        );
        let connects = a.remotes.connects.load(std::sync::atomic::Ordering::SeqCst);
        let (_, json2) = get(&a.state, "/ui.json", Some(&auth)).await;
        let v2: serde_json::Value = serde_json::from_str(&json2).unwrap();
        assert_eq!(v2["stores"][1], v["stores"][1]);
        assert_eq!(
            a.remotes.connects.load(std::sync::atomic::Ordering::SeqCst),
            connects,
            "a second load within the TTL lists nothing"
        );
    }

    #[test]
    fn the_duration_axis_scales_its_unit() {
        assert_eq!(seconds_axis(0.0042), "4.2 ms");
        assert_eq!(seconds_axis(0.35), "350 ms");
        assert_eq!(seconds_axis(12.34), "12.3 s");
        assert_eq!(seconds_axis(600.0), "10.0 min");
        let mut h = String::new();
        let pts = [0.002, 0.003]
            .iter()
            .enumerate()
            .map(|(i, y)| Point {
                x: 1_700_000_000.0 + i as f64,
                y: *y,
                failed: false,
                label: String::new(),
            })
            .collect::<Vec<_>>();
        chart(&mut h, "d", "Save duration", &pts, seconds_axis);
        assert!(h.contains("3.3 ms"), "{h}");
        assert!(!h.contains("0.0 s"), "{h}");
    }
}
