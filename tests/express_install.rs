//! Express installs: the plan chooses per file (a delta when the installed file is
//! one of its bases, the full contents otherwise), every rebuilt file is checked
//! against the signed catalog, a delta that fails falls back to that one file,
//! and an update reads only what it uses.

mod common;
#[path = "express/releases.rs"]
mod releases;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{TestContext, run};
use releases::{Releases, holds_release};
use upkg_format::{Codec, Digest, EntryData, Header, Kind, Member, Payload};

/// `pkgrun PKG --target DIR --json ARGS` (trusting the test key), successful, as JSON.
#[track_caller]
fn install(ctx: &TestContext, package: &Path, target: &str, args: &[&str]) -> serde_json::Value {
    let mut command = ctx.pkgrun_trusted(package, &["--target", target, "--json", "-q"]);
    command.args(args);
    let output = run(&mut command);
    output.assert_success();
    output.json()
}

/// The plan's lines by path, from `--plan --json`.
#[track_caller]
fn plan(ctx: &TestContext, package: &Path, target: &str) -> (BTreeMap<String, serde_json::Value>, serde_json::Value) {
    let output = run(&mut ctx.pkgrun_trusted(package, &["--plan", "--json", "--target", target]));
    output.assert_success();
    let json = output.json();
    let plan = &json["data"]["targets"][0]["plan"];
    let lines = plan["entries"].as_array().unwrap().iter().map(|e| (e["path"].as_str().unwrap().to_owned(), e.clone()));
    (lines.collect(), plan["reads"].clone())
}

fn method(line: &serde_json::Value) -> &str {
    line["method"]["kind"].as_str().unwrap_or("-")
}

/// An update from each of three earlier releases rebuilds every changed file from
/// its delta and reads only the patches and the files without a usable delta; the
/// result is the new release exactly, and `verify` agrees.
#[test]
fn an_update_from_each_of_three_releases_reads_only_what_changed() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    let old: Vec<PathBuf> = (1..=3).map(|n| releases.build(n, &[])).collect();
    let new = releases.build(4, &old);
    for n in 1..=3u32 {
        let target = format!("t{n}");
        install(&ctx, &old[n as usize - 1], &target, &[]);
        let (lines, reads) = plan(&ctx, &new, &target);
        assert_eq!(method(&lines["bin/app"]), "delta", "release {n}: bin/app changed since every release");
        assert_eq!(method(&lines["data/blob.bin"]), "full", "rewritten whole: no delta");
        assert_eq!(method(&lines["share/new.txt"]), "full", "new: no base");
        assert_eq!(lines["etc/app.conf"]["action"], "skip-identical");
        assert!(lines["etc/app.conf"].get("method").is_none());
        if n < 3 {
            assert_eq!(method(&lines["lib/libcore.so"]), "delta");
        } else {
            assert_eq!(lines["lib/libcore.so"]["action"], "skip-identical");
        }
        let (bytes, whole) = (reads["bytes"].as_u64().unwrap(), reads["whole"].as_u64().unwrap());
        // The two full files are 64 KiB of noise and a line; everything else is patches.
        assert!(bytes < 80 << 10 && bytes * 4 < whole, "release {n}: reads {reads}");
        assert_eq!(reads["files_full"], 2, "release {n}: {reads}");
        let report = install(&ctx, &new, &target, &[]);
        let report = &report["data"]["targets"][0]["report"];
        assert!(report.get("fallbacks").is_none(), "release {n}: {report}");
        holds_release(&releases, &ctx.path(&target), 4).unwrap();
        run(ctx.pkgrun().args(["verify", "--target", &target])).assert_success();
        let log = std::fs::read_to_string(report["log"].as_str().unwrap()).unwrap();
        assert!(log.contains("from deltas, each checked against the signed catalog"), "{log}");
    }
}

