//! The fuzz targets: each takes bytes, runs one parser on them, checks what can be
//! checked of the result, and returns a short outcome (`ok`, or the failure class
//! and the first words of the message) that the loop uses to keep new inputs.

use std::io::Write as _;
use std::path::Path;

use upkg_format::{ExpandedTree, Header, Package, PackageFile, PublicKey, SecretKey, SignatureBlock, TrustStore};

/// One parser of untrusted bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// The trailer: 8 bytes of file length (little-endian), then the 96 trailer bytes.
    Trailer,
    /// The header: JSON, types, canonical form and every rule of spec section 4.4.
    Header,
    /// A minisign signature block.
    SignatureBlock,
    /// A public key file.
    PublicKey,
    /// A secret key file, read without a passphrase.
    SecretKey,
    /// A manifest (`package.toml`).
    Manifest,
    /// A whole package file: opened, then every byte checked (decoders and walks).
    Package,
    /// An expanded tree, as a gzip-compressed tar of its contents (the tree vectors' form).
    Tree,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 8] = [
        Target::Trailer,
        Target::Header,
        Target::SignatureBlock,
        Target::PublicKey,
        Target::SecretKey,
        Target::Manifest,
        Target::Package,
        Target::Tree,
    ];

    /// The target's name, also its corpus directory's.
    pub fn name(self) -> &'static str {
        match self {
            Target::Trailer => "trailer",
            Target::Header => "header",
            Target::SignatureBlock => "signature-block",
            Target::PublicKey => "public-key",
            Target::SecretKey => "secret-key",
            Target::Manifest => "manifest",
            Target::Package => "package",
            Target::Tree => "tree",
        }
    }

    /// The target named `name`.
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Runs the target on `data`; panics only on a bug (a parser that panics, or
    /// a result that does not round-trip).
    pub fn run(self, data: &[u8]) -> String {
        match self {
            Target::Trailer => trailer(data),
            Target::Header => header(data),
            Target::SignatureBlock => signature_block(data),
            Target::PublicKey => public_key(data),
            Target::SecretKey => secret_key(data),
            Target::Manifest => manifest(data),
            Target::Package => package(data),
            Target::Tree => tree(data),
        }
    }
}

/// The outcome of a format error: its class and the first words of its message,
/// without numbers, so that inputs differing only in a value count as one.
fn outcome(class: upkg_format::FailureClass, message: &str) -> String {
    // Only plain words: paths, names, numbers and quoted values vary from input to input.
    let words: Vec<&str> = message
        .split_whitespace()
        .map(|w| w.trim_end_matches([',', ':', ';', '.', ')']))
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphabetic() || c == '-'))
        .take(6)
        .collect();
    format!("{class:?}: {}", words.join(" "))
}

fn trailer(data: &[u8]) -> String {
    let Some((len, rest)) = data.split_first_chunk::<8>() else { return "short".into() };
    let Ok(bytes) = <[u8; upkg_format::TRAILER_LEN]>::try_from(rest) else { return "short".into() };
    match upkg_format::Trailer::decode(&bytes, u64::from_le_bytes(*len)) {
        Ok(trailer) => {
            assert_eq!(trailer.encode(), bytes, "a decoded trailer encodes to other bytes");
            "ok".into()
        }
        Err(e) => outcome(e.class(), &e.to_string()),
    }
}

fn header(data: &[u8]) -> String {
    match Header::parse(data, 0) {
        Ok(header) => {
            if header.format.minor <= upkg_format::FORMAT_MINOR {
                assert_eq!(header.to_bytes(), data, "a header of a known minor version is not its canonical encoding");
            }
            // What was accepted once is accepted again, and so is its canonical form
            // (a newer minor version's members aside).
            let again = Header::parse(&header.to_bytes(), 0);
            assert!(again.is_ok() || header.format.minor > upkg_format::FORMAT_MINOR, "re-encoded: {again:?}");
            "ok".into()
        }
        Err(e) => outcome(e.class(), &e.to_string()),
    }
}

fn signature_block(data: &[u8]) -> String {
    match SignatureBlock::decode(data) {
        Ok(block) => {
            assert_eq!(block.encode().as_bytes(), data, "a decoded signature block encodes to other bytes");
            let key = test_key();
            // Verifying never panics, whatever the bytes.
            let verified = block.verify(&key, b"header");
            format!("ok, verifies: {}", verified.is_ok())
        }
        Err(reason) => outcome(upkg_format::FailureClass::Malformed, &reason),
    }
}

