//! What the two command-line tools share: presentation helpers (sizes, dates,
//! progress bars), output that survives a closed pipe, and how a command ends
//! (the `--json` document, error lines, the exit code). Argument parsing stays
//! in each binary; the work is done by the library crates.

mod output;
mod progress;
mod report;
mod text;

/// Numbers, sizes and times as people read them.
pub mod human {
    pub use crate::text::{bytes, count, thousands, utc};
}

pub use output::stdout_closed;
#[doc(hidden)] // Used by the `out!`, `outln!` and `errln!` macros.
pub use output::{stderr as write_stderr, stdout as write_stdout};
pub use progress::{Progress, Unit};
pub use report::{Finished, UsageError, command_line_error, print_error};
