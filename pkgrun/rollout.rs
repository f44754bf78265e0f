//! `--rollout-playbook [FILE]`: the Ansible playbook that rolls the package out
//! to a farm in the order of its roles (written by `upkg-rollout`).
//!
//! Like `--info`, it reads only the signed header and works whoever signed the
//! package: the hosts' pkgrun verifies the package and its signer when it installs.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use upkg_cli::Finished;
use upkg_format::Package;
use upkg_json::{Data, Outcome, PackageId, PlaybookOutput, Reason, RolloutPlaybookData};
use upkg_rollout::TierKind;

use crate::Run;
use crate::outcome::OutcomeError;

/// Writes the playbook to `file` (standard output when `None` or `-`; in the
/// document with `--json`).
pub fn playbook(run: &Run<'_>, package: &Package, file: Option<&Path>) -> Result<Finished> {
    let header = package.header();
    let playbook = upkg_rollout::playbook(header).map_err(|e| OutcomeError {
        outcome: Outcome::Usage,
        reason: Reason::RolloutRoles,
        message: e.to_string(),
    })?;
    let output = run.settings.output;
    let destination = match file.filter(|f| f.as_os_str() != "-") {
        Some(path) => {
            write_atomically(path, playbook.text.as_bytes())?;
            if !output.json && !output.quiet {
                let tiers: Vec<String> = playbook
                    .tiers
                    .iter()
                    .map(|t| {
                        let kind = match t.kind {
                            TierKind::Pool => "load-balanced pool",
                            TierKind::Cluster => "cluster",
                        };
                        format!("{} (group {}, {kind}, {} at a time)", t.role, t.group, t.serial)
                    })
                    .collect();
                upkg_cli::errln!("Wrote {}: {}.", path.display(), tiers.join(", then "));
                upkg_cli::errln!(
                    "Run it with: ansible-playbook -i INVENTORY {} -e upkg_package=PACKAGE (README: \"Rolling out to a farm\")",
                    path.display()
                );
            }
            PlaybookOutput::File { path: path.to_owned() }
        }
        None if output.json => PlaybookOutput::Document { text: playbook.text.clone() },
        None => {
            upkg_cli::out!("{}", playbook.text);
            PlaybookOutput::Document { text: playbook.text.clone() }
        }
    };
    Ok(Finished::success(Data::RolloutPlaybook(Some(Box::new(RolloutPlaybookData {
        package: PackageId::of(header),
        tiers: playbook.tiers,
        playbook: destination,
    })))))
}

/// Writes `bytes` to `path` through a temporary file beside it, synced, then
/// renamed: an existing playbook is replaced whole or not at all.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().with_context(|| format!("{}: not a file name", path.display()))?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp = dir.join(temp_name);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(error).with_context(|| format!("writing the playbook {}", path.display()));
    }
    Ok(())
}
