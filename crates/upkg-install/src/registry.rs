//! The registry of instances: the product instances pkgrun knows on this machine,
//! each an absolute target directory with an optional name.
//!
//! The file holds one instance per line, `#` comments: `NAME /abs/dir` for a
//! named instance, `/abs/dir` alone for an unnamed one (every line of registries
//! written before names existed reads as that). Names follow
//! [`InstanceName`]'s grammar, so they never start with `/` nor hold a space: the
//! first space of a named line ends the name, and the directory is the rest.
//!
//! Writers take an exclusive lock on `<registry>.lock` beside it (waiting for one
//! another, so that two installs registering at once both land), read the file
//! again under the lock, and replace it atomically: a temporary file beside it,
//! fsync, rename over, fsync of the directory. Readers read without a lock: the
//! rename means they see the old file or the new one.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{InstallError, Result};

/// The registry's default location.
pub const DEFAULT_REGISTRY: &str = "/etc/pkgrun/instances";

/// The longest instance name.
const NAME_MAX: usize = 64;

/// An instance name: 1 to 64 ASCII letters, digits, `-`, `_` and `.`, starting
/// with a letter or a digit (like a host name or a package id: safe in a shell,
/// a file name and a log line).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct InstanceName(String);

impl InstanceName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for InstanceName {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Self, String> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty() || name.len() > NAME_MAX {
            return Err(format!("instance name {name:?} must be 1 to {NAME_MAX} characters long"));
        }
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || !name.chars().all(valid_char) {
            return Err(format!(
                "instance name {name:?} is not an identifier: use ASCII letters, digits, '-', '_' and '.', starting with a letter or a digit"
            ));
        }
        Ok(InstanceName(name.to_owned()))
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The instance registry: one file listing every instance (`NAME DIR` or `DIR`
/// per line), rewritten under a lock and atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    path: PathBuf,
}

impl Registry {
    /// The registry in the file `path` (which need not exist yet).
    pub fn at(path: impl Into<PathBuf>) -> Registry {
        Registry { path: path.into() }
    }

    /// The registry file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The registered instances, in the order they were registered (none when
    /// the file does not exist).
    pub fn entries(&self) -> Result<Vec<Entry>> {
        read(&self.path)
    }

    /// The registered target directories.
    pub fn targets(&self) -> Result<Vec<PathBuf>> {
        targets(&self.path)
    }

    /// The directory registered under `name`.
    pub fn resolve(&self, name: &InstanceName) -> Result<PathBuf> {
        resolve(&self.path, name)
    }

    /// Refuses naming `target` `name` when the name is another directory's, or
    /// the directory has another name (changes nothing).
    pub fn check_name(&self, target: &Path, name: &InstanceName) -> Result<()> {
        check_name(&self.path, target, name)
    }

    /// Adds `target` (if it is not listed yet); with a name, names it.
    pub fn register(&self, target: &Path, name: Option<&InstanceName>) -> Result<()> {
        register(&self.path, target, name)
    }

    /// Removes the entry named `key`, or else the one whose directory is `key`,
    /// and returns it; never touches the directory.
    pub fn forget(&self, key: &str) -> Result<Entry> {
        forget(&self.path, key)
    }
}

/// One registered instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Entry {
    /// Its name, when it was given one.
    pub name: Option<InstanceName>,
    /// Its target directory (absolute).
    pub target: PathBuf,
}

fn damaged(path: &Path, reason: String) -> InstallError {
    InstallError::Registry { path: path.to_owned(), reason }
}

fn parse(path: &Path, text: &str) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let entry = if line.starts_with('/') {
            Entry { name: None, target: PathBuf::from(line) }
        } else {
            let (name, dir) = line.split_once(' ').unwrap_or((line, ""));
            let name = name.parse().map_err(|reason| damaged(path, format!("line {}: {reason}", number + 1)))?;
            if !dir.starts_with('/') {
                return Err(damaged(
                    path,
                    format!(
                        "line {}: {name} has no absolute directory after its name: fix or remove the line",
                        number + 1
                    ),
                ));
            }
            Entry { name: Some(name), target: PathBuf::from(dir) }
        };
        entries.push(entry);
    }
    Ok(entries)
}

/// Reads the registered instances, in the order they were registered (none when
/// the file does not exist).
pub(crate) fn read(path: &Path) -> Result<Vec<Entry>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(InstallError::io(path, e)),
    }
}

