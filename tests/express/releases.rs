//! Successive releases of one product for the express tests: what changes from
//! one release to the next, as a real product's releases do.
//!
//! - `bin/app` (256 KiB of binary): a few bytes change in every release;
//! - `lib/libcore.so` (128 KiB): changes in release 3 only;
//! - `etc/app.conf`: never changes;
//! - `share/doc/pageN.txt` (20 pages of 8 KiB of text): page N changes in release N;
//! - `data/blob.bin` (64 KiB): rewritten whole in release 4 (no useful delta);
//! - `share/new.txt`: new in release 4.
//!
//! Release N is version `1.N`, build N, a full release (`fresh-install`) that
//! applies to any installed version.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use crate::common::{BuildOptions, TestContext, run};

/// Deterministic bytes: an xorshift stream from `seed`.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Lines of text (compressible about 3 to 1) from `seed`.
pub fn text(seed: u64, len: usize) -> Vec<u8> {
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"];
    let noise = noise(seed, len);
    let mut out = String::new();
    let mut line = 0;
    while out.len() < len {
        line += 1;
        out.push_str(&format!("{line:05}"));
        for k in 0..8 {
            out.push(' ');
            out.push_str(words[noise[(line * 8 + k) % len] as usize % words.len()]);
        }
        out.push('\n');
    }
    out.truncate(len);
    out.into_bytes()
}

/// Overwrites `bytes[at..]` with `patch`.
fn edit(bytes: &mut [u8], at: usize, patch: &[u8]) {
    bytes[at..at + patch.len()].copy_from_slice(patch);
}

/// The releases of the test product, built in one [`TestContext`].
pub struct Releases<'a> {
    ctx: &'a TestContext,
}

impl<'a> Releases<'a> {
    /// The releases of `ctx`, whose source trees are written on first use.
    pub fn new(ctx: &'a TestContext) -> Self {
        Releases { ctx }
    }

    /// Every product path of release `n` with its contents.
    pub fn files(&self, n: u32) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        let mut app = noise(1, 256 << 10);
        for release in 2..=n {
            edit(&mut app, release as usize * 1000, format!("release {release} of the application").as_bytes());
        }
        files.push(("bin/app".to_owned(), app));
        let mut lib = noise(2, 128 << 10);
        if n >= 3 {
            edit(&mut lib, 70_000, b"library fix of release 3");
        }
        files.push(("lib/libcore.so".to_owned(), lib));
        files.push(("etc/app.conf".to_owned(), b"listen = 8080\nworkers = 4\n".to_vec()));
        for page in 0..20u32 {
            let mut contents = text(100 + u64::from(page), 8 << 10);
            if page <= n && page >= 2 {
                edit(&mut contents, 4000, format!("page {page} was revised in release {page}").as_bytes());
            }
            files.push((format!("share/doc/page{page}.txt"), contents));
        }
        files.push(("data/blob.bin".to_owned(), noise(if n >= 4 { 40 } else { 4 }, 64 << 10)));
        if n >= 4 {
            files.push(("share/new.txt".to_owned(), b"new in release 4\n".to_vec()));
        }
        files.sort();
        files
    }

    /// The product paths of release `n`.
    pub fn paths(&self, n: u32) -> Vec<String> {
        self.files(n).into_iter().map(|(path, _)| path).collect()
    }

    /// The contents of `path` in release `n`.
    pub fn contents(&self, n: u32, path: &str) -> Vec<u8> {
        self.files(n).into_iter().find(|(p, _)| p == path).unwrap_or_else(|| panic!("{path} in release {n}")).1
    }

    /// The source directory of release `n` (relative to the root), written on first use.
    pub fn source(&self, n: u32) -> String {
        let src = format!("release-{n}");
        if !self.ctx.path(&src).exists() {
            let manifest = format!(
                "[package]\nid = \"testprod-r{n}\"\ntitle = \"Test product release {n}\"\nversion = \"1.{n}\"\nbuild = {n}\nrestart = \"never\"\n\n\
                 [applies-to]\nproduct = \"testprod\"\nfresh-install = true\n\n[[files]]\nsource = \"root\"\ndest = \".\"\n"
            );
            self.ctx.write_file(format!("{src}/package.toml"), manifest.as_bytes(), 0o644);
            self.ctx.mkdir(format!("{src}/root"), 0o755);
            for dir in ["bin", "lib", "etc", "share", "share/doc", "data"] {
                self.ctx.mkdir(format!("{src}/root/{dir}"), 0o755);
            }
            for (path, contents) in self.files(n) {
                let mode = if path.starts_with("bin/") { 0o755 } else { 0o644 };
                self.ctx.write_file(format!("{src}/root/{path}"), &contents, mode);
            }
        }
        src
    }

    /// The file `path` of release `n`'s source tree.
    pub fn file(&self, n: u32, path: &str) -> PathBuf {
        self.ctx.path(self.source(n)).join("root").join(path)
    }

    /// Builds release `n` as `r{n}.upkg` with deltas from `from`.
    #[track_caller]
    pub fn build(&self, n: u32, from: &[PathBuf]) -> PathBuf {
        self.build_with(n, from, &format!("r{n}.upkg"), BuildOptions::default())
    }

    /// Builds release `n` as `out` with `options` and deltas from `from`.
    #[track_caller]
    pub fn build_with(&self, n: u32, from: &[PathBuf], out: &str, options: BuildOptions) -> PathBuf {
        let src = self.source(n);
        let mut command = self.ctx.build_command(&src, out, &options);
        for old in from {
            command.arg("--delta-from").arg(old);
        }
        run(&mut command).assert_success();
        self.ctx.path(out)
    }

    /// The context.
    pub fn ctx(&self) -> &TestContext {
        self.ctx
    }
}

/// Whether `path` holds exactly release `n`'s product files (and nothing else but `.pkgrun`).
pub fn holds_release(releases: &Releases<'_>, target: &Path, n: u32) -> Result<(), String> {
    let mut found = Vec::new();
    for item in walkdir::WalkDir::new(target).min_depth(1).sort_by_file_name() {
        let item = item.map_err(|e| e.to_string())?;
        let rel = item.path().strip_prefix(target).unwrap().to_string_lossy().into_owned();
        if rel == ".pkgrun" || rel.starts_with(".pkgrun/") || !item.file_type().is_file() {
            continue;
        }
        found.push(rel);
    }
    let expected = releases.paths(n);
    if found != expected {
        return Err(format!("{} holds {found:?}, release {n} is {expected:?}", target.display()));
    }
    for path in expected {
        if std::fs::read(target.join(&path)).map_err(|e| e.to_string())? != releases.contents(n, &path) {
            return Err(format!("{path} is not release {n}'s"));
        }
    }
    Ok(())
}
