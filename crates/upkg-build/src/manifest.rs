//! The authored manifest, `package.toml` (documented key by key in
//! `format-spec/MANIFEST.md`).
//!
//! Unknown keys and bad values are errors that name the file, line and column:
//! a typo in a manifest must never silently change what a package does.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use upkg_format::STATE_DIR;
use upkg_format::{Policy, Restart, ScriptRole};
use upkg_format::{Version, VersionReq};

use crate::error::BuildError;

/// The parsed manifest, with the spans of the values later checks may complain about.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// `[package]`: identity and description.
    pub package: PackageSection,
    /// `[applies-to]`: which installed products qualify.
    pub applies_to: AppliesTo,
    /// `[[files]]`: what the package installs.
    #[serde(default)]
    pub files: Vec<FilesRule>,
    /// `[[remove]]`: target paths the package deletes.
    #[serde(default)]
    pub remove: Vec<RemoveRule>,
    /// `[[services]]`: services stopped around the file changes.
    #[serde(default)]
    pub services: Vec<ServiceSection>,
    /// `[scripts]`: install and uninstall scripts.
    #[serde(default)]
    pub scripts: ScriptsSection,
    /// `[[rollout]]`: farm roles in upgrade order.
    #[serde(default)]
    pub rollout: Vec<RolloutRole>,
}

/// `[package]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PackageSection {
    /// Package id.
    pub id: Spanned<String>,
    /// One-line title.
    pub title: String,
    /// Product version the package brings the target to.
    pub version: Version,
    /// Build number.
    pub build: u64,
    /// Longer description.
    #[serde(default)]
    pub description: String,
    /// Knowledge-base article or ticket.
    pub article: Option<String>,
    /// Link to more information.
    pub url: Option<String>,
    /// Licence text file, relative to the manifest.
    pub eula: Option<Spanned<String>>,
    /// Restart behaviour (default `if-needed`).
    #[serde(default = "default_restart")]
    pub restart: Restart,
}

fn default_restart() -> Restart {
    Restart::IfNeeded
}

/// `[applies-to]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AppliesTo {
    /// Product id.
    pub product: Spanned<String>,
    /// Installed versions the package applies to (default `*`).
    #[serde(default = "VersionReq::any")]
    pub versions: VersionReq,
    /// Packages that must be installed first.
    #[serde(default)]
    pub requires: Vec<Spanned<String>>,
    /// The package may create a new instance in an empty target (default false).
    #[serde(default)]
    pub fresh_install: bool,
}

/// One `[[files]]` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FilesRule {
    /// A file, a directory (taken recursively) or a glob, relative to the manifest.
    pub source: Spanned<String>,
    /// Destination path, or directory when it ends with `/` (default: the root).
    #[serde(default = "default_dest")]
    pub dest: Spanned<String>,
    /// File version (default: the package version).
    pub version: Option<Version>,
    /// Replacement policy (default `newer`).
    #[serde(default)]
    pub policy: Policy,
    /// Permission bits for the files of this rule, as an octal string.
    pub mode: Option<Spanned<String>>,
}

/// One `[[remove]]` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RemoveRule {
    /// Target path to delete.
    pub path: Spanned<String>,
}

/// One `[[services]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServiceSection {
    /// Display name.
    pub name: Spanned<String>,
    /// systemd unit.
    pub unit: Option<String>,
    /// Stop command.
    pub stop: Option<String>,
    /// Start command.
    pub start: Option<String>,
    /// Status command: exit 0 when the service runs (command-style services only).
    pub status: Option<Spanned<String>>,
}

/// `[scripts]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScriptsSection {
    /// Runs before files change.
    pub pre_install: Option<Spanned<String>>,
    /// Runs after files are in place.
    pub post_install: Option<Spanned<String>>,
    /// Undoes `post-install` during a rollback.
    pub post_install_undo: Option<Spanned<String>>,
    /// Runs before an uninstall.
    pub pre_uninstall: Option<Spanned<String>>,
    /// Runs after an uninstall.
    pub post_uninstall: Option<Spanned<String>>,
    /// Seconds before a script is killed (default 300).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
}

