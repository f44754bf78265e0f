//! Scripts never outlive their transaction: whatever a package script starts
//! (in the background, in a session of its own) is killed when the script ends,
//! when the script is stopped, and when `pkgrun` itself dies (kill -9); and a
//! later run's recovery kills anything of the interrupted transaction that is
//! still running before it undoes anything.
//!
//! The tests poll `/proc` with generous deadlines and never measure speed: the
//! machine may be loaded.

mod common;
mod install_support;

use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestContext, run};
use install_support::*;
use rustix::process::{Pid, Signal};

/// How long the tests wait for something that takes milliseconds on an idle machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// A 1.0 instance of `testprod` and an update whose post-install script is `script`.
fn instance_and_update(ctx: &TestContext, script: &str) -> String {
    let package = release(ctx, "rel", "1.0", 1, &[file("a.txt", b"1.0\n")]);
    install_ok(ctx, &package, "t", &["-q"]);
    ctx.write_file("up/post.sh", script.as_bytes(), 0o755);
    let files = [file("a.txt", b"2.0\n")];
    let extra = "[scripts]\npost-install = \"post.sh\"\ntimeout = 600\n";
    build_spec(ctx, &Spec { src: "up", id: "update-2.0", version: "2.0", build: 2, applies: "", files: &files, extra })
}

/// A post-install script that starts a background process and one in a session
/// of its own, records the three pids in `$TEST_MARKERS` (`bg`, `setsid`, then
/// `script` once the others are written), and sleeps.
const LINGERING_SCRIPT: &str = r#"#!/bin/sh
m="$TEST_MARKERS"
sh -c 'echo $$ > "$0/bg.tmp" && mv "$0/bg.tmp" "$0/bg" && exec sleep 300' "$m" &
setsid sh -c 'echo $$ > "$0/setsid.tmp" && mv "$0/setsid.tmp" "$0/setsid" && exec sleep 300' "$m" &
while [ ! -s "$m/bg" ] || [ ! -s "$m/setsid" ]; do sleep 0.05; done
echo $$ > "$m/script.tmp" && mv "$m/script.tmp" "$m/script"
sleep 300
"#;

/// Starts the install of `update` on `t` with `$TEST_MARKERS` set, and waits until
/// the script has recorded its pids. Returns pkgrun and the pids (script, bg, setsid).
fn start_lingering_install(ctx: &TestContext, update: &str) -> (Child, [i32; 3]) {
    let markers = ctx.mkdir("markers", 0o755);
    let pkgrun = install(ctx, update, "t", &["-q"])
        .env("TEST_MARKERS", &markers)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pkgrun");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !markers.join("script").exists() {
        assert!(Instant::now() < deadline, "the post-install script never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = |name: &str| -> i32 {
        let text = std::fs::read_to_string(markers.join(name)).expect("a pid file");
        text.trim().parse().unwrap_or_else(|_| panic!("{name}: not a pid: {text:?}"))
    };
    (pkgrun, [pid("script"), pid("bg"), pid("setsid")])
}

/// `/proc/PID/stat`: (state, parent pid), or `None` once the process is gone.
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text[text.rfind(')')? + 1..].split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// Whether `pid` is running: present and not a zombie (a zombie has ended; in a
/// container whose init does not reap, it may stay a zombie).
fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X' | 'x'))
}

/// Waits (up to [`PATIENCE`]) until none of `pids` runs; returns those still running.
fn wait_until_gone(pids: &[i32]) -> Vec<i32> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let running: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if running.is_empty() || Instant::now() >= deadline {
            return running;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(pid: i32, signal: Signal) {
    rustix::process::kill_process(Pid::from_raw(pid).expect("a pid"), signal).expect("send a signal");
}

/// Kills what a failed test would leave running: `pids`, and every process of
/// the transaction of the first one (best effort).
struct KillOnDrop {
    pids: Vec<i32>,
    transaction: Option<String>,
}

impl KillOnDrop {
    fn new(pids: Vec<i32>) -> KillOnDrop {
        let transaction = pids.first().and_then(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            environ.split(|&b| b == 0).find_map(|entry| {
                entry.strip_prefix(b"PKGRUN_TRANSACTION=").map(|id| String::from_utf8_lossy(id).into_owned())
            })
        });
        KillOnDrop { pids, transaction }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.pids {
            if alive(pid) {
                let _ = rustix::process::kill_process(Pid::from_raw(pid).expect("a pid"), Signal::KILL);
            }
        }
        if let Some(transaction) = &self.transaction {
            let _ = upkg_install::kill_transaction_processes(transaction, PATIENCE);
        }
    }
}

fn install_log(ctx: &TestContext) -> String {
    let log = logs(ctx, "t")
        .into_iter()
        .rfind(|l| l.file_name().unwrap().to_string_lossy().starts_with("update-2.0-"))
        .expect("the update's log");
    std::fs::read_to_string(log).expect("read the log")
}

