//! Running the package's scripts and service commands: documented environment,
//! the target as working directory, a timeout, output captured line by line into
//! a line sink (the attempt log), and cancellation (Ctrl-C) honoured.
//!
//! This module depends on nothing else in the crate: callers pass plain data
//! ([`RunOptions`]) and a sink `&mut dyn FnMut(&str)` for the log lines.
//!
//! # Scripts run under a supervisor
//!
//! A package script must never outlive the transaction that ran it: a script
//! still running while a later run rolls the transaction back could, say, leave a
//! database schema at the new version over rolled-back binaries. So [`script`]
//! does not start the script itself but a supervisor: a re-execution of the
//! calling executable (`/proc/self/exe`, which is also right for a self-extracting
//! package) with the internal arguments
//!
//! ```text
//! __supervise-script PARENT_PID -- PROGRAM ARGS...
//! ```
//!
//! which the executable must hand to [`supervise`] before parsing its command
//! line (`pkgrun` does so first thing in `main`). The supervisor:
//!
//! 1. is started as the leader of a new process group (and makes itself one if
//!    not: its group is killed at the end); it handles SIGTERM,
//!    SIGINT and SIGHUP (stop requests) and SIGCHLD;
//! 2. sets its parent-death signal to SIGTERM, then checks that its parent is
//!    still `PARENT_PID`, and exits at once (having started nothing) if not;
//! 3. makes itself a child subreaper, so that every process the script orphans,
//!    including those that called `setsid`, is reparented to it;
//! 4. starts `PROGRAM ARGS...` in its own process group, with the environment,
//!    working directory and standard streams it was given, and waits for it;
//! 5. when the script exits, or on a stop request (pkgrun's timeout or
//!    cancellation, or pkgrun's death), SIGKILLs every process left in its
//!    process group or descended from it (found through `/proc`), again and
//!    again until none is left, reaping them; it reports the ones it killed on
//!    standard error, on lines starting with [`SUPERVISOR_PREFIX`], which end up
//!    in the log with the script's output;
//! 6. exits with the script's exit code, or kills itself with the signal that
//!    killed the script (without a core dump), so the caller sees "killed by
//!    signal N"; after a stop request it kills itself with SIGTERM. If it could
//!    not start the script it writes `[pkgrun supervisor] could not start the
//!    script: REASON` and exits with status [`SUPERVISOR_FAILED`] (127).
//!
//! On a timeout or cancellation the caller SIGTERMs the supervisor and, should
//! it not have exited after a grace period, SIGKILLs its process group.
//!
//! The parent-death signal fires when the *thread* that started the supervisor
//! ends, so [`script`] must be called from a thread that outlives the script (the
//! transaction's own thread does).
//!
//! Every script's environment also carries `PKGRUN_TRANSACTION=<transaction
//! id>`, inherited by everything it starts: [`kill_transaction_processes`] finds
//! them by it, so that a later run's recovery never runs alongside a script of
//! the transaction it recovers (should a supervisor have died with its pkgrun).
//!
//! # Service commands are not supervised
//!
//! A start command starts a daemon that must outlive pkgrun, so service commands
//! run directly, each in its own process group (killed as a whole on timeout or
//! cancellation), without the transaction marker.
//!
//! # Output capture
//!
//! The caller waits with `poll` on both pipes and a pidfd of the child (or, where
//! pidfds are missing, a short poll timeout and `try_wait`). Once the child has
//! exited, what it wrote is already in the pipes: it is read without blocking and
//! capture stops, since a daemon started by a service command may hold the pipes
//! open for ever. Lines go to the sink as `LABEL| line`; a last line without a
//! newline is kept, a line longer than [`MAX_LINE`] bytes is passed on in pieces,
//! and invalid UTF-8 is shown lossily.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions, WaitStatus};
use upkg_format::Service;

/// The hidden first argument that makes the executable act as a script supervisor
/// (see [`supervise`]). Internal: not a command for people.
pub const SUPERVISE_ARG: &str = "__supervise-script";

/// The environment variable naming the transaction a script belongs to; every
/// process the script starts inherits it (see [`kill_transaction_processes`]).
pub const TRANSACTION_VAR: &str = "PKGRUN_TRANSACTION";

/// How the supervisor's own lines on standard error begin, telling them apart
/// from the script's output in the log.
pub const SUPERVISOR_PREFIX: &str = "[pkgrun supervisor] ";

/// The supervisor's exit status when it could not start the script (the reason
/// is on its standard error: `[pkgrun supervisor] could not start the script: REASON`).
pub const SUPERVISOR_FAILED: u8 = 127;

/// Follows [`SUPERVISOR_PREFIX`] on the line saying why the script could not be started.
const SPAWN_FAILED: &str = "could not start the script: ";

/// The executable re-run as the supervisor: the running one, even if its file was
/// replaced or removed since.
const SUPERVISOR_EXE: &str = "/proc/self/exe";

/// A longer line is passed on in pieces of at most this many bytes.
pub const MAX_LINE: usize = 16 * 1024;

/// How long a supervisor asked to stop may take before its process group is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often the cancellation flag is looked at (a signal handler sets it, on
/// whatever thread, so it cannot be waited for).
const CANCEL_TICK: Duration = Duration::from_millis(100);

/// Without a pidfd, how often the child is checked for having exited.
const FALLBACK_TICK: Duration = Duration::from_millis(10);

/// Bytes read from a pipe in one go.
const READ_CHUNK: usize = 64 * 1024;

/// At most this much is read from one pipe per wake-up, so that a flood of output
/// does not keep the timeout or the cancellation from being noticed.
const WAKE_BUDGET: usize = 1024 * 1024;

