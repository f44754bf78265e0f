//! Progress as people expect it: on a terminal (a pseudo-terminal made by
//! `script`, from bsdutils), installs and uninstalls show a bar for the bytes
//! staged and the operations applied, `--passive` keeps it, builds show a total
//! and the time left; `-q`, `--json` and a standard error that is not a terminal
//! get no bar and no control characters.

mod common;
mod install_support;

use std::process::Command;

use common::{TestContext, pseudo_random, require_tool, run};
use install_support::{install, on_target};

/// The bar's filled and empty cells, as indicatif draws them.
const BAR: [char; 2] = ['\u{2588}', '\u{2591}'];

/// Runs `command` with a pseudo-terminal on its standard input, output and
/// error, and returns everything it printed.
fn on_a_terminal(command: &Command) -> String {
    require_tool("script", "bsdutils");
    let mut line = String::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            line.push_str(&format!("{}={} ", key.to_string_lossy(), shell_quote(&value.to_string_lossy())));
        }
    }
    line.push_str(&shell_quote(&command.get_program().to_string_lossy()));
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&shell_quote(&arg.to_string_lossy()));
    }
    let mut script = Command::new("script");
    script.args(["-qefc", &line, "/dev/null"]).env("COLUMNS", "120");
    if let Some(dir) = command.get_current_dir() {
        script.current_dir(dir);
    }
    let output = run(&mut script);
    assert!(output.code == 0 || output.code == 10, "`{line}` on a terminal failed:\n{}", output.render());
    output.stdout
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn has_bar(text: &str) -> bool {
    text.contains(BAR)
}

/// A release of `testprod` with a 6 MiB file, so that the bar is drawn.
fn big_release(ctx: &TestContext, src: &str, version: &str, build: u64, seed: u64) -> String {
    let data = pseudo_random(6 << 20, seed);
    let files = [install_support::file("data/big.bin", &data), install_support::file("a.txt", b"a\n")];
    install_support::release(ctx, src, version, build, &files)
}

#[test]
fn installs_and_uninstalls_show_a_bar_on_a_terminal_only() {
    let ctx = TestContext::new();
    let v1 = big_release(&ctx, "v1", "1.0", 1, 1);
    let v2 = {
        let data = pseudo_random(6 << 20, 2);
        let files = [install_support::file("data/big.bin", &data), install_support::file("a.txt", b"b\n")];
        install_support::update(&ctx, "v2", "update-2", "2.0", 2, &files)
    };

    let shown = on_a_terminal(&install(&ctx, &v1, "t", &[]));
    assert!(has_bar(&shown), "no bar on a terminal:\n{shown}");
    assert!(shown.contains("staging"), "{shown}");
    assert!(shown.contains("MiB/6.00 MiB"), "the bar shows the bytes out of the total:\n{shown}");

    let passive = on_a_terminal(&install(&ctx, &v2, "t", &["--passive"]));
    assert!(has_bar(&passive), "--passive keeps the bar:\n{passive}");
    assert!(passive.contains("applying"), "the operations applied have their bar:\n{passive}");
    assert!(passive.contains("operations"), "{passive}");

    let uninstall = on_a_terminal(&on_target(&ctx, &["uninstall", "update-2"], "t"));
    assert!(uninstall.contains("applying") && has_bar(&uninstall), "{uninstall}");

    let quiet = on_a_terminal(&install(&ctx, &v2, "t", &["-q"]));
    assert!(!has_bar(&quiet) && !quiet.contains('\u{1b}'), "-q draws nothing:\n{quiet}");
    let json = on_a_terminal(&install(&ctx, &v2, "t", &["--json", "--force"]));
    assert!(!has_bar(&json) && !json.contains('\u{1b}'), "--json draws nothing:\n{json}");

    // Not a terminal: phase lines only, never a bar or a control character.
    let plain = run(&mut install(&ctx, &v1, "t2", &[]));
    plain.assert_success().assert_stderr_contains("staging");
    let plain = format!("{}{}", plain.stdout, plain.stderr);
    assert!(!has_bar(&plain) && !plain.contains('\u{1b}'), "{plain}");
}

#[test]
fn builds_show_the_total_and_the_time_left_and_say_when_a_key_is_decrypted() {
    let ctx = TestContext::new();
    ctx.write_manifest("src", "big", "");
    ctx.write_file("src/root/big.bin", &pseudo_random(8 << 20, 3), 0o644);
    ctx.write_file("pass.txt", b"correct horse\n", 0o600);
    run(ctx.pkgbuild().args(["keygen", "protected", "--passphrase-file", "pass.txt"])).assert_success();

    let mut build = ctx.pkgbuild();
    build.args(["build", "src", "-o", "big.upkg", "--codec", "gzip", "--no-stub", "--unsigned"]);
    let shown = on_a_terminal(&build);
    assert!(has_bar(&shown), "no bar on a terminal:\n{shown}");
    assert!(shown.contains("compressing") && shown.contains("/8.00 MiB") && shown.contains("left"), "{shown}");

    let plain = run(&mut build);
    assert!(!has_bar(&plain.stderr) && !plain.stderr.contains('\u{1b}'), "{}", plain.render());

    let signed = run(ctx.pkgbuild().args([
        "build",
        "src",
        "-o",
        "signed.upkg",
        "--no-stub",
        "--key",
        "protected.key",
        "--passphrase-file",
        "pass.txt",
    ]));
    signed.assert_success().assert_stderr_contains("Decrypting the secret key protected.key");
    let quiet = run(ctx.pkgbuild().args([
        "build",
        "src",
        "-o",
        "quiet.upkg",
        "--no-stub",
        "-q",
        "--key",
        "protected.key",
        "--passphrase-file",
        "pass.txt",
    ]));
    assert_eq!(quiet.assert_success().stderr, "", "-q says nothing");
}
