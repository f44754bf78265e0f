//! Packages on web servers, against real servers on loopback: nginx (ranges, and
//! https with a self-signed certificate), `python3 -m http.server` (no ranges), and
//! a server that cuts transfers in the middle. `pkgrun URL` reads the trailer,
//! header and signature, then only the members its plan needs, each checked
//! against the signed catalog; a 200 reply gets the whole file streamed and
//! verified; a broken transfer resumes, in the same run or the next.

mod common;
#[path = "express/releases.rs"]
mod releases;
#[path = "express/servers.rs"]
mod servers;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestContext, exit, run};
use releases::{Releases, holds_release};

/// `pkgrun` with a cache of its own in the test's root.
fn pkgrun(ctx: &TestContext, package: &str, args: &[&str]) -> Command {
    let mut command = ctx.pkgrun_trusted(package, args);
    command.env("PKGRUN_CACHE", ctx.path("cache"));
    command
}

/// Publishes releases 1 to 4 (4 with deltas from 1 to 3) in `www/`; returns release 1's local file.
fn publish(releases: &Releases<'_>) -> PathBuf {
    let ctx = releases.ctx();
    let old: Vec<PathBuf> = (1..=3).map(|n| releases.build(n, &[])).collect();
    let new = releases.build(4, &old);
    ctx.mkdir("www", 0o755);
    for (n, path) in old.iter().chain([&new]).enumerate() {
        std::fs::copy(path, ctx.path(format!("www/r{}.upkg", n + 1))).unwrap();
    }
    old[0].clone()
}

fn report(output: &common::RunOutput) -> serde_json::Value {
    output.json()["data"]["targets"][0]["report"].clone()
}

fn size(path: impl AsRef<Path>) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// An update from nginx fetches the end of the file and the members its plan
/// shows, nothing else: every request a single range answered 206, and the bytes
/// received are the plan's reads plus the end of the file.
#[test]
fn an_update_from_nginx_fetches_only_what_the_plan_shows() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    let r1 = publish(&releases);
    let nginx = servers::nginx(&ctx.path("www"), &ctx.path("nginx"));
    run(&mut ctx.pkgrun_trusted(&r1, &["--target", "t", "-q"])).assert_success();
    let url = nginx.url("r4.upkg");
    let plan = run(&mut pkgrun(&ctx, &url, &["--plan", "--json", "--target", "t"]));
    plan.assert_success();
    let reads = plan.json()["data"]["targets"][0]["plan"]["reads"].clone();
    let output = run(&mut pkgrun(&ctx, &url, &["--target", "t", "--json", "-q"]));
    output.assert_success();
    holds_release(&releases, &ctx.path("t"), 4).unwrap();
    let fetched = report(&output)["fetched"].clone();
    let package = size(ctx.path("www/r4.upkg"));
    let bytes = fetched["bytes"].as_u64().unwrap();
    let planned = reads["bytes"].as_u64().unwrap();
    // The end of the file (trailer, header, signature): one request of at most 64 KiB.
    let tail = (64u64 << 10).min(package);
    assert!(bytes <= planned + tail, "fetched {fetched}, planned {reads}");
    assert!(planned * 4 < package && bytes * 2 < package, "fetched {bytes} of {package}, planned {planned}");
    let requests = nginx.requests();
    assert!(!requests.is_empty());
    for line in &requests {
        assert!(line.starts_with("bytes=") && line.contains(" 206 "), "one range each, answered 206: {line}");
        assert!(!line.contains(','), "never several ranges in one request: {line}");
    }
    let log = std::fs::read_to_string(report(&output)["log"].as_str().unwrap()).unwrap();
    assert!(log.contains(&format!("from {url}")), "{log}");
    assert!(log.contains("fetched from"), "{log}");

    // The same update on a second machine uses the copy already fetched: nothing new but the end.
    run(&mut ctx.pkgrun_trusted(&r1, &["--target", "t2", "-q"])).assert_success();
    let again = run(&mut pkgrun(&ctx, &url, &["--target", "t2", "--json", "-q"]));
    again.assert_success();
    assert!(report(&again)["fetched"]["bytes"].as_u64().unwrap() <= tail, "{}", report(&again));
    holds_release(&releases, &ctx.path("t2"), 4).unwrap();

    // --check from a URL reads (and verifies) everything.
    run(&mut pkgrun(&ctx, &url, &["--check"])).assert_success();
}