/// At most this much is read from one pipe once the child has exited: what it
/// wrote before exiting (a pipe holds 64 KiB by default, 1 MiB at most for an
/// unprivileged process), not what a daemon keeps writing.
const DRAIN_BUDGET: usize = 1024 * 1024;

/// Why a command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFailure {
    /// It could not be started.
    Spawn(String),
    /// It exited with a non-zero status or was killed by a signal.
    Status(String),
    /// It ran longer than the timeout and was killed.
    Timeout(Duration),
    /// The operation was cancelled while it ran; it was killed.
    Cancelled,
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunFailure::Spawn(e) => write!(f, "it could not be started: {e}"),
            RunFailure::Status(s) => write!(f, "it {s}"),
            RunFailure::Timeout(timeout) if timeout.subsec_nanos() == 0 => {
                write!(f, "it was still running after {} s and was killed", timeout.as_secs())
            }
            RunFailure::Timeout(timeout) => {
                write!(f, "it was still running after {:.1} s and was killed", timeout.as_secs_f64())
            }
            RunFailure::Cancelled => f.write_str("it was stopped because the operation was cancelled"),
        }
    }
}

/// Where and how a command runs.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions<'a> {
    /// The working directory (the target).
    pub cwd: &'a Path,
    /// Variables added to the caller's environment.
    pub env: &'a [(String, String)],
    /// The command (with everything it started, for a script) is killed after this long.
    pub timeout: Duration,
    /// Set (by a Ctrl-C handler) to stop the command; it then fails with [`RunFailure::Cancelled`].
    pub cancel: &'a AtomicBool,
}

/// What a service command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceVerb {
    /// `systemctl stop UNIT`, or the service's `stop` command.
    Stop,
    /// `systemctl start UNIT`, or the service's `start` command.
    Start,
}

impl ServiceVerb {
    /// `stop` or `start`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceVerb::Stop => "stop",
            ServiceVerb::Start => "start",
        }
    }
}

impl std::fmt::Display for ServiceVerb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a service runs, as far as can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    /// The unit is active, or the status command exited 0.
    Running,
    /// The unit is not active, or the status command exited non-zero.
    Stopped,
    /// It cannot be told: no systemd, no status command, or the query itself failed.
    Unknown,
}

/// Runs `command` (already given its program and arguments) directly, in a
/// process group of its own, sending its output to `sink` as `LABEL| line`. On
/// a timeout or a cancellation the whole process group is killed. Processes it
/// leaves running when it exits are left alone (a service's daemon).
pub fn run(
    command: Command,
    label: &str,
    options: &RunOptions<'_>,
    sink: &mut dyn FnMut(&str),
) -> Result<(), RunFailure> {
    run_status(command, label, options, sink).and_then(check_status)
}

/// Runs a package script under a supervisor (see the module documentation), with
/// `PKGRUN_PHASE` set to `phase` and `PKGRUN_TRANSACTION` to `transaction`. Logs
/// its start and outcome to `sink` too.
pub fn script(
    path: &Path,
    phase: &str,
    transaction: &str,
    options: &RunOptions<'_>,
    sink: &mut dyn FnMut(&str),
) -> Result<(), RunFailure> {
    sink(&format!("running the {phase} script"));
    let result = supervised(path, phase, transaction, options, sink);
    match &result {
        Ok(()) => sink(&format!("the {phase} script succeeded")),
        Err(failure) => sink(&format!("the {phase} script failed: {failure}")),
    }
    result
}

/// Stops or starts a service: `systemctl stop|start UNIT` for a systemd unit,
/// otherwise its `stop` or `start` shell command (none: nothing to do). Not
/// supervised: a daemon the start command leaves running is meant to stay.
pub fn service(
    service: &Service,
    verb: ServiceVerb,
    options: &RunOptions<'_>,
    sink: &mut dyn FnMut(&str),
) -> Result<(), RunFailure> {
    let command = match (&service.unit, verb) {
        (Some(unit), _) => {
            let mut command = Command::new("systemctl");
            command.arg(verb.as_str()).arg(unit);
            command
        }
        (None, ServiceVerb::Stop) => shell(service.stop.as_deref().unwrap_or("true")),
        (None, ServiceVerb::Start) => shell(service.start.as_deref().unwrap_or("true")),
    };
    sink(&format!("{verb} service {}", service.name));
    let label = format!("{verb} {}", service.name);
    let result = run(command, &label, options, sink);
    if let Err(failure) = &result {
        sink(&format!("could not {verb} service {}: {failure}", service.name));
    }
    result
}

/// Why systemd unit `unit` cannot be stopped and started on this machine, if it
/// cannot: systemd does not run, `systemctl` is missing, or the unit does not
/// exist or is masked (`systemctl show --property=LoadState`).
pub(crate) fn unit_problem(unit: &str) -> Option<String> {
    let output = Command::new("systemctl")
        .args(["show", "--property=LoadState", "--value", "--"])
        .arg(unit)
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => return Some(format!("systemd unit {unit}: systemctl cannot be run ({e})")),
    };
    if !output.status.success() {
        let why = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Some(format!("systemd unit {unit}: systemctl cannot query it: {why}"));
    }
    match String::from_utf8_lossy(&output.stdout).trim() {
        "not-found" => Some(format!("systemd unit {unit} does not exist on this machine")),
        "masked" => Some(format!("systemd unit {unit} is masked: it cannot be started (systemctl unmask {unit})")),
        _ => None,
    }
}

