//! `cargo xtask`: the workspace's developer tasks (see the library's doc).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use xtask::deb::{self, Compression, DebRequest};

/// Developer tasks: man pages, shell completions and the Debian package of the tools.
#[derive(Debug, Parser)]
#[command(name = "xtask", about)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Write the man pages of pkgrun and pkgbuild (and of each subcommand) into DIR.
    Man {
        /// The output directory.
        dir: PathBuf,
    },
    /// Write the bash, zsh and fish completions of pkgrun and pkgbuild into DIR.
    Completions {
        /// The output directory.
        dir: PathBuf,
    },
    /// Build the release binaries and the Debian package target/debian/upkg-tools_VERSION_ARCH.deb.
    Deb {
        /// Where to write the package [default: target/debian].
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Package these binaries instead of building the release ones (both are needed).
        #[arg(long, value_name = "PATH", requires = "pkgbuild")]
        pkgrun: Option<PathBuf>,
        /// Package this pkgbuild instead of building the release one.
        #[arg(long, value_name = "PATH", requires = "pkgrun")]
        pkgbuild: Option<PathBuf>,
        /// Compress with gzip -1 instead of xz (quicker, larger).
        #[arg(long)]
        fast: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Man { dir } => report(xtask::man::write_all(&dir)?),
        Task::Completions { dir } => report(xtask::completions::write_all(&dir)?),
        Task::Deb { out_dir, pkgrun, pkgbuild, fast } => {
            let target = target_dir();
            let (pkgrun, pkgbuild) = match (pkgrun, pkgbuild) {
                (Some(pkgrun), Some(pkgbuild)) => (pkgrun, pkgbuild),
                _ => {
                    build_release()?;
                    (target.join("release/pkgrun"), target.join("release/pkgbuild"))
                }
            };
            let request = DebRequest {
                pkgrun,
                pkgbuild,
                out_dir: out_dir.unwrap_or_else(|| target.join("debian")),
                compression: if fast { Compression::Fast } else { Compression::Xz },
            };
            let built = deb::build(&request).context("building the Debian package")?;
            println!("{}", built.path.display());
            eprintln!("xtask: Architecture: {}, Depends: {}", built.architecture, built.depends);
            eprintln!("xtask: install it with: apt install {}", absolute(&built.path).display());
        }
    }
    Ok(())
}

fn report(paths: Vec<PathBuf>) {
    for path in paths {
        println!("{}", path.display());
    }
}

/// The workspace's target directory (CARGO_TARGET_DIR when set, as cargo does).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target"),
    }
}

fn workspace_root() -> PathBuf {
    // xtask/ sits at the top of the workspace.
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
}

/// `cargo build --release` of the two binaries (the profile the package ships).
fn build_release() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(workspace_root())
        .args(["build", "--release", "--locked", "--package", "upkg-tools", "--bin", "pkgrun", "--bin", "pkgbuild"])
        .status()
        .with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!("cargo build --release failed ({status})");
    }
    Ok(())
}

/// `path` made absolute, so `apt install` takes it as a file, not a package name.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
