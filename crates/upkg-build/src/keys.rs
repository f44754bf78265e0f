//! Key pair generation: `NAME.key` (mode 0600, optionally passphrase-protected)
//! and `NAME.pub`, both in minisign's formats.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use upkg_format::{PublicKey, SecretKey};

use crate::error::BuildError;

/// The files a key pair was written to.
#[derive(Debug)]
pub struct KeyPairFiles {
    /// The secret key.
    pub secret: PathBuf,
    /// The public key.
    pub public: PathBuf,
    /// The public key itself.
    pub public_key: PublicKey,
}

/// Generates a key pair and writes `NAME.key` and `NAME.pub`. Refuses to overwrite
/// either file unless `force`: losing a signing key is not undoable.
pub fn generate_key_pair(name: &Path, passphrase: Option<&[u8]>, force: bool) -> Result<KeyPairFiles, BuildError> {
    let secret_path = with_suffix(name, "key");
    let public_path = with_suffix(name, "pub");
    if !force {
        for path in [&secret_path, &public_path] {
            if path.exists() {
                return Err(BuildError::Options(format!(
                    "{} already exists (use --force to replace the key pair)",
                    path.display()
                )));
            }
        }
    }
    let key = SecretKey::generate();
    let secret_text = key.to_file(passphrase).map_err(BuildError::Options)?;
    write_new(&secret_path, secret_text.as_bytes(), 0o600, force)?;
    let public_key = key.public_key();
    write_new(&public_path, public_key.to_file().as_bytes(), 0o644, force)?;
    Ok(KeyPairFiles { secret: secret_path, public: public_path, public_key })
}

fn with_suffix(name: &Path, suffix: &str) -> PathBuf {
    let mut os = name.as_os_str().to_owned();
    os.push(".");
    os.push(suffix);
    PathBuf::from(os)
}

/// Creates the file with its final mode from the start, so the secret is never readable by others.
fn write_new(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> Result<(), BuildError> {
    let io_error = |e| BuildError::Io { path: path.to_owned(), source: e };
    if replace && path.exists() {
        std::fs::remove_file(path).map_err(io_error)?;
    }
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io_error)?;
    file.write_all(bytes).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_a_private_secret_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let name = dir.path().join("release");
        let pair = generate_key_pair(&name, None, false).unwrap();
        let mode = std::fs::metadata(&pair.secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&pair.secret).unwrap();
        assert_eq!(SecretKey::from_file(&text, None).unwrap().public_key(), pair.public_key);
        assert!(generate_key_pair(&name, None, false).is_err());
        assert!(generate_key_pair(&name, None, true).is_ok());
    }
}
