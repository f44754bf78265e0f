//! Rules for entry paths and symbolic-link targets (spec section "Paths").
//!
//! Every path in a catalog is relative, `/`-separated, UTF-8, with no empty,
//! `.` or `..` component, and no byte that a shell or a cabinet would read
//! differently (NUL, control characters, backslash), and none inside the state
//! directory `.pkgrun/` that the installer keeps at the root of every target.
//! Readers apply these rules to signed packages too: a signature says who made a
//! package, not that it is safe.

/// Maximum length of a path in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Maximum length of one path component in bytes.
pub const MAX_COMPONENT_LEN: usize = 255;
/// The directory, at the root of the tree, that holds a package's own files
/// (scripts, EULA) and, in an expanded tree, its header and signature.
pub const PACKAGE_DIR: &str = ".package";
/// The installer's state directory at the root of every target (journal, backups,
/// `state.json`). No catalog or `remove` path may be it or lie below it: a package
/// that wrote there could rewrite what the installer trusts. The comparison is
/// exact (byte for byte, case-sensitive): `.PKGRUN` is an ordinary name.
pub const STATE_DIR: &str = ".pkgrun";
/// Where an expanded tree keeps the signed header.
pub const EXPANDED_HEADER: &str = ".package/header.json";
/// Where an expanded tree keeps the signature block.
pub const EXPANDED_SIGNATURE: &str = ".package/header.json.minisig";
/// Where an expanded tree keeps the package's runner: the stub, verified against
/// its signed digest (spec section 12).
pub const EXPANDED_RUNNER: &str = ".package/pkgrun";

/// Checks a catalog path; returns why it is refused.
pub fn check_entry_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!("the path is longer than {MAX_PATH_LEN} bytes"));
    }
    if path.starts_with('/') {
        return Err("the path is absolute".into());
    }
    if let Some(c) = path.chars().find(|c| c.is_control()) {
        return Err(format!("the path contains the control character {c:?}"));
    }
    if path.contains('\\') {
        return Err("the path contains a backslash".into());
    }
    for component in path.split('/') {
        match component {
            "" => return Err("the path has an empty component (a doubled or trailing slash)".into()),
            "." | ".." => return Err(format!("the path has a {component:?} component")),
            _ if component.len() > MAX_COMPONENT_LEN => {
                return Err(format!("a component is longer than {MAX_COMPONENT_LEN} bytes"));
            }
            _ => {}
        }
    }
    if path == EXPANDED_HEADER || path == EXPANDED_SIGNATURE || path == EXPANDED_RUNNER {
        return Err("the path is reserved for the expanded tree's header, signature and runner".into());
    }
    if is_state_path(path) {
        return Err(format!("the path is in {STATE_DIR}/, which every target reserves for the installer's state"));
    }
    Ok(())
}

