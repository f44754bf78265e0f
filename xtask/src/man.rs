//! Man pages (section 1) rendered from the clap definitions with `clap_mangen`:
//! one page for each tool and one for each of its subcommands (`pkgrun-status.1`).

use std::path::Path;

use crate::{Tool, XtaskError};

/// One rendered man page.
#[derive(Debug, Clone)]
pub struct ManPage {
    /// The file name, like `pkgrun-status.1`.
    pub file_name: String,
    /// The page in roff.
    pub roff: Vec<u8>,
}

/// The pages of `tool`: its own, then one for every visible subcommand (recursively).
pub fn pages(tool: Tool) -> Vec<ManPage> {
    // As clap_mangen::generate_to: the `help` subcommand gets no page, and building
    // the command first gives subcommands their display names (`pkgrun-status`).
    let mut command = tool.command().disable_help_subcommand(true);
    command.build();
    let mut pages = Vec::new();
    collect(command, &mut pages);
    pages
}

fn collect(command: clap::Command, pages: &mut Vec<ManPage>) {
    let version = command.get_version().unwrap_or_default().to_owned();
    let subcommands: Vec<clap::Command> = command.get_subcommands().filter(|s| !s.is_hide_set()).cloned().collect();
    let man = clap_mangen::Man::new(command).manual("upkg tools").source(format!("upkg-tools {version}"));
    let mut roff = Vec::new();
    // Rendering into memory has no I/O that could fail.
    man.render(&mut roff).expect("rendering a man page into memory cannot fail");
    pages.push(ManPage { file_name: man.get_filename(), roff });
    for subcommand in subcommands {
        collect(subcommand, pages);
    }
}

/// Writes the pages of both tools into `dir` (created when missing), uncompressed;
/// returns their paths.
pub fn write_all(dir: &Path) -> Result<Vec<std::path::PathBuf>, XtaskError> {
    std::fs::create_dir_all(dir).map_err(|e| XtaskError::io(dir, e))?;
    let mut written = Vec::new();
    for tool in Tool::ALL {
        for page in pages(tool) {
            let path = dir.join(&page.file_name);
            std::fs::write(&path, &page.roff).map_err(|e| XtaskError::io(&path, e))?;
            written.push(path);
        }
    }
    Ok(written)
}
