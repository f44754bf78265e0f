//! Starting the disk writes early while a large amount is written.

use std::sync::{Arc, Condvar, Mutex};

use crate::dir::Dir;
use crate::error::{FsError, Result};

/// Starts the disk writes early while a large amount is being written, so that the
/// one `syncfs` of batched durability has little left to wait for: a thread syncs
/// the filesystem each time another [`Flusher::STEP`] bytes have been written. The
/// writers never wait for it. Its first failure is kept and returned by
/// [`Flusher::finish`]: after a failed sync the kernel may have dropped the data,
/// and a later `syncfs` on another descriptor would not report it.
pub struct Flusher {
    shared: Arc<(Mutex<FlushState>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct FlushState {
    pending: u64,
    done: bool,
    error: Option<FsError>,
}

impl Flusher {
    /// Bytes written between two background syncs.
    pub const STEP: u64 = 64 << 20;

    /// Starts the flusher for the filesystem holding `dir`.
    pub fn start(dir: &Dir) -> Result<Flusher> {
        let dir = dir.try_clone()?;
        let shared = Arc::new((Mutex::new(FlushState::default()), Condvar::new()));
        let worker = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            let (lock, wake) = &*worker;
            loop {
                let mut state = lock.lock().expect("flusher lock");
                while !state.done && state.pending < Self::STEP {
                    state = wake.wait(state).expect("flusher lock");
                }
                if state.done {
                    return;
                }
                state.pending = 0;
                drop(state);
                if let Err(e) = dir.syncfs() {
                    let mut state = lock.lock().expect("flusher lock");
                    state.error.get_or_insert(e);
                }
            }
        });
        Ok(Flusher { shared, thread: Some(thread) })
    }

    /// Counts `bytes` more written.
    pub fn add(&self, bytes: u64) {
        let (lock, wake) = &*self.shared;
        let mut state = lock.lock().expect("flusher lock");
        state.pending += bytes;
        if state.pending >= Self::STEP {
            wake.notify_one();
        }
    }

    /// Stops the flusher; the error of a background sync that failed, if any.
    pub fn finish(mut self) -> Result<()> {
        self.stop();
        let (lock, _) = &*self.shared;
        match lock.lock().expect("flusher lock").error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        let (lock, wake) = &*self.shared;
        lock.lock().expect("flusher lock").done = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}
