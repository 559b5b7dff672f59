//! A per-file fetch lock (`<file>.lock` holding the owner's pid), so two processes fetching the
//! same model do not write the same `.part` file at once. A lock left by a process that is gone
//! (crash, kill -9) is taken over.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};

/// How old a lock must be before it is treated as stale where liveness cannot be checked.
const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug)]
pub(crate) struct FetchLock {
    path: PathBuf,
}

impl FetchLock {
    /// Take the lock at `path`, waiting while another live process holds it.
    pub(crate) fn acquire(path: &Path) -> Result<FetchLock> {
        let started = Instant::now();
        let mut announced = false;
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(FetchLock {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    if is_stale(path, owner) {
                        tracing::warn!(
                            "removing stale fetch lock {} (owner pid {:?} is gone)",
                            path.display(),
                            owner
                        );
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    if !announced {
                        tracing::info!(
                            "waiting for another fetch (pid {}) holding {} to finish",
                            owner.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                            path.display()
                        );
                        announced = true;
                    }
                    if started.elapsed() > Duration::from_secs(3 * 3600) {
                        return Err(Error::ModelFile {
                            path: path.to_path_buf(),
                            msg: "still locked by another fetch after 3 hours; if no fetch is running, delete the lock file".into(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("creating lock file {}", path.display()),
                        e,
                    ))
                }
            }
        }
    }
}

impl Drop for FetchLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn is_stale(path: &Path, owner: Option<u32>) -> bool {
    #[cfg(target_os = "linux")]
    if let Some(pid) = owner {
        if pid != std::process::id() {
            return !Path::new(&format!("/proc/{pid}")).exists();
        }
        return false;
    }
    // Unknown owner (empty file, other OS): stale only when old; a just-created lock may not
    // have its pid written yet.
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    let _ = owner;
    age > if cfg!(target_os = "linux") {
        Duration::from_secs(10)
    } else {
        STALE_AFTER
    }
}