impl ScriptsSection {
    /// The script named for `role`.
    pub fn get(&self, role: ScriptRole) -> Option<&Spanned<String>> {
        match role {
            ScriptRole::PreInstall => self.pre_install.as_ref(),
            ScriptRole::PostInstall => self.post_install.as_ref(),
            ScriptRole::PostInstallUndo => self.post_install_undo.as_ref(),
            ScriptRole::PreUninstall => self.pre_uninstall.as_ref(),
            ScriptRole::PostUninstall => self.post_uninstall.as_ref(),
        }
    }
}

impl Default for ScriptsSection {
    fn default() -> Self {
        ScriptsSection {
            pre_install: None,
            post_install: None,
            post_install_undo: None,
            pre_uninstall: None,
            post_uninstall: None,
            timeout: default_timeout(),
        }
    }
}

fn default_timeout() -> u64 {
    300
}

/// One `[[rollout]]` role.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RolloutRole {
    /// Role name (the header's `name`; `role`, its name in manifests written
    /// before, is accepted too).
    #[serde(alias = "role")]
    pub name: Spanned<String>,
    /// What the role is.
    #[serde(default)]
    pub description: String,
    /// Hosts upgraded at once: a number or a percentage (default `1`).
    #[serde(default = "default_serial")]
    pub serial: Spanned<String>,
    /// Move the workload off each host first.
    #[serde(default)]
    pub drain: bool,
}

fn default_dest() -> Spanned<String> {
    Spanned::new(0..0, String::new())
}

fn default_serial() -> Spanned<String> {
    Spanned::new(0..0, "1".to_owned())
}

/// A manifest read from disk, with what is needed to report errors in it.
#[derive(Debug)]
pub struct LoadedManifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Its directory: sources are relative to it.
    pub base: PathBuf,
    /// Its text, for line and column numbers.
    pub text: String,
    /// The parsed manifest.
    pub manifest: Manifest,
}

