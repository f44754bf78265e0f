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
    log: &mut dyn FnMut(&str),
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
            log(&format!("{label}| {line}"));
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
        log(&format!("{label}| {line}"));
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
    role: &str,
    target: &Path,
    env: &[(String, String)],
    timeout_secs: u64,
    log: &mut dyn FnMut(&str),
    cancel: &AtomicBool,
) -> Result<(), RunFailure> {
    log(&format!("running the {role} script"));
    let mut env = env.to_vec();
    env.push(("PKGRUN_PHASE".into(), role.into()));
    let result = run(Command::new(path), role, target, &env, timeout_secs, log, cancel);
    match &result {
        Ok(()) => log(&format!("the {role} script succeeded")),
        Err(failure) => log(&format!("the {role} script failed: {failure}")),
    }
    result
}

/// What a service command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceVerb {
    /// Stop it.
    Stop,
    /// Start it.
    Start,
}

impl ServiceVerb {
    fn name(self) -> &'static str {
        match self {
            ServiceVerb::Stop => "stop",
            ServiceVerb::Start => "start",
        }
    }
}

/// Whether a service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    /// It runs.
    Running,
    /// It does not.
    Stopped,
    /// Nobody can tell (no status command).
    Unknown,
}

/// Stops or starts a service.
pub fn service(
    service: &Service,
    verb: ServiceVerb,
    target: &Path,
    env: &[(String, String)],
    timeout_secs: u64,
    log: &mut dyn FnMut(&str),
    cancel: &AtomicBool,
) -> Result<(), RunFailure> {
    let verb_name = verb.name();
    let command = match (&service.unit, verb) {
        (Some(unit), _) => {
            let mut command = Command::new("systemctl");
            command.arg(verb_name).arg(unit);
            command
        }
        (None, ServiceVerb::Stop) => shell(service.stop.as_deref().unwrap_or("true")),
        (None, ServiceVerb::Start) => shell(service.start.as_deref().unwrap_or("true")),
    };
    log(&format!("{verb_name} service {}", service.name));
    let label = format!("{verb_name} {}", service.name);
    let result = run(command, &label, target, env, timeout_secs, log, cancel);
    if let Err(failure) = &result {
        log(&format!("could not {verb_name} service {}: {failure}", service.name));
    }
    result
}

/// Whether `service` runs: `systemctl is-active` for a unit, its `status` command
/// otherwise (exit 0: running), `Unknown` without one.
pub fn service_state(
    service: &Service,
    status: Option<&str>,
    target: &Path,
    env: &[(String, String)],
    timeout_secs: u64,
    log: &mut dyn FnMut(&str),
) -> ServiceState {
    let command = match (&service.unit, status) {
        (Some(unit), _) => {
            let mut command = Command::new("systemctl");
            command.args(["is-active", "--quiet"]).arg(unit);
            command
        }
        (None, Some(status)) => shell(status),
        (None, None) => return ServiceState::Unknown,
    };
    let never = AtomicBool::new(false);
    let label = format!("status {}", service.name);
    match run(command, &label, target, env, timeout_secs, log, &never) {
        Ok(()) => ServiceState::Running,
        Err(RunFailure::Status(_)) => ServiceState::Stopped,
        Err(_) => ServiceState::Unknown,
    }
}

/// Kills every process whose environment holds `PKGRUN_TRANSACTION=<txid>` (the
/// scripts of that transaction and what they started), and waits until they are gone.
pub fn kill_transaction_processes(txid: &str, timeout: Duration) -> std::io::Result<usize> {
    let marker = format!("PKGRUN_TRANSACTION={txid}");
    let own = std::process::id();
    let find = || -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
            .filter(|&pid| pid as u32 != own)
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|entry| entry == marker.as_bytes()))
            })
            .collect()
    };
    let deadline = Instant::now() + timeout;
    let mut killed = 0;
    loop {
        let found = find();
        if found.is_empty() {
            return Ok(killed);
        }
        for pid in &found {
            if let Some(pid) = rustix::process::Pid::from_raw(*pid) {
                if rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok() {
                    killed += 1;
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(std::io::Error::other(format!(
                "{} processes of transaction {txid} survived SIGKILL",
                found.len()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn shell(text: &str) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(text);
    command
}