/// Whether `service` runs. A systemd unit is asked with `systemctl is-active
/// --quiet UNIT` (exit 0: running; other: stopped), and is [`ServiceState::Unknown`]
/// where systemd does not run or `systemctl` cannot be started. A command-style
/// service is asked with `status_command`, through `/bin/sh` (exit 0: running;
/// other: stopped); without one it is unknown. A query that times out or is
/// killed by a signal is unknown too. Its output goes to `sink`.
pub fn service_state(
    service: &Service,
    status_command: Option<&str>,
    cwd: &Path,
    env: &[(String, String)],
    timeout: Duration,
    sink: &mut dyn FnMut(&str),
) -> ServiceState {
    let command = match (&service.unit, status_command) {
        (Some(unit), _) => {
            // sd_booted(3): without it, systemctl answers "inactive" for every unit.
            if !Path::new("/run/systemd/system").is_dir() {
                return ServiceState::Unknown;
            }
            let mut command = Command::new("systemctl");
            command.args(["is-active", "--quiet"]).arg(unit);
            command
        }
        (None, Some(status)) => shell(status),
        (None, None) => return ServiceState::Unknown,
    };
    let never = AtomicBool::new(false);
    let options = RunOptions { cwd, env, timeout, cancel: &never };
    let label = format!("status {}", service.name);
    match run_status(command, &label, &options, sink) {
        Ok(status) if status.success() => ServiceState::Running,
        Ok(status) if status.code().is_some() => ServiceState::Stopped,
        Ok(_) | Err(_) => ServiceState::Unknown,
    }
}

/// SIGKILLs every process whose environment holds exactly
/// `PKGRUN_TRANSACTION=<txid>` (what the scripts of transaction `txid` and
/// everything they started inherited), together with their process groups when
/// the group's leader carries the marker too or is gone, and waits until none
/// is left. Returns how many marked processes were killed. Processes that cannot
/// be inspected (another user's) are skipped; the calling process is never
/// killed. An error if `/proc` cannot be read or if marked processes are still
/// alive after `timeout`.
pub fn kill_transaction_processes(txid: &str, timeout: Duration) -> io::Result<usize> {
    let marker = format!("{TRANSACTION_VAR}={txid}").into_bytes();
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let own_group = rustix::process::getpgrp().as_raw_nonzero().get();
    let deadline = Instant::now() + timeout;
    let mut killed = BTreeSet::new();
    loop {
        let table = process_table()?;
        let marked: Vec<&Proc> =
            table.iter().filter(|p| p.pid != me && p.alive() && environ_holds(p.pid, &marker)).collect();
        if marked.is_empty() {
            return Ok(killed.len());
        }
        if Instant::now() >= deadline {
            let pids: Vec<String> = marked.iter().map(|p| p.describe()).collect();
            return Err(io::Error::other(format!(
                "{} process(es) of transaction {txid} still running after SIGKILL: {}",
                marked.len(),
                pids.join(", ")
            )));
        }
        let marked_pids: HashSet<i32> = marked.iter().map(|p| p.pid).collect();
        let all_pids: HashSet<i32> = table.iter().map(|p| p.pid).collect();
        // A group is killed only if its leader is marked too or gone: then its
        // members are the script's (even those that cleared their environment).
        let groups: BTreeSet<i32> = marked
            .iter()
            .map(|p| p.pgrp)
            .filter(|&g| g > 1 && g != own_group && (marked_pids.contains(&g) || !all_pids.contains(&g)))
            .collect();
        for group in groups {
            if let Some(group) = Pid::from_raw(group) {
                let _ = rustix::process::kill_process_group(group, Signal::KILL);
            }
        }
        for p in &marked {
            if let Some(pid) = Pid::from_raw(p.pid) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
            killed.insert(p.pid);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn shell(text: &str) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(text);
    command
}

/// How a child is stopped on a timeout or a cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGKILL its process group (a command run directly).
    KillGroup,
    /// SIGTERM the supervisor, which kills the script and everything it started;
    /// SIGKILL its process group if it is still there after [`STOP_GRACE`].
    Supervisor,
}

/// [`run`], returning the exit status.
fn run_status(
    mut command: Command,
    label: &str,
    options: &RunOptions<'_>,
    sink: &mut dyn FnMut(&str),
) -> Result<ExitStatus, RunFailure> {
    command
        .current_dir(options.cwd)
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn().map_err(|e| RunFailure::Spawn(e.to_string()))?;
    let mut output = Output { label, sink, supervisor_error: None };
    watch(&mut child, options, Stop::KillGroup, &mut output)
}

/// Runs the script at `path` under a supervisor.
fn supervised(
    path: &Path,
    phase: &str,
    transaction: &str,
    options: &RunOptions<'_>,
    sink: &mut dyn FnMut(&str),
) -> Result<(), RunFailure> {
    let mut command = Command::new(SUPERVISOR_EXE);
    command
        .arg0("pkgrun")
        .arg(SUPERVISE_ARG)
        .arg(std::process::id().to_string())
        .arg("--")
        .arg(path)
        .current_dir(options.cwd)
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .env("PKGRUN_PHASE", phase)
        .env(TRANSACTION_VAR, transaction)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn().map_err(|e| RunFailure::Spawn(format!("the script supervisor: {e}")))?;
    let mut output = Output { label: phase, sink, supervisor_error: None };
    let result = watch(&mut child, options, Stop::Supervisor, &mut output);
    if !matches!(&result, Ok(status) if status.success()) {
        // The supervisor exits 0 only once it has killed everything. Otherwise it
        // may itself have been killed (by the grace period's end, the OOM killer,
        // someone), leaving the script's processes to run on during the rollback.
        match kill_transaction_processes(transaction, STOP_GRACE) {
            Ok(0) => {}
            Ok(n) => output.note(&format!("killed {n} process(es) of the script that outlived its supervisor")),
            Err(e) => output.note(&format!("could not kill what the script left running: {e}")),
        }
    }
    match result {
        Ok(status) if status.code() == Some(i32::from(SUPERVISOR_FAILED)) && output.supervisor_error.is_some() => {
            Err(RunFailure::Spawn(output.supervisor_error.unwrap_or_default()))
        }
        other => other.and_then(check_status),
    }
}

/// `Ok` for a zero exit status, the reason otherwise.
fn check_status(status: ExitStatus) -> Result<(), RunFailure> {
    if status.success() {
        return Ok(());
    }
    Err(RunFailure::Status(match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "failed".to_owned(),
    }))
}

