//! Hostile entries in correctly signed packages, and hostile source trees.
//!
//! A signature says who made a package, not that it is safe. Each case takes a
//! good package, breaks one rule in its header (a `..` or absolute path, a link
//! out of the tree, a link chain that escapes, an entry below a link, a size, mode
//! or kind that the tar stream contradicts, a duplicate path), and re-assembles
//! the package with `finish_bytes_unvalidated` so its framing and signature (by
//! the trusted test key) are right. `--check` and `-x` must refuse every one with
//! exit 3, leave DIR untouched and create nothing anywhere else.
//!
//! `pkgbuild` must refuse source trees holding a FIFO, a device node, or a link
//! that is absolute or leads out of the tree, with exit 2 and before writing anything.

mod common;

use std::fs;
use std::io::Read as _;

use common::{BuildOptions, TEST_PUB, TestContext, exit, is_empty_dir, load_test_key, paths_under, run, trailer_of};
use upkg_format::Trailer;
use upkg_format::{Digest, Version};
use upkg_format::{FileEntry, Header, Kind, Mode, Policy};

/// The tree the hostile headers start from: a file, an empty file, a directory
/// with a file, a link to that directory and a link inside it pointing up.
fn hostile_base(context: &TestContext, codec: &'static str) {
    context.write_manifest("src", "hostile", "");
    context.write_file("src/root/a.txt", b"aaaa\n", 0o644);
    context.write_file("src/root/empty", b"", 0o644);
    context.write_file("src/root/lib/libx.so.1", b"not really a library\n", 0o755);
    context.symlink("src/root/lib/up", "..");
    context.symlink("src/root/libdir", "lib");
    context.symlink("src/root/lib/libx.so", "libx.so.1");
    context.build("src", "good.run", &BuildOptions::codec(codec));
    run(&mut context.pkgrun_trusted("good.run", &["--check"])).assert_success();
}

fn entry_mut<'a>(header: &'a mut Header, path: &str) -> &'a mut FileEntry {
    header.files.iter_mut().find(|e| e.path == path).unwrap_or_else(|| panic!("no entry {path:?}"))
}

/// Adds an entry and keeps the catalog sorted.
fn insert(header: &mut Header, entry: FileEntry) {
    header.files.push(entry);
    header.files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
}

fn file_entry(path: &str, size: u64) -> FileEntry {
    FileEntry {
        path: path.into(),
        kind: Kind::File,
        mode: Mode(0o644),
        size,
        sha256: Some(Digest::of(b"")),
        target: None,
        version: Some("2.1.0".parse::<Version>().unwrap()),
        policy: Some(Policy::Newer),
        member: Some(0),
        offset: Some(0),
        deltas: Vec::new(),
    }
}

type Edit = fn(&mut Header);

