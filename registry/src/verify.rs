//! Size and sha256 checks, `.verified` stamps, hashing writers and progress bars.
//!
//! A stamp `<file>.verified` records the size, mtime and sha256 of a file that was hashed
//! successfully; while size and mtime still match, later checks trust it instead of rehashing.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Outcome of checking a file on disk against an expected size and sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// Right size and hash (from a valid stamp or a fresh hash).
    Verified,
    /// No file at that path.
    Missing,
    /// A file is there but it is not the expected one; the string says why.
    Bad(String),
}

/// `path` with `.ext` appended to its file name (`a.gguf` -> `a.gguf.part`).
pub(crate) fn with_suffix(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

pub(crate) fn stamp_path(file: &Path) -> PathBuf {
    with_suffix(file, "verified")
}

#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_secs: u64,
    mtime_nanos: u32,
    sha256: String,
}

fn mtime_of(meta: &std::fs::Metadata) -> Option<(u64, u32)> {
    let d = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((d.as_secs(), d.subsec_nanos()))
}

fn stamp_ok(file: &Path, meta: &std::fs::Metadata, sha256: &str) -> bool {
    let Some((secs, nanos)) = mtime_of(meta) else {
        return false;
    };
    let Ok(text) = std::fs::read_to_string(stamp_path(file)) else {
        return false;
    };
    let Ok(stamp) = serde_json::from_str::<Stamp>(&text) else {
        return false;
    };
    stamp.size == meta.len()
        && stamp.mtime_secs == secs
        && stamp.mtime_nanos == nanos
        && stamp.sha256.eq_ignore_ascii_case(sha256)
}

/// Record that `file` (as it is now on disk) has hash `sha256`. Failure only costs a rehash later.
pub(crate) fn write_stamp(file: &Path, sha256: &str) {
    let stamp = std::fs::metadata(file).ok().and_then(|meta| {
        let (mtime_secs, mtime_nanos) = mtime_of(&meta)?;
        Some(Stamp {
            size: meta.len(),
            mtime_secs,
            mtime_nanos,
            sha256: sha256.to_ascii_lowercase(),
        })
    });
    let Some(stamp) = stamp else { return };
    let path = stamp_path(file);
    let text = serde_json::to_string(&stamp).unwrap_or_default();
    if let Err(e) = std::fs::write(&path, text + "\n") {
        tracing::debug!("could not write verification stamp {}: {e}", path.display());
    }
}

pub(crate) fn remove_stamp(file: &Path) {
    let _ = std::fs::remove_file(stamp_path(file));
}

/// Check `file` against `size` and `sha256`. Cheap when the size is wrong or a stamp is valid;
/// otherwise hashes the whole file (and stamps it on success).
pub(crate) fn check(file: &Path, sha256: &str, size: u64, progress: bool) -> Result<Check> {
    let meta = match std::fs::metadata(file) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Check::Missing),
        Err(e) => {
            return Err(Error::io(
                format!("reading metadata of {}", file.display()),
                e,
            ))
        }
    };
    if !meta.is_file() {
        return Ok(Check::Bad("not a regular file".into()));
    }
    if meta.len() != size {
        let why = if meta.len() < size {
            "truncated or partial file"
        } else {
            "not the expected file"
        };
        return Ok(Check::Bad(format!(
            "size is {} bytes but {} bytes were expected ({why})",
            meta.len(),
            size
        )));
    }
    if stamp_ok(file, &meta, sha256) {
        return Ok(Check::Verified);
    }
    tracing::info!(
        "verifying sha256 of {} ({})",
        file.display(),
        human_bytes(size)
    );
    let started = std::time::Instant::now();
    let actual = hash_file(file, progress)?;
    tracing::debug!("hashed {} in {:.1?}", file.display(), started.elapsed());
    if actual.eq_ignore_ascii_case(sha256) {
        write_stamp(file, &actual);
        Ok(Check::Verified)
    } else {
        remove_stamp(file);
        Ok(Check::Bad(format!(
            "sha256 is {actual} but {} was expected",
            sha256.to_ascii_lowercase()
        )))
    }
}

/// Hex sha256 of a whole file.
pub(crate) fn hash_file(path: &Path, progress: bool) -> Result<String> {
    let mut f = fs_err::File::open(path).map_err(|e| Error::io("hashing", e))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bar = bytes_bar(progress, len, format!("sha256 {name}"));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io("hashing", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(hex::encode(hasher.finalize()))
}

/// sha256 (lower-case hex) of bytes in memory.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A writer that hashes and counts everything written through it. It supports only
/// `stream_position()` as a seek (what candle's GGUF writer needs), never moving.
pub(crate) struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
    bar: ProgressBar,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W, bar: ProgressBar) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
            bar,
        }
    }

    /// Flush and return the inner writer, the hex sha256 and the byte count.
    pub(crate) fn finish(mut self) -> io::Result<(W, String, u64)> {
        self.inner.flush()?;
        self.bar.finish_and_clear();
        Ok((
            self.inner,
            hex::encode(self.hasher.finalize()),
            self.written,
        ))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        self.bar.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Seek for HashingWriter<W> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match pos {
            SeekFrom::Current(0) => Ok(self.written),
            SeekFrom::Start(p) if p == self.written => Ok(self.written),
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "HashingWriter cannot seek",
            )),
        }
    }
}

/// A byte-count progress bar, hidden unless `show`.
pub(crate) fn bytes_bar(show: bool, total: u64, msg: impl Into<String>) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg:32!} [{bar:36.cyan/blue}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(msg.into());
    bar
}

/// A count progress bar (tensors, wheels), hidden unless `show`.
pub(crate) fn count_bar(show: bool, total: u64, msg: impl Into<String>) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style =
        ProgressStyle::with_template("{msg:32!} [{bar:36.cyan/blue}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(msg.into());
    bar
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
