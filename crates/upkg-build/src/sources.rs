//! Turning the manifest's `[[files]]` rules into the list of entries a package holds.
//!
//! Sources are read with `lstat` (links are packaged as links), listed in any
//! order and sorted afterwards, and their owners and times are ignored: what a
//! package holds depends only on paths, kinds, permission bits, link targets and
//! contents, so rebuilding from the same inputs gives the same bytes.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use globset::GlobBuilder;
use toml::Spanned;
use upkg_format::PACKAGE_DIR;
use upkg_format::Version;
use upkg_format::{Kind, Policy, ScriptRole};

use crate::error::{BuildError, Outside, SourceOutside};
use crate::manifest::{FilesRule, LoadedManifest, parse_mode};

/// Bits of a source's mode that a package keeps: permissions without the special
/// bits and without write for group and others, so a checkout made under umask
/// 002 builds the same bytes as one made under 022.
const NORMALIZED_MODE_MASK: u32 = 0o755;

/// Mode of directories the builder adds as parents of listed entries.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// One entry to package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// Destination path in the package.
    pub path: String,
    /// Kind.
    pub kind: Kind,
    /// Permission bits.
    pub mode: u32,
    /// Size of a file.
    pub size: u64,
    /// Where the contents come from (files only).
    pub source: Option<PathBuf>,
    /// Link target (links only).
    pub target: Option<String>,
    /// File version (product files only).
    pub version: Option<Version>,
    /// Replacement policy (product files and links only).
    pub policy: Option<Policy>,
}

/// Resolves every rule of the manifest, plus the scripts and EULA, into a sorted list.
pub fn resolve(loaded: &LoadedManifest) -> Result<Vec<SourceEntry>, BuildError> {
    let mut entries: BTreeMap<String, (SourceEntry, String)> = BTreeMap::new();
    let manifest = &loaded.manifest;
    let root =
        std::fs::canonicalize(&loaded.base).map_err(|source| BuildError::Io { path: loaded.base.clone(), source })?;
    for (index, rule) in manifest.files.iter().enumerate() {
        let origin = format!("[[files]] source {:?}", rule.source.get_ref());
        let named = Named { what: "source".into(), entry: format!("files rule {}", index + 1), value: &rule.source };
        for entry in resolve_rule(loaded, &root, rule, &named)? {
            insert(&mut entries, entry, &origin, loaded, rule.source.span())?;
        }
    }

    // The package's own files: scripts and EULA under .package/.
    for role in ScriptRole::ALL {
        if let Some(script) = manifest.scripts.get(role) {
            let named = Named { what: role.to_string(), entry: "[scripts]".into(), value: script };
            let source = loaded.base.join(script.get_ref());
            let path = format!("{PACKAGE_DIR}/scripts/{role}{}", extension(&source));
            let entry = package_file(loaded, &root, &named, &path, 0o755)?;
            insert(&mut entries, entry, &format!("[scripts] {role}"), loaded, script.span())?;
        }
    }
    if let Some(eula) = &manifest.package.eula {
        let named = Named { what: "eula".into(), entry: "[package]".into(), value: eula };
        let source = loaded.base.join(eula.get_ref());
        let path = format!("{PACKAGE_DIR}/EULA{}", extension(&source));
        let entry = package_file(loaded, &root, &named, &path, 0o644)?;
        insert(&mut entries, entry, "[package] eula", loaded, eula.span())?;
    }

    // Every parent directory is an entry of its own.
    let paths: Vec<String> = entries.keys().cloned().collect();
    for path in paths {
        let mut parent = upkg_format::parent_path(&path);
        while let Some(dir) = parent {
            entries.entry(dir.to_owned()).or_insert_with(|| (implied_dir(dir), "an implied parent directory".into()));
            parent = upkg_format::parent_path(dir);
        }
    }
    let entries: Vec<SourceEntry> = entries.into_values().map(|(entry, _)| entry).collect();
    check_links(&entries)?;
    Ok(entries)
}

