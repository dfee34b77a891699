//! Group commit: many appenders, one flush. Each appender writes its
//! record, then waits until a flush that began after its write has
//! finished; a single thread does the flushing, so a burst of batches from
//! many agents shares one fsync.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    requested: u64,
    done: u64,
    /// The error of the last flush, cleared by the next good one.
    error: Option<String>,
    stop: bool,
    last_flush: Duration,
    flushes: u64,
}

/// See the module comment.
pub struct Committer {
    state: Arc<(Mutex<State>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    /// Starts the flushing thread; `flush` makes every write made before
    /// it was called durable.
    pub fn start(
        flush: impl Fn() -> Result<(), String> + Send + 'static,
    ) -> std::io::Result<Committer> {
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let shared = state.clone();
        let thread = std::thread::Builder::new()
            .name("patrol-flush".into())
            .spawn(move || flush_loop(&flush, &shared))?;
        Ok(Committer {
            state,
            thread: Some(thread),
        })
    }

    /// Returns once everything written before the call is on disk.
    pub fn wait_durable(&self) -> Result<(), String> {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        s.requested += 1;
        let mine = s.requested;
        cv.notify_all();
        while s.done < mine && !s.stop {
            s = cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        match &s.error {
            Some(e) => Err(e.clone()),
            None if s.done >= mine => Ok(()),
            None => Err("storage is shutting down".into()),
        }
    }

    /// How long the last flush took.
    pub fn last_flush(&self) -> Duration {
        let (lock, _) = &*self.state;
        lock.lock().unwrap_or_else(|p| p.into_inner()).last_flush
    }
}

#[cfg(test)]
impl Committer {
    /// Flushes done so far.
    pub fn flushes(&self) -> u64 {
        let (lock, _) = &*self.state;
        lock.lock().unwrap_or_else(|p| p.into_inner()).flushes
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.state;
        lock.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        cv.notify_all();
        // The thread holds handles on the files: wait for it, so they are
        // closed when the store is dropped.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn flush_loop(flush: &dyn Fn() -> Result<(), String>, state: &(Mutex<State>, Condvar)) {
    let (lock, cv) = state;
    loop {
        let target = {
            let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
            while s.requested == s.done && !s.stop {
                s = cv.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.stop {
                return;
            }
            s.requested
        };
        let started = Instant::now();
        let result = flush();
        let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
        s.last_flush = started.elapsed();
        s.flushes += 1;
        s.error = result.err();
        s.done = target;
        cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writers_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(Mutex::new(
            std::fs::File::create(dir.path().join("log")).unwrap(),
        ));
        let syncing = file.clone();
        let committer = Arc::new(
            Committer::start(move || {
                syncing
                    .lock()
                    .unwrap()
                    .sync_data()
                    .map_err(|e| e.to_string())
            })
            .unwrap(),
        );
        let threads: Vec<_> = (0..8u64)
            .map(|_| {
                let (file, committer) = (file.clone(), committer.clone());
                std::thread::spawn(move || {
                    for _ in 0..25u64 {
                        use std::io::Write;
                        file.lock().unwrap().write_all(&[0u8; 512]).unwrap();
                        committer.wait_durable().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let flushes = committer.flushes();
        assert!(flushes < 200, "200 durable writes took {flushes} flushes");
        assert!(flushes > 0);
    }
}