/// Where captured lines go.
struct Output<'a> {
    label: &'a str,
    sink: &'a mut dyn FnMut(&str),
    /// The supervisor's report that it could not start the script, if seen.
    supervisor_error: Option<String>,
}

impl Output<'_> {
    /// A line of pkgrun's own about the command, beside its output.
    fn note(&mut self, text: &str) {
        (self.sink)(&format!("{}| {SUPERVISOR_PREFIX}{text}", self.label));
    }

    fn line(&mut self, bytes: &[u8], from_stderr: bool) {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let text = String::from_utf8_lossy(bytes);
        if from_stderr
            && self.supervisor_error.is_none()
            && let Some(reason) = text.strip_prefix(SUPERVISOR_PREFIX).and_then(|t| t.strip_prefix(SPAWN_FAILED))
        {
            self.supervisor_error = Some(reason.to_owned());
        }
        (self.sink)(&format!("{}| {text}", self.label));
    }
}

/// One of the child's output pipes and its incomplete last line.
struct Stream {
    /// `None` once it reached end of file.
    pipe: Option<File>,
    pending: Vec<u8>,
    stderr: bool,
}

impl Stream {
    fn new(pipe: Option<OwnedFd>, stderr: bool) -> Stream {
        let pipe = pipe.and_then(|fd| {
            // Non-blocking, so that reading what is there never waits for more.
            rustix::io::ioctl_fionbio(&fd, true).ok()?;
            Some(File::from(fd))
        });
        Stream { pipe, pending: Vec::new(), stderr }
    }

    /// Reads what the pipe holds now, up to about `budget` bytes, without waiting,
    /// and passes the complete lines on; at end of file, the last line too.
    fn read_available(&mut self, budget: usize, buffer: &mut [u8], output: &mut Output<'_>) {
        let mut total = 0;
        while total < budget {
            let Some(pipe) = &mut self.pipe else { return };
            match pipe.read(buffer) {
                Ok(0) => {
                    self.pipe = None;
                    self.finish(output);
                }
                Ok(n) => {
                    total += n;
                    self.push(&buffer[..n], output);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.pipe = None;
                    self.finish(output);
                }
            }
        }
    }

    /// Adds `bytes` and passes on every complete line, and pieces of an overlong one.
    fn push(&mut self, bytes: &[u8], output: &mut Output<'_>) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            if let Some(newline) = rest.iter().take(MAX_LINE + 1).position(|&b| b == b'\n') {
                output.line(&rest[..newline], self.stderr);
                start += newline + 1;
            } else if rest.len() > MAX_LINE {
                let cut = utf8_cut(rest, MAX_LINE);
                output.line(&rest[..cut], self.stderr);
                start += cut;
            } else {
                break;
            }
        }
        self.pending.drain(..start);
    }

    /// Passes on the last line, even without its newline.
    fn finish(&mut self, output: &mut Output<'_>) {
        if !self.pending.is_empty() {
            output.line(&self.pending, self.stderr);
            self.pending.clear();
        }
    }
}

/// Where to cut `bytes` (longer than `max`) at or a little before `max`, so as not
/// to split a UTF-8 sequence.
fn utf8_cut(bytes: &[u8], max: usize) -> usize {
    let is_continuation = |b: u8| b & 0xC0 == 0x80;
    (max.saturating_sub(3)..=max).rev().find(|&cut| cut > 0 && !is_continuation(bytes[cut])).unwrap_or(max)
}

/// Captures the child's output until it exits (see the module documentation),
/// stopping it on a timeout or a cancellation.
fn watch(
    child: &mut Child,
    options: &RunOptions<'_>,
    stop: Stop,
    output: &mut Output<'_>,
) -> Result<ExitStatus, RunFailure> {
    let pid = Pid::from_child(child);
    let mut streams = [
        Stream::new(child.stdout.take().map(OwnedFd::from), false),
        Stream::new(child.stderr.take().map(OwnedFd::from), true),
    ];
    let pidfd = open_pidfd(pid);
    let tick = if pidfd.is_some() { CANCEL_TICK } else { FALLBACK_TICK };
    let deadline = Instant::now().checked_add(options.timeout);
    let mut buffer = vec![0u8; READ_CHUNK];
    let mut stopped: Option<RunFailure> = None;
    let mut escalate_at: Option<Instant> = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                kill_group(pid);
                let _ = child.wait();
                return Err(RunFailure::Status(format!("could not be waited for: {e}")));
            }
        }
        let now = Instant::now();
        if stopped.is_none() {
            let reason = if options.cancel.load(Ordering::SeqCst) {
                Some(RunFailure::Cancelled)
            } else if deadline.is_some_and(|d| now >= d) {
                Some(RunFailure::Timeout(options.timeout))
            } else {
                None
            };
            if let Some(reason) = reason {
                match stop {
                    Stop::KillGroup => kill_group(pid),
                    Stop::Supervisor => {
                        let _ = rustix::process::kill_process(pid, Signal::TERM);
                        escalate_at = Some(now + STOP_GRACE);
                    }
                }
                stopped = Some(reason);
            }
        }
        if escalate_at.is_some_and(|t| now >= t) {
            kill_group(pid);
            escalate_at = None;
        }
        let mut wake = now + tick;
        if stopped.is_none()
            && let Some(deadline) = deadline
        {
            wake = wake.min(deadline);
        }
        if let Some(escalate_at) = escalate_at {
            wake = wake.min(escalate_at);
        }
        wait_readable(
            streams.iter().filter_map(|s| s.pipe.as_ref().map(|p| p.as_fd())).chain(pidfd.as_ref().map(|p| p.as_fd())),
            wake.saturating_duration_since(now),
        );
        // Reading a pipe with nothing in it costs one call that returns at once.
        for stream in &mut streams {
            stream.read_available(WAKE_BUDGET, &mut buffer, output);
        }
    };
    // The child has exited: everything it wrote is in the pipes. Read it, and do
    // not wait for whoever else holds the pipes (a daemon it started).
    for stream in &mut streams {
        stream.read_available(DRAIN_BUDGET, &mut buffer, output);
        stream.finish(output);
    }
    match stopped {
        Some(reason) => Err(reason),
        None => Ok(status),
    }
}