fn implied_dir(path: &str) -> SourceEntry {
    SourceEntry {
        path: path.to_owned(),
        kind: Kind::Dir,
        mode: IMPLIED_DIR_MODE,
        size: 0,
        source: None,
        target: None,
        version: None,
        policy: None,
    }
}

fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).map(|e| format!(".{e}")).unwrap_or_default()
}

/// A source path of the manifest, with what to call it in messages.
struct Named<'a> {
    /// The key: `source`, `eula`, a script role.
    what: String,
    /// The entry: `files rule 3`, `[package]`, `[scripts]`.
    entry: String,
    /// The value as written, with its span.
    value: &'a Spanned<String>,
}

/// Checks that reading `given` (relative to the manifest's directory, whose
/// resolved path is `root`) stays inside that directory, and returns the path it
/// resolves to. Every component is followed as the system follows it, the last
/// one only when `follow_last` (scripts and the EULA, read for their contents, and
/// a glob's base, which is walked); otherwise it is read with `lstat`, and a link
/// there is packaged as a link. A path that does not resolve (missing) is left to
/// the caller, which reports it when it reads it.
fn confine(
    loaded: &LoadedManifest,
    root: &Path,
    named: &Named<'_>,
    given: &str,
    follow_last: bool,
) -> Result<Option<PathBuf>, BuildError> {
    let outside = |reason: Outside| {
        let (line, column) = loaded.location(named.value.span());
        BuildError::SourceOutside(Box::new(SourceOutside {
            manifest: loaded.path.clone(),
            line,
            column,
            what: named.what.clone(),
            entry: named.entry.clone(),
            given: named.value.get_ref().clone(),
            base: root.to_owned(),
            reason,
        }))
    };
    if Path::new(given).is_absolute() {
        return Err(outside(Outside::Absolute));
    }
    let components: Vec<Component<'_>> = Path::new(given).components().collect();
    // A trailing `/` or `/.` makes the system follow a link in the last component too.
    let follow_last = follow_last || given.ends_with('/') || given.ends_with("/.");
    let resolve = |components: &[Component<'_>]| -> Option<PathBuf> {
        match components.split_last() {
            Some((Component::Normal(name), parent)) if !follow_last => {
                let parent: PathBuf = parent.iter().collect();
                std::fs::canonicalize(root.join(parent)).ok().map(|p| p.join(name))
            }
            _ => std::fs::canonicalize(root.join(components.iter().collect::<PathBuf>())).ok(),
        }
    };
    let Some(resolved) = resolve(&components) else { return Ok(None) };
    if resolved.starts_with(root) {
        return Ok(Some(resolved));
    }
    // Name the first link on the way that points out, if one does.
    let followed = if follow_last { components.len() } else { components.len().saturating_sub(1) };
    for end in 1..=followed {
        let prefix: PathBuf = components[..end].iter().collect();
        let here = root.join(&prefix);
        let is_link = std::fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink());
        if is_link
            && let Ok(target) = std::fs::read_link(&here)
            && std::fs::canonicalize(&here).is_ok_and(|p| !p.starts_with(root))
        {
            return Err(outside(Outside::ThroughLink { link: loaded.base.join(prefix), target, resolved }));
        }
    }
    Err(outside(Outside::Resolves { resolved }))
}

fn package_file(
    loaded: &LoadedManifest,
    root: &Path,
    named: &Named<'_>,
    path: &str,
    mode: u32,
) -> Result<SourceEntry, BuildError> {
    // Scripts and the EULA are read for their contents: a link to them is followed here, once.
    let span = named.value.span();
    let source = loaded.base.join(named.value.get_ref());
    let source = &match confine(loaded, root, named, named.value.get_ref(), true)? {
        Some(resolved) => resolved,
        None => {
            let e = std::fs::metadata(&source).err().unwrap_or_else(|| std::io::ErrorKind::NotFound.into());
            return Err(loaded.error_at(span, format!("{}: {e}", source.display())));
        }
    };
    let metadata =
        std::fs::metadata(source).map_err(|e| loaded.error_at(span.clone(), format!("{}: {e}", source.display())))?;
    if !metadata.is_file() {
        return Err(loaded.error_at(span, format!("{} is not a regular file", source.display())));
    }
    Ok(SourceEntry {
        path: path.to_owned(),
        kind: Kind::File,
        mode,
        size: metadata.len(),
        source: Some(source.to_owned()),
        target: None,
        version: None,
        policy: None,
    })
}