/// Whether `path` is the installer's state directory [`STATE_DIR`] or lies below it.
/// Only the top level is reserved: `sub/.pkgrun` is an ordinary path.
pub fn is_state_path(path: &str) -> bool {
    path.strip_prefix(STATE_DIR).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The parent of a catalog path, or `None` at the top level.
pub fn parent_path(path: &str) -> Option<&str> {
    path.rfind('/').map(|index| &path[..index])
}

/// Resolves a symbolic link's target lexically against the link's directory.
/// Returns the components of the resolved path, or why it leaves the tree.
///
/// `is_symlink` says whether a path (inside the tree) is itself a symbolic link;
/// intermediate components that are links are followed (up to 40 hops, as Linux
/// does), so a chain of relative links cannot walk out of the tree either.
pub fn resolve_link_target(
    link_path: &str,
    target: &str,
    lookup_link: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    if target.is_empty() {
        return Err("the link target is empty".into());
    }
    if target.starts_with('/') {
        return Err(format!("the link points to the absolute path {target:?}"));
    }
    if let Some(c) = target.chars().find(|c| c.is_control()) {
        return Err(format!("the link target contains the control character {c:?}"));
    }
    if target.len() > MAX_PATH_LEN {
        return Err(format!("the link target is longer than {MAX_PATH_LEN} bytes"));
    }
    let mut stack: Vec<String> = link_path.split('/').map(str::to_owned).collect();
    stack.pop();
    let mut pending: Vec<String> = target.split('/').rev().map(str::to_owned).collect();
    let mut hops = 0;
    while let Some(component) = pending.pop() {
        match component.as_str() {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(format!("the link target {target:?} leads out of the tree"));
                }
            }
            name => {
                stack.push(name.to_owned());
                // Only components that are walked *through* matter; the last one may be anything.
                if !pending.is_empty() {
                    let here = stack.join("/");
                    if let Some(next) = lookup_link(&here) {
                        hops += 1;
                        if hops > 40 {
                            return Err("too many levels of symbolic links".into());
                        }
                        if next.starts_with('/') {
                            return Err(format!("the link target {target:?} goes through a link to an absolute path"));
                        }
                        stack.pop();
                        pending.extend(next.split('/').rev().map(str::to_owned));
                    }
                }
            }
        }
    }
    // A link into the installer's state directory would hand its records to
    // whatever later follows the link (an administrator's tool, a script).
    if is_state_path(&stack.join("/")) {
        return Err(format!("the link target {target:?} points into the installer's state directory {STATE_DIR}/"));
    }
    Ok(stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for good in [
            "a",
            "bin/server",
            "a b/c-d_e.f",
            "docs/ünïcode.txt",
            ".package/scripts/post-install.sh",
            ".hidden",
            // Only the exact top-level name is reserved.
            ".PKGRUN/state.json",
            ".pkgrun-old",
            ".pkgrunx/state.json",
            "sub/.pkgrun/state.json",
            "pkgrun",
        ] {
            assert_eq!(check_entry_path(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn refuses_hostile_paths() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\nb",
            "a\0b",
            ".package/header.json",
            ".package/header.json.minisig",
            ".package/pkgrun",
            ".pkgrun",
            ".pkgrun/state.json",
            ".pkgrun/tx/1/backup/bin/tool",
        ] {
            assert!(check_entry_path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_entry_path(&"a".repeat(256)).is_err());
    }

    #[test]
    fn the_state_directory_is_reserved_at_the_root_only() {
        assert!(is_state_path(".pkgrun"));
        assert!(is_state_path(".pkgrun/state.json"));
        assert!(!is_state_path(".pkgrun2"));
        assert!(!is_state_path("a/.pkgrun"));
        assert!(!is_state_path(".Pkgrun/state.json"));
        let reason = check_entry_path(".pkgrun/journal.json").unwrap_err();
        assert!(reason.contains(".pkgrun/") && reason.contains("installer's state"), "{reason}");
    }

    #[test]
    fn link_targets() {
        let no_links = |_: &str| None;
        assert_eq!(resolve_link_target("lib/libfoo.so", "libfoo.so.1", &no_links).unwrap(), ["lib", "libfoo.so.1"]);
        assert_eq!(resolve_link_target("bin/tool", "../lib/tool", &no_links).unwrap(), ["lib", "tool"]);
        assert!(resolve_link_target("bin/tool", "../../etc/passwd", &no_links).is_err());
        assert!(resolve_link_target("tool", "/etc/passwd", &no_links).is_err());
        assert!(resolve_link_target("tool", "", &no_links).is_err());
        assert!(resolve_link_target("state", ".pkgrun/state.json", &no_links).is_err());
        assert!(resolve_link_target("sub/state", "../.pkgrun", &no_links).is_err());
        assert!(resolve_link_target("sub/own", ".pkgrun", &no_links).is_ok(), "sub/.pkgrun is ordinary");
    }

    #[test]
    fn link_chains_cannot_escape() {
        // up -> ..  (allowed alone: it names the tree's root from a subdirectory)
        // sub/x -> ../up/../..  would escape through the link "up"
        let links = |path: &str| match path {
            "sub/up" => Some("..".to_owned()),
            _ => None,
        };
        assert!(resolve_link_target("sub/up", "..", &links).is_ok());
        assert!(resolve_link_target("sub/x", "up/../..", &links).is_err());
    }
}
