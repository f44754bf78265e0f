//! Failpoints for the crash tests: with `PKGRUN_FAILPOINT=N` in the environment,
//! the process kills itself with SIGKILL at the N-th journal point it reaches, as
//! a power cut or `kill -9` would stop it. With `PKGRUN_FAILPOINT=list`, every
//! point reached is printed on standard error. Unset, a failpoint costs one
//! atomic increment.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

static REACHED: AtomicUsize = AtomicUsize::new(0);

enum Mode {
    Off,
    List,
    KillAt(usize),
}

fn mode() -> &'static Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    MODE.get_or_init(|| match std::env::var("PKGRUN_FAILPOINT") {
        Ok(value) if value == "list" => Mode::List,
        Ok(value) => value.parse().map_or(Mode::Off, Mode::KillAt),
        Err(_) => Mode::Off,
    })
}

/// A journal point named `name`.
pub fn point(name: &str) {
    let count = REACHED.fetch_add(1, Ordering::SeqCst) + 1;
    match mode() {
        Mode::Off => {}
        Mode::List => eprintln!("failpoint {count}: {name}"),
        Mode::KillAt(n) if *n == count => {
            eprintln!("failpoint {count}: {name}: killing the process");
            let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
            // SIGKILL cannot be caught; this is never reached.
            std::process::abort();
        }
        Mode::KillAt(_) => {}
    }
}