fn insert(
    entries: &mut BTreeMap<String, (SourceEntry, String)>,
    entry: SourceEntry,
    origin: &str,
    loaded: &LoadedManifest,
    span: std::ops::Range<usize>,
) -> Result<(), BuildError> {
    match entries.get(&entry.path) {
        // Two rules may both bring the same directory; its contents merge.
        Some((existing, _)) if existing.kind == Kind::Dir && entry.kind == Kind::Dir => Ok(()),
        Some((_, other)) => Err(loaded.error_at(span, format!("{:?} is already provided by {other}", entry.path))),
        None => {
            entries.insert(entry.path.clone(), (entry, origin.to_owned()));
            Ok(())
        }
    }
}

/// Expands one `[[files]]` rule.
fn resolve_rule(
    loaded: &LoadedManifest,
    root: &Path,
    rule: &FilesRule,
    named: &Named<'_>,
) -> Result<Vec<SourceEntry>, BuildError> {
    // `./bin/*` means `bin/*`: globs match paths relative to the manifest's directory.
    let mut source_text = rule.source.get_ref().as_str();
    while let Some(rest) = source_text.strip_prefix("./") {
        source_text = rest.trim_start_matches('/');
    }
    let dest_text = rule.dest.get_ref().as_str();
    let dest = normalize_dest(dest_text).map_err(|reason| loaded.error_at(rule.dest.span(), reason))?;
    let dest_is_dir = dest_text.is_empty() || dest_text.ends_with('/') || dest.is_empty();
    let mode_override = rule.mode.as_ref().map(|m| parse_mode(m.get_ref()).expect("checked when loading"));
    let version = rule.version.clone().unwrap_or_else(|| loaded.manifest.package.version.clone());
    let settings = RuleSettings { version, policy: rule.policy, mode: mode_override };

    let mut found = Vec::new();
    if source_text.contains(['*', '?', '[', '{']) {
        if !dest_is_dir {
            return Err(loaded.error_at(rule.dest.span(), "a glob's dest must be a directory (end it with /)"));
        }
        let glob = GlobBuilder::new(source_text)
            .literal_separator(true)
            .build()
            .map_err(|e| loaded.error_at(rule.source.span(), format!("invalid glob: {e}")))?
            .compile_matcher();
        let literal: Vec<&str> = source_text.split('/').take_while(|c| !c.contains(['*', '?', '[', '{'])).collect();
        let literal_base = literal.join("/");
        // The walk starts at the literal base, following it if it is a link, and
        // follows no link below it: what it meets is inside the base.
        if source_text.starts_with('/') {
            confine(loaded, root, named, source_text, true)?;
        }
        if !literal_base.is_empty() {
            confine(loaded, root, named, &literal_base, true)?;
        }
        let walk_root = loaded.base.join(&literal_base);
        if !walk_root.exists() {
            return Err(loaded.error_at(rule.source.span(), format!("{} does not exist", walk_root.display())));
        }
        for item in walkdir::WalkDir::new(&walk_root).min_depth(1).follow_links(false) {
            let item = item.map_err(|e| walk_error(&walk_root, e))?;
            let relative_to_base = relative(item.path(), &loaded.base)?;
            if glob.is_match(&relative_to_base) {
                let below_literal = relative(item.path(), &walk_root)?;
                found.push((item.path().to_owned(), join(&dest, &below_literal)));
            }
        }
        if found.is_empty() {
            return Err(loaded.error_at(rule.source.span(), format!("the glob {source_text:?} matches nothing")));
        }
        // A matched directory brings its whole tree; matches inside a matched
        // directory (as with `**`) are already part of it.
        found.sort();
        let mut out = Vec::new();
        let mut taken: Vec<PathBuf> = Vec::new();
        for (path, dest_path) in found {
            if taken.iter().any(|dir| path.starts_with(dir) && path != *dir) {
                continue;
            }
            if path.is_dir() && !path.is_symlink() {
                taken.push(path.clone());
            }
            add_tree(&path, &dest_path, &settings, &mut out)?;
        }
        return Ok(out);
    }

    confine(loaded, root, named, source_text, false)?;
    let source = loaded.base.join(source_text);
    let metadata = std::fs::symlink_metadata(&source)
        .map_err(|e| loaded.error_at(rule.source.span(), format!("{}: {e}", source.display())))?;
    let dest_path = if metadata.is_dir() || !dest_is_dir {
        dest
    } else {
        let name = source
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| BuildError::Source { path: source.clone(), reason: "the file name is not UTF-8".into() })?;
        join(&dest, name)
    };
    let mut out = Vec::new();
    add_tree(&source, &dest_path, &settings, &mut out)?;
    Ok(out)
}

