//! The Debian package of the two tools, `upkg-tools_VERSION_ARCH.deb`.
//!
//! A tree is staged the way debhelper lays it out (`debian/upkg-tools/` beside a
//! minimal `debian/control`, so `dpkg-shlibdeps` computes `Depends` from the
//! binaries' libraries without complaint) and packed with `dpkg-deb --build
//! --root-owner-group`. That needs only dpkg and dpkg-dev, where cargo-deb would
//! have to be compiled on every CI run.
//!
//! The package owns `/etc/pkgrun/` and `/etc/pkgrun/trusted-keys/` as directories
//! and ships no file there: the trusted keys are the administrator's and the
//! instance registry (`/etc/pkgrun/instances`) is written by `pkgrun` itself, so an
//! existing registry or key is never clobbered on install or upgrade, and dpkg keeps
//! both directories (with a "not empty" note) on remove and purge. There are no
//! maintainer scripts.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use md5::{Digest as _, Md5};

use crate::completions::{self, Shell};
use crate::{Tool, XtaskError, man};

/// The Debian package's name.
pub const PACKAGE: &str = "upkg-tools";

/// The package version: the workspace's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The Maintainer field. The workspace names no author; this is its contact, in the
/// same domain as the workspace's `repository`.
const MAINTAINER: &str = "upkg developers <upkg@example.invalid>";

/// Where the man pages go.
const MAN_DIR: &str = "usr/share/man/man1";

/// Directories the package owns in /etc; see the module comment.
const ETC_DIRS: [&str; 2] = ["etc/pkgrun", "etc/pkgrun/trusted-keys"];

/// How the package's data is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// xz, dpkg-deb's default: the package to ship.
    Xz,
    /// gzip at level 1: quick, for tests packing debug binaries.
    Fast,
}

/// What to package, and where.
#[derive(Debug, Clone)]
pub struct DebRequest {
    /// The `pkgrun` executable to ship.
    pub pkgrun: PathBuf,
    /// The `pkgbuild` executable to ship.
    pub pkgbuild: PathBuf,
    /// The directory the `.deb` is written to (created when missing).
    pub out_dir: PathBuf,
    /// The data compression.
    pub compression: Compression,
}

/// A package that was built.
#[derive(Debug, Clone)]
pub struct BuiltDeb {
    /// The `.deb` file.
    pub path: PathBuf,
    /// Its Architecture field.
    pub architecture: String,
    /// Its Depends field.
    pub depends: String,
}

/// Builds the package; returns where it is.
pub fn build(request: &DebRequest) -> Result<BuiltDeb, XtaskError> {
    let out_dir = &request.out_dir;
    std::fs::create_dir_all(out_dir).map_err(|e| XtaskError::io(out_dir, e))?;
    let architecture = tool_output(Command::new("dpkg").arg("--print-architecture"), "dpkg", "dpkg")?;
    if architecture.is_empty() || architecture.contains(char::is_whitespace) {
        return Err(XtaskError::UnexpectedOutput {
            command: "dpkg --print-architecture".into(),
            output: architecture,
            expected: "one architecture name",
        });
    }

    // Staged beside the output, removed when done (also on failure).
    let work =
        tempfile::Builder::new().prefix(".deb-staging.").tempdir_in(out_dir).map_err(|e| XtaskError::io(out_dir, e))?;
    let debian = work.path().join("debian");
    let root = debian.join(PACKAGE);
    let mut files = Files { root: root.clone(), written: Vec::new() };

    for (tool, source) in [(Tool::Pkgrun, &request.pkgrun), (Tool::Pkgbuild, &request.pkgbuild)] {
        let bytes = std::fs::read(source).map_err(|e| XtaskError::io(source, e))?;
        files.add(&format!("usr/bin/{}", tool.name()), &bytes, 0o755)?;
    }
    for tool in Tool::ALL {
        for page in man::pages(tool) {
            files.add(&format!("{MAN_DIR}/{}.gz", page.file_name), &gzip(&page.roff), 0o644)?;
        }
        for shell in Shell::ALL {
            let path = shell.install_path(tool);
            files.add(&path.to_string_lossy(), &completions::script(tool, shell), 0o644)?;
        }
    }
    files.add(&format!("usr/share/doc/{PACKAGE}/copyright"), copyright().as_bytes(), 0o644)?;
    for dir in ETC_DIRS {
        files.dir(dir)?;
    }

    let depends = shlibdeps(work.path(), &debian)?;
    let installed_size_kib = installed_size_kib(&root)?;
    let control_dir = root.join("DEBIAN");
    files.dir("DEBIAN")?;
    write_file(&control_dir.join("md5sums"), files.md5sums().as_bytes(), 0o644)?;
    let control = control(&architecture, &depends, installed_size_kib);
    write_file(&control_dir.join("control"), control.as_bytes(), 0o644)?;

    let path = out_dir.join(format!("{PACKAGE}_{VERSION}_{architecture}.deb"));
    let mut dpkg_deb = Command::new("dpkg-deb");
    dpkg_deb.args(["--build", "--root-owner-group"]);
    match request.compression {
        Compression::Xz => dpkg_deb.arg("-Zxz"),
        Compression::Fast => dpkg_deb.args(["-Zgzip", "-z1"]),
    };
    dpkg_deb.arg(&root).arg(&path);
    tool_output(&mut dpkg_deb, "dpkg-deb", "dpkg")?;
    Ok(BuiltDeb { path, architecture, depends })
}