impl LoadedManifest {
    /// Reads `path`, or `path/package.toml` when `path` is a directory.
    pub fn load(path: &Path) -> Result<LoadedManifest, BuildError> {
        let path = if path.is_dir() { path.join("package.toml") } else { path.to_owned() };
        let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
            // Naming a manifest that is not there is bad input, not an I/O failure.
            std::io::ErrorKind::NotFound => BuildError::Manifest {
                path: path.clone(),
                line: 0,
                column: 0,
                message: "no such manifest: give a directory holding package.toml, or the manifest's path".into(),
            },
            _ => BuildError::Io { path: path.clone(), source },
        })?;
        Self::parse(path, text)
    }

    /// Parses and checks a manifest's `text`, read from `path`.
    pub fn parse(path: PathBuf, text: String) -> Result<LoadedManifest, BuildError> {
        let manifest: Manifest = toml::from_str(&text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |span| line_column(&text, span.start));
            BuildError::Manifest { path: path.clone(), line, column, message: e.message().trim().to_owned() }
        })?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
        let loaded = LoadedManifest { path, base, text, manifest };
        loaded.check()?;
        Ok(loaded)
    }

    /// An error about the value at `span`.
    pub fn error_at(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> BuildError {
        let (line, column) = self.location(span);
        BuildError::Manifest { path: self.path.clone(), line, column, message: message.into() }
    }

    /// 1-based line and column of the value at `span`.
    pub fn location(&self, span: std::ops::Range<usize>) -> (usize, usize) {
        line_column(&self.text, span.start)
    }

    /// Checks values whose rules serde does not express.
    fn check(&self) -> Result<(), BuildError> {
        let m = &self.manifest;
        let id_rule = |value: &Spanned<String>, what: &str| {
            upkg_format::check_identifier(what, value.get_ref()).map_err(|_| {
                self.error_at(
                    value.span(),
                    format!("{what} {:?} must be 1 to 128 letters, digits, '.', '_', '+' or '-', starting with a letter or digit", value.get_ref()),
                )
            })
        };
        id_rule(&m.package.id, "package id")?;
        id_rule(&m.applies_to.product, "product id")?;
        for required in &m.applies_to.requires {
            id_rule(required, "required package id")?;
        }
        if m.package.title.trim().is_empty() {
            return Err(self.error_at(0..0, "[package] title must not be empty"));
        }
        for rule in &m.files {
            if let Some(mode) = &rule.mode {
                parse_mode(mode.get_ref()).map_err(|reason| self.error_at(mode.span(), reason))?;
            }
            if rule.source.get_ref().is_empty() {
                return Err(self.error_at(rule.source.span(), "source must not be empty"));
            }
        }
        for (index, rule) in m.files.iter().enumerate() {
            let dest = rule.dest.get_ref();
            let top = dest.trim_start_matches("./").split('/').next().unwrap_or_default();
            if upkg_format::is_state_path(top) {
                return Err(self.error_at(
                    rule.dest.span(),
                    format!("dest `{dest}` (files rule {}) is in {STATE_DIR}/, {RESERVED}", index + 1),
                ));
            }
        }
        for (index, rule) in m.remove.iter().enumerate() {
            let path = rule.path.get_ref();
            let at = |reason: String| self.error_at(rule.path.span(), reason);
            if upkg_format::is_state_path(path) {
                return Err(at(format!(
                    "[[remove]] path `{path}` (remove rule {}) is in {STATE_DIR}/, {RESERVED}",
                    index + 1
                )));
            }
            upkg_format::check_entry_path(path).map_err(|reason| {
                at(format!("[[remove]] path `{path}` (remove rule {}) is not allowed: {reason}", index + 1))
            })?;
        }
        for service in &m.services {
            let s = service;
            if let (Some(_), Some(status)) = (&s.unit, &s.status) {
                return Err(self.error_at(
                    status.span(),
                    format!(
                        "service {:?}: `status` is for services with `stop` and `start` commands; a systemd `unit` is asked `systemctl is-active`",
                        s.name.get_ref()
                    ),
                ));
            }
            let has_unit = s.unit.is_some();
            let has_commands = s.stop.is_some() || s.start.is_some();
            if has_unit == has_commands || (has_commands && (s.stop.is_none() || s.start.is_none())) {
                return Err(self.error_at(
                    s.name.span(),
                    format!(
                        "service {:?} needs either a systemd `unit`, or both `stop` and `start` commands",
                        s.name.get_ref()
                    ),
                ));
            }
        }
        if let (Some(undo), None) = (&m.scripts.post_install_undo, &m.scripts.post_install) {
            return Err(self.error_at(undo.span(), "post-install-undo undoes post-install, which is not set"));
        }
        if m.scripts.timeout == 0 {
            return Err(self.error_at(0..0, "[scripts] timeout must be at least 1 second"));
        }
        for role in &m.rollout {
            let serial = role.serial.get_ref();
            if !upkg_format::is_serial(serial) {
                return Err(self.error_at(
                    role.serial.span(),
                    format!(
                        "serial {serial:?} must be a number of hosts (1 to 4294967295) or a percentage (\"1%\" to \"100%\"), without a leading zero"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Why nothing may go to, or be removed from, the state directory.
const RESERVED: &str =
    "which every target reserves for the installer's state: a package may not write or remove anything there";

/// Parses an octal mode string such as `"0755"`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let valid = (3..=4).contains(&text.len()) && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
    if valid {
        Ok(u32::from_str_radix(text, 8).expect("octal digits"))
    } else {
        Err(format!("mode {text:?} must be octal, like \"0755\""))
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| before[nl + 1..].chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<LoadedManifest, BuildError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("package.toml"), text).unwrap();
        LoadedManifest::load(dir.path())
    }

    const MINIMAL: &str = "[package]\nid = \"hello\"\ntitle = \"Hello\"\nversion = \"1.0\"\nbuild = 1\n\n[applies-to]\nproduct = \"hello\"\n";

    #[test]
    fn minimal_manifest_takes_defaults() {
        let m = load(MINIMAL).unwrap().manifest;
        assert_eq!(m.package.restart, Restart::IfNeeded);
        assert_eq!(m.applies_to.versions, VersionReq::any());
        assert_eq!(m.scripts.timeout, 300);
        assert!(m.files.is_empty());
    }

    fn error_location(text: &str) -> (usize, usize, String) {
        match load(text).unwrap_err() {
            BuildError::Manifest { line, column, message, .. } => (line, column, message),
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let text = format!("{MINIMAL}\n[[files]]\nsource = \"bin\"\ndestination = \"bin/\"\n");
        let (line, column, message) = error_location(&text);
        assert_eq!((line, column), (12, 1), "{message}");
        assert!(message.contains("unknown field `destination`"), "{message}");
    }

    #[test]
    fn bad_values_name_line_and_column() {
        let (line, _, message) = error_location(&MINIMAL.replace("version = \"1.0\"", "version = \"1.0-beta\""));
        assert_eq!(line, 4, "{message}");
        let (line, column, message) =
            error_location(&format!("{MINIMAL}\n[[files]]\nsource = \"x\"\npolicy = \"sometimes\"\n"));
        assert_eq!((line, column), (12, 10), "{message}");
        let (line, _, message) = error_location(&format!("{MINIMAL}\n[[files]]\nsource = \"x\"\nmode = \"rwx\"\n"));
        assert_eq!(line, 12, "{message}");
        let (line, _, message) = error_location(&MINIMAL.replace("id = \"hello\"", "id = \"../evil\""));
        assert_eq!(line, 2, "{message}");
    }

    #[test]
    fn services_need_a_unit_or_commands() {
        let (line, _, message) = error_location(&format!("{MINIMAL}\n[[services]]\nname = \"web\"\nstop = \"x\"\n"));
        assert_eq!(line, 11, "{message}");
        let (line, _, message) =
            error_location(&format!("{MINIMAL}\n[[services]]\nname = \"web\"\nstatus = \"pgrep web\"\n"));
        assert_eq!(line, 11, "{message}");
    }

    #[test]
    fn status_is_refused_with_a_unit_at_its_value() {
        let text = format!("{MINIMAL}\n[[services]]\nname = \"web\"\nunit = \"web.service\"\nstatus = \"pgrep web\"\n");
        let (line, column, message) = error_location(&text);
        assert_eq!((line, column), (13, 10), "{message}");
        assert!(message.contains("systemctl is-active"), "{message}");
    }

    #[test]
    fn the_state_directory_is_refused_in_dest_and_remove() {
        for (section, line, column) in [
            ("[[files]]\nsource = \"x\"\ndest = \".pkgrun/\"\n", 12, 8),
            ("[[files]]\nsource = \"x\"\ndest = \"./.pkgrun/tx/evil\"\n", 12, 8),
            ("[[remove]]\npath = \".pkgrun/state.json\"\n", 11, 8),
            ("[[remove]]\npath = \".pkgrun\"\n", 11, 8),
        ] {
            let (l, c, message) = error_location(&format!("{MINIMAL}\n{section}"));
            assert_eq!((l, c), (line, column), "{message}");
            assert!(message.contains("is in .pkgrun/, which every target reserves"), "{message}");
        }
        let (_, _, message) = error_location(&format!("{MINIMAL}\n[[remove]]\npath = \"../etc/passwd\"\n"));
        assert!(message.contains("[[remove]] path `../etc/passwd` (remove rule 1) is not allowed"), "{message}");
        // Other spellings, and the name below the root, are ordinary paths.
        load(&format!("{MINIMAL}\n[[remove]]\npath = \".PKGRUN/state.json\"\n\n[[remove]]\npath = \"a/.pkgrun\"\n"))
            .unwrap();
    }

    #[test]
    fn status_is_accepted_with_stop_and_start() {
        let text = format!(
            "{MINIMAL}\n[[services]]\nname = \"web\"\nstop = \"web stop\"\nstart = \"web start\"\nstatus = \"web status\"\n"
        );
        let m = load(&text).unwrap().manifest;
        assert_eq!(m.services[0].status.as_ref().map(|s| s.get_ref().as_str()), Some("web status"));
    }
}