struct RuleSettings {
    version: Version,
    policy: Policy,
    mode: Option<u32>,
}

/// Adds `source` at `dest` (and, for a directory, everything below it; the root itself is not an entry).
fn add_tree(source: &Path, dest: &str, settings: &RuleSettings, out: &mut Vec<SourceEntry>) -> Result<(), BuildError> {
    for item in walkdir::WalkDir::new(source).follow_links(false).follow_root_links(false) {
        let item = item.map_err(|e| walk_error(source, e))?;
        let below = relative(item.path(), source)?;
        let path = join(dest, &below);
        if path.is_empty() {
            continue; // the destination root
        }
        out.push(entry_for(item.path(), path, settings)?);
    }
    Ok(())
}

fn entry_for(source: &Path, path: String, settings: &RuleSettings) -> Result<SourceEntry, BuildError> {
    let source_error = |reason: String| BuildError::Source { path: source.to_owned(), reason };
    if let Err(reason) = upkg_format::check_entry_path(&path) {
        return Err(source_error(format!("its destination {path:?} is not allowed: {reason}")));
    }
    if upkg_format::is_package_path(&path) {
        return Err(source_error(format!(
            "its destination {path:?} is inside {PACKAGE_DIR}/, which holds the package's own files"
        )));
    }
    let metadata = std::fs::symlink_metadata(source).map_err(|e| source_error(e.to_string()))?;
    let file_type = metadata.file_type();
    // Special bits, and group and other write bits (which depend on the umask of
    // whoever checked the sources out), are dropped unless the manifest sets them.
    let mode = settings.mode.unwrap_or(metadata.mode() & NORMALIZED_MODE_MASK);
    let base =
        SourceEntry { path, kind: Kind::File, mode, size: 0, source: None, target: None, version: None, policy: None };
    if file_type.is_file() {
        Ok(SourceEntry {
            size: metadata.len(),
            source: Some(source.to_owned()),
            version: Some(settings.version.clone()),
            policy: Some(settings.policy),
            ..base
        })
    } else if file_type.is_dir() {
        Ok(SourceEntry { kind: Kind::Dir, mode: metadata.mode() & NORMALIZED_MODE_MASK, ..base })
    } else if file_type.is_symlink() {
        let target = std::fs::read_link(source).map_err(|e| source_error(e.to_string()))?;
        let target = target.to_str().ok_or_else(|| source_error("the link target is not UTF-8".into()))?.to_owned();
        Ok(SourceEntry {
            kind: Kind::Symlink,
            mode: 0o777,
            target: Some(target),
            policy: Some(settings.policy),
            ..base
        })
    } else {
        let kind = if file_type.is_fifo() {
            "a named pipe"
        } else if file_type.is_socket() {
            "a socket"
        } else if file_type.is_block_device() || file_type.is_char_device() {
            "a device file"
        } else {
            "not a regular file"
        };
        Err(source_error(format!("it is {kind}; packages hold only files, directories and symbolic links")))
    }
}

