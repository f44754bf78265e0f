//! Writing to standard output and standard error without ever stopping the
//! program on a closed pipe. `println!` panics when the reader has gone (`pkgrun
//! PKG --list | head`), and a panic aborts: in the middle of an install that would
//! be a kill. Here a broken standard output ends all further output quietly, as in
//! ripgrep, and the program goes on to its own exit code; errors writing to
//! standard error are ignored (there is nowhere left to report them).

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes to standard output, unless its reader has gone.
pub fn stdout(args: fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(error) = out.write_fmt(args).and_then(|()| out.flush()) {
        closed(error);
    }
}

/// Writes to standard output through `write` (buffered: a large document is
/// streamed, not built whole in memory first), unless its reader has gone.
pub fn stdout_with(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    if let Err(error) = write(&mut out).and_then(|()| out.flush()) {
        closed(error);
    }
}

fn closed(error: std::io::Error) {
    if error.kind() != ErrorKind::BrokenPipe {
        // Another error (a full disk behind a redirection) is not quiet.
        let _ = writeln!(std::io::stderr(), "error: writing to standard output: {error}");
    }
    STDOUT_CLOSED.store(true, Ordering::Relaxed);
}

/// Whether standard output's reader has gone (or writing to it failed).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Writes to standard error, ignoring errors.
pub fn stderr(args: fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// `print!` that survives a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::write_stdout(format_args!($($arg)*)) };
}

/// `println!` that survives a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!` that survives a closed pipe.
#[macro_export]
macro_rules! errln {
    () => { $crate::write_stderr(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::write_stderr(format_args!("{}\n", format_args!($($arg)*))) };
}
