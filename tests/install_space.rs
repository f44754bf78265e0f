//! The space check is an upper bound: on a loop-mounted ext4 filesystem (made by
//! the test, as root; skipped with a note where it cannot mount one), the blocks
//! and inodes an install really uses at its peak (`statvfs` polled while it runs)
//! are at most the plan's estimate, and the estimate is at most 1.5 times the
//! peak, for both samples and a 20,000-file tree. With free space or free inodes
//! one short of the estimate the install refuses before any change; with exactly
//! the estimate free it succeeds.

mod common;
mod install_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use common::{BuildOptions, Stub, TestContext, exit, repo_dir, run};
use install_support::*;

/// An ext4 filesystem in an image file, loop-mounted, unmounted on drop.
struct LoopFs {
    mount: PathBuf,
}

impl LoopFs {
    fn mount(ctx: &TestContext, name: &str, megabytes: u64, inodes: u64) -> Result<LoopFs, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root".into());
        }
        let image = ctx.path(format!("{name}.img"));
        let file = std::fs::File::create(&image).map_err(|e| e.to_string())?;
        file.set_len(megabytes << 20).map_err(|e| e.to_string())?;
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-m", "0", "-N", &inodes.to_string()])
            .arg(&image)
            .output()
            .map_err(|e| format!("cannot run mkfs.ext4: {e}"))?;
        if !mkfs.status.success() {
            return Err(format!("mkfs.ext4: {}", String::from_utf8_lossy(&mkfs.stderr).trim()));
        }
        let mount = ctx.mkdir(name, 0o755);
        let output = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!("mount -o loop: {}", String::from_utf8_lossy(&output.stderr).trim()));
        }
        Ok(LoopFs { mount })
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.mount).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
    }
}

fn loop_fs_or_skip(ctx: &TestContext, name: &str, megabytes: u64, inodes: u64) -> Option<LoopFs> {
    match LoopFs::mount(ctx, name, megabytes, inodes) {
        Ok(fs) => Some(fs),
        Err(reason) => {
            eprintln!("SKIPPED: this test needs a loop-mounted ext4 filesystem and cannot make one: {reason}");
            None
        }
    }
}

/// Blocks (in bytes) and inodes in use on the filesystem of `path`.
fn used(path: &Path) -> (u64, u64) {
    let stats = rustix::fs::statvfs(path).expect("statvfs");
    ((stats.f_blocks - stats.f_bfree) * stats.f_frsize, stats.f_files - stats.f_ffree)
}

/// Free bytes and inodes for an unprivileged user on the filesystem of `path`.
fn free(path: &Path) -> (u64, u64) {
    let stats = rustix::fs::statvfs(path).expect("statvfs");
    (stats.f_bavail * stats.f_frsize, stats.f_favail)
}

/// The plan's estimate for installing `package` on `target`: bytes and inodes.
fn estimate(ctx: &TestContext, package: &str, target: &str, args: &[&str]) -> (u64, u64) {
    let plan = run(install(ctx, package, target, &["--plan", "--json"]).args(args));
    assert!(plan.code == 0 || plan.code == exit::NO_SPACE, "{}", plan.render());
    let space = &plan.data()["targets"][0]["plan"]["space"];
    (space["needed"].as_u64().unwrap(), space["inodes"].as_u64().unwrap())
}

