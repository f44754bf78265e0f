//! The tamper matrix: one defect per case, each generated from a good package
//! signed by a trusted key. A flipped byte in every region (stub, first, middle and
//! last payload member, cabinet directory, header, each line of the signature
//! block, every trailer field), trailers that are self-consistent but lie,
//! truncation inside every part, and bytes appended or prepended.
//!
//! For every case `pkgrun --check` and `pkgrun -x DIR` fail with exit 3 (6 for a
//! changed major version) and a message naming what failed, a new DIR is not
//! created, an existing empty DIR stays empty, and nothing else appears in the
//! test's root. The failure class is asserted through the exit code; the wording
//! only has to name the damaged part.

mod common;

use std::path::Path;

use common::{
    BuildOptions, Signing, TestContext, exit, fix_trailer_crc, flip, is_empty_dir, replace_trailer, run, trailer_of,
};

/// One defective package.
struct Case {
    /// Names the defect; also the file name of the variant.
    name: String,
    /// The defective bytes.
    bytes: Vec<u8>,
    /// The expected exit code.
    code: i32,
    /// A word the error message must contain (case-insensitive): the damaged part.
    names: &'static str,
}

fn case(name: impl Into<String>, bytes: Vec<u8>, code: i32, names: &'static str) -> Case {
    Case { name: name.into(), bytes, code, names }
}

/// The good package of a codec: the sample tree in 32 KiB members, signed by the test key.
fn good_package(context: &TestContext, codec: &'static str) -> Vec<u8> {
    context.sample_tree("src");
    let package = context.build("src", "good.run", &BuildOptions::codec(codec).member_size(32_768));
    run(&mut context.pkgrun_trusted("good.run", &["--check"])).assert_success();
    std::fs::read(package).unwrap()
}

/// A copy of `good` with the byte at `offset` flipped.
fn flipped(good: &[u8], offset: u64) -> Vec<u8> {
    let mut bytes = good.to_vec();
    flip(&mut bytes, offset);
    bytes
}