/// kill -9 of pkgrun while its post-install script runs: the script's supervisor
/// gets its parent-death signal and kills the script, its background process and
/// the one that left for a session of its own; the next run rolls back.
#[test]
fn killing_pkgrun_kills_the_script_and_everything_it_started() {
    let ctx = TestContext::new();
    let update = instance_and_update(&ctx, LINGERING_SCRIPT);
    let before = product_tree(&ctx, "t", &[]);
    let (mut pkgrun, pids) = start_lingering_install(&ctx, &update);
    let _cleanup = KillOnDrop::new(pids.to_vec());

    // The script runs under a supervisor: pkgrun's own executable, pkgrun's child.
    let (_, supervisor) = stat(pids[0]).expect("the script runs");
    let pkgrun_pid = pkgrun.id() as i32;
    assert_ne!(supervisor, pkgrun_pid, "the script is pkgrun's own child: no supervisor");
    assert_eq!(stat(supervisor).map(|(_, parent)| parent), Some(pkgrun_pid), "the supervisor is pkgrun's child");
    let supervisor_exe = std::fs::read_link(format!("/proc/{supervisor}/exe")).expect("the supervisor's executable");
    assert_eq!(supervisor_exe, common::pkgrun_exe().canonicalize().unwrap());

    pkgrun.kill().expect("kill -9 pkgrun");
    pkgrun.wait().expect("reap pkgrun");
    let survivors = wait_until_gone(&[pids[0], pids[1], pids[2], supervisor]);
    assert!(survivors.is_empty(), "still running after pkgrun was killed: {survivors:?} of {pids:?}");

    // The next run finds the transaction interrupted and rolls it back.
    run(&mut on_target(&ctx, &["status"], "t")).assert_success();
    assert_eq!(product_tree(&ctx, "t", &[]), before);
    let log = install_log(&ctx);
    assert!(log.contains("INSTALL FAILURE: interrupted; rolled back by recovery"), "{log}");
}

/// The supervisor itself dies with pkgrun (here: pkgrun is stopped so that it
/// cannot act, the supervisor killed, then pkgrun): the script's processes
/// outlive both, and the next run's recovery must kill them, found by
/// `PKGRUN_TRANSACTION`, before it rolls back.
#[test]
fn recovery_kills_what_a_dead_supervisor_left_running() {
    let ctx = TestContext::new();
    let update = instance_and_update(&ctx, LINGERING_SCRIPT);
    let before = product_tree(&ctx, "t", &[]);
    let (mut pkgrun, pids) = start_lingering_install(&ctx, &update);
    let _cleanup = KillOnDrop::new(pids.to_vec());
    let (_, supervisor) = stat(pids[0]).expect("the script runs");

    let pkgrun_pid = pkgrun.id() as i32;
    kill(pkgrun_pid, Signal::STOP);
    kill(supervisor, Signal::KILL);
    assert!(wait_until_gone(&[supervisor]).is_empty(), "the supervisor survived SIGKILL");
    pkgrun.kill().expect("kill -9 pkgrun");
    pkgrun.wait().expect("reap pkgrun");
    assert!(pids.iter().all(|&p| alive(p)), "the script's processes should have outlived their supervisor");

    run(&mut on_target(&ctx, &["status"], "t")).assert_success();
    // Recovery waited for them to be gone before it went on.
    let survivors: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    assert!(survivors.is_empty(), "still running after the recovery: {survivors:?}");
    assert_eq!(product_tree(&ctx, "t", &[]), before);
    let log = install_log(&ctx);
    assert!(log.contains("processes left running by the transaction's scripts"), "{log}");
    assert!(log.contains("INSTALL FAILURE: interrupted; rolled back by recovery"), "{log}");
}

/// A script that exits leaving a background process: the process is killed when
/// the script exits, the log says so, and the install goes on.
#[test]
fn a_process_left_behind_by_a_script_is_killed_and_logged() {
    let ctx = TestContext::new();
    let update = instance_and_update(
        &ctx,
        "#!/bin/sh\nsleep 300 &\necho $! > \"$TEST_MARKERS/bg\"\necho \"transaction=$PKGRUN_TRANSACTION\"\n",
    );
    let markers = ctx.mkdir("markers", 0o755);
    let output = run(install(&ctx, &update, "t", &["-q"]).env("TEST_MARKERS", &markers));
    let bg: i32 = std::fs::read_to_string(markers.join("bg")).expect("the pid").trim().parse().expect("a pid");
    let _cleanup = KillOnDrop::new(vec![bg]);
    output.assert_success();
    assert!(wait_until_gone(&[bg]).is_empty(), "the background process of the script survived it");
    let log = install_log(&ctx);
    assert!(
        log.contains(&format!(
            "post-install| [pkgrun supervisor] the script exited leaving 1 process(es) running; killed: {bg} ("
        )),
        "{log}"
    );
    // The marker names this transaction (its directory is tx/<id>/).
    let txid = log.split("post-install| transaction=").nth(1).and_then(|rest| rest.lines().next()).expect("the marker");
    assert!(!txid.is_empty() && log.contains(&format!("/tx/{txid}/")), "{txid:?} is not the transaction:\n{log}");
    assert!(log.ends_with("INSTALL SUCCESS\n"), "{log}");
}

/// `kill_transaction_processes` kills a process carrying the transaction's
/// marker, and not one carrying another transaction's (even one whose id
/// begins with it).
#[test]
fn kill_transaction_processes_kills_that_transaction_only() {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let txid = format!("test-{}-{nanos}", std::process::id());
    let sleep = |txid: &str| -> Child {
        Command::new("sleep")
            .arg("300")
            .env("PKGRUN_TRANSACTION", txid)
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("start sleep")
    };
    let mut marked = sleep(&txid);
    let mut other = sleep(&format!("{txid}0"));
    let _cleanup = KillOnDrop::new(vec![marked.id() as i32, other.id() as i32]);

    let killed = upkg_install::kill_transaction_processes(&txid, PATIENCE).expect("no survivors");
    assert_eq!(killed, 1);
    let status = marked.wait().expect("reap the marked process");
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(other.try_wait().expect("look at the other").is_none(), "the other transaction's process was killed");
    other.kill().expect("kill the other");
    other.wait().expect("reap the other");

    // Nothing left of the transaction: nothing to kill.
    assert_eq!(upkg_install::kill_transaction_processes(&txid, PATIENCE).expect("nothing to kill"), 0);
}
