//! A bounded pool for the CPU work of request handlers (model inference, clustering, n-gram
//! similarity, masking of large exports).
//!
//! The server runs two async workers; CPU work on them stalls every other request, `/health`
//! included. Handlers hand such work to [`CpuPool::run`]: it runs on tokio's blocking threads,
//! at most `slots` jobs at once (the machine's cores), with at most `max_waiting` more queued;
//! beyond that the caller gets [`Overloaded`] (HTTP 429) at once instead of a growing queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

/// The pool refused the job: too many are running and waiting.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    #[error("the server is busy ({0} jobs waiting); try again shortly")]
    Overloaded(usize),
    #[error("a background job crashed: {0}")]
    Crashed(String),
}

/// Shorthand for the overload case.
pub use PoolError::Overloaded;

pub struct CpuPool {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl CpuPool {
    pub fn new(slots: usize, max_waiting: usize) -> Self {
        CpuPool { slots: Arc::new(Semaphore::new(slots.max(1))), waiting: AtomicUsize::new(0), max_waiting }
    }

    /// Sized for this machine: one slot per core, 16 waiting per slot.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Self::new(cores, 16 * cores)
    }

    /// Run `f` on a blocking thread once a slot is free.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, PoolError> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(PoolError::Overloaded(self.max_waiting));
                }
                // Uncounted on drop: a request whose client goes away stops waiting here, and a
                // count left behind would refuse everyone once it reached the bound.
                let _waiting = Waiting(&self.waiting);
                self.slots.clone().acquire_owned().await.map_err(|e| PoolError::Crashed(e.to_string()))?
            }
        };
        // The permit moves into the job: a caller that goes away does not free the slot while
        // its job still runs.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|e| PoolError::Crashed(e.to_string()))
    }
}

/// One waiting job, uncounted when dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_beyond_slots_and_waiters_are_refused_and_the_runtime_stays_free() {
        let pool = Arc::new(CpuPool::new(1, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let running = {
            let (pool, rx) = (pool.clone(), rx.clone());
            tokio::spawn(async move { pool.run(move || rx.lock().unwrap().recv().ok()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| 7).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(pool.run(|| 1).await, Err(PoolError::Overloaded(1))));
        // The async workers are free while the job blocks.
        let t = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(t.elapsed() < Duration::from_millis(500));
        tx.send(()).unwrap();
        assert!(running.await.unwrap().is_ok());
        assert_eq!(queued.await.unwrap().unwrap(), 7);
        assert_eq!(pool.run(|| 3).await.unwrap(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_that_goes_away_frees_its_place() {
        let pool = Arc::new(CpuPool::new(1, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let running = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move || rx.recv().ok()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A waiter whose client disconnects (its future is dropped) ...
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| 1).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        waiter.abort();
        let _ = waiter.await;
        // ... leaves its place to the next one.
        let next = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| 2).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(()).unwrap();
        assert!(running.await.unwrap().is_ok());
        assert_eq!(next.await.unwrap().unwrap(), 2, "the abandoned waiter still counted");
    }
}
