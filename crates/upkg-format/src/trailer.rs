//! The fixed-size trailer at the very end of every package file (spec section "Trailer").
//!
//! The trailer is the only structure found by position: it says how long each
//! other part is, so readers never scan for markers. It is not signed itself;
//! every field is either checked by its CRC, cross-checked against the signed
//! header, or determines where the signed parts are.

use crate::error::{Error, Result};

/// Size of the version 1 trailer in bytes.
pub const TRAILER_LEN: usize = 96;

/// The last eight bytes of every package. The high byte and the CR LF / SUB / LF
/// sequence catch text-mode transfers, like PNG's signature.
pub const TRAILER_MAGIC: [u8; 8] = *b"\x89UPKG\r\n\x1a";

/// Format major version written and read by this crate.
pub const FORMAT_MAJOR: u16 = 1;
/// Newest format minor version this crate reads and writes. A writer gives each
/// package the lowest minor version it needs
/// ([`FormatVersion::lowest_for`](crate::header::FormatVersion::lowest_for)), so
/// this is only the highest it may write.
///
/// - 1.0: the first version;
/// - 1.1: adds `services[].status`;
/// - 1.2: adds `files[].deltas`.
pub const FORMAT_MINOR: u16 = 2;

// Field offsets inside the trailer (spec table "Trailer layout").
const OFF_HEADER_SHA256: usize = 0;
const OFF_STUB_LEN: usize = 32;
const OFF_PAYLOAD_LEN: usize = 40;
const OFF_HEADER_LEN: usize = 48;
const OFF_SIGNATURE_LEN: usize = 56;
const OFF_RESERVED: usize = 64;
const OFF_FLAGS: usize = 72;
const OFF_CRC32: usize = 76;
const OFF_MAJOR: usize = 80;
const OFF_MINOR: usize = 82;
const OFF_TRAILER_LEN: usize = 84;
const OFF_MAGIC: usize = 88;

/// The decoded trailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    /// SHA-256 of the header bytes.
    pub header_sha256: [u8; 32],
    /// Length of the stub (0 for a package without one); the stub starts at offset 0.
    pub stub_len: u64,
    /// Length of the payload, which follows the stub.
    pub payload_len: u64,
    /// Length of the header, which follows the payload.
    pub header_len: u64,
    /// Length of the signature block (0 for an unsigned package), which follows the header.
    pub signature_len: u64,
    /// Format minor version.
    pub minor: u16,
}

impl Trailer {
    /// Offset of the payload in the package file.
    pub fn payload_offset(&self) -> u64 {
        self.stub_len
    }

    /// Offset of the header in the package file.
    pub fn header_offset(&self) -> u64 {
        self.stub_len + self.payload_len
    }

    /// Offset of the signature block in the package file.
    pub fn signature_offset(&self) -> u64 {
        self.header_offset() + self.header_len
    }

    /// Offset of the trailer itself, which is also the length the other parts add up to.
    pub fn trailer_offset(&self) -> u64 {
        self.signature_offset() + self.signature_len
    }