/// Installs `package` on `target` while polling the filesystem: the peak bytes
/// and inodes used beyond what was used before.
fn install_measuring_peak(ctx: &TestContext, fs: &Path, package: &str, target: &str, args: &[&str]) -> (u64, u64) {
    let (bytes_before, inodes_before) = used(fs);
    let done = AtomicBool::new(false);
    let (peak_bytes, peak_inodes) = std::thread::scope(|scope| {
        let poller = scope.spawn(|| {
            let mut peak = (0, 0);
            while !done.load(Ordering::SeqCst) {
                let (bytes, inodes) = used(fs);
                peak = (peak.0.max(bytes), peak.1.max(inodes));
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            peak
        });
        let output = run(&mut install(ctx, package, target, args));
        done.store(true, Ordering::SeqCst);
        assert_eq!(output.code, 0, "{}", output.render());
        poller.join().unwrap()
    });
    (peak_bytes.saturating_sub(bytes_before), peak_inodes.saturating_sub(inodes_before))
}

/// Requires peak <= estimate <= 1.5 x peak, for bytes and for inodes.
fn assert_bound(what: &str, estimate: (u64, u64), peak: (u64, u64)) {
    eprintln!(
        "{what}: estimate {} bytes, peak {} bytes ({:.2}x); estimate {} inodes, peak {} inodes ({:.2}x)",
        estimate.0,
        peak.0,
        estimate.0 as f64 / peak.0.max(1) as f64,
        estimate.1,
        peak.1,
        estimate.1 as f64 / peak.1.max(1) as f64
    );
    assert!(peak.0 <= estimate.0, "{what}: the install used {} bytes, more than the {} estimated", peak.0, estimate.0);
    assert!(peak.1 <= estimate.1, "{what}: the install used {} inodes, more than the {} estimated", peak.1, estimate.1);
    assert!(2 * estimate.0 <= 3 * peak.0, "{what}: the estimate {} is over 1.5 times the peak {}", estimate.0, peak.0);
    assert!(2 * estimate.1 <= 3 * peak.1, "{what}: the estimate {} is over 1.5 times the peak {}", estimate.1, peak.1);
}

#[test]
fn the_estimate_bounds_the_peak_for_the_hello_sample() {
    let ctx = TestContext::new();
    let Some(fs) = loop_fs_or_skip(&ctx, "fs", 64, 4096) else { return };
    ctx.build(repo_dir().join("samples/hello").to_str().unwrap(), "hello.upkg", &BuildOptions::codec("zstd"));
    let estimate = estimate(&ctx, "hello.upkg", "fs/hello", &[]);
    let peak = install_measuring_peak(&ctx, &fs.mount, "hello.upkg", "fs/hello", &["-q"]);
    assert_bound("hello", estimate, peak);
}

#[test]
fn the_estimate_bounds_the_peak_for_the_acme_service_pack() {
    let ctx = TestContext::new();
    let Some(fs) = loop_fs_or_skip(&ctx, "fs", 64, 4096) else { return };
    let release = acme_previous_release(&ctx);
    let sp = acme_service_pack(&ctx);
    acme_instance(&ctx, &release, "fs/acme");
    let estimate = estimate(&ctx, &sp, "fs/acme", &["--accept-eula"]);
    let peak = install_measuring_peak(&ctx, &fs.mount, &sp, "fs/acme", &["--accept-eula", "-q"]);
    assert_bound("acme service pack", estimate, peak);
}

/// A release of `testprod` with 20,000 small files in 200 directories.
fn many_files(ctx: &TestContext) -> String {
    for dir in 0..200 {
        for file in 0..100 {
            let body = format!("file {file} of directory {dir}\n").repeat(1 + (file % 7) * 40);
            ctx.write_file(format!("many/root/d{dir:03}/f{file:03}.txt"), body.as_bytes(), 0o644);
        }
    }
    let manifest = "[package]\nid = \"testprod-1.0\"\ntitle = \"Many files\"\nversion = \"1.0\"\nbuild = 1\n\n\
        [applies-to]\nproduct = \"testprod\"\nfresh-install = true\n\n[[files]]\nsource = \"root\"\ndest = \".\"\n";
    ctx.write_file("many/package.toml", manifest.as_bytes(), 0o644);
    ctx.build("many", "many.upkg", &BuildOptions::codec("zstd").stub(Stub::Fake));
    "many.upkg".to_owned()
}

#[test]
fn the_estimate_bounds_the_peak_for_20000_files() {
    let ctx = TestContext::new();
    let Some(fs) = loop_fs_or_skip(&ctx, "fs", 512, 131_072) else { return };
    let package = many_files(&ctx);
    let estimate = estimate(&ctx, &package, "fs/many", &[]);
    let peak = install_measuring_peak(&ctx, &fs.mount, &package, "fs/many", &["-q"]);
    assert_bound("20,000 files", estimate, peak);
}

/// Takes free space (with a preallocated file) or free inodes (with empty files)
/// until exactly `left` remains.
fn leave_free(fs: &Path, bytes: Option<u64>, inodes: Option<u64>) {
    // The filler's inode first, then the inodes (their directory takes blocks
    // too), then the blocks.
    let filler = bytes.map(|_| std::fs::File::create(fs.join("filler")).unwrap());
    if let Some(left) = inodes {
        std::fs::create_dir_all(fs.join("inodes")).unwrap();
        let mut n = 0;
        while free(fs).1 > left {
            std::fs::File::create(fs.join(format!("inodes/{n}"))).unwrap();
            n += 1;
        }
        assert_eq!(free(fs).1, left);
    }
    if let (Some(left), Some(filler)) = (bytes, filler) {
        let (now, _) = free(fs);
        assert!(now > left, "the filesystem has only {now} bytes free");
        // Extent blocks come on top of what is allocated, and come and go as the
        // file grows or shrinks: grow or cut the filler until the wanted space is left.
        let mut len = 0;
        for _ in 0..64 {
            let (now, _) = free(fs);
            if now > left {
                let more = if now - left > 1 << 20 { now - left - (64 << 10) } else { now - left };
                rustix::fs::fallocate(&filler, rustix::fs::FallocateFlags::empty(), len, more).unwrap();
                len += more;
            } else if now < left {
                len -= (left - now).min(len);
                filler.set_len(len).unwrap();
            } else {
                break;
            }
            filler.sync_all().unwrap();
        }
        assert_eq!(free(fs).0, left, "the filler left the wanted space");
        if let Some(inodes) = inodes {
            assert_eq!(free(fs).1, inodes);
        }
    }
}

#[test]
fn one_block_or_one_inode_short_is_refused_up_front_and_the_estimate_is_enough() {
    let ctx = TestContext::new();
    let release = acme_previous_release(&ctx);
    let sp = acme_service_pack(&ctx);
    for (case, short_bytes, short_inodes) in [("bytes", 1, 0), ("inodes", 0, 1), ("exact", 0, 0)] {
        let Some(fs) = loop_fs_or_skip(&ctx, &format!("fs-{case}"), 64, 4096) else { return };
        let target = format!("fs-{case}/acme");
        acme_instance(&ctx, &release, &target);
        let (bytes, inodes) = estimate(&ctx, &sp, &target, &["--accept-eula"]);
        leave_free(&fs.mount, Some(bytes - short_bytes * 4096), Some(inodes - short_inodes));
        let before = common::tree_listing(&ctx.path(&target), &[".pkgrun/logs"]);
        let output = run(&mut install(&ctx, &sp, &target, &["--accept-eula", "-q"]));
        if case == "exact" {
            assert_eq!(output.code, 0, "with exactly the estimate free, the install fits:\n{}", output.render());
        } else {
            output.assert_code(exit::NO_SPACE);
            output.assert_stderr_contains(if case == "bytes" { "not enough space" } else { "not enough free inodes" });
            assert_eq!(common::tree_listing(&ctx.path(&target), &[".pkgrun/logs"]), before, "{case}: changed");
        }
    }
}

/// A script that fills the filesystem holding the target: every free block, then
/// every inode it can still take.
const FILL_THE_DISK: &str = "#!/bin/sh\nfill=\"$PKGRUN_TARGET/../filler\"\nmkdir -p \"$fill\"\n\
    dd if=/dev/zero of=\"$fill/blocks\" bs=4096 2>/dev/null\n\
    i=0\nwhile touch \"$fill/$i\" 2>/dev/null; do i=$((i+1)); done\nexit 0\n";

/// A release of `testprod` 1.0, and an update 2.0 whose `role` script fills the disk.
fn update_filling_the_disk(ctx: &TestContext, role: &str) -> (String, String) {
    let old: Vec<File<'_>> = ["a.txt", "b.txt", "c.txt"].iter().map(|p| file(p, b"1.0\n")).collect();
    let release = release(ctx, &format!("rel-{role}"), "1.0", 1, &old);
    let src = format!("up-{role}");
    ctx.write_file(format!("{src}/fill.sh"), FILL_THE_DISK.as_bytes(), 0o755);
    let extra = format!("[[remove]]\npath = \"c.txt\"\n\n[scripts]\n{role} = \"fill.sh\"\n");
    let new = [file("a.txt", b"2.0\n"), file("b.txt", b"2.0\n"), file("new/d.txt", b"2.0\n")];
    let update = build_spec(
        ctx,
        &Spec { src: &src, id: "update-2.0", version: "2.0", build: 2, applies: "", files: &new, extra: &extra },
    );
    (release, update)
}

/// The disk fills after the space check (here a script fills it; in life another
/// process): the space reserved before the first change gives the journal, the
/// state and the log the room to finish. Filled before the changes, the install
/// rolls back to the old set; filled after them, it commits the new set. Either
/// way the transaction ends: no journal is left for a later run, `verify` passes.
#[test]
fn a_disk_that_fills_during_the_install_still_rolls_back_or_commits() {
    let ctx = TestContext::new();
    for (role, commits) in [("pre-install", false), ("post-install", true)] {
        let Some(fs) = loop_fs_or_skip(&ctx, &format!("fs-{role}"), 16, 2048) else { return };
        let target = format!("fs-{role}/t");
        let (release, update) = update_filling_the_disk(&ctx, role);
        install_ok(&ctx, &release, &target, &["-q"]);
        let before = product_tree(&ctx, &target, &[]);
        let output = run(&mut install(&ctx, &update, &target, &["-q"]));
        // dd reads /dev/zero without end: it stopped because the disk was full.
        let filler = std::fs::metadata(fs.mount.join("filler/blocks")).map_or(0, |m| m.len());
        assert!(filler > 4 << 20, "{role}: the script did not fill the disk:\n{}", output.render());
        let state = ctx.path(&target).join(".pkgrun");
        assert!(!state.join("journal.json").exists(), "{role}: the transaction did not end:\n{}", output.render());
        let log = logs(&ctx, &target).into_iter().rfind(|l| l.to_string_lossy().contains("update-2.0-")).unwrap();
        if commits {
            assert_eq!(output.code, 0, "{role}: {}", output.render());
            assert_eq!(verdict(&log), "INSTALL SUCCESS");
            assert_eq!(std::fs::read(ctx.path(&target).join("new/d.txt")).unwrap(), b"2.0\n");
            assert!(!ctx.path(&target).join("c.txt").exists());
        } else {
            assert_ne!(output.code, 0, "{role}: {}", output.render());
            let verdict = verdict(&log);
            assert!(verdict.starts_with("INSTALL FAILURE"), "{role}: {verdict}");
            assert!(verdict.contains("No space left"), "{role}: the disk, not the script, stopped it: {verdict}");
            assert_eq!(product_tree(&ctx, &target, &[]), before, "{role}: the old set is back");
        }
        let leftovers: Vec<String> = walkdir::WalkDir::new(state.join("tx"))
            .into_iter()
            .map(|e| e.unwrap().path().display().to_string())
            .filter(|p| p.contains("/reserve") || p.contains("/staging"))
            .collect();
        assert!(leftovers.is_empty(), "{role}: the reserve and the staging are gone: {leftovers:?}");
        let verify = run(&mut on_target(&ctx, &["verify"], &target));
        assert_eq!(verify.code, 0, "{role}: {}", verify.render());
    }
}