/// A pidfd of `pid`, readable once it has exited (Linux 5.3 and later).
fn open_pidfd(pid: Pid) -> Option<OwnedFd> {
    #[cfg(test)]
    if tests::WITHOUT_PIDFD.with(std::cell::Cell::get) {
        return None;
    }
    rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()
}

fn kill_group(pid: Pid) {
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
}

/// Waits until one of `fds` is readable (or hung up), or `timeout` has passed.
fn wait_readable<'a>(fds: impl Iterator<Item = std::os::fd::BorrowedFd<'a>>, timeout: Duration) {
    let fds: Vec<std::os::fd::BorrowedFd<'a>> = fds.collect();
    let mut poll_fds: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
    let timeout = Timespec::try_from(timeout).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
    match rustix::event::poll(&mut poll_fds, Some(&timeout)) {
        Ok(_) | Err(Errno::INTR) => {}
        // Should not happen; do not spin.
        Err(_) => std::thread::sleep(FALLBACK_TICK),
    }
}

// ---------------------------------------------------------------------------
// The supervisor process.

/// The supervisor's entry point: `args` are the arguments after
/// [`SUPERVISE_ARG`], that is `PARENT_PID -- PROGRAM ARGS...`. Runs the script
/// as described in the module documentation and ends the process the way the
/// script ended (its exit code, or its signal). Internal to pkgrun.
pub fn supervise(args: &[OsString]) -> ExitCode {
    let Some((parent, program, script_args)) = parse_supervisor_args(args) else {
        return supervisor_failed("the arguments are not PARENT_PID -- PROGRAM [ARGS...] (internal to pkgrun)");
    };
    // Stop requests set the flag; they and SIGCHLD wake the loops below.
    let stop = Arc::new(AtomicBool::new(false));
    let wake = match stop_and_child_signals(&stop) {
        Ok(wake) => wake,
        Err(e) => return supervisor_failed(&format!("installing the signal handlers: {e}")),
    };
    if let Err(e) = rustix::process::set_parent_process_death_signal(Some(Signal::TERM)) {
        return supervisor_failed(&format!("setting the parent-death signal: {e}"));
    }
    // pkgrun may have died before the line above: then nothing is started.
    if rustix::process::getppid() != Some(parent) {
        return supervisor_failed(&format!("pkgrun (pid {}) is gone", parent.as_raw_nonzero()));
    }
    // Its process group is killed at the end, so it must be its own: pkgrun starts
    // it so, but run by hand it would otherwise take its caller's group down.
    if rustix::process::getpgrp() != rustix::process::getpid()
        && let Err(e) = rustix::process::setpgid(None, None)
    {
        return supervisor_failed(&format!("leading a process group of its own: {e}"));
    }
    if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        return supervisor_failed(&format!("becoming a child subreaper: {e}"));
    }
    if stop.load(Ordering::SeqCst) {
        return supervisor_failed("asked to stop before the script started");
    }
    let child = match Command::new(program).args(script_args).spawn() {
        Ok(child) => child,
        Err(e) => return supervisor_failed(&e.to_string()),
    };
    let script = Pid::from_child(&child);
    // Reaped with wait() below, together with the orphans: never through `child`.
    drop(child);

    let mut script_status = None;
    loop {
        reap_children(script, &mut script_status);
        if script_status.is_some() || stop.load(Ordering::SeqCst) {
            break;
        }
        // Only a signal ends the wait early; the timeout is a safety net.
        wait_for_signal(&wake, Duration::from_secs(1));
    }
    let script_ended = script_status.is_some();
    let killed = kill_descendants(&wake, script, &mut script_status);
    let left: Vec<String> = killed
        .iter()
        .filter(|(pid, _)| **pid != script.as_raw_nonzero().get())
        .map(|(pid, comm)| format!("{pid} ({comm})"))
        .collect();
    let mut stderr = io::stderr().lock();
    match script_status {
        Some(status) if script_ended && !stop.load(Ordering::SeqCst) => {
            if !left.is_empty() {
                // Written after the killing: pkgrun may be gone and this fail.
                let _ = writeln!(
                    stderr,
                    "{SUPERVISOR_PREFIX}the script exited leaving {} process(es) running; killed: {}",
                    left.len(),
                    left.join(", ")
                );
            }
            drop(stderr);
            match (status.exit_status(), status.terminating_signal()) {
                (Some(code), _) => ExitCode::from(code as u8),
                (None, Some(signal)) => exit_by_signal(signal),
                _ => ExitCode::FAILURE,
            }
        }
        _ => {
            let mut victims = left;
            if !script_ended {
                victims.insert(0, "the script".to_owned());
            }
            if !victims.is_empty() {
                let _ = writeln!(stderr, "{SUPERVISOR_PREFIX}asked to stop: killed {}", victims.join(", "));
            }
            drop(stderr);
            exit_by_signal(signal_hook::consts::SIGTERM)
        }
    }
}