/// The registered target directories.
pub(crate) fn targets(path: &Path) -> Result<Vec<PathBuf>> {
    Ok(read(path)?.into_iter().map(|e| e.target).collect())
}

/// The directory registered under `name`.
pub(crate) fn resolve(path: &Path, name: &InstanceName) -> Result<PathBuf> {
    read(path)?.into_iter().find(|e| e.name.as_ref() == Some(name)).map(|e| e.target).ok_or_else(|| {
        InstallError::InvalidRequest(format!(
            "no instance is named {name} in {}: `pkgrun instances` lists them; name one with --target DIR --instance {name}",
            path.display()
        ))
    })
}

/// Refuses naming `target` `name` when the name is another directory's, or the
/// directory has another name (changes nothing).
pub(crate) fn check_name(path: &Path, target: &Path, name: &InstanceName) -> Result<()> {
    check(path, &read(path)?, target, name)
}

fn check(path: &Path, entries: &[Entry], target: &Path, name: &InstanceName) -> Result<()> {
    for entry in entries {
        if entry.name.as_ref() == Some(name) && entry.target != target {
            return Err(InstallError::InvalidRequest(format!(
                "the instance name {name} is already used for {} in {}: choose another name, or `pkgrun instances forget {name}` first",
                entry.target.display(),
                path.display()
            )));
        }
        if entry.target == target
            && let Some(other) = entry.name.as_ref().filter(|n| *n != name)
        {
            return Err(InstallError::InvalidRequest(format!(
                "{} is registered as instance {other} in {}: use --instance {other}, or `pkgrun instances forget {other}` first",
                target.display(),
                path.display()
            )));
        }
    }
    Ok(())
}

/// Adds `target` (if it is not listed yet), creating the file when needed; with a
/// name, names it (refused, changing nothing, as [`check_name`] says).
pub(crate) fn register(path: &Path, target: &Path, name: Option<&InstanceName>) -> Result<()> {
    update(path, |entries| {
        if let Some(name) = name {
            check(path, entries, target, name)?;
        }
        match entries.iter_mut().find(|e| e.target == target) {
            Some(entry) => {
                if name.is_some() {
                    entry.name = name.cloned();
                }
            }
            None => entries.push(Entry { name: name.cloned(), target: target.to_owned() }),
        }
        Ok(())
    })
}

/// Removes a target (nothing when it is not listed).
pub(crate) fn unregister(path: &Path, target: &Path) -> Result<()> {
    update(path, |entries| {
        entries.retain(|e| e.target != target);
        Ok(())
    })
}

/// Removes the entry named `key`, or else the one whose directory is `key`, and
/// returns it; never touches the directory.
pub(crate) fn forget(path: &Path, key: &str) -> Result<Entry> {
    let mut forgotten = None;
    update(path, |entries| {
        let by_name = entries.iter().position(|e| e.name.as_ref().is_some_and(|n| n.as_str() == key));
        let index = by_name.or_else(|| entries.iter().position(|e| e.target == Path::new(key)));
        let Some(index) = index else {
            return Err(InstallError::InvalidRequest(format!(
                "{key:?} is neither the name nor the directory of an instance in {}: `pkgrun instances` lists them",
                path.display()
            )));
        };
        forgotten = Some(entries.remove(index));
        Ok(())
    })?;
    Ok(forgotten.expect("set when the update succeeded"))
}

