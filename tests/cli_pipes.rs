//! A closed standard output (`pkgrun PKG --list | head`) ends the output quietly:
//! no panic, no message, the command's own exit code; and it never stops an
//! install half-way: with its reader gone before it starts, an install with
//! `--json` still completes.

mod common;
mod install_support;

use std::io::Read;
use std::process::{Command, Stdio};

use common::TestContext;
use install_support::*;

/// A package whose listing is far over a pipe's 64 KiB.
fn big_listing(ctx: &TestContext) -> String {
    let files: Vec<(String, Vec<u8>)> = (0..1500)
        .map(|n| (format!("share/a-rather-long-directory-name/file-number-{n:05}.txt"), format!("{n}\n").into_bytes()))
        .collect();
    let files: Vec<File<'_>> = files.iter().map(|(p, c)| file(p, c)).collect();
    release(ctx, "big", "1.0", 1, &files)
}

/// Runs `command`, reads `keep` bytes of its standard output, closes the pipe,
/// and returns its exit code and standard error.
fn run_closing_early(command: &mut Command, keep: usize) -> (i32, String) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let mut start = vec![0u8; keep];
    if keep > 0 {
        stdout.read_exact(&mut start).expect("the first bytes");
    }
    drop(stdout);
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let ctx = TestContext::new();
    let package = big_listing(&ctx);
    let listing = common::run(&mut ctx.pkgrun_trusted(&package, &["--list"]));
    assert!(listing.stdout.len() > 200 << 10, "the listing is over 200 KiB ({} bytes)", listing.stdout.len());
    for args in [&["--list"][..], &["--list", "--json"][..], &["--info", "--json"][..]] {
        let (code, stderr) = run_closing_early(&mut ctx.pkgrun_trusted(&package, args), 16);
        assert_eq!(code, 0, "{args:?}: exit code with the reader gone; stderr:\n{stderr}");
        assert!(stderr.is_empty(), "{args:?}: nothing on stderr:\n{stderr}");
    }
}

#[test]
fn an_install_whose_output_is_gone_still_completes() {
    let ctx = TestContext::new();
    let package = big_listing(&ctx);
    let (code, stderr) = run_closing_early(&mut install(&ctx, &package, "t", &["--json"]), 0);
    assert_eq!(code, 0, "the install's own exit code; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(ctx.path("t/share/a-rather-long-directory-name/file-number-01499.txt").is_file());
    let verify = common::run(&mut on_target(&ctx, &["verify"], "t"));
    assert_eq!(verify.code, 0, "{}", verify.render());
    assert!(!ctx.path("t/.pkgrun/journal.json").exists());
}
