//! Shell completion scripts generated from the clap definitions with `clap_complete`.

use std::path::{Path, PathBuf};

use crate::{Tool, XtaskError};

/// The shells completions are made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// GNU bash (with or without the bash-completion package).
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

impl Shell {
    /// Every shell.
    pub const ALL: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

    /// Where a Debian package installs `tool`'s completion for this shell, relative
    /// to the root: the directories each shell's Debian package searches by itself.
    pub fn install_path(self, tool: Tool) -> PathBuf {
        let name = tool.name();
        match self {
            Shell::Bash => format!("usr/share/bash-completion/completions/{name}"),
            Shell::Zsh => format!("usr/share/zsh/vendor-completions/_{name}"),
            Shell::Fish => format!("usr/share/fish/vendor_completions.d/{name}.fish"),
        }
        .into()
    }

    /// The file name the script gets in a plain output directory.
    pub fn file_name(self, tool: Tool) -> String {
        let name = tool.name();
        match self {
            Shell::Bash => format!("{name}.bash"),
            Shell::Zsh => format!("_{name}"),
            Shell::Fish => format!("{name}.fish"),
        }
    }

    fn generator(self) -> clap_complete::Shell {
        match self {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// `tool`'s completion script for `shell`.
pub fn script(tool: Tool, shell: Shell) -> Vec<u8> {
    let mut command = tool.command();
    let mut script = Vec::new();
    clap_complete::generate(shell.generator(), &mut command, tool.name(), &mut script);
    script
}

/// Writes every tool's completion for every shell into `dir` (created when missing),
/// named `pkgrun.bash`, `_pkgrun`, `pkgrun.fish`, ...; returns their paths.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>, XtaskError> {
    std::fs::create_dir_all(dir).map_err(|e| XtaskError::io(dir, e))?;
    let mut written = Vec::new();
    for tool in Tool::ALL {
        for shell in Shell::ALL {
            let path = dir.join(shell.file_name(tool));
            std::fs::write(&path, script(tool, shell)).map_err(|e| XtaskError::io(&path, e))?;
            written.push(path);
        }
    }
    Ok(written)
}
