//! Outcomes and exit codes of `pkgrun`, and how errors are reported.
//!
//! | code | outcome |
//! |---|---|
//! | 0 | success |
//! | 1 | failure: an I/O error, or an install that failed and was rolled back |
//! | 2 | bad usage: wrong options, missing package, destination not empty |
//! | 3 | the package is invalid: damaged, tampered, malformed, bad signature, unsafe content |
//! | 4 | the package is not trusted: unknown signer, or unsigned |
//! | 5 | not enough disk space |
//! | 6 | unsupported package format version |
//! | 10 | success, restart required |
//! | 11 | cancelled (licence declined, interrupted) |
//! | 12 | not applicable: no target qualifies |
//! | 13 | target busy: another transaction holds it |

use std::process::ExitCode;

use upkg_format::FailureClass;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Everything asked for was done.
    Success,
    /// Not enough space (from `--estimate`).
    InsufficientSpace,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Outcome::Success => 0,
            Outcome::InsufficientSpace => 5,
        })
    }
}

/// An error in how pkgrun was invoked.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The failure class of an error from any library crate.
pub fn class_of(error: &anyhow::Error) -> FailureClass {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<upkg_unpack::UnpackError>() {
            return e.class();
        }
        if let Some(e) = cause.downcast_ref::<upkg_format::Error>() {
            return e.class();
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return FailureClass::Usage;
        }
    }
    FailureClass::Io
}

/// The exit code of a failure class.
pub fn exit_code(class: FailureClass) -> u8 {
    match class {
        FailureClass::Usage => 2,
        FailureClass::Malformed
        | FailureClass::DigestMismatch
        | FailureClass::BadSignature
        | FailureClass::UnsafePath
        | FailureClass::Limit => 3,
        FailureClass::UntrustedSigner | FailureClass::Unsigned => 4,
        FailureClass::InsufficientSpace => 5,
        FailureClass::UnsupportedVersion => 6,
        _ => 1,
    }
}

/// What to do about an error of this class.
fn hint(class: FailureClass, error: &anyhow::Error) -> Option<String> {
    let not_empty =
        error.chain().any(|c| matches!(c.downcast_ref(), Some(upkg_unpack::UnpackError::DestinationNotEmpty { .. })));
    Some(match class {
        FailureClass::UntrustedSigner => "trust the signer's public key with --trust KEY.pub (or put it in the trusted-keys directory: $PKGRUN_TRUSTED_KEYS, default /etc/pkgrun/trusted-keys), or pass --allow-untrusted to rely on digests alone".into(),
        FailureClass::Unsigned => "pass --allow-unsigned to accept an unsigned package (only its digests are checked)".into(),
        FailureClass::Malformed | FailureClass::DigestMismatch => "the package is damaged or was modified: copy or download it again, and compare its SHA-256 with the one its publisher gives".into(),
        FailureClass::BadSignature => "the package was modified after it was signed, or signed with another key of the same id: do not use it".into(),
        FailureClass::UnsafePath => "the package tries to write outside its directory or to create special files: do not use it".into(),
        FailureClass::InsufficientSpace => "free some space on that filesystem, or expand to another one (pkgrun PKG --estimate DIR shows what is needed)".into(),
        FailureClass::UnsupportedVersion => "this package needs a newer pkgrun: run the package itself (it carries its own pkgrun), or install a newer pkgrun".into(),
        FailureClass::Usage if not_empty => "choose a new or empty directory: pkgrun never writes into an existing tree".into(),
        _ => return None,
    })
}

/// Prints an error (and, with `--json`, a JSON document on standard output) and returns the exit code.
pub fn report_error(error: &anyhow::Error, json: bool) -> ExitCode {
    let class = class_of(error);
    let code = exit_code(class);
    let message = format!("{error:#}");
    eprintln!("error: {message}");
    let hint = hint(class, error);
    if let Some(hint) = &hint {
        eprintln!("hint: {hint}");
    }
    if json {
        let document = serde_json::json!({
            "ok": false,
            "exit_code": code,
            "error": { "class": class, "message": message, "hint": hint },
        });
        println!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
    }
    ExitCode::from(code)
}
