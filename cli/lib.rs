//! What the two command-line tools share: presentation helpers (sizes, dates,
//! progress bars). Argument parsing stays in each binary; the work is done by the
//! library crates.

pub mod human;
pub mod output;
pub mod progress;
