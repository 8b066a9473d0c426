//! A file that is read while it is still being written: the snapshot writer publishes how many
//! bytes have reached the file and, at the end, whether the file was verified and published; an
//! uploader reads the bytes behind it with positional reads. This lets an S3 upload run while
//! the snapshot is streamed from etcd, yet complete only once the local copy passed its
//! checksum. Reads go through a duplicate file handle, so a rename of the file does not matter.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use tokio::sync::watch;

use crate::{Error, Result};

#[derive(Debug, Clone, Default)]
struct Growth {
    file: Option<Arc<File>>,
    written: u64,
    /// `Some(Ok(size))` once the file is complete and verified; `Some(Err)` if writing failed.
    end: Option<std::result::Result<u64, String>>,
}

/// The writer's side.
#[derive(Debug)]
pub struct GrowthSender(watch::Sender<Growth>);

/// The reader's side.
#[derive(Debug, Clone)]
pub struct GrowingFile(
    watch::Receiver<Growth>,
    /// Counts the bytes read, for progress.
    Option<Arc<std::sync::atomic::AtomicU64>>,
);

/// A connected pair.
pub fn growing() -> (GrowthSender, GrowingFile) {
    let (tx, rx) = watch::channel(Growth::default());
    (GrowthSender(tx), GrowingFile(rx, None))
}

impl GrowthSender {
    /// Hands readers a handle to the file being written.
    pub fn opened(&self, file: &File) -> std::io::Result<()> {
        let dup = Arc::new(file.try_clone()?);
        self.0.send_modify(|g| g.file = Some(dup));
        Ok(())
    }

    /// `n` more bytes reached the file.
    pub fn wrote(&self, n: usize) {
        self.0.send_modify(|g| g.written += n as u64);
    }

    /// The file is complete, verified and published with `size` bytes.
    pub fn finished(&self, size: u64) {
        self.0.send_modify(|g| {
            g.written = size;
            g.end = Some(Ok(size));
        });
    }

    /// Writing failed; readers must abandon what they did with the bytes.
    pub fn failed(&self, why: &str) {
        self.0.send_modify(|g| g.end = Some(Err(why.to_string())));
    }
}

impl GrowingFile {
    /// A file that is already complete.
    pub fn complete(file: File) -> std::io::Result<GrowingFile> {
        let size = file.metadata()?.len();
        let (tx, rx) = watch::channel(Growth {
            file: Some(Arc::new(file)),
            written: size,
            end: Some(Ok(size)),
        });
        drop(tx);
        Ok(GrowingFile(rx, None))
    }

    /// The same file, adding the bytes read from it to `counter`.
    pub fn counting(self, counter: Arc<std::sync::atomic::AtomicU64>) -> GrowingFile {
        GrowingFile(self.0, Some(counter))
    }

    /// Waits until `want` bytes past `offset` can be read or the end is known. Returns the bytes
    /// readable now (from the start of the file) and the final size once known; an error if the
    /// writer failed or went away.
    pub async fn wait(&mut self, offset: u64, want: u64) -> Result<(u64, Option<u64>)> {
        loop {
            {
                let g = self.0.borrow_and_update();
                match &g.end {
                    Some(Ok(size)) => return Ok((*size, Some(*size))),
                    Some(Err(why)) => {
                        return Err(Error::Other(format!(
                            "the local snapshot failed ({why}); upload abandoned"
                        )));
                    }
                    None if g.file.is_some() && g.written >= offset + want => {
                        return Ok((g.written, None));
                    }
                    None => {}
                }
            }
            if self.0.changed().await.is_err() {
                let g = self.0.borrow();
                return match &g.end {
                    Some(Ok(size)) => Ok((*size, Some(*size))),
                    _ => Err(Error::Other(
                        "the local snapshot writer stopped; upload abandoned".into(),
                    )),
                };
            }
        }
    }

    /// Reads `len` bytes at `offset` (bytes already reported written).
    pub async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let file = self
            .0
            .borrow()
            .file
            .clone()
            .ok_or_else(|| Error::Other("the snapshot file is not open yet".into()))?;
        let counter = self.1.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, offset)?;
            if let Some(c) = counter {
                c.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Ok::<_, std::io::Error>(buf)
        })
        .await
        .map_err(|e| Error::Other(format!("read task failed: {e}")))?
        .map_err(|e| Error::Io {
            context: format!("read snapshot at offset {offset}"),
            source: e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn reader_follows_writer_and_sees_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let (tx, mut rx) = growing();
        tx.opened(&f).unwrap();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let (avail, fin) = rx.wait(got.len() as u64, 4).await.unwrap();
                let n = (avail - got.len() as u64) as usize;
                got.extend(rx.read_at(got.len() as u64, n).await.unwrap());
                if fin == Some(got.len() as u64) {
                    return got;
                }
            }
        });
        for i in 0..10u8 {
            f.write_all(&[i; 3]).unwrap();
            tx.wrote(3);
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        std::fs::rename(&path, dir.path().join("g")).unwrap();
        tx.finished(30);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), 30);
        assert_eq!(&got[27..], &[9, 9, 9]);
    }

    #[tokio::test]
    async fn failure_and_disappearance_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("f")).unwrap();
        let (tx, mut rx) = growing();
        tx.opened(&f).unwrap();
        tx.failed("checksum mismatch");
        let err = rx.wait(0, 10).await.unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        let (tx, mut rx) = growing();
        drop(tx);
        assert!(rx.wait(0, 10).await.is_err());
    }
}
