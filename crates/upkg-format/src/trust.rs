//! Trusted keys and the trust decision (spec section "Trust").
//!
//! A package is accepted when its signature verifies with a trusted key. A
//! signature by an unknown key cannot be verified at all (minisign signatures
//! carry only the key id), so accepting one (`--allow-untrusted`) means relying on
//! the digests alone; callers must say so loudly.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::sign::{KeyId, PublicKey, SignatureBlock};

/// A trusted public key and where it came from.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// The key.
    pub key: PublicKey,
    /// The file it was read from.
    pub origin: PathBuf,
}

/// The set of trusted keys.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: Vec<TrustedKey>,
}

impl TrustStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the key in a `.pub` file.
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let key = PublicKey::from_file(&text).map_err(|reason| Error::Key { path: path.to_owned(), reason })?;
        self.keys.push(TrustedKey { key, origin: path.to_owned() });
        Ok(())
    }

    /// Adds every `*.pub` file of a directory, in name order. A missing directory adds nothing.
    pub fn add_dir(&mut self, dir: &Path) -> Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(dir, e)),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            if path.extension().is_some_and(|ext| ext == "pub") {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            self.add_file(&path)?;
        }
        Ok(())
    }

    /// The trusted keys with this id (two keys may share an id: ids are only 64 bits).
    pub fn find(&self, key_id: &KeyId) -> impl Iterator<Item = &TrustedKey> {
        self.keys.iter().filter(move |k| &k.key.key_id == key_id)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Who signed a package, as far as can be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Signer {
    /// Signed by a trusted key, and the signature verified.
    Trusted {
        /// The key id.
        key_id: String,
        /// The file the trusted key came from.
        key_file: PathBuf,
    },
    /// Signed by a key that is not trusted; the signature could not be checked.
    Untrusted {
        /// The key id.
        key_id: String,
    },
    /// Not signed.
    Unsigned,
}

/// What to accept besides packages signed by trusted keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustPolicy {
    /// Accept a package signed by an unknown key, relying on digests only.
    pub allow_untrusted: bool,
    /// Accept an unsigned package.
    pub allow_unsigned: bool,
}

/// Verifies the signature when the key is trusted, and says who signed.
/// A bad signature by a trusted key is always an error.
pub fn identify_signer(header_bytes: &[u8], signature: Option<&SignatureBlock>, store: &TrustStore) -> Result<Signer> {
    let Some(signature) = signature else { return Ok(Signer::Unsigned) };
    let mut failure = None;
    for trusted in store.find(&signature.key_id) {
        match signature.verify(&trusted.key, header_bytes) {
            Ok(()) => {
                return Ok(Signer::Trusted { key_id: signature.key_id.to_string(), key_file: trusted.origin.clone() });
            }
            Err(reason) => failure = Some(reason),
        }
    }
    match failure {
        // A trusted key has this id, but none of them made the signature.
        Some(reason) => Err(Error::BadSignature { reason }),
        None => Ok(Signer::Untrusted { key_id: signature.key_id.to_string() }),
    }
}

/// Applies the policy: an error for an untrusted or unsigned package that is not
/// allowed, otherwise the acceptance that extraction and installation require.
pub fn enforce_trust(signer: &Signer, policy: TrustPolicy) -> Result<Accepted> {
    match signer {
        Signer::Trusted { .. } => {}
        Signer::Untrusted { .. } if policy.allow_untrusted => {}
        Signer::Untrusted { key_id } => return Err(Error::UntrustedSigner { key_id: key_id.clone() }),
        Signer::Unsigned if policy.allow_unsigned => {}
        Signer::Unsigned => return Err(Error::Unsigned),
    }
    Ok(Accepted { signer: signer.clone() })
}

/// A signer accepted under a trust policy, made only by [`enforce_trust`]. The
/// libraries that write a package's files (`upkg_unpack::expand`,
/// `upkg_install::install`) take one, so every caller goes through the trust
/// decision and the rules that depend on it.
#[derive(Debug, Clone)]
pub struct Accepted {
    signer: Signer,
}

impl Accepted {
    /// The accepted signer.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Whether the signer was verified with a trusted key.
    pub fn is_verified(&self) -> bool {
        matches!(self.signer, Signer::Trusted { .. })
    }

    /// Setuid, setgid and sticky bits are only written for a verified signer: with
    /// an unverified header, anyone could otherwise have root create set-user-id
    /// files.
    pub fn permits(&self, header: &crate::Header) -> Result<()> {
        if self.is_verified() {
            return Ok(());
        }
        match header.files.iter().find(|e| e.mode.0 & 0o7000 != 0) {
            Some(entry) => Err(Error::SpecialBitsUnverified { path: entry.path.clone(), mode: entry.mode.0 }),
            None => Ok(()),
        }
    }
}
