//! Developer tasks of the workspace (the `xtask` convention): the man pages and the
//! bash, zsh and fish completions of `pkgrun` and `pkgbuild`, generated from their
//! real clap definitions, and the Debian package of the two tools.
//!
//! The clap structures are included from the binaries' own `args.rs` files (they
//! hold nothing but clap structures), so what is documented is exactly what the
//! binaries parse, and no generator code ends up in `pkgrun`, which is also the
//! stub inside every package and is built for size. Nothing generated is committed:
//! `cargo xtask man DIR`, `cargo xtask completions DIR` and `cargo xtask deb` make it.

pub mod completions;
pub mod deb;
mod error;
pub mod man;

pub use error::XtaskError;

/// `pkgrun`'s command line, included from its source.
#[path = "../../pkgrun/args.rs"]
pub mod pkgrun_args;

/// `pkgbuild`'s command line, included from its source.
#[path = "../../pkgbuild/args.rs"]
pub mod pkgbuild_args;

use clap::CommandFactory as _;

/// The two tools of the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// The runner and stub.
    Pkgrun,
    /// The builder.
    Pkgbuild,
}

impl Tool {
    /// Both tools.
    pub const ALL: [Tool; 2] = [Tool::Pkgrun, Tool::Pkgbuild];

    /// The executable's name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Pkgrun => "pkgrun",
            Tool::Pkgbuild => "pkgbuild",
        }
    }

    /// The tool's clap command, as its binary builds it.
    pub fn command(self) -> clap::Command {
        match self {
            Tool::Pkgrun => pkgrun_args::Cli::command(),
            Tool::Pkgbuild => pkgbuild_args::Cli::command(),
        }
    }
}
