//! Measures the snapshot writer alone (checksum, optional deflate, `.part` → fsync → rename)
//! on a raw snapshot file fed in etcd's 32 KiB chunks, without etcd or the network in the way.
//!
//! `cargo run --release -p etcdsnap-core --example pipeline -- <raw snapshot> [--compress] [--zstd] [--level N]`

use std::io::Read;
use std::time::{Duration, Instant};

use chrono::Utc;
use etcdsnap_core::etcd::ChunkStream;
use etcdsnap_core::naming::CompressFormat;
use etcdsnap_core::snapfile::writer::{WriteSpec, write_stream};

fn chunks_of(path: std::path::PathBuf) -> ChunkStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<etcdsnap_core::Result<Vec<u8>>>(64);
    std::thread::spawn(move || {
        let mut f = std::fs::File::open(&path).expect("open the snapshot");
        loop {
            let mut buf = vec![0u8; 32 * 1024];
            let n = f.read(&mut buf).expect("read the snapshot");
            if n == 0 {
                break;
            }
            buf.truncate(n);
            if tx.blocking_send(Ok(buf)).is_err() {
                break;
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (c, rx))
    }))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(input) = args.first().map(std::path::PathBuf::from) else {
        eprintln!("usage: pipeline <raw snapshot> [--compress] [--zstd] [--level N]");
        std::process::exit(2);
    };
    let zstd = args.iter().any(|a| a == "--zstd");
    let compress = zstd || args.iter().any(|a| a == "--compress");
    let format = if zstd {
        CompressFormat::Zstd
    } else {
        CompressFormat::Zip
    };
    let level = args
        .iter()
        .position(|a| a == "--level")
        .and_then(|i| args.get(i + 1))
        .map(|l| l.parse().expect("--level takes a number"))
        .unwrap_or(format.default_level());
    let size = std::fs::metadata(&input).expect("stat the snapshot").len();
    let out = tempfile::tempdir_in(input.parent().unwrap_or(std::path::Path::new(".")))
        .expect("temp dir next to the input");
    let spec = WriteSpec {
        dir: out.path().to_path_buf(),
        base_name: "pipeline-bench-1".into(),
        compress,
        format,
        compression_level: level,
        created: Utc::now(),
        idle_timeout: Duration::from_secs(60),
    };
    let started = Instant::now();
    let written = write_stream(chunks_of(input), spec, None)
        .await
        .expect("the snapshot is valid");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "input {:.1} MB, output {:.1} MB, {:.2} s, {:.0} MB/s of input (compress={compress}, level={level})",
        size as f64 / 1e6,
        written.size as f64 / 1e6,
        secs,
        size as f64 / 1e6 / secs
    );
}