/// https with a self-signed certificate: trusted with `--ca-file`, refused with
/// the system's roots (exit 1, naming the URL).
#[test]
fn https_with_a_ca_file() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    publish(&releases);
    let nginx = servers::nginx(&ctx.path("www"), &ctx.path("nginx"));
    let url = nginx.tls_url("r1.upkg");
    let refused = run(&mut pkgrun(&ctx, &url, &["--target", "t", "-q"]));
    refused.assert_code(exit::FAILURE).assert_stderr_contains(&url);
    assert!(!ctx.path("t").exists());
    let ca = nginx.certificate.clone().unwrap();
    run(&mut pkgrun(&ctx, &url, &["--target", "t", "-q", "--ca-file", ca.to_str().unwrap()])).assert_success();
    holds_release(&releases, &ctx.path("t"), 1).unwrap();
    let bad = ctx.write_file("not-a-cert.pem", b"hello\n", 0o644);
    run(&mut pkgrun(&ctx, &url, &["--info", "--ca-file", bad.to_str().unwrap()]))
        .assert_code(exit::USAGE)
        .assert_stderr_contains("not-a-cert.pem");
}

/// A server that ignores `Range` (Python's http.server answers 200): the whole
/// file is streamed, every part verified, and the message says so.
#[test]
fn a_server_that_ignores_ranges_sends_the_whole_file_verified() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    let r1 = publish(&releases);
    let server = servers::python_http_server(&ctx.path("www"), &ctx.path("."));
    run(&mut ctx.pkgrun_trusted(&r1, &["--target", "t", "-q"])).assert_success();
    let mut command = pkgrun(&ctx, &server.url("r4.upkg"), &["--target", "t", "--json"]);
    let output = run(&mut command);
    output.assert_success().assert_stderr_contains("ignores range requests");
    output.assert_stderr_contains("every part of it checked against the signed catalog");
    let fetched = report(&output)["fetched"].clone();
    assert_eq!(fetched["whole_file"], true, "{fetched}");
    assert_eq!(fetched["bytes"].as_u64().unwrap(), size(ctx.path("www/r4.upkg")));
    holds_release(&releases, &ctx.path("t"), 4).unwrap();

    // A damaged file on such a server is found by that verification, before anything changes.
    let mut bytes = std::fs::read(ctx.path("www/r4.upkg")).unwrap();
    let layout = ctx.layout(ctx.path("www/r4.upkg"));
    bytes[(layout.payload.0 + 10) as usize] ^= 1;
    ctx.write_file("www/damaged.upkg", &bytes, 0o644);
    run(&mut pkgrun(&ctx, &server.url("damaged.upkg"), &["--target", "t2", "-q"])).assert_code(exit::INVALID);
    assert!(!ctx.path("t2").exists());
}

