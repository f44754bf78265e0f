//! Decodes one whole gzip member with libdeflate, and says exactly how many input
//! bytes the member used.
//!
//! Why this crate exists: libdeflate inflates about three times faster than the
//! streaming zlib-rs decoder (measured on package members: 2.97 GB/s against
//! 0.85 GB/s), and a package's gzip members are small and carry their exact
//! uncompressed size, so they can be decoded whole. But the format requires a
//! reader to refuse a member followed by any other byte, and the safe `libdeflater`
//! wrapper does not report how much input a member used. This crate makes the one
//! foreign call that does (`libdeflate_gzip_decompress_ex`); it is the only crate
//! of the workspace with `unsafe` code.

use std::ptr::NonNull;

use libdeflate_sys::{
    libdeflate_alloc_decompressor, libdeflate_decompressor, libdeflate_free_decompressor,
    libdeflate_gzip_decompress_ex, libdeflate_result_LIBDEFLATE_SUCCESS,
};

/// Why a member did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GunzipError {
    /// Not valid gzip data, or a CRC-32 or ISIZE that does not match.
    BadData,
    /// The member decodes to more bytes than the output holds.
    TooLong,
}

impl std::fmt::Display for GunzipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GunzipError::BadData => "invalid gzip data (or a CRC-32 or size that does not match)",
            GunzipError::TooLong => "the gzip member decodes to more bytes than expected",
        })
    }
}

impl std::error::Error for GunzipError {}

/// A libdeflate decompressor (reusable: keep one per thread).
pub struct Gunzip {
    decompressor: NonNull<libdeflate_decompressor>,
}

// SAFETY: a libdeflate decompressor holds no reference to thread-local state; it
// may move between threads as long as one thread uses it at a time (`&mut self`).
unsafe impl Send for Gunzip {}

impl Default for Gunzip {
    fn default() -> Self {
        Self::new()
    }
}

impl Gunzip {
    /// A new decompressor.
    pub fn new() -> Gunzip {
        // SAFETY: no preconditions; a null return means the allocation failed.
        let decompressor = unsafe { libdeflate_alloc_decompressor() };
        Gunzip { decompressor: NonNull::new(decompressor).expect("libdeflate could not allocate a decompressor") }
    }

    /// Decodes the gzip member at the start of `input` into `output`; returns
    /// (input bytes the member used, bytes written). libdeflate checks the
    /// member's CRC-32 and ISIZE.
    pub fn decode(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), GunzipError> {
        let mut used = 0usize;
        let mut written = 0usize;
        // SAFETY: the decompressor is valid and used by this thread alone; `input`
        // and `output` are valid for their lengths for the duration of the call,
        // and libdeflate writes at most `output.len()` bytes to `output`.
        let result = unsafe {
            libdeflate_gzip_decompress_ex(
                self.decompressor.as_ptr(),
                input.as_ptr().cast(),
                input.len(),
                output.as_mut_ptr().cast(),
                output.len(),
                &mut used,
                &mut written,
            )
        };
        match result {
            r if r == libdeflate_result_LIBDEFLATE_SUCCESS => Ok((used, written)),
            r if r == libdeflate_sys::libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => Err(GunzipError::TooLong),
            _ => Err(GunzipError::BadData),
        }
    }
}

impl Drop for Gunzip {
    fn drop(&mut self) {
        // SAFETY: allocated by libdeflate_alloc_decompressor and freed once.
        unsafe { libdeflate_free_decompressor(self.decompressor.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `printf 'hello\n' | gzip -n`
    const HELLO: &[u8] = &[
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0xe7, 0x02, 0x00,
        0x20, 0x30, 0x3a, 0x36, 0x06, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn reports_what_the_member_used() {
        let mut gunzip = Gunzip::new();
        let mut out = [0u8; 6];
        assert_eq!(gunzip.decode(HELLO, &mut out), Ok((HELLO.len(), 6)));
        assert_eq!(&out, b"hello\n");
        let mut with_junk = HELLO.to_vec();
        with_junk.extend_from_slice(b"junk");
        assert_eq!(gunzip.decode(&with_junk, &mut out), Ok((HELLO.len(), 6)));
    }

    #[test]
    fn refuses_damage_and_short_buffers() {
        let mut gunzip = Gunzip::new();
        let mut out = [0u8; 6];
        let mut bad_crc = HELLO.to_vec();
        bad_crc[HELLO.len() - 8] ^= 1;
        assert_eq!(gunzip.decode(&bad_crc, &mut out), Err(GunzipError::BadData));
        let mut short = [0u8; 5];
        assert_eq!(gunzip.decode(HELLO, &mut short), Err(GunzipError::TooLong));
    }
}
