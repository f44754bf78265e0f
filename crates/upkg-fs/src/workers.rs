//! Worker threads for parallel work on a tree (hashing, writing).

/// A pool of `threads` worker threads (at least one).
pub fn thread_pool(threads: usize) -> std::io::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build().map_err(std::io::Error::other)
}

/// Worker threads by default: one per core; file creation waits on the kernel, so
/// never fewer than two.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).max(2)
}