/// A transfer cut in the middle resumes from the byte where it broke, in the same
/// run; a run that gives up keeps what arrived, and the next run fetches only what
/// is missing.
#[test]
fn a_transfer_cut_in_the_middle_resumes() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    publish(&releases);
    let control = ctx.write_file("cuts", b"2", 0o644);
    let server = servers::cutting_server(&ctx.path("www"), &control);
    let url = server.url("r1.upkg");
    let output = run(&mut pkgrun(&ctx, &url, &["--target", "t", "--json"]));
    output.assert_success().assert_stderr_contains("resuming from there");
    holds_release(&releases, &ctx.path("t"), 1).unwrap();
    let cut: Vec<String> = server.requests().into_iter().filter(|l| l.ends_with(" CUT")).collect();
    assert_eq!(cut.len(), 2, "{:?}", server.requests());
    // Each resumed request starts where the cut one stopped.
    let package = size(ctx.path("www/r1.upkg"));
    let fetched = report(&output)["fetched"]["bytes"].as_u64().unwrap();
    assert!(fetched <= package + (64 << 10), "no byte fetched twice beyond the first request: {fetched} of {package}");

    // A run that gives up (every response cut), then one that finishes: the second
    // fetches less than the whole, since the parts that arrived verify.
    std::fs::write(&control, b"1000").unwrap();
    let url = server.url("r2.upkg");
    run(&mut pkgrun(&ctx, &url, &["--target", "u", "-q"])).assert_code(exit::FAILURE);
    assert!(!ctx.path("u/bin").exists(), "nothing was installed");
    std::fs::write(&control, b"0").unwrap();
    let output = run(&mut pkgrun(&ctx, &url, &["--target", "u", "--json", "-q"]));
    output.assert_success();
    holds_release(&releases, &ctx.path("u"), 2).unwrap();
    let second = report(&output)["fetched"]["bytes"].as_u64().unwrap();
    assert!(second < size(ctx.path("www/r2.upkg")), "the second run fetched {second}: what arrived was reused");
}

/// A package installed from a URL without a repair copy is fetched again from
/// that URL by `repair` (only what it restores), verified; if the URL now holds
/// another package, repair refuses to use it.
#[test]
fn repair_fetches_again_from_the_recorded_url() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    let r1 = publish(&releases);
    let nginx = servers::nginx(&ctx.path("www"), &ctx.path("nginx"));
    run(&mut ctx.pkgrun_trusted(&r1, &["--target", "t", "-q"])).assert_success();
    let url = nginx.url("r4.upkg");
    run(&mut pkgrun(&ctx, &url, &["--target", "t", "-q", "--no-repair-copy"])).assert_success();
    std::fs::write(ctx.path("t/bin/app"), b"damaged").unwrap();
    let repair_command = || {
        let mut command = ctx.pkgrun();
        command.args(["repair", "--target", "t"]).env("PKGRUN_CACHE", ctx.path("cache"));
        command
    };
    let repair = run(&mut repair_command());
    repair.assert_success().assert_stderr_contains(&format!("reading it again from {url}"));
    holds_release(&releases, &ctx.path("t"), 4).unwrap();

    std::fs::copy(ctx.path("www/r3.upkg"), ctx.path("www/r4.upkg")).unwrap();
    std::fs::write(ctx.path("t/bin/app"), b"damaged again").unwrap();
    let refused = run(&mut repair_command());
    refused.assert_code(exit::FAILURE);
    assert!(
        refused.stdout.contains("another package") || refused.stderr.contains("another package"),
        "{}",
        refused.render()
    );
    assert_eq!(std::fs::read(ctx.path("t/bin/app")).unwrap(), b"damaged again", "nothing was restored from it");
}

/// Builds `www/NAME.upkg`, a package of `files` small files (a header well over
/// the first request's 64 KiB), with its header copy when `header_copy`.
fn many_files(ctx: &TestContext, name: &str, build: u32, files: usize, header_copy: bool) -> Vec<u8> {
    let manifest = format!(
        "[package]\nid = \"many-r{build}\"\ntitle = \"Many files\"\nversion = \"1.{build}\"\nbuild = {build}\nrestart = \"never\"\n\n\
         [applies-to]\nproduct = \"many\"\nfresh-install = true\n\n[[files]]\nsource = \"root\"\ndest = \".\"\n"
    );
    let src = format!("many-{build}");
    ctx.write_file(format!("{src}/package.toml"), manifest.as_bytes(), 0o644);
    for n in 0..files {
        ctx.write_file(format!("{src}/root/data/file-{n:04}.txt"), format!("file {n} of {build}\n").as_bytes(), 0o644);
    }
    ctx.mkdir("www", 0o755);
    let mut command = ctx.build_command(&src, format!("www/{name}.upkg"), &common::BuildOptions::default());
    if header_copy {
        command.arg("--header-copy");
    }
    run(&mut command).assert_success();
    std::fs::read(ctx.path(format!("www/{name}.upkg"))).unwrap()
}