/// Runs `--check`, `-x NEW` and `-x EMPTY` on every case; returns one line per broken expectation.
fn run_cases(context: &TestContext, cases: &[Case]) {
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let file = format!("case-{index:02}-{}.run", case.name);
        context.write_file(&file, &case.bytes, 0o644);
        let new_dir = format!("new-{index:02}");
        let empty_dir = format!("empty-{index:02}");
        context.mkdir(&empty_dir, 0o755);
        let before = context.root_paths();

        let check = run(&mut context.pkgrun_trusted(&file, &["--check"]));
        let extract_new = run(&mut context.pkgrun_trusted(&file, &["-x", &new_dir]));
        let extract_empty = run(&mut context.pkgrun_trusted(&file, &["-x", &empty_dir]));
        for (what, output) in [("--check", &check), ("-x NEW", &extract_new), ("-x EMPTY", &extract_empty)] {
            if output.code != case.code {
                failures.push(format!(
                    "{}: {what} exited {}, expected {}\n{}",
                    case.name,
                    output.code,
                    case.code,
                    output.render()
                ));
            } else if !output.stderr.to_lowercase().contains(case.names) {
                failures.push(format!("{}: {what} does not name {:?}\n{}", case.name, case.names, output.render()));
            }
        }
        if context.path(&new_dir).exists() {
            failures.push(format!("{}: -x created {new_dir}", case.name));
        }
        if !is_empty_dir(&context.path(&empty_dir)) {
            failures.push(format!("{}: -x wrote into the empty {empty_dir}", case.name));
        }
        let after = context.root_paths();
        if after != before {
            let added: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
            let removed: Vec<_> = before.iter().filter(|p| !after.contains(p)).collect();
            failures.push(format!("{}: the root changed: added {added:?}, removed {removed:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}

/// Flipped bytes in the stub and in the first, middle and last payload members
/// (and, for a cabinet, its directory): each is caught by its digest in the signed catalog.
fn payload_cases(context: &TestContext, codec: &'static str) -> Vec<Case> {
    let good = good_package(context, codec);
    let layout = context.layout("good.run");
    let header = context.header("good.run");
    let members = &header.payload.members;
    assert!(members.len() >= 4, "{codec}: the good package must have several members");
    let mut cases = vec![case("stub", flipped(&good, layout.stub.0 + 10), exit::INVALID, "stub")];
    let last = members.len() - 1;
    for (label, index) in [("first", 0), ("middle", members.len() / 2), ("last", last)] {
        let member = &members[index];
        let start = layout.payload.0 + member.offset;
        let names: &'static str = Box::leak(format!("payload member {index}").into_boxed_str());
        cases.push(case(format!("{label}-member-start"), flipped(&good, start), exit::INVALID, names));
        cases.push(case(
            format!("{label}-member-middle"),
            flipped(&good, start + member.size / 2),
            exit::INVALID,
            names,
        ));
        cases.push(case(format!("{label}-member-end"), flipped(&good, start + member.size - 1), exit::INVALID, names));
    }
    if let Some(directory) = &header.payload.directory {
        // CFHEADER's cabinet size, and the last byte of the file table (a name's NUL).
        cases.push(case("cab-header", flipped(&good, layout.payload.0 + 8), exit::INVALID, "cabinet directory"));
        let last_name_byte = layout.payload.0 + directory.size - 1;
        cases.push(case("cab-file-table", flipped(&good, last_name_byte), exit::INVALID, "cabinet directory"));
    }
    cases
}

#[test]
fn flipped_byte_in_stub_or_any_zstd_member_is_refused() {
    let context = TestContext::new();
    let cases = payload_cases(&context, "zstd");
    run_cases(&context, &cases);
}

#[test]
fn flipped_byte_in_stub_or_any_gzip_member_is_refused() {
    let context = TestContext::new();
    let cases = payload_cases(&context, "gzip");
    run_cases(&context, &cases);
}

#[test]
fn flipped_byte_in_stub_cab_directory_or_any_cab_member_is_refused() {
    let context = TestContext::new();
    let cases = payload_cases(&context, "cab");
    run_cases(&context, &cases);
}

/// Flipped bytes in the header, in each of the four lines of the signature block,
/// and in every field of the trailer.
#[test]
fn flipped_byte_in_header_signature_or_trailer_is_refused() {
    let context = TestContext::new();
    let good = good_package(&context, "zstd");
    let layout = context.layout("good.run");
    let mut cases = vec![
        case("header-first-byte", flipped(&good, layout.header.0), exit::INVALID, "header"),
        case("header-middle", flipped(&good, (layout.header.0 + layout.header.1) / 2), exit::INVALID, "header"),
        case("header-last-byte", flipped(&good, layout.header.1 - 1), exit::INVALID, "header"),
    ];
    // The signature block's four lines: untrusted comment, signature, trusted comment, global signature.
    let block = &good[layout.signature.0 as usize..layout.signature.1 as usize];
    let mut line_start = 0usize;
    for (number, line) in block.split_inclusive(|&b| b == b'\n').enumerate() {
        let offset = layout.signature.0 + (line_start + line.len() / 2) as u64;
        cases.push(case(format!("signature-line-{}", number + 1), flipped(&good, offset), exit::INVALID, "signature"));
        line_start += line.len();
    }
    assert_eq!(line_start, block.len());
    assert_eq!(cases.len(), 3 + 4, "minisign signature blocks have four lines");
    let trailer = layout.trailer.0;
    for (field, at) in [
        ("header-sha256", 5),
        ("stub-length", 32),
        ("payload-length", 40),
        ("header-length", 48),
        ("signature-length", 56),
        ("signature-length-high-byte", 63),
        ("reserved", 64),
        ("flags", 72),
        ("crc32", 76),
        ("minor-version", 82),
        ("trailer-length", 84),
        ("magic-first-byte", 88),
        ("magic-last-byte", 95),
    ] {
        cases.push(case(format!("trailer-{field}"), flipped(&good, trailer + at), exit::INVALID, "trailer"));
    }
    cases.push(case("trailer-major-version", flipped(&good, trailer + 80), exit::UNSUPPORTED, "version"));
    run_cases(&context, &cases);
}

/// Trailers with a valid CRC whose fields lie: every cross-check behind the CRC.
#[test]
fn consistent_trailer_with_lying_fields_is_refused() {
    let context = TestContext::new();
    let good = good_package(&context, "zstd");
    let edited = |edit: &dyn Fn(&mut upkg_format::Trailer)| {
        let mut bytes = good.clone();
        let mut trailer = trailer_of(&bytes);
        edit(&mut trailer);
        replace_trailer(&mut bytes, &trailer);
        bytes
    };
    let raw = |offset: usize, value: &[u8]| {
        let mut bytes = good.clone();
        let at = bytes.len() - 96 + offset;
        bytes[at..at + value.len()].copy_from_slice(value);
        fix_trailer_crc(&mut bytes);
        bytes
    };
    let cases = vec![
        case("other-header-digest", edited(&|t| t.header_sha256[0] ^= 1), exit::INVALID, "header"),
        case(
            "stub-longer-payload-shorter",
            edited(&|t| {
                t.stub_len += 1;
                t.payload_len -= 1;
            }),
            exit::INVALID,
            "header",
        ),
        case(
            "payload-longer-header-shorter",
            edited(&|t| {
                t.payload_len += 1;
                t.header_len -= 1;
            }),
            exit::INVALID,
            "header",
        ),
        case(
            "header-longer-signature-shorter",
            edited(&|t| {
                t.header_len += 1;
                t.signature_len -= 1;
            }),
            exit::INVALID,
            "header",
        ),
        case("lengths-do-not-add-up", edited(&|t| t.signature_len += 1), exit::INVALID, "trailer"),
        case("newer-minor-version", edited(&|t| t.minor += 1), exit::INVALID, "header"),
        case("reserved-not-zero", raw(64, &[1]), exit::INVALID, "trailer"),
        case("unknown-flag", raw(72, &[1]), exit::INVALID, "trailer"),
        case("trailer-length-97", raw(84, &97u32.to_le_bytes()), exit::INVALID, "trailer"),
        case("major-version-2", raw(80, &2u16.to_le_bytes()), exit::UNSUPPORTED, "version"),
        case("major-version-0", raw(80, &0u16.to_le_bytes()), exit::UNSUPPORTED, "version"),
    ];
    run_cases(&context, &cases);
}

/// Cut off inside every part, and to almost nothing.
#[test]
fn truncated_package_is_refused() {
    let context = TestContext::new();
    let good = good_package(&context, "cab");
    let layout = context.layout("good.run");
    let mid = |(start, end): (u64, u64)| ((start + end) / 2) as usize;
    let cut = |len: usize| good[..len].to_vec();
    let cases = vec![
        case("inside-stub", cut(mid(layout.stub)), exit::INVALID, "trailer"),
        case("at-payload-start", cut(layout.payload.0 as usize), exit::INVALID, "trailer"),
        case("inside-payload", cut(mid(layout.payload)), exit::INVALID, "trailer"),
        case("inside-header", cut(mid(layout.header)), exit::INVALID, "trailer"),
        case("inside-signature", cut(mid(layout.signature)), exit::INVALID, "trailer"),
        case("inside-trailer", cut(mid(layout.trailer)), exit::INVALID, "trailer"),
        case("last-byte-missing", cut(good.len() - 1), exit::INVALID, "trailer"),
        case("first-byte-missing", good[1..].to_vec(), exit::INVALID, "trailer"),
        case("shorter-than-a-trailer", cut(95), exit::INVALID, "trailer"),
        case("empty-file", Vec::new(), exit::INVALID, "trailer"),
    ];
    run_cases(&context, &cases);
}

/// Bytes after the trailer (or before the stub) change every offset the trailer implies.
#[test]
fn package_with_bytes_appended_or_prepended_is_refused() {
    let context = TestContext::new();
    let good = good_package(&context, "gzip");
    let with = |prefix: &[u8], suffix: &[u8]| [prefix, &good, suffix].concat();
    let trailer = good[good.len() - 96..].to_vec();
    let cases = vec![
        case("one-zero-byte-appended", with(b"", b"\0"), exit::INVALID, "trailer"),
        case("newline-appended", with(b"", b"\n"), exit::INVALID, "trailer"),
        case("a-trailer-of-zeros-appended", with(b"", &[0u8; 96]), exit::INVALID, "trailer"),
        case("the-trailer-appended-again", with(b"", &trailer), exit::INVALID, "trailer"),
        case("the-whole-package-appended", with(b"", &good), exit::INVALID, "trailer"),
        case("one-byte-prepended", with(b"#", b""), exit::INVALID, "trailer"),
    ];
    run_cases(&context, &cases);
}

/// Accepting an unknown signer or an unsigned package relaxes trust, never the digests.
#[test]
fn tampered_member_is_refused_even_when_untrusted_or_unsigned_is_allowed() {
    let context = TestContext::new();
    context.sample_tree("src");
    for (name, signing, allow) in [
        ("untrusted.run", Signing::TestKey, "--allow-untrusted"),
        ("unsigned.run", Signing::Unsigned, "--allow-unsigned"),
    ] {
        context.build("src", name, &BuildOptions::codec("zstd").member_size(32_768).signing(signing));
        let header = context.header(name);
        let layout = context.layout(name);
        let member = &header.payload.members[1];
        let bad = format!("bad-{name}");
        context.variant(name, &bad, |bytes| flip(bytes, layout.payload.0 + member.offset + 7));
        // Without --trust: the test key is not trusted here.
        run(context.pkgrun().args([name, "--check", allow])).assert_success();
        let check = run(context.pkgrun().args([&bad, "--check", allow]));
        check.assert_code(exit::INVALID).assert_stderr_contains("payload member 1");
        let extract = run(context.pkgrun().args([&bad, "-x", "out", allow]));
        extract.assert_code(exit::INVALID).assert_stderr_contains("payload member 1");
        assert!(!Path::new(&context.path("out")).exists());
    }
}

/// A self-extracting package cut short names the damage (exit 3), instead of
/// taking itself for a bare pkgrun ("no package given", exit 2).
#[test]
fn a_truncated_self_extracting_package_names_the_damage() {
    let context = TestContext::new();
    context.small_tree("src");
    let package = context.build("src", "whole.run", &BuildOptions::default().stub(common::Stub::Pkgrun));
    let bytes = std::fs::read(&package).unwrap();
    context.write_file("cut.run", &bytes[..bytes.len() - 100], 0o755);
    let mut command = std::process::Command::new(context.path("cut.run"));
    command.current_dir(context.path("")).env("PKGRUN_TRUSTED_KEYS", &context.trusted_keys).arg("--info");
    let output = run(&mut command);
    output.assert_code(exit::INVALID).assert_stderr_contains("the file does not end with the upkg magic");
    assert!(!output.stderr.contains("no package given"), "{}", output.render());
}