/// One broken rule per case; every case's package is signed by the trusted test key.
fn header_cases(codec: &'static str) -> Vec<(&'static str, Edit)> {
    let mut cases: Vec<(&'static str, Edit)> = vec![
        ("dot-dot-path", |h| entry_mut(h, "a.txt").path = "../a.txt".into()),
        ("dot-dot-inside-path", |h| entry_mut(h, "lib/libx.so.1").path = "lib/../../libx.so.1".into()),
        ("absolute-path", |h| entry_mut(h, "a.txt").path = "/tmp/upkg-hostile-absolute".into()),
        ("reserved-header-path", |h| {
            insert(
                h,
                FileEntry {
                    kind: Kind::Dir,
                    size: 0,
                    sha256: None,
                    version: None,
                    policy: None,
                    ..file_entry(".package", 0)
                },
            );
            insert(h, FileEntry { version: None, policy: None, ..file_entry(".package/header.json", 0) });
        }),
        ("backslash-path", |h| entry_mut(h, "a.txt").path = "..\\a.txt".into()),
        ("newline-in-path", |h| entry_mut(h, "empty").path = "empty\n../../x".into()),
        ("link-to-absolute-path", |h| entry_mut(h, "lib/libx.so").target = Some("/etc/passwd".into())),
        ("link-out-of-the-tree", |h| entry_mut(h, "lib/libx.so").target = Some("../../etc/passwd".into())),
        // lib/up -> .. is fine alone; lib/libx.so -> up/.. walks through it and out.
        ("link-chain-escaping", |h| entry_mut(h, "lib/libx.so").target = Some("up/..".into())),
        ("link-chain-escaping-further", |h| entry_mut(h, "libdir").target = Some("lib/up/../..".into())),
        // libdir -> lib: an entry below it would be written through the link.
        ("entry-below-a-link", |h| insert(h, file_entry("libdir/evil", 0))),
        ("duplicate-path", |h| {
            let copy = h.files.iter().find(|e| e.path == "a.txt").unwrap().clone();
            insert(h, copy);
        }),
        ("parent-missing", |h| insert(h, file_entry("nowhere/evil", 0))),
        // 5 -> 6 bytes stays within the same 512-byte tar block, so every offset still agrees.
        ("size-larger-than-the-data", |h| entry_mut(h, "a.txt").size = 6),
        ("size-smaller-than-the-data", |h| entry_mut(h, "a.txt").size = 4),
        ("size-far-larger", |h| entry_mut(h, "a.txt").size = 1 << 20),
        ("other-digest", |h| entry_mut(h, "a.txt").sha256 = Some(Digest::of(b"something else\n"))),
        ("link-mode-not-0777", |h| entry_mut(h, "libdir").mode = Mode(0o755)),
        ("mode-beyond-0777", |h| entry_mut(h, "a.txt").mode = Mode(0o17777)),
        // An empty file turned into a directory: same length in the tar stream, another type.
        ("kind-file-becomes-dir", |h| {
            let e = entry_mut(h, "empty");
            e.kind = Kind::Dir;
            e.sha256 = None;
            e.version = None;
            e.policy = None;
        }),
        ("kind-link-becomes-file", |h| {
            let e = entry_mut(h, "libdir");
            e.kind = Kind::File;
            e.target = None;
            e.mode = Mode(0o644);
            e.sha256 = Some(Digest::of(b""));
            e.version = Some("2.1.0".parse().unwrap());
        }),
    ];
    if codec != "cab" {
        // A cabinet records no modes (only the executable bit) and no links: the
        // catalog is the authority there, and these are ordinary packages. A tar
        // stream records both, and `tar -x` must never see another tree than pkgrun.
        cases.push(("mode-differs-from-the-tar-record", |h| entry_mut(h, "a.txt").mode = Mode(0o600)));
        cases.push(("setuid-differs-from-the-tar-record", |h| entry_mut(h, "lib/libx.so.1").mode = Mode(0o4755)));
        cases.push(("link-target-differs-from-the-tar-record", |h| {
            entry_mut(h, "lib/libx.so").target = Some("../a.txt".into())
        }));
    }
    cases
}

