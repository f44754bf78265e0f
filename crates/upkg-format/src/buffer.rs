//! One reusable copy buffer per thread.
//!
//! Allocating a fresh 256 KiB buffer per file costs an `mmap`, 64 zero-filled page
//! faults and a `munmap` each time (glibc maps allocations that large directly):
//! for 20,000 small files that was most of the time spent copying them.

use std::cell::Cell;

/// Size of the copy buffer.
pub const COPY_BUFFER_LEN: usize = 256 * 1024;

thread_local! {
    static BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` with this thread's copy buffer (a fresh one if `f` is nested in another use).
pub fn with_copy_buffer<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    let mut buffer = BUFFER.with(Cell::take);
    if buffer.len() < COPY_BUFFER_LEN {
        buffer = vec![0u8; COPY_BUFFER_LEN];
    }
    let result = f(&mut buffer);
    BUFFER.with(|cell| cell.set(buffer));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_uses_get_their_own_buffer() {
        with_copy_buffer(|outer| {
            outer[0] = 1;
            with_copy_buffer(|inner| {
                assert_eq!(inner.len(), COPY_BUFFER_LEN);
                inner[0] = 2;
            });
            assert_eq!(outer[0], 1);
        });
    }
}