fn public_key(data: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(data) else { return "not UTF-8".into() };
    match PublicKey::from_file(text) {
        Ok(key) => {
            assert_eq!(
                PublicKey::from_file(&key.to_file()).as_ref(),
                Ok(&key),
                "a public key file does not round-trip"
            );
            "ok".into()
        }
        Err(reason) => outcome(upkg_format::FailureClass::Key, &reason),
    }
}

fn secret_key(data: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(data) else { return "not UTF-8".into() };
    // Without a passphrase: an encrypted key stops before scrypt, whose cost the
    // key file chooses (an administrator's own file, not a package's bytes).
    let encrypted = SecretKey::file_is_encrypted(text);
    match SecretKey::from_file(text, None) {
        Ok(key) => {
            let file = key.to_file(None).expect("an unencrypted key file");
            let again = SecretKey::from_file(&file, None).expect("a written key reads back");
            assert_eq!(again.public_key(), key.public_key(), "a secret key file does not round-trip");
            "ok".into()
        }
        Err(e) => outcome(upkg_format::FailureClass::Key, &format!("encrypted {:?} {e}", encrypted.is_ok_and(|e| e))),
    }
}

fn manifest(data: &[u8]) -> String {
    let Ok(text) = std::str::from_utf8(data) else { return "not UTF-8".into() };
    match upkg_build::check_manifest(Path::new("package.toml"), text) {
        Ok(()) => "ok".into(),
        Err(e) => outcome(e.class(), &e.to_string()),
    }
}

/// The test vectors' trusted key.
fn test_key() -> PublicKey {
    PublicKey::from_file(
        &std::fs::read_to_string(crate::seeds::repository().join("format-spec/vectors/test-key.pub")).unwrap(),
    )
    .unwrap()
}

fn package(data: &[u8]) -> String {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(data).expect("write the package");
    let package = match PackageFile::open(file.path()) {
        Ok(package) => package,
        Err(e) => return outcome(e.class(), &e.to_string()),
    };
    let mut store = TrustStore::new();
    store.add_file(&crate::seeds::repository().join("format-spec/vectors/test-key.pub")).unwrap();
    let signer = upkg_format::identify_signer(package.header_bytes(), package.signature(), &store);
    // Checked whoever signed it: the digests are what the walk relies on.
    match upkg_unpack::check_file(&package, 1, &|_| {}) {
        Ok(report) => {
            assert_eq!(report.members, package.header().payload.members.len() as u64);
            let signer = match signer {
                Ok(upkg_format::Signer::Trusted { .. }) => "trusted".to_owned(),
                Ok(upkg_format::Signer::Untrusted { .. }) => "untrusted".to_owned(),
                Ok(upkg_format::Signer::Unsigned) => "unsigned".to_owned(),
                Err(e) => format!("{:?}", e.class()),
            };
            format!("ok, signer {signer}")
        }
        Err(e) => outcome(e.class(), &e.to_string()),
    }
}

fn tree(data: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(data));
    archive.set_preserve_permissions(true);
    if archive.unpack(&root).is_err() {
        return "not an archive".into();
    }
    let package = match ExpandedTree::open(&root) {
        Ok(tree) => Package::Tree(tree),
        Err(e) => return outcome(e.class(), &e.to_string()),
    };
    let result = match upkg_unpack::check(&package, 1, &|_| {}) {
        Ok(_) => "ok".into(),
        Err(e) => outcome(e.class(), &e.to_string()),
    };
    // Whatever the tree held, it can be removed (a read-only directory included).
    make_writable(&root);
    result
}

/// Gives every directory below `root` its owner's write and search bits.
fn make_writable(root: &Path) {
    walk(root, true);
}

/// `root` and every path below it, parents first, without following links;
/// with `writable`, every directory is first made its owner's to enter and change.
pub(crate) fn walk(root: &Path, writable: bool) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = vec![root.to_owned()];
    let mut index = 0;
    while index < out.len() {
        let path = out[index].clone();
        index += 1;
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            if writable {
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
            }
            if let Ok(entries) = std::fs::read_dir(&path) {
                let mut children: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                children.sort();
                out.extend(children);
            }
        }
    }
    out
}