/// Reads, changes and rewrites the registry under its lock; nothing is written
/// when `change` fails.
fn update(path: &Path, change: impl FnOnce(&mut Vec<Entry>) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| InstallError::io(&dir, e))?;
    let lock_path = sibling(path, ".lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| InstallError::io(&lock_path, e))?;
    // Blocks until the other writer is done: registering takes milliseconds.
    lock.lock().map_err(|e| InstallError::io(&lock_path, e))?;
    let mut entries = read(path)?;
    let before = entries.clone();
    change(&mut entries)?;
    if entries != before || !path.exists() {
        write(path, &dir, &entries)?;
    }
    drop(lock);
    Ok(())
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

fn write(path: &Path, dir: &Path, entries: &[Entry]) -> Result<()> {
    let mut text = String::from(
        "# Product instances known to pkgrun: one per line, `NAME DIR` or `DIR` (unnamed).\n# Changed by pkgrun (install, adopt, uninstall, `pkgrun instances forget`).\n",
    );
    for entry in entries {
        if let Some(name) = &entry.name {
            text.push_str(name.as_str());
            text.push(' ');
        }
        text.push_str(&entry.target.to_string_lossy());
        text.push('\n');
    }
    // The registry is outside any target, at a path the administrator chose (a
    // link on the way is theirs): plain std calls, not the no-follow layer.
    let temp = sibling(path, ".tmp");
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        InstallError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> InstanceName {
        text.parse().unwrap()
    }

    #[test]
    fn names_are_identifiers() {
        for good in ["prod", "a", "web-1", "eu_west.2", "A9"] {
            assert!(good.parse::<InstanceName>().is_ok(), "{good}");
        }
        let long = "x".repeat(NAME_MAX + 1);
        for bad in ["", "-x", ".x", "_x", "a b", "a/b", "/abs", "é", long.as_str()] {
            assert!(bad.parse::<InstanceName>().is_err(), "{bad:?}");
        }
    }

    /// A registry written before names existed (one directory per line, comments)
    /// reads as unnamed entries, and is rewritten readable with the names added.
    #[test]
    fn an_old_registry_reads_and_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instances");
        std::fs::write(
            &path,
            "# Product instances known to pkgrun (one target directory per line).\n/srv/a\n\n/srv/b c\n",
        )
        .unwrap();
        let entries = read(&path).unwrap();
        assert_eq!(
            entries,
            [Entry { name: None, target: "/srv/a".into() }, Entry { name: None, target: "/srv/b c".into() }]
        );
        register(&path, Path::new("/srv/a"), Some(&name("alpha"))).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\nalpha /srv/a\n/srv/b c\n"), "{text}");
        assert_eq!(resolve(&path, &name("alpha")).unwrap(), Path::new("/srv/a"));
        assert_eq!(read(&path).unwrap()[1], Entry { name: None, target: "/srv/b c".into() });
    }

    #[test]
    fn a_name_belongs_to_one_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/instances");
        register(&path, Path::new("/srv/a"), Some(&name("prod"))).unwrap();
        // The same again, and the directory without a name, change nothing.
        register(&path, Path::new("/srv/a"), Some(&name("prod"))).unwrap();
        register(&path, Path::new("/srv/a"), None).unwrap();
        let before = std::fs::read(&path).unwrap();
        let taken = register(&path, Path::new("/srv/b"), Some(&name("prod"))).unwrap_err().to_string();
        assert!(taken.contains("already used for /srv/a"), "{taken}");
        let renamed = register(&path, Path::new("/srv/a"), Some(&name("other"))).unwrap_err().to_string();
        assert!(renamed.contains("registered as instance prod"), "{renamed}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "a refused name changes nothing");
        assert!(check_name(&path, Path::new("/srv/b"), &name("prod")).is_err());
        assert!(check_name(&path, Path::new("/srv/b"), &name("test")).is_ok());
    }

    #[test]
    fn forget_by_name_or_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instances");
        register(&path, Path::new("/srv/a"), Some(&name("prod"))).unwrap();
        register(&path, Path::new("/srv/b"), None).unwrap();
        assert_eq!(forget(&path, "prod").unwrap().target, Path::new("/srv/a"));
        assert_eq!(forget(&path, "/srv/b").unwrap().name, None);
        assert!(forget(&path, "prod").unwrap_err().to_string().contains("neither the name nor the directory"));
        assert!(read(&path).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instances");
        std::fs::write(&path, "/srv/a\nprod srv/b\n").unwrap();
        let error = read(&path).unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
        std::fs::write(&path, "bad name /srv/c\n").unwrap();
        assert!(read(&path).is_err());
    }

    /// Writers running at once each keep the others' entries: the lock serialises
    /// the read-change-write, so none is lost.
    #[test]
    fn concurrent_registrations_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instances");
        std::thread::scope(|scope| {
            for i in 0..16 {
                let path = &path;
                scope.spawn(move || {
                    let target = PathBuf::from(format!("/srv/t{i}"));
                    register(path, &target, Some(&name(&format!("t{i}")))).unwrap();
                });
            }
        });
        let entries = read(&path).unwrap();
        assert_eq!(entries.len(), 16, "{entries:?}");
        for i in 0..16 {
            assert_eq!(resolve(&path, &name(&format!("t{i}"))).unwrap(), PathBuf::from(format!("/srv/t{i}")));
        }
    }
}