fn refuse_all(codec: &'static str) {
    let context = TestContext::new();
    hostile_base(&context, codec);
    let outside = ["/tmp/upkg-hostile-absolute", "/etc/passwd-upkg"];
    let mut failures = Vec::new();
    for (index, (name, edit)) in header_cases(codec).into_iter().enumerate() {
        let file = format!("{index:02}-{name}.run");
        context.resigned("good.run", &file, edit);
        let new_dir = format!("new-{index:02}");
        let empty_dir = format!("empty-{index:02}");
        context.mkdir(&empty_dir, 0o755);
        let before = context.root_paths();
        for args in [&["--check"][..], &["-x", &new_dir][..], &["-x", &empty_dir][..]] {
            let output = run(&mut context.pkgrun_trusted(&file, args));
            if output.code != exit::INVALID {
                failures.push(format!("{name}: {args:?} exited {}\n{}", output.code, output.render()));
            }
        }
        if context.path(&new_dir).exists() {
            failures.push(format!("{name}: -x created {new_dir}: {:?}", paths_under(&context.path(&new_dir))));
        }
        if !is_empty_dir(&context.path(&empty_dir)) {
            failures.push(format!("{name}: -x wrote into {empty_dir}: {:?}", paths_under(&context.path(&empty_dir))));
        }
        if context.root_paths() != before {
            failures.push(format!("{name}: something was created or removed in the test's root"));
        }
        for path in outside {
            if std::path::Path::new(path).exists() {
                failures.push(format!("{name}: {path} was created"));
            }
        }
    }
    assert!(failures.is_empty(), "{} hostile packages were not refused:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn hostile_entries_in_signed_zstd_packages_are_refused() {
    refuse_all("zstd");
}

#[test]
fn hostile_entries_in_signed_gzip_packages_are_refused() {
    refuse_all("gzip");
}

#[test]
fn hostile_entries_in_signed_cab_packages_are_refused() {
    refuse_all("cab");
}

/// The message says the entry is unsafe and which it is.
#[test]
fn unsafe_entry_message_names_the_entry() {
    let context = TestContext::new();
    hostile_base(&context, "zstd");
    context
        .resigned("good.run", "escape.run", |h| entry_mut(h, "lib/libx.so").target = Some("../../etc/passwd".into()));
    let output = run(&mut context.pkgrun_trusted("escape.run", &["-x", "out"]));
    output.assert_code(exit::INVALID).assert_stderr_contains("unsafe entry").assert_stderr_contains("lib/libx.so");
}

/// The tar stream itself names another path than the catalog, and the member's
/// digest, the header and the signature all agree with the altered stream: the
/// payload is refused because its tar records are not the catalog's.
#[test]
fn tar_record_naming_another_path_is_refused_despite_valid_digests() {
    let context = TestContext::new();
    hostile_base(&context, "zstd");
    let good = fs::read(context.path("good.run")).unwrap();
    let layout = context.layout("good.run");
    let mut header = context.header("good.run");
    assert_eq!(header.payload.members.len(), 1);
    let member = header.payload.members[0].clone();
    let start = (layout.payload.0 + member.offset) as usize;
    let mut raw = Vec::new();
    zstd::stream::read::Decoder::new(&good[start..start + member.size as usize])
        .unwrap()
        .read_to_end(&mut raw)
        .unwrap();
    // The first entry is a.txt: rename it in its tar header to ../a.txt (fixing the header checksum).
    let index = header.files.iter().position(|e| e.path == "a.txt").unwrap();
    let at = header.files[index].offset.unwrap() as usize;
    let mut record = tar::Header::from_byte_slice(&raw[at..at + 512]).clone();
    record.as_old_mut().name[..8].copy_from_slice(b"../a.txt");
    record.set_cksum();
    raw[at..at + 512].copy_from_slice(record.as_bytes());
    let compressed = zstd::encode_all(&raw[..], 3).unwrap();

    header.payload.members[0].size = compressed.len() as u64;
    header.payload.members[0].sha256 = Digest::of(&compressed);
    header.payload.size = compressed.len() as u64;
    let mut forged = good[..layout.payload.0 as usize].to_vec();
    forged.extend_from_slice(&compressed);
    forged.extend(upkg_format::finish_bytes_unvalidated(&header, Some(&load_test_key())));
    context.write_file("forged.run", &forged, 0o644);
    // It is framed and signed correctly: only the payload check can refuse it.
    let info = run(&mut context.pkgrun_trusted("forged.run", &["--info"]));
    info.assert_success();
    assert_eq!(trailer_of(&forged).payload_len, compressed.len() as u64);
    // And `tar` would indeed extract it to ../a.txt.
    let names: Vec<String> = tar::Archive::new(&raw[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"../a.txt".to_owned()), "{names:?}");

    context.mkdir("empty", 0o755);
    for args in [&["--check"][..], &["-x", "out"][..], &["-x", "empty"][..]] {
        let output = run(&mut context.pkgrun_trusted("forged.run", args));
        output.assert_code(exit::INVALID).assert_stderr_contains("a.txt");
    }
    assert!(!context.path("out").exists());
    assert!(is_empty_dir(&context.path("empty")));
    assert!(!context.path("a.txt").exists() && !context.root.parent().unwrap().join("a.txt").exists());
}

/// A header that declares format 2.0, framed and signed: unsupported version (exit 6), not malformed.
#[test]
fn signed_header_of_a_newer_major_version_is_unsupported() {
    let context = TestContext::new();
    hostile_base(&context, "zstd");
    context.resigned("good.run", "v2.run", |h| h.format.major = 2);
    for args in [&["--check"][..], &["-x", "out"][..], &["--info"][..]] {
        run(&mut context.pkgrun_trusted("v2.run", args)).assert_code(exit::UNSUPPORTED);
    }
    assert!(!context.path("out").exists());
}

/// Signed and consistent, but not canonical JSON: one signed byte string must have one meaning.
#[test]
fn signed_header_in_non_canonical_json_is_refused() {
    let context = TestContext::new();
    hostile_base(&context, "zstd");
    let good = fs::read(context.path("good.run")).unwrap();
    let layout = context.layout("good.run");
    let header = &good[layout.header.0 as usize..layout.header.1 as usize];
    let pretty = serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(header).unwrap()).unwrap();
    let parsed: Header = serde_json::from_slice(&pretty).unwrap();
    let signature = load_test_key().sign(&pretty, &parsed.trusted_comment()).encode();
    let trailer = Trailer {
        header_sha256: Digest::of(&pretty).0,
        header_len: pretty.len() as u64,
        signature_len: signature.len() as u64,
        ..trailer_of(&good)
    };
    let forged = [&good[..layout.header.0 as usize], &pretty, signature.as_bytes(), &trailer.encode()].concat();
    context.write_file("pretty.run", &forged, 0o644);
    let output = run(&mut context.pkgrun_trusted("pretty.run", &["--check"]));
    output.assert_code(exit::INVALID).assert_stderr_contains("canonical");
}