/// The staged files, remembered for md5sums.
struct Files {
    root: PathBuf,
    written: Vec<(String, Vec<u8>)>,
}

impl Files {
    /// Writes `rel` (with its parent directories, mode 0755) with `mode`.
    fn add(&mut self, rel: &str, bytes: &[u8], mode: u32) -> Result<(), XtaskError> {
        let path = self.root.join(rel);
        if let Some(parent) = Path::new(rel).parent() {
            self.dir(&parent.to_string_lossy())?;
        }
        write_file(&path, bytes, mode)?;
        self.written.push((rel.to_owned(), Md5::digest(bytes).to_vec()));
        Ok(())
    }

    /// Makes `rel` and its parents, each mode 0755 whatever the umask.
    fn dir(&self, rel: &str) -> Result<(), XtaskError> {
        let mut path = self.root.clone();
        std::fs::create_dir_all(&path).map_err(|e| XtaskError::io(&path, e))?;
        set_mode(&path, 0o755)?;
        for part in Path::new(rel).components() {
            path.push(part);
            match std::fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(XtaskError::io(&path, e)),
            }
            set_mode(&path, 0o755)?;
        }
        Ok(())
    }

    /// DEBIAN/md5sums: what `dpkg --verify` and debsums check installed files against.
    fn md5sums(&self) -> String {
        let mut sorted: Vec<&(String, Vec<u8>)> = self.written.iter().collect();
        sorted.sort();
        let mut text = String::new();
        for (rel, digest) in sorted {
            for byte in digest {
                let _ = write!(text, "{byte:02x}");
            }
            let _ = writeln!(text, "  {rel}");
        }
        text
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), XtaskError> {
    std::fs::write(path, bytes).map_err(|e| XtaskError::io(path, e))?;
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), XtaskError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| XtaskError::io(path, e))
}

/// gzip at the best level with no name and no timestamp (as `gzip -9n`, what Debian
/// expects of man pages), so the same page always compresses to the same bytes.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    // Compressing into memory has no I/O that could fail.
    encoder.write_all(bytes).expect("gzip into memory cannot fail");
    encoder.finish().expect("gzip into memory cannot fail")
}

/// Runs `dpkg-shlibdeps` on the staged binaries, in `work` (which holds
/// `debian/control`), and returns its `shlibs:Depends` value.
fn shlibdeps(work: &Path, debian: &Path) -> Result<String, XtaskError> {
    let control = debian.join("control");
    let text = format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n");
    write_file(&control, text.as_bytes(), 0o644)?;
    let mut command = Command::new("dpkg-shlibdeps");
    command.current_dir(work).arg("-O");
    for tool in Tool::ALL {
        command.arg(format!("-edebian/{PACKAGE}/usr/bin/{}", tool.name()));
    }
    let output = tool_output(&mut command, "dpkg-shlibdeps", "dpkg-dev")?;
    let depends = output.lines().find_map(|line| line.strip_prefix("shlibs:Depends="));
    match depends {
        Some(depends) if !depends.trim().is_empty() => Ok(depends.trim().to_owned()),
        _ => Err(XtaskError::UnexpectedOutput {
            command: "dpkg-shlibdeps -O".into(),
            output,
            expected: "a line shlibs:Depends=...",
        }),
    }
}