/// A base modified locally: the plan reads that file whole (its digest is no base)
/// and still rebuilds every other changed file from its delta.
#[test]
fn a_base_modified_locally_is_read_whole_and_only_that_file() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    let r1 = releases.build(1, &[]);
    let new = releases.build(4, std::slice::from_ref(&r1));
    install(&ctx, &r1, "t", &[]);
    let app = ctx.path("t/bin/app");
    let mut bytes = std::fs::read(&app).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&app, &bytes).unwrap();
    let (lines, reads) = plan(&ctx, &new, "t");
    assert_eq!(method(&lines["bin/app"]), "full");
    assert_eq!(method(&lines["lib/libcore.so"]), "delta");
    assert_eq!(method(&lines["share/doc/page4.txt"]), "delta");
    assert_eq!(reads["files_full"], 3, "{reads}");
    install(&ctx, &new, "t", &[]);
    holds_release(&releases, &ctx.path("t"), 4).unwrap();
}

/// Rebuilds `package` (a tar+zstd package) with the contents of some of its files
/// replaced, correctly signed by the test key: a signer that shipped broken deltas.
fn with_contents(ctx: &TestContext, package: &Path, out: &str, contents: &BTreeMap<String, Vec<u8>>) -> PathBuf {
    run(&mut ctx.pkgrun_trusted(package, &["-x", &format!("{out}.x")])).assert_success();
    let header: Header = ctx.header(package);
    let mut files = header.files.clone();
    let data: Vec<Vec<u8>> = files
        .iter()
        .map(|e| match (e.kind, contents.get(&e.path)) {
            (Kind::File, Some(replaced)) => replaced.clone(),
            (Kind::File, None) => std::fs::read(ctx.path(format!("{out}.x")).join(&e.path)).unwrap(),
            _ => Vec::new(),
        })
        .collect();
    for (entry, bytes) in files.iter_mut().zip(&data) {
        if entry.kind == Kind::File {
            entry.size = bytes.len() as u64;
            entry.sha256 = Some(Digest::of(bytes));
        }
    }
    let plan = upkg_format::plan_payload(&files, Codec::TarZstd, upkg_format::DEFAULT_MEMBER_SIZE).unwrap();
    for (entry, placement) in files.iter_mut().zip(&plan.placement) {
        let (offset, member) = placement.unwrap();
        entry.offset = Some(offset);
        entry.member = member;
    }
    struct Data(Vec<Vec<u8>>);
    impl EntryData for Data {
        fn write_data(&self, i: usize, r: std::ops::Range<u64>, out: &mut dyn std::io::Write) -> std::io::Result<()> {
            out.write_all(&self.0[i][r.start as usize..r.end as usize])
        }
    }
    let data = Data(data);
    let mut payload = Vec::new();
    let mut members = Vec::new();
    for member in &plan.members {
        let created = header.package.created;
        let encoded = upkg_format::encode_member(Codec::TarZstd, 3, created, &files, member, &data).unwrap();
        members.push(Member {
            offset: payload.len() as u64,
            size: encoded.bytes.len() as u64,
            raw_offset: member.raw.start,
            raw_size: member.raw.end - member.raw.start,
            sha256: encoded.sha256,
            continues: member.continues,
        });
        payload.extend_from_slice(&encoded.bytes);
    }
    let header = Header {
        stub: None,
        payload: Payload {
            codec: Codec::TarZstd,
            level: 3,
            size: payload.len() as u64,
            raw_size: plan.raw_size,
            directory: None,
            members,
        },
        files,
        ..header
    };
    payload.extend(upkg_format::finish_bytes(&header, Some(&common::load_test_key())).unwrap());
    ctx.write_file(out, &payload, 0o644)
}