/// `PARENT_PID -- PROGRAM ARGS...`.
fn parse_supervisor_args(args: &[OsString]) -> Option<(Pid, &OsString, &[OsString])> {
    let [parent, separator, program, rest @ ..] = args else { return None };
    let parent = Pid::from_raw(parent.to_str()?.parse().ok()?)?;
    (separator == "--").then_some((parent, program, rest))
}

/// Reports that the script was not started, and the status saying so.
fn supervisor_failed(reason: &str) -> ExitCode {
    let _ = writeln!(io::stderr(), "{SUPERVISOR_PREFIX}{SPAWN_FAILED}{reason}");
    ExitCode::from(SUPERVISOR_FAILED)
}

/// Registers SIGTERM, SIGINT and SIGHUP to set `stop`, and those and SIGCHLD to
/// write to the returned socket (non-blocking), so a `poll` on it wakes up.
fn stop_and_child_signals(stop: &Arc<AtomicBool>) -> io::Result<UnixStream> {
    use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
    let (read, write) = UnixStream::pair()?;
    read.set_nonblocking(true)?;
    for signal in [SIGTERM, SIGINT, SIGHUP] {
        signal_hook::flag::register(signal, Arc::clone(stop))?;
    }
    for signal in [SIGTERM, SIGINT, SIGHUP, SIGCHLD] {
        signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
    }
    Ok(read)
}

/// Waits until a signal arrives (or `timeout`), then empties the wake-up socket.
fn wait_for_signal(wake: &UnixStream, timeout: Duration) {
    wait_readable(std::iter::once(wake.as_fd()), timeout);
    let mut buffer = [0u8; 64];
    while matches!((&*wake).read(&mut buffer), Ok(n) if n > 0) {}
}

/// Reaps every child that has exited, recording the script's status. Returns
/// whether children remain.
fn reap_children(script: Pid, script_status: &mut Option<WaitStatus>) -> bool {
    loop {
        // wait(), not waitpid(None): that is only the children in our process group.
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                if pid == script {
                    *script_status = Some(status);
                }
            }
            Ok(None) => return true,
            Err(Errno::INTR) => {}
            // ECHILD: none left.
            Err(_) => return false,
        }
    }
}

/// SIGKILLs every process of the supervisor's process group and every process
/// descended from it, until none is left, reaping them. Returns the processes
/// killed (pid, command name).
fn kill_descendants(wake: &UnixStream, script: Pid, script_status: &mut Option<WaitStatus>) -> BTreeMap<i32, String> {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let group = rustix::process::getpgrp().as_raw_nonzero().get();
    let mut killed = BTreeMap::new();
    // As a subreaper, every orphan of the tree becomes a child: no children left
    // means no descendants left.
    while reap_children(script, script_status) {
        // /proc was there to start this process (/proc/self/exe).
        let Ok(table) = process_table() else { break };
        let parents: HashMap<i32, i32> = table.iter().map(|p| (p.pid, p.ppid)).collect();
        for p in &table {
            if p.pid != me && p.alive() && (p.pgrp == group || descends_from(&parents, p.pid, me)) {
                if let Some(pid) = Pid::from_raw(p.pid) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
                killed.entry(p.pid).or_insert_with(|| p.comm.clone());
            }
        }
        // SIGCHLD wakes this up as soon as one of them can be reaped.
        wait_for_signal(wake, Duration::from_millis(50));
    }
    killed
}

/// Whether `pid`'s chain of parents leads to `ancestor`.
fn descends_from(parents: &HashMap<i32, i32>, pid: i32, ancestor: i32) -> bool {
    let mut current = pid;
    // Bounded: the table is a snapshot taken while processes come and go.
    for _ in 0..parents.len() {
        match parents.get(&current) {
            Some(&parent) if parent == ancestor => return true,
            Some(&parent) if parent > 1 => current = parent,
            _ => return false,
        }
    }
    false
}

/// Ends the process as if killed by `signal` (without a core dump), so that its
/// parent sees the same "killed by signal N" as the script's.
fn exit_by_signal(signal: i32) -> ExitCode {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let maximum = getrlimit(Resource::Core).maximum;
    let _ = setrlimit(Resource::Core, Rlimit { current: Some(0), maximum });
    let _ = signal_hook::low_level::emulate_default_handler(signal);
    // Still alive: a signal that does not terminate; the shell's convention.
    ExitCode::from(128u8.wrapping_add(signal as u8))
}

// ---------------------------------------------------------------------------
// /proc.

/// One process, from `/proc/PID/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proc {
    pid: i32,
    comm: String,
    state: char,
    ppid: i32,
    pgrp: i32,
}

impl Proc {
    /// Not a zombie (dead, waiting to be reaped) or dead.
    fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.pid, self.comm)
    }
}

/// Every process visible in `/proc` (processes that end while it is read are left out).
fn process_table() -> io::Result<Vec<Proc>> {
    let mut table = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read(entry.path().join("stat")) else { continue };
        if let Some(proc) = parse_stat(pid, &String::from_utf8_lossy(&stat)) {
            table.push(proc);
        }
    }
    Ok(table)
}