fn header_len(package: &[u8]) -> u64 {
    let trailer = &package[package.len() - 96..];
    u64::from_le_bytes(trailer[48..56].try_into().unwrap())
}

/// A header larger than the first request (64 KiB from the end): from the header
/// copy published beside the package when there is one (a fraction of the bytes),
/// else the rest of it from the package, once. A header copy that is not this
/// package's (stale, or damaged) is reported and not used.
#[test]
fn a_large_header_comes_from_its_header_copy_or_from_the_package() {
    let ctx = TestContext::new();
    let files = 800;
    let package = many_files(&ctx, "many", 2, files, true);
    let header = header_len(&package);
    assert!(header > 64 << 10, "the header ({header} bytes) must not fit in the first request");
    let copy = std::fs::read(ctx.path("www/many.upkg.header.zst")).expect("pkgbuild --header-copy wrote it");
    assert!((copy.len() as u64) * 3 < header, "a header copy of {} bytes for a header of {header}", copy.len());
    many_files(&ctx, "stale", 1, files, true);
    std::fs::copy(ctx.path("www/many.upkg"), ctx.path("www/plain.upkg")).unwrap();
    std::fs::copy(ctx.path("www/many.upkg"), ctx.path("www/stale.upkg")).unwrap();
    std::fs::copy(ctx.path("www/many.upkg"), ctx.path("www/damaged.upkg")).unwrap();
    let mut damaged = copy.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    std::fs::write(ctx.path("www/damaged.upkg.header.zst"), &damaged).unwrap();
    let nginx = servers::nginx(&ctx.path("www"), &ctx.path("nginx"));

    let second_end = package.len() as u64 - (64 << 10) - 1;
    let cases = [
        ("many", "header-copy", None),
        ("plain", "range", None),
        ("stale", "range", Some("it is not this package's header")),
        ("damaged", "range", Some("it could not be read")),
    ];
    for (name, from, why) in cases {
        let mut command = pkgrun(&ctx, &nginx.url(&format!("{name}.upkg")), &["--target", name, "--json"]);
        command.env("PKGRUN_CACHE", ctx.path(format!("cache-{name}")));
        let before = nginx.requests().len();
        let output = run(&mut command);
        output.assert_success();
        for n in [0, files / 2, files - 1] {
            let installed = std::fs::read(ctx.path(format!("{name}/data/file-{n:04}.txt"))).unwrap();
            assert_eq!(installed, format!("file {n} of 2\n").as_bytes(), "{name}");
        }
        let fetched = report(&output)["fetched"].clone();
        assert_eq!(fetched["header"], from, "{name}: {fetched}");
        let requests = nginx.requests()[before..].to_vec();
        assert!(requests[0].starts_with("bytes=-65536 206 "), "{name}: {requests:?}");
        // The header copy is asked for whole (no range): 200, or 404 without one.
        let published = name != "plain";
        assert!(requests[1].starts_with(if published { "- 200 " } else { "- 404 " }), "{name}: {requests:?}");
        let bytes = fetched["bytes"].as_u64().unwrap();
        if from == "header-copy" {
            assert!(requests[2..].iter().all(|r| !r.contains(&format!("-{second_end} 206 "))), "{name}: {requests:?}");
            assert!(bytes < header, "{name}: {bytes} bytes fetched for a header of {header}");
        } else {
            assert!(requests[2].contains(&format!("-{second_end} 206 ")), "{name}: {requests:?}");
        }
        match why {
            Some(why) => {
                output.assert_stderr_contains(why);
            }
            None => assert!(!output.stderr.contains("header copy"), "{name}: {}", output.render()),
        }
    }
}