    /// Encodes the trailer to its on-disk bytes.
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[OFF_HEADER_SHA256..OFF_HEADER_SHA256 + 32].copy_from_slice(&self.header_sha256);
        put_u64(&mut out, OFF_STUB_LEN, self.stub_len);
        put_u64(&mut out, OFF_PAYLOAD_LEN, self.payload_len);
        put_u64(&mut out, OFF_HEADER_LEN, self.header_len);
        put_u64(&mut out, OFF_SIGNATURE_LEN, self.signature_len);
        // Reserved bytes and flags stay zero in version 1.
        out[OFF_MAJOR..OFF_MAJOR + 2].copy_from_slice(&FORMAT_MAJOR.to_le_bytes());
        out[OFF_MINOR..OFF_MINOR + 2].copy_from_slice(&self.minor.to_le_bytes());
        out[OFF_TRAILER_LEN..OFF_TRAILER_LEN + 4].copy_from_slice(&(TRAILER_LEN as u32).to_le_bytes());
        out[OFF_MAGIC..].copy_from_slice(&TRAILER_MAGIC);
        let crc = crc_of(&out);
        out[OFF_CRC32..OFF_CRC32 + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a trailer read from the last [`TRAILER_LEN`] bytes of a file of
    /// `file_len` bytes. `file_offset` is where those bytes start, for messages.
    ///
    /// Checks, in this order: magic, major version (before anything else a newer
    /// version may have changed), trailer length, CRC, reserved fields, and that the
    /// parts add up to exactly the file's length.
    pub fn decode(bytes: &[u8; TRAILER_LEN], file_len: u64) -> Result<Trailer> {
        if file_len < TRAILER_LEN as u64 {
            return Err(Error::malformed(
                "trailer",
                None,
                format!("the file is {file_len} bytes long, shorter than a trailer"),
            ));
        }
        let file_offset = file_len - TRAILER_LEN as u64;
        let at = |field: usize| Some(file_offset + field as u64);
        if bytes[OFF_MAGIC..] != TRAILER_MAGIC {
            return Err(Error::malformed(
                "trailer",
                at(OFF_MAGIC),
                "the file does not end with the upkg magic (not a package, or bytes were appended or cut off)",
            ));
        }
        let major = get_u16(bytes, OFF_MAJOR);
        let minor = get_u16(bytes, OFF_MINOR);
        if major != FORMAT_MAJOR {
            return Err(Error::UnsupportedVersion { major, minor, supported: FORMAT_MAJOR });
        }
        let declared_len = get_u32(bytes, OFF_TRAILER_LEN);
        if declared_len as usize != TRAILER_LEN {
            return Err(Error::malformed(
                "trailer",
                at(OFF_TRAILER_LEN),
                format!("trailer length is {declared_len}, version 1 requires {TRAILER_LEN}"),
            ));
        }
        let stored_crc = get_u32(bytes, OFF_CRC32);
        let computed_crc = crc_of(bytes);
        if stored_crc != computed_crc {
            return Err(Error::malformed(
                "trailer",
                at(0),
                format!("checksum mismatch (stored {stored_crc:08x}, computed {computed_crc:08x})"),
            ));
        }
        if bytes[OFF_RESERVED..OFF_RESERVED + 8].iter().any(|&b| b != 0) {
            return Err(Error::malformed("trailer", at(OFF_RESERVED), "reserved bytes are not zero"));
        }
        let flags = get_u32(bytes, OFF_FLAGS);
        if flags != 0 {
            return Err(Error::malformed("trailer", at(OFF_FLAGS), format!("unknown flags {flags:#x}")));
        }
        let mut header_sha256 = [0u8; 32];
        header_sha256.copy_from_slice(&bytes[OFF_HEADER_SHA256..OFF_HEADER_SHA256 + 32]);
        let trailer = Trailer {
            header_sha256,
            stub_len: get_u64(bytes, OFF_STUB_LEN),
            payload_len: get_u64(bytes, OFF_PAYLOAD_LEN),
            header_len: get_u64(bytes, OFF_HEADER_LEN),
            signature_len: get_u64(bytes, OFF_SIGNATURE_LEN),
            minor,
        };
        let total = [trailer.stub_len, trailer.payload_len, trailer.header_len, trailer.signature_len]
            .iter()
            .try_fold(TRAILER_LEN as u64, |sum, &len| sum.checked_add(len));
        if total != Some(file_len) {
            return Err(Error::malformed(
                "trailer",
                at(OFF_STUB_LEN),
                format!(
                    "the parts it lists (stub {}, payload {}, header {}, signature {}, trailer {}) do not add up to the file's {} bytes",
                    trailer.stub_len,
                    trailer.payload_len,
                    trailer.header_len,
                    trailer.signature_len,
                    TRAILER_LEN,
                    file_len
                ),
            ));
        }
        Ok(trailer)
    }
}

/// CRC-32 (IEEE 802.3, as in gzip) of the trailer with its CRC field taken as zero.
fn crc_of(bytes: &[u8; TRAILER_LEN]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..OFF_CRC32]);
    hasher.update(&[0u8; 4]);
    hasher.update(&bytes[OFF_CRC32 + 4..]);
    hasher.finalize()
}

fn put_u64(out: &mut [u8], offset: usize, value: u64) {
    out[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

fn get_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

fn get_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

fn get_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes(bytes[offset..offset + 2].try_into().expect("2 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FailureClass;

    fn sample() -> Trailer {
        Trailer {
            header_sha256: [7u8; 32],
            stub_len: 1000,
            payload_len: 2000,
            header_len: 300,
            signature_len: 400,
            minor: 0,
        }
    }

    const SAMPLE_FILE_LEN: u64 = 1000 + 2000 + 300 + 400 + TRAILER_LEN as u64;

    #[test]
    fn round_trip() {
        let bytes = sample().encode();
        assert_eq!(Trailer::decode(&bytes, SAMPLE_FILE_LEN).unwrap(), sample());
    }

    #[test]
    fn known_layout() {
        let bytes = sample().encode();
        // stub_len at 32, little-endian
        assert_eq!(&bytes[32..40], &1000u64.to_le_bytes());
        // major 1, minor 0, trailer length 96, magic last
        assert_eq!(&bytes[80..88], &[1, 0, 0, 0, 96, 0, 0, 0]);
        assert_eq!(&bytes[88..], b"\x89UPKG\r\n\x1a");
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let good = sample().encode();
        for index in 0..TRAILER_LEN {
            if index < 32 {
                // The header digest is checked against the header, not here.
                continue;
            }
            let mut bad = good;
            bad[index] ^= 0x01;
            assert!(Trailer::decode(&bad, SAMPLE_FILE_LEN).is_err(), "byte {index} flip accepted");
        }
    }

    #[test]
    fn newer_major_is_unsupported_version() {
        let mut bytes = sample().encode();
        bytes[OFF_MAJOR] = 2;
        let err = Trailer::decode(&bytes, SAMPLE_FILE_LEN).unwrap_err();
        assert_eq!(err.class(), FailureClass::UnsupportedVersion);
    }

    #[test]
    fn lengths_must_add_up() {
        let bytes = sample().encode();
        let err = Trailer::decode(&bytes, SAMPLE_FILE_LEN + 1).unwrap_err();
        assert_eq!(err.class(), FailureClass::Malformed);
    }

    /// Found by fuzzing: a file length below the trailer's own underflowed.
    #[test]
    fn a_file_shorter_than_a_trailer_is_malformed() {
        let err = Trailer::decode(&sample().encode(), 10).unwrap_err();
        assert_eq!(err.class(), FailureClass::Malformed, "{err}");
    }

    #[test]
    fn overflowing_lengths_are_rejected() {
        let mut trailer = sample();
        trailer.payload_len = u64::MAX;
        let bytes = trailer.encode();
        assert!(Trailer::decode(&bytes, SAMPLE_FILE_LEN).is_err());
    }
}