/// Parses `/proc/PID/stat`: `pid (comm) state ppid pgrp ...`, where comm may hold
/// spaces and parentheses (so the last `)` ends it).
fn parse_stat(pid: i32, text: &str) -> Option<Proc> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let mut fields = text.get(close + 1..)?.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Proc { pid, comm, state, ppid, pgrp })
}

/// Whether `/proc/PID/environ` holds exactly the entry `marker` (`NAME=value`).
/// Unreadable (another user's process, or gone): no.
fn environ_holds(pid: i32, marker: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| environ.split(|&b| b == 0).any(|e| e == marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Set: `watch` does without a pidfd, as on kernels before 5.3.
        pub(super) static WITHOUT_PIDFD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// The capture without pidfds: the same output, no waiting for a daemon, the timeout.
    #[test]
    fn capture_works_without_pidfds() {
        WITHOUT_PIDFD.with(|w| w.set(true));
        let (result, lines) = sh("seq 1 20000; printf partial", MINUTE, &never());
        assert_eq!(result, Ok(()));
        assert_eq!(lines.len(), 20001);
        assert_eq!(lines.last().map(|s| s.as_str()), Some("t| partial"));
        let started = Instant::now();
        let (result, lines) = sh("sleep 30 & echo \"pgid $$\"", MINUTE, &never());
        let elapsed = started.elapsed();
        assert_eq!(result, Ok(()));
        let pgid: i32 = lines[0].strip_prefix("t| pgid ").expect("the group").parse().expect("a pid");
        let _ = rustix::process::kill_process_group(Pid::from_raw(pgid).expect("pid"), Signal::KILL);
        assert!(elapsed < Duration::from_secs(20), "run waited for the daemon: {elapsed:?}");
        let (result, _) = sh("sleep 30", Duration::from_millis(200), &never());
        assert_eq!(result, Err(RunFailure::Timeout(Duration::from_millis(200))));
    }

    fn options<'a>(cwd: &'a Path, timeout: Duration, cancel: &'a AtomicBool) -> RunOptions<'a> {
        RunOptions { cwd, env: &[], timeout, cancel }
    }

    /// Runs `sh -c SCRIPT` with label `t`, returning the result and the lines.
    fn sh(script: &str, timeout: Duration, cancel: &AtomicBool) -> (Result<(), RunFailure>, Vec<String>) {
        let mut lines = Vec::new();
        let result =
            run(shell(script), "t", &options(Path::new("/"), timeout, cancel), &mut |l| lines.push(l.to_owned()));
        (result, lines)
    }

    fn never() -> AtomicBool {
        AtomicBool::new(false)
    }

    const MINUTE: Duration = Duration::from_secs(60);

    /// A service as the header declares it (through serde, so that fields added
    /// to the header with defaults do not break these tests).
    fn service_from(json: serde_json::Value) -> Service {
        serde_json::from_value(json).expect("a service")
    }

    #[test]
    fn lines_from_both_streams_and_a_partial_last_line_are_kept() {
        let (result, mut lines) = sh("printf 'one\\ntwo\\r\\nthree'; printf 'err\\nlast' >&2", MINUTE, &never());
        assert_eq!(result, Ok(()));
        lines.sort();
        assert_eq!(lines, ["t| err", "t| last", "t| one", "t| three", "t| two"]);
    }

    /// Everything written just before exiting is read, though the exit may be
    /// noticed before the reading is done.
    #[test]
    fn output_written_right_before_exit_is_not_lost() {
        let (result, lines) = sh("seq 1 20000; echo done >&2", MINUTE, &never());
        assert_eq!(result, Ok(()));
        let stdout: Vec<&String> = lines.iter().filter(|l| *l != "t| done").collect();
        assert_eq!(stdout.len(), 20000);
        assert_eq!(stdout.first().map(|s| s.as_str()), Some("t| 1"));
        assert_eq!(stdout.last().map(|s| s.as_str()), Some("t| 20000"));
        assert!(lines.contains(&"t| done".to_owned()));
    }

    /// Regression: a daemon holding the pipes open kept `run` waiting (a quiet spell, or for ever).
    #[test]
    fn a_daemon_holding_the_pipes_does_not_keep_run_waiting() {
        let started = Instant::now();
        let (result, lines) = sh("sleep 30 & echo \"pgid $$\"", MINUTE, &never());
        let elapsed = started.elapsed();
        assert_eq!(result, Ok(()));
        let pgid: i32 = lines[0].strip_prefix("t| pgid ").expect("the group").parse().expect("a pid");
        let _ = rustix::process::kill_process_group(Pid::from_raw(pgid).expect("pid"), Signal::KILL);
        // Not a performance assertion: the daemon sleeps 30 s.
        assert!(elapsed < Duration::from_secs(20), "run waited for the daemon: {elapsed:?}");
    }

    #[test]
    fn long_lines_come_in_pieces_and_invalid_utf8_is_shown_lossily() {
        let (result, lines) = sh("head -c 40000 /dev/zero | tr '\\0' a; echo; printf 'x\\377y\\n'", MINUTE, &never());
        assert_eq!(result, Ok(()));
        let long: Vec<&String> = lines.iter().filter(|l| l.starts_with("t| a")).collect();
        assert_eq!(long.iter().map(|l| l.len() - 3).sum::<usize>(), 40000);
        assert!(long.iter().all(|l| l.len() - 3 <= MAX_LINE));
        assert!(lines.contains(&"t| x\u{FFFD}y".to_owned()));
    }

    #[test]
    fn a_cut_never_splits_a_utf8_sequence() {
        // "é" is C3 A9: a cut between them moves back before C3.
        let bytes = "aaé".as_bytes();
        assert_eq!(utf8_cut(bytes, 3), 2);
        assert_eq!(utf8_cut(bytes, 2), 2);
        assert_eq!(utf8_cut(b"abcd", 2), 2);
    }

    /// Data arriving in small pieces, as from a slow writer, gives the same lines.
    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut lines = Vec::new();
        let mut sink = |l: &str| lines.push(l.to_owned());
        let mut output = Output { label: "t", sink: &mut sink, supervisor_error: None };
        let mut stream = Stream { pipe: None, pending: Vec::new(), stderr: false };
        for byte in "ab\ncd\n\nef".bytes() {
            stream.push(&[byte], &mut output);
        }
        stream.finish(&mut output);
        assert_eq!(lines, ["t| ab", "t| cd", "t| ", "t| ef"]);
    }

    #[test]
    fn failures_are_classified() {
        assert_eq!(sh("exit 3", MINUTE, &never()).0, Err(RunFailure::Status("exited with status 3".into())));
        assert_eq!(sh("kill -9 $$", MINUTE, &never()).0, Err(RunFailure::Status("was killed by signal 9".into())));
        let missing =
            run(Command::new("/nonexistent/program"), "t", &options(Path::new("/"), MINUTE, &never()), &mut |_| {});
        assert!(matches!(missing, Err(RunFailure::Spawn(_))), "{missing:?}");
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        let (result, lines) = sh("sleep 30 & echo \"bg $!\"; sleep 30", Duration::from_secs(1), &never());
        assert_eq!(result, Err(RunFailure::Timeout(Duration::from_secs(1))));
        // On a very busy machine the shell may not have got as far: nothing to check then.
        let Some(bg) = lines.first().and_then(|l| l.strip_prefix("t| bg ")) else { return };
        let bg: i32 = bg.parse().expect("a pid");
        let deadline = Instant::now() + Duration::from_secs(20);
        while process_table().expect("/proc").iter().any(|p| p.pid == bg && p.alive()) {
            assert!(Instant::now() < deadline, "the background process survived the timeout");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_cancellation_stops_the_command() {
        let cancel = AtomicBool::new(true);
        assert_eq!(sh("sleep 30", MINUTE, &cancel).0, Err(RunFailure::Cancelled));
    }

    #[test]
    fn timeouts_display_in_seconds() {
        assert_eq!(
            RunFailure::Timeout(Duration::from_secs(1)).to_string(),
            "it was still running after 1 s and was killed"
        );
        assert_eq!(
            RunFailure::Timeout(Duration::from_millis(1500)).to_string(),
            "it was still running after 1.5 s and was killed"
        );
    }

    #[test]
    fn service_state_from_the_status_command() {
        let service = service_from(serde_json::json!({ "name": "svc" }));
        let state = |command: Option<&str>| service_state(&service, command, Path::new("/"), &[], MINUTE, &mut |_| {});
        assert_eq!(state(Some("exit 0")), ServiceState::Running);
        assert_eq!(state(Some("exit 3")), ServiceState::Stopped);
        assert_eq!(state(Some("kill -9 $$")), ServiceState::Unknown);
        assert_eq!(state(None), ServiceState::Unknown);
    }

    #[test]
    fn service_commands_run_through_the_shell_with_the_environment() {
        let svc = service_from(serde_json::json!({ "name": "svc", "stop": "echo \"stopping $WHO\"" }));
        let env = [("WHO".to_owned(), "me".to_owned())];
        let never = never();
        let options = RunOptions { cwd: Path::new("/"), env: &env, timeout: MINUTE, cancel: &never };
        let mut lines = Vec::new();
        service(&svc, ServiceVerb::Stop, &options, &mut |l| lines.push(l.to_owned())).expect("stop");
        service(&svc, ServiceVerb::Start, &options, &mut |l| lines.push(l.to_owned())).expect("start: nothing to do");
        assert_eq!(lines, ["stop service svc", "stop svc| stopping me", "start service svc"]);
    }

    #[test]
    fn stat_lines_are_parsed_whatever_the_command_name() {
        // pid (comm) state ppid pgrp session ...; a comm may hold ") (".
        let proc = parse_stat(42, "42 (a) (b c) S 7 42 1 0 -1 4194560 100 0 0 0").expect("parsed");
        assert_eq!(proc, Proc { pid: 42, comm: "a) (b c".into(), state: 'S', ppid: 7, pgrp: 42 });
        assert!(parse_stat(1, "1 (init").is_none());
        assert!(!parse_stat(9, "9 (z) Z 1 9").expect("parsed").alive());
    }

    #[test]
    fn descent_follows_the_chain_of_parents() {
        let parents: HashMap<i32, i32> = [(10, 1), (11, 10), (12, 11), (20, 1)].into_iter().collect();
        assert!(descends_from(&parents, 12, 10));
        assert!(descends_from(&parents, 11, 10));
        assert!(!descends_from(&parents, 20, 10));
        assert!(!descends_from(&parents, 10, 10));
    }

    #[test]
    fn supervisor_arguments() {
        let args: Vec<OsString> = ["123", "--", "/bin/prog", "a", "b"].iter().map(OsString::from).collect();
        let (parent, program, rest) = parse_supervisor_args(&args).expect("parsed");
        assert_eq!(parent.as_raw_nonzero().get(), 123);
        assert_eq!(program, "/bin/prog");
        assert_eq!(rest, ["a", "b"]);
        let bad: Vec<OsString> = ["123", "/bin/prog"].iter().map(OsString::from).collect();
        assert!(parse_supervisor_args(&bad).is_none());
    }
}
