//! Decodes one whole gzip member, or one whole raw deflate stream, with libdeflate,
//! and says exactly how many input bytes it used.
//!
//! Why this crate exists: libdeflate inflates about three times faster than the
//! streaming zlib-rs decoder (measured on package members: 2.97 GB/s against
//! 0.85 GB/s), and a package's gzip members and cabinet blocks are small and carry
//! their exact uncompressed size, so they can be decoded whole. But the format
//! requires a reader to refuse a member or block followed by any other byte, and
//! the safe `libdeflater` wrapper does not report how much input was used. This
//! crate makes the two foreign calls that do (`libdeflate_gzip_decompress_ex`,
//! `libdeflate_deflate_decompress_ex`); it is the only crate of the workspace
//! with `unsafe` code.

use std::ptr::NonNull;

use libdeflate_sys::{
    libdeflate_alloc_decompressor, libdeflate_decompressor, libdeflate_deflate_decompress_ex,
    libdeflate_free_decompressor, libdeflate_gzip_decompress_ex, libdeflate_result,
    libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE, libdeflate_result_LIBDEFLATE_SUCCESS,
};

/// Why data did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// Not valid data: a bad deflate stream (including, for a raw stream, a
    /// reference to bytes before its start), or a gzip CRC-32 or ISIZE that does
    /// not match.
    BadData,
    /// The data decodes to more bytes than the output holds.
    TooLong,
}

impl std::fmt::Display for InflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InflateError::BadData => "invalid deflate data (or a gzip CRC-32 or size that does not match)",
            InflateError::TooLong => "the data decodes to more bytes than expected",
        })
    }
}

impl std::error::Error for InflateError {}

/// A libdeflate decompressor (reusable: keep one per thread).
pub struct Inflater {
    decompressor: NonNull<libdeflate_decompressor>,
}

// SAFETY: a libdeflate decompressor holds no reference to thread-local state; it
// may move between threads as long as one thread uses it at a time (`&mut self`).
unsafe impl Send for Inflater {}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

/// libdeflate's `*_decompress_ex` signature.
type DecompressEx = unsafe extern "C" fn(
    *mut libdeflate_decompressor,
    *const std::ffi::c_void,
    usize,
    *mut std::ffi::c_void,
    usize,
    *mut usize,
    *mut usize,
) -> libdeflate_result;

impl Inflater {
    /// A new decompressor.
    pub fn new() -> Inflater {
        // SAFETY: no preconditions; a null return means the allocation failed.
        let decompressor = unsafe { libdeflate_alloc_decompressor() };
        Inflater { decompressor: NonNull::new(decompressor).expect("libdeflate could not allocate a decompressor") }
    }

    /// Decodes the gzip member at the start of `input` into `output`; returns
    /// (input bytes the member used, bytes written). libdeflate checks the
    /// member's CRC-32 and ISIZE.
    pub fn gunzip(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), InflateError> {
        self.call(libdeflate_gzip_decompress_ex, input, output)
    }

    /// Decodes the raw deflate stream (RFC 1951, ending with a BFINAL block) at
    /// the start of `input` into `output`, with no preset dictionary: a stream
    /// that refers to bytes before its start is [`InflateError::BadData`].
    /// Returns (input bytes the stream used, bytes written).
    pub fn inflate_raw(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), InflateError> {
        self.call(libdeflate_deflate_decompress_ex, input, output)
    }

    fn call(
        &mut self,
        decompress: DecompressEx,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(usize, usize), InflateError> {
        let mut used = 0usize;
        let mut written = 0usize;
        // SAFETY: the decompressor is valid and used by this thread alone; `input`
        // and `output` are valid for their lengths for the duration of the call,
        // and libdeflate writes at most `output.len()` bytes to `output`.
        let result = unsafe {
            decompress(
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
            r if r == libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => Err(InflateError::TooLong),
            _ => Err(InflateError::BadData),
        }
    }
}

impl Drop for Inflater {
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
    /// The raw deflate stream inside [`HELLO`] (after its 10-byte header, before its 8-byte trailer).
    const HELLO_RAW: &[u8] = &[0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0xe7, 0x02, 0x00];

    #[test]
    fn reports_what_the_member_used() {
        let mut inflater = Inflater::new();
        let mut out = [0u8; 6];
        assert_eq!(inflater.gunzip(HELLO, &mut out), Ok((HELLO.len(), 6)));
        assert_eq!(&out, b"hello\n");
        let mut with_junk = HELLO.to_vec();
        with_junk.extend_from_slice(b"junk");
        assert_eq!(inflater.gunzip(&with_junk, &mut out), Ok((HELLO.len(), 6)));
    }

    #[test]
    fn refuses_damage_and_short_buffers() {
        let mut inflater = Inflater::new();
        let mut out = [0u8; 6];
        let mut bad_crc = HELLO.to_vec();
        bad_crc[HELLO.len() - 8] ^= 1;
        assert_eq!(inflater.gunzip(&bad_crc, &mut out), Err(InflateError::BadData));
        let mut short = [0u8; 5];
        assert_eq!(inflater.gunzip(HELLO, &mut short), Err(InflateError::TooLong));
    }

    #[test]
    fn raw_streams_report_what_they_used() {
        let mut inflater = Inflater::new();
        let mut out = [0u8; 6];
        let mut with_junk = HELLO_RAW.to_vec();
        with_junk.extend_from_slice(b"junk");
        assert_eq!(inflater.inflate_raw(&with_junk, &mut out), Ok((HELLO_RAW.len(), 6)));
        assert_eq!(&out, b"hello\n");
        assert_eq!(inflater.inflate_raw(HELLO_RAW, &mut [0u8; 5]), Err(InflateError::TooLong));
    }

    /// A stream that copies from before its start needs a preset dictionary,
    /// which this decoder does not take: it is refused, never decoded wrongly.
    #[test]
    fn raw_stream_reaching_before_its_start_is_refused() {
        // Compressed against a dictionary, the data becomes matches into it.
        let mut compressor = flate2::Compress::new(flate2::Compression::new(6), false);
        compressor.set_dictionary(b"0123456789abcdef").unwrap();
        let mut stream = Vec::with_capacity(64);
        compressor.compress_vec(b"0123456789abcdef", &mut stream, flate2::FlushCompress::Finish).unwrap();
        let mut out = [0u8; 16];
        assert_eq!(Inflater::new().inflate_raw(&stream, &mut out), Err(InflateError::BadData));
    }
}