/// A damaged delta (a signed patch that rebuilds other contents, another that does
/// not decode): each of those files falls back to its full contents, logged and
/// reported, and every other file still comes from its delta: never a
/// whole-package fallback. `--check` of that package finds nothing wrong (it holds
/// no base), which is why the installer checks every rebuilt file.
#[test]
fn a_damaged_delta_falls_back_to_that_file_only() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    let r1 = releases.build(1, &[]);
    let good = releases.build(4, std::slice::from_ref(&r1));
    let header = ctx.header(&good);
    let patch_of = |path: &str| header.find(path).unwrap().deltas[0].patch.clone();
    let (app, lib) = (releases.contents(1, "bin/app"), releases.contents(1, "lib/libcore.so"));
    let mut other = releases.contents(4, "bin/app");
    other[5000] ^= 1;
    let mut wrong = Vec::new();
    upkg_format::encode_delta(&app, &mut &other[..], other.len() as u64, 3, &mut wrong).unwrap();
    let mut garbage = Vec::new();
    upkg_format::encode_delta(&lib, &mut &releases.contents(4, "lib/libcore.so")[..], 128 << 10, 3, &mut garbage)
        .unwrap();
    let middle = garbage.len() / 2;
    garbage.truncate(middle);
    let mut replaced = BTreeMap::new();
    replaced.insert(patch_of("bin/app"), wrong);
    replaced.insert(patch_of("lib/libcore.so"), garbage);
    let damaged = with_contents(&ctx, &good, "damaged.upkg", &replaced);
    install(&ctx, &r1, "t", &[]);
    let (lines, _) = plan(&ctx, &damaged, "t");
    assert_eq!(method(&lines["bin/app"]), "delta");
    assert_eq!(method(&lines["lib/libcore.so"]), "delta");
    let report = install(&ctx, &damaged, "t", &[]);
    let report = &report["data"]["targets"][0]["report"];
    let fallbacks: Vec<&str> =
        report["fallbacks"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(fallbacks, ["bin/app", "lib/libcore.so"], "{report}");
    assert!(report["fallbacks"][0]["reason"].as_str().unwrap().contains("corrupt"), "{report}");
    holds_release(&releases, &ctx.path("t"), 4).unwrap();
    let log = std::fs::read_to_string(report["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("delta of bin/app not used"), "{log}");
    assert!(log.contains("delta of lib/libcore.so not used"), "{log}");
    assert!(log.contains("rebuilt 3 files from deltas"), "pages 2 to 4 still came from their deltas:\n{log}");
    run(ctx.pkgrun().args(["verify", "--target", "t"])).assert_success();
}

/// An owned file that nobody changed since the installer wrote (or last read) it is
/// not read again by a plan: its recorded identity stands for its contents. Shown by
/// a record that lies about the contents: the plan believes it, `verify` (which
/// always reads everything) does not.
#[test]
fn an_unchanged_owned_file_is_not_read_again_but_verify_reads_it() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    let (r1, r2, r3) = (releases.build(1, &[]), releases.build(2, &[]), releases.build(3, &[]));
    install(&ctx, &r1, "t", &[]);
    // Identities are only recorded for files older than the filesystem clock's
    // resolution; the next install reads them, finds them intact and records them.
    std::thread::sleep(std::time::Duration::from_millis(60));
    install(&ctx, &r2, "t", &[]);
    let state_path = ctx.path("t/.pkgrun/state.json");
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    let page = &mut state["files"]["share/doc/page9.txt"];
    assert!(page.get("identity").is_some(), "an unchanged, intact file gets an identity: {page}");
    page["sha256"] = Digest::of(b"not what the file holds").to_hex().into();
    std::fs::write(&state_path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let (lines, _) = plan(&ctx, &r3, "t");
    assert_eq!(lines["share/doc/page9.txt"]["action"], "replace", "the plan trusted the record without reading");
    let verify = run(ctx.pkgrun().args(["verify", "--target", "t"]));
    verify.assert_code(common::exit::FAILURE);
    assert!(verify.stdout.contains("share/doc/page9.txt") || verify.stderr.contains("share/doc/page9.txt"));
    // A file changed in any way loses the benefit: it is read again.
    let conf = ctx.path("t/etc/app.conf");
    let text = std::fs::read(&conf).unwrap();
    std::fs::write(&conf, [&text[..], b"# local\n"].concat()).unwrap();
    let (lines, _) = plan(&ctx, &r3, "t");
    assert_eq!(lines["etc/app.conf"]["action"], "replace", "changed, so read again and found different");
}

/// An update reads only the members its plan uses: damage in a member that holds
/// only files the target already has goes unread (and the install succeeds),
/// while `--check` and a fresh install, which read it, refuse the package.
#[test]
fn an_update_reads_only_the_members_it_uses() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    let r1 = releases.build(1, &[]);
    let good = releases.build(4, std::slice::from_ref(&r1));
    let header = ctx.header(&good);
    let page = header.find("share/doc/page9.txt").unwrap();
    let member = &header.payload.members[page.member.unwrap() as usize];
    assert!(
        header.files.iter().filter(|e| e.member == page.member).all(|e| !e.path.starts_with("share/doc/page4")),
        "the member holds no changed file"
    );
    let layout = ctx.layout(&good);
    let at = (layout.payload.0 + member.offset + member.size / 2) as usize;
    let damaged = ctx.variant(&good, "damaged.upkg", |bytes| bytes[at] ^= 0x10);
    install(&ctx, &r1, "t", &[]);
    install(&ctx, &damaged, "t", &[]);
    holds_release(&releases, &ctx.path("t"), 4).unwrap();
    run(&mut ctx.pkgrun_trusted(&damaged, &["--check"])).assert_code(common::exit::INVALID);
    run(&mut ctx.pkgrun_trusted(&damaged, &["--target", "fresh", "-q"])).assert_code(common::exit::INVALID);
    assert!(!ctx.path("fresh/share").exists(), "the failed fresh install left nothing");
}

/// From an expanded share, an update reads only the files it needs: the patches
/// of the files it rebuilds and the files it places whole.
#[test]
fn an_update_from_a_share_reads_only_the_files_it_needs() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    let r1 = releases.build(1, &[]);
    let new = releases.build(4, std::slice::from_ref(&r1));
    run(&mut ctx.pkgrun_trusted(&new, &["-x", "share"])).assert_success();
    install(&ctx, &r1, "t", &[]);
    let share = ctx.path("share");
    let (lines, reads) = plan(&ctx, &share, "t");
    assert_eq!(method(&lines["bin/app"]), "delta");
    let patch = lines["bin/app"]["method"]["patch"].as_str().unwrap();
    assert_eq!(lines["bin/app"]["read"].as_u64().unwrap(), std::fs::metadata(share.join(patch)).unwrap().len());
    assert_eq!(lines["data/blob.bin"]["read"], 64 << 10, "read whole: the file itself");
    assert!(reads["bytes"].as_u64().unwrap() * 4 < reads["whole"].as_u64().unwrap(), "{reads}");
    // A file of the share the update does not need may even be missing.
    std::fs::remove_file(share.join("share/doc/page9.txt")).unwrap();
    install(&ctx, &share, "t", &[]);
    holds_release(&releases, &ctx.path("t"), 4).unwrap();
}

/// Files installed from deltas are repaired from the copy the install kept (the
/// rebuilt, verified files), like any other.
#[test]
fn repair_restores_files_installed_from_deltas() {
    let ctx = TestContext::new();
    let releases = Releases::new(&ctx);
    let r1 = releases.build(1, &[]);
    let new = releases.build(4, std::slice::from_ref(&r1));
    install(&ctx, &r1, "t", &[]);
    install(&ctx, &new, "t", &[]);
    std::fs::write(ctx.path("t/bin/app"), b"damaged").unwrap();
    std::fs::remove_file(ctx.path("t/share/doc/page4.txt")).unwrap();
    run(ctx.pkgrun().args(["verify", "--target", "t"])).assert_code(common::exit::FAILURE);
    run(ctx.pkgrun().args(["repair", "--target", "t"])).assert_success();
    holds_release(&releases, &ctx.path("t"), 4).unwrap();
    run(ctx.pkgrun().args(["verify", "--target", "t"])).assert_success();
}