/// Installed-Size as dpkg-gencontrol counts it: each file's size in KiB rounded up,
/// plus one KiB for each directory.
fn installed_size_kib(root: &Path) -> Result<u64, XtaskError> {
    let mut total = 0;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| XtaskError::io(&dir, e))? {
            let entry = entry.map_err(|e| XtaskError::io(&dir, e))?;
            let path = entry.path();
            let metadata = entry.metadata().map_err(|e| XtaskError::io(&path, e))?;
            if metadata.is_dir() {
                total += 1;
                pending.push(path);
            } else {
                total += metadata.len().div_ceil(1024);
            }
        }
    }
    Ok(total)
}

fn control(architecture: &str, depends: &str, installed_size_kib: u64) -> String {
    format!(
        "Package: {PACKAGE}\n\
         Version: {VERSION}\n\
         Architecture: {architecture}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed_size_kib}\n\
         Depends: {depends}\n\
         Section: admin\n\
         Priority: optional\n\
         Description: build, verify and install signed self-extracting update packages\n \
         pkgbuild turns a manifest and a tree of files into one signed,\n \
         self-extracting package file. pkgrun, which is also the stub inside every\n \
         package, verifies it, expands it (to a network share, say) and installs it\n \
         on a target all-or-nothing: an interruption at any instant leaves the old\n \
         set of files or the new one, and every install can be uninstalled.\n \
         .\n \
         Trusted signing keys go in /etc/pkgrun/trusted-keys/; pkgrun keeps its\n \
         registry of product instances in /etc/pkgrun/instances.\n"
    )
}

/// /usr/share/doc/upkg-tools/copyright, in Debian's machine-readable format.
fn copyright() -> String {
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: {PACKAGE}\n\
         \n\
         Files: *\n\
         Copyright: the upkg developers\n\
         License: MIT or Apache-2.0\n\
         \n\
         License: MIT\n{MIT}\n\n\
         License: Apache-2.0\n \
         Licensed under the Apache License, Version 2.0 (the \"License\");\n \
         you may not use this file except in compliance with the License.\n \
         You may obtain a copy of the License at\n \
         .\n \
         https://www.apache.org/licenses/LICENSE-2.0\n \
         .\n \
         Unless required by applicable law or agreed to in writing, software\n \
         distributed under the License is distributed on an \"AS IS\" BASIS,\n \
         WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.\n \
         See the License for the specific language governing permissions and\n \
         limitations under the License.\n \
         .\n \
         On Debian systems, the complete text of the Apache License, Version 2.0\n \
         can be found in /usr/share/common-licenses/Apache-2.0.\n"
    )
}

/// The MIT licence text, as a DEP-5 license paragraph body.
const MIT: &str = " Permission is hereby granted, free of charge, to any person obtaining a copy\n \
of this software and associated documentation files (the \"Software\"), to deal\n \
in the Software without restriction, including without limitation the rights\n \
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell\n \
copies of the Software, and to permit persons to whom the Software is\n \
furnished to do so, subject to the following conditions:\n \
.\n \
The above copyright notice and this permission notice shall be included in all\n \
copies or substantial portions of the Software.\n \
.\n \
THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR\n \
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,\n \
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE\n \
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER\n \
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,\n \
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE\n \
SOFTWARE.";

/// Runs `command` and returns its standard output, trimmed.
fn tool_output(
    command: &mut Command,
    program: &'static str,
    debian_package: &'static str,
) -> Result<String, XtaskError> {
    let output = command.output().map_err(|source| XtaskError::ToolMissing { program, debian_package, source })?;
    if !output.status.success() {
        return Err(XtaskError::ToolFailed {
            command: format!("{command:?}"),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