/// Refuses links that point outside the package tree (absolute, or `..` past the root).
fn check_links(entries: &[SourceEntry]) -> Result<(), BuildError> {
    let links: BTreeMap<&str, &str> =
        entries.iter().filter_map(|e| e.target.as_deref().map(|t| (e.path.as_str(), t))).collect();
    let lookup = |path: &str| links.get(path).map(|t| (*t).to_owned());
    for (path, target) in &links {
        upkg_format::resolve_link_target(path, target, &lookup).map_err(|reason| BuildError::Source {
            path: PathBuf::from(path),
            reason: format!("a symbolic link in the package must stay inside it: {reason}"),
        })?;
    }
    Ok(())
}

/// A destination without leading `./`, trailing `/`, or `.` for the root.
fn normalize_dest(dest: &str) -> Result<String, String> {
    if dest.starts_with('/') {
        return Err(format!("dest {dest:?} is relative to the target directory: drop the leading /"));
    }
    let trimmed = dest.trim_end_matches('/');
    let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
    if trimmed.is_empty() || trimmed == "." {
        return Ok(String::new());
    }
    upkg_format::check_entry_path(trimmed).map_err(|reason| format!("dest {dest:?} is not allowed: {reason}"))?;
    Ok(trimmed.to_owned())
}

fn join(dir: &str, name: &str) -> String {
    match (dir.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => dir.to_owned(),
        _ => format!("{dir}/{name}"),
    }
}

/// `path` relative to `base`, `/`-separated, as UTF-8.
fn relative(path: &Path, base: &Path) -> Result<String, BuildError> {
    let rel = path.strip_prefix(base).map_err(|_| BuildError::Source {
        path: path.to_owned(),
        reason: format!("is not below {}", base.display()),
    })?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    parts
        .map(|p| p.join("/"))
        .ok_or_else(|| BuildError::Source { path: path.to_owned(), reason: "the file name is not UTF-8".into() })
}