// ---- Hostile source trees --------------------------------------------------------------

/// pkgbuild refuses the tree with exit 2, names the offending file, and writes no output (not even a temporary file).
#[track_caller]
fn build_is_refused(context: &TestContext, src: &str, names: &str) {
    let before = paths_under(&context.root);
    let output = run(&mut context.build_command(src, "out.run", &BuildOptions::default()));
    output.assert_code(exit::USAGE).assert_stderr_contains(names);
    assert!(!context.path("out.run").exists());
    assert_eq!(paths_under(&context.root), before, "pkgbuild left files behind");
}

#[test]
fn source_tree_with_a_fifo_is_refused() {
    let context = TestContext::new();
    context.small_tree("src");
    let fifo = context.path("src/root/bin/pipe");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o644), 0)
        .expect("mkfifo");
    build_is_refused(&context, "src", "named pipe");
}

#[test]
fn source_tree_with_a_socket_is_refused() {
    let context = TestContext::new();
    context.small_tree("src");
    let _listener = std::os::unix::net::UnixListener::bind(context.path("src/root/bin/control.sock")).expect("bind");
    build_is_refused(&context, "src", "socket");
}

#[test]
fn source_tree_with_a_device_node_is_refused() {
    let context = TestContext::new();
    context.small_tree("src");
    let node = context.path("src/root/etc/null");
    let made = rustix::fs::mknodat(
        rustix::fs::CWD,
        &node,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    );
    if let Err(e) = made {
        eprintln!("SKIPPED: cannot create a device node here ({e}); this test needs root");
        return;
    }
    build_is_refused(&context, "src", "device");
}

#[test]
fn source_tree_with_an_absolute_link_is_refused() {
    let context = TestContext::new();
    context.small_tree("src");
    context.symlink("src/root/etc/passwd", "/etc/passwd");
    build_is_refused(&context, "src", "etc/passwd");
}

#[test]
fn source_tree_with_a_link_leading_out_of_the_tree_is_refused() {
    let context = TestContext::new();
    context.small_tree("src");
    context.symlink("src/root/bin/escape", "../../package.toml");
    build_is_refused(&context, "src", "bin/escape");
}

#[test]
fn source_tree_with_a_link_chain_leading_out_is_refused() {
    let context = TestContext::new();
    context.small_tree("src");
    context.symlink("src/root/bin/up", "..");
    context.symlink("src/root/bin/out", "up/..");
    build_is_refused(&context, "src", "bin/out");
}

/// The hostile packages are refused for the right reason, not because the key is unknown.
#[test]
fn resigned_packages_verify_with_the_trusted_key() {
    let context = TestContext::new();
    hostile_base(&context, "zstd");
    // Re-signing an unchanged header gives back the same bytes: the test harness is faithful.
    context.resigned("good.run", "same.run", |_| {});
    assert_eq!(fs::read(context.path("good.run")).unwrap(), fs::read(context.path("same.run")).unwrap());
    assert!(context.path(TEST_PUB).exists());
}
