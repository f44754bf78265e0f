//! Running the package's scripts and service commands: documented environment,
//! the target as working directory, a timeout, output captured line by line into
//! the attempt log, and cancellation (Ctrl-C) honoured.
//!
//! Each child runs in its own process group, so a timeout or a cancellation kills
//! the script together with everything it started.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use upkg_format::header::Service;

use crate::log::AttemptLog;

/// Why a command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFailure {
    /// It could not be started.
    Spawn(String),
    /// It exited with a non-zero status or was killed by a signal.
    Status(String),
    /// It ran longer than the timeout and was killed.
    Timeout(u64),
    /// The operation was cancelled while it ran; it was killed.
    Cancelled,
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunFailure::Spawn(e) => write!(f, "it could not be started: {e}"),
            RunFailure::Status(s) => write!(f, "it {s}"),
            RunFailure::Timeout(secs) => write!(f, "it was still running after {secs} s and was killed"),
            RunFailure::Cancelled => f.write_str("it was stopped because the operation was cancelled"),
        }
    }
}

/// Runs `command` (already given its program and arguments) in `cwd` with `env`,
/// logging its output prefixed by `label`.
pub fn run(
    mut command: Command,
    label: &str,
    cwd: &Path,
    env: &[(String, String)],
    timeout_secs: u64,
    log: &mut AttemptLog,
    cancel: &AtomicBool,
) -> Result<(), RunFailure> {
    command
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn().map_err(|e| RunFailure::Spawn(e.to_string()))?;
    let pid = child.id();
    let (sender, lines) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                match line {
                    Ok(line) => {
                        if sender.send(line).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        })
    })
    .collect();
    drop(sender);

    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let kill_group = || {
        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    };
    let mut failure = None;
    let status = loop {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(20)) {
            log.line(&format!("{label}| {line}"));
        }
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => {
                failure = Some(RunFailure::Status(format!("could not be waited for: {e}")));
                break None;
            }
        }
        if cancel.load(Ordering::SeqCst) {
            kill_group();
            failure = Some(RunFailure::Cancelled);
            let _ = child.wait();
            break None;
        }
        if Instant::now() >= deadline {
            kill_group();
            failure = Some(RunFailure::Timeout(timeout_secs));
            let _ = child.wait();
            break None;
        }
    };
    // The rest of the output. A daemon started by a service command may keep the
    // pipes open for ever: stop listening after a short quiet spell, leaving the
    // reader threads to end with the pipes.
    drop(readers);
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
        log.line(&format!("{label}| {line}"));
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    let status = status.expect("exited");
    if status.success() {
        return Ok(());
    }
    Err(RunFailure::Status(match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "failed".to_owned(),
    }))
}

/// Runs a package script.
pub fn script(
    path: &Path,
    phase: &str,
    target: &Path,
    env: &[(String, String)],
    timeout_secs: u64,
    log: &mut AttemptLog,
    cancel: &AtomicBool,
) -> Result<(), RunFailure> {
    log.line(&format!("running the {phase} script"));
    let mut env = env.to_vec();
    env.push(("PKGRUN_PHASE".into(), phase.into()));
    let result = run(Command::new(path), phase, target, &env, timeout_secs, log, cancel);
    match &result {
        Ok(()) => log.line(&format!("the {phase} script succeeded")),
        Err(failure) => log.line(&format!("the {phase} script failed: {failure}")),
    }
    result
}

/// Stops or starts a service (`verb` is `stop` or `start`).
pub fn service(
    service: &Service,
    verb: &str,
    target: &Path,
    env: &[(String, String)],
    timeout_secs: u64,
    log: &mut AttemptLog,
    cancel: &AtomicBool,
) -> Result<(), RunFailure> {
    let command = match (&service.unit, verb) {
        (Some(unit), _) => {
            let mut command = Command::new("systemctl");
            command.arg(verb).arg(unit);
            command
        }
        (None, "stop") => shell(service.stop.as_deref().unwrap_or("true")),
        (None, _) => shell(service.start.as_deref().unwrap_or("true")),
    };
    log.line(&format!("{verb} service {}", service.name));
    let label = format!("{verb} {}", service.name);
    let result = run(command, &label, target, env, timeout_secs, log, cancel);
    if let Err(failure) = &result {
        log.line(&format!("could not {verb} service {}: {failure}", service.name));
    }
    result
}

fn shell(text: &str) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(text);
    command
}