fn walk_error(root: &Path, error: walkdir::Error) -> BuildError {
    let path = error.path().map(Path::to_owned).unwrap_or_else(|| root.to_owned());
    BuildError::Source { path, reason: error.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(dir: &Path, rules: &str) -> Result<Vec<SourceEntry>, BuildError> {
        let manifest = format!(
            "[package]\nid = \"t\"\ntitle = \"T\"\nversion = \"1.0\"\nbuild = 1\n\n[applies-to]\nproduct = \"t\"\n\n{rules}"
        );
        std::fs::write(dir.join("package.toml"), manifest).unwrap();
        resolve(&LoadedManifest::load(dir)?)
    }

    fn tree(dir: &Path) {
        for (path, contents) in
            [("root/a.txt", "a"), ("root/d/b.txt", "b"), ("root/d/e/c.txt", "c"), ("root/x.bin", "x")]
        {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
    }

    fn paths(entries: &[SourceEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn a_recursive_glob_does_not_collide_with_itself() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path());
        let entries = load(dir.path(), "[[files]]\nsource = \"root/**\"\ndest = \"opt/\"\n").unwrap();
        assert_eq!(
            paths(&entries),
            ["opt", "opt/a.txt", "opt/d", "opt/d/b.txt", "opt/d/e", "opt/d/e/c.txt", "opt/x.bin"]
        );
    }

    #[test]
    fn globs_accept_a_leading_dot_slash() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path());
        let entries = load(dir.path(), "[[files]]\nsource = \"./root/*.txt\"\ndest = \"doc/\"\n").unwrap();
        assert_eq!(paths(&entries), ["doc", "doc/a.txt"]);
    }

    /// A package directory `pkg/` beside a directory `outside/` holding a secret.
    fn confined() -> (tempfile::TempDir, PathBuf) {
        let top = tempfile::tempdir().unwrap();
        let pkg = top.path().join("pkg");
        tree(&pkg);
        std::fs::create_dir_all(top.path().join("outside")).unwrap();
        std::fs::write(top.path().join("outside/secret.txt"), "secret").unwrap();
        std::fs::write(top.path().join("secret"), "secret").unwrap();
        (top, pkg)
    }

    /// The error of a build that reads outside, as (what, entry, reason, line).
    fn outside(pkg: &Path, rules: &str) -> (String, String, Outside, usize, String) {
        match load(pkg, rules).unwrap_err() {
            BuildError::SourceOutside(e) => {
                let message = e.to_string();
                let SourceOutside { what, entry, reason, line, base, .. } = *e;
                assert_eq!(base, pkg.canonicalize().unwrap());
                assert!(message.contains("sources must be inside the directory of package.toml"), "{message}");
                (what, entry, reason, line, message)
            }
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn a_source_up_and_out_is_refused() {
        let (top, pkg) = confined();
        let rules = "[[files]]\nsource = \"root\"\n\n[[files]]\nsource = \"root/a.txt\"\ndest = \"x\"\n\n[[files]]\nsource = \"../secret\"\n";
        let (what, entry, reason, line, message) = outside(&pkg, rules);
        assert_eq!((what.as_str(), entry.as_str(), line), ("source", "files rule 3", 18));
        assert_eq!(reason, Outside::Resolves { resolved: top.path().canonicalize().unwrap().join("secret") });
        assert!(message.contains("source `../secret` (files rule 3) resolves to"), "{message}");
        assert!(message.contains("package.toml:18:10:"), "{message}");
        // Even when what it names does not exist.
        let (_, _, reason, _, _) = outside(&pkg, "[[files]]\nsource = \"root/../../nothing\"\n");
        assert!(matches!(reason, Outside::Resolves { .. }), "{reason:?}");
    }

    #[test]
    fn an_absolute_source_is_refused() {
        let (top, pkg) = confined();
        let inside = pkg.join("root/a.txt");
        for source in [top.path().join("secret"), inside] {
            let (_, _, reason, _, _) =
                outside(&pkg, &format!("[[files]]\nsource = {:?}\n", source.display().to_string()));
            assert_eq!(reason, Outside::Absolute);
        }
        let (_, _, reason, _, _) = outside(&pkg, "[[files]]\nsource = \"/etc/*\"\ndest = \"etc/\"\n");
        assert_eq!(reason, Outside::Absolute);
    }

    #[test]
    fn a_source_through_a_linked_directory_is_refused() {
        let (top, pkg) = confined();
        std::os::unix::fs::symlink(top.path().join("outside"), pkg.join("linked")).unwrap();
        for source in ["linked/secret.txt", "linked/", "linked/."] {
            let (_, _, reason, _, message) = outside(&pkg, &format!("[[files]]\nsource = {source:?}\ndest = \"x/\"\n"));
            match reason {
                Outside::ThroughLink { link, target, .. } => {
                    assert_eq!(link, pkg.join("linked"));
                    assert_eq!(target, top.path().join("outside"));
                }
                other => panic!("{source}: {other:?}"),
            }
            assert!(message.contains("follows the symbolic link"), "{message}");
        }
        // The link itself is packaged as a link: that reads nothing outside (and the
        // link check then refuses its absolute target, for another reason).
        match load(&pkg, "[[files]]\nsource = \"linked\"\ndest = \"x\"\n").unwrap_err() {
            BuildError::Source { reason, .. } => assert!(reason.contains("must stay inside"), "{reason}"),
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn a_linked_directory_inside_is_fine() {
        let (_top, pkg) = confined();
        std::os::unix::fs::symlink("root/d", pkg.join("current")).unwrap();
        let entries = load(
            &pkg,
            "[[files]]\nsource = \"current/e\"\ndest = \"e\"\n\n[[files]]\nsource = \"current/*.txt\"\ndest = \"g/\"\n",
        )
        .unwrap();
        assert_eq!(paths(&entries), ["e", "e/c.txt", "g", "g/b.txt"]);
    }

    #[test]
    fn a_glob_reaching_out_is_refused() {
        let (top, pkg) = confined();
        std::os::unix::fs::symlink(top.path().join("outside"), pkg.join("linked")).unwrap();
        let (_, entry, reason, _, _) = outside(&pkg, "[[files]]\nsource = \"../outside/*.txt\"\ndest = \"x/\"\n");
        assert_eq!(entry, "files rule 1");
        assert!(matches!(reason, Outside::Resolves { .. }), "{reason:?}");
        let (_, _, reason, _, _) = outside(&pkg, "[[files]]\nsource = \"linked/*.txt\"\ndest = \"x/\"\n");
        assert!(matches!(reason, Outside::ThroughLink { .. }), "{reason:?}");
        // A glob from the package directory does not descend into the link.
        let entries = load(&pkg, "[[files]]\nsource = \"*/*.txt\"\ndest = \"x/\"\n").unwrap();
        assert_eq!(paths(&entries), ["x", "x/root", "x/root/a.txt"]);
    }

    #[test]
    fn an_eula_or_script_outside_is_refused() {
        let (top, pkg) = confined();
        let manifest_eula = "[package]\nid = \"t\"\ntitle = \"T\"\nversion = \"1.0\"\nbuild = 1\neula = \"../secret\"\n\n[applies-to]\nproduct = \"t\"\n";
        std::fs::write(pkg.join("package.toml"), manifest_eula).unwrap();
        let err = resolve(&LoadedManifest::load(&pkg).unwrap()).unwrap_err();
        let message = err.to_string();
        assert!(matches!(&err, BuildError::SourceOutside(e) if (e.line, e.column) == (6, 8)), "{message}");
        assert!(message.contains("eula `../secret` ([package]) resolves to"), "{message}");
        // A script that is a link to a file outside: following it would read outside.
        std::os::unix::fs::symlink(top.path().join("outside/secret.txt"), pkg.join("post.sh")).unwrap();
        let (what, entry, reason, _, _) = outside(&pkg, "[scripts]\npost-install = \"post.sh\"\n");
        assert_eq!((what.as_str(), entry.as_str()), ("post-install", "[scripts]"));
        assert!(matches!(reason, Outside::ThroughLink { .. }), "{reason:?}");
    }

    #[test]
    fn nothing_may_land_in_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path());
        std::fs::create_dir_all(dir.path().join("state/.pkgrun")).unwrap();
        std::fs::write(dir.path().join("state/.pkgrun/state.json"), "{}").unwrap();
        match load(dir.path(), "[[files]]\nsource = \"state\"\n").unwrap_err() {
            BuildError::Source { reason, .. } => {
                assert!(reason.contains("\".pkgrun\"") && reason.contains(".pkgrun/"), "{reason}")
            }
            other => panic!("unexpected error {other}"),
        }
        // Below the root, the name is an ordinary one.
        let entries = load(dir.path(), "[[files]]\nsource = \"state\"\ndest = \"opt\"\n").unwrap();
        assert_eq!(paths(&entries), ["opt", "opt/.pkgrun", "opt/.pkgrun/state.json"]);
    }

    #[test]
    fn a_script_may_be_a_link_to_the_real_file() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path());
        std::fs::write(dir.path().join("real.sh"), "#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("real.sh", dir.path().join("post.sh")).unwrap();
        let entries = load(dir.path(), "[scripts]\npost-install = \"post.sh\"\n").unwrap();
        let script = entries.iter().find(|e| e.path == ".package/scripts/post-install.sh").unwrap();
        assert_eq!(script.source.as_deref(), Some(dir.path().canonicalize().unwrap().join("real.sh").as_path()));
    }
}
