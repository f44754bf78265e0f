//! Interoperability with the standard tools an administrator already has: the
//! payload cut out with the byte range from `--info --json` is an ordinary
//! `.tar.zst`, `.tar.gz` or `.cab` (read with zstd, gzip, tar, cabextract and the
//! `cab` crate, giving back the source), the signed header verifies with stock
//! `minisign -V`, keys made by `minisign -G` sign packages, and keys made by
//! `pkgbuild keygen` (with and without a passphrase) sign files with `minisign -S`.
//!
//! A missing tool fails the test, naming the Debian package to install: CI
//! installs them all, so a silent skip would hide lost coverage.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;

use common::{
    BuildOptions, Signing, TestContext, assert_same_tree, exit, file_digests, require_tool, run, run_with_stdin,
    test_pub,
};
use sha2::{Digest as _, Sha256};

/// Builds the sample tree with `codec` in several members and writes its payload to `name`.
fn cut_payload(context: &TestContext, codec: &'static str, name: &str) -> Vec<u8> {
    context.sample_tree("src");
    context.build("src", "pkg.run", &BuildOptions::codec(codec).member_size(32_768));
    let layout = context.layout("pkg.run");
    let bytes = fs::read(context.path("pkg.run")).unwrap();
    let payload = bytes[layout.payload.0 as usize..layout.payload.1 as usize].to_vec();
    context.write_file(name, &payload, 0o644);
    payload
}

#[test]
fn zstd_payload_is_a_tar_zst_that_zstd_and_tar_read() {
    require_tool("zstd", "zstd");
    require_tool("tar", "tar");
    let context = TestContext::new();
    cut_payload(&context, "zstd", "payload.tar.zst");
    run(context.program("zstd").args(["-q", "-t", "payload.tar.zst"])).assert_success();
    // Concatenated frames are one stream: zstd -d | tar -x.
    let decompressed = run_bytes(&context, &["zstd", "-q", "-d", "-c", "payload.tar.zst"]);
    context.mkdir("out", 0o755);
    let mut tar = context.program("tar");
    tar.args(["-x", "-p", "--no-same-owner", "-f", "-", "-C", "out"]);
    run_with_stdin(&mut tar, &decompressed).assert_success();
    assert_same_tree(&context.path("src/root"), &context.path("out"), &[]);
}

#[test]
fn gzip_payload_is_a_tar_gz_that_gzip_and_tar_read() {
    require_tool("gzip", "gzip");
    require_tool("tar", "tar");
    let context = TestContext::new();
    cut_payload(&context, "gzip", "payload.tar.gz");
    let header = context.header("pkg.run");
    assert!(header.payload.members.len() >= 4, "several gzip members, read as one stream");
    run(context.program("gzip").args(["-t", "payload.tar.gz"])).assert_success();
    context.mkdir("out", 0o755);
    run(context.program("tar").args(["-x", "-z", "-p", "--no-same-owner", "-f", "payload.tar.gz", "-C", "out"]))
        .assert_success();
    assert_same_tree(&context.path("src/root"), &context.path("out"), &[]);
}

/// A cabinet holds regular files only: those must come back, every one, byte for byte.
#[test]
fn cab_payload_is_a_cabinet_that_cabextract_reads() {
    require_tool("cabextract", "cabextract");
    let context = TestContext::new();
    cut_payload(&context, "cab", "payload.cab");
    let header = context.header("pkg.run");
    assert!(header.payload.members.iter().filter(|m| !m.continues).count() >= 2, "several folders");
    let test = run(context.program("cabextract").args(["-t", "payload.cab"]));
    test.assert_success();
    assert!(test.stdout.contains("All done, no errors."), "{}", test.render());
    run(context.program("cabextract").args(["-q", "-d", "out", "payload.cab"])).assert_success();
    let expected = file_digests(&context.path("src/root"), &[]);
    assert_eq!(expected.len(), 13);
    assert_eq!(file_digests(&context.path("out"), &[]), expected);
}

/// The `cab` crate, an implementation independent of this project's, reads every file.
#[test]
fn cab_payload_is_read_by_the_cab_crate() {
    let context = TestContext::new();
    let payload = cut_payload(&context, "cab", "payload.cab");
    let mut cabinet = cab::Cabinet::new(std::io::Cursor::new(payload)).expect("a cabinet the cab crate accepts");
    let names: Vec<String> = cabinet
        .folder_entries()
        .flat_map(|folder| folder.file_entries().map(|file| file.name().to_owned()).collect::<Vec<_>>())
        .collect();
    let mut found = BTreeMap::new();
    for name in names {
        let mut contents = Vec::new();
        cabinet.read_file(&name).unwrap().read_to_end(&mut contents).unwrap();
        found.insert(name.replace('\\', "/"), hex::encode(Sha256::digest(&contents)));
    }
    assert_eq!(found, file_digests(&context.path("src/root"), &[]));
}

/// The signed header, cut out of the package or kept in an expanded tree, verifies with stock minisign.
#[test]
fn header_signature_verifies_with_minisign() {
    require_tool("minisign", "minisign");
    let context = TestContext::new();
    context.small_tree("src");
    context.build("src", "pkg.run", &BuildOptions::default());
    let layout = context.layout("pkg.run");
    let bytes = fs::read(context.path("pkg.run")).unwrap();
    let header = &bytes[layout.header.0 as usize..layout.header.1 as usize];
    let signature = &bytes[layout.signature.0 as usize..layout.signature.1 as usize];
    context.write_file("header.json", header, 0o644);
    context.write_file("sig", signature, 0o644);
    let verify = |message: &str, signature: &str| {
        run(context.program("minisign").args(["-V", "-m", message, "-x", signature]).arg("-p").arg(test_pub()))
    };
    let good = verify("header.json", "sig");
    good.assert_success();
    assert!(good.stdout.contains("Trusted comment: upkg package id=small version=2.1.0 build=42"), "{}", good.render());

    // One changed byte, anywhere in the header: minisign refuses it.
    for offset in [0, header.len() / 2, header.len() - 1] {
        let mut modified = header.to_vec();
        modified[offset] ^= 1;
        context.write_file("modified.json", &modified, 0o644);
        let output = verify("modified.json", "sig");
        assert_ne!(output.code, 0, "minisign accepted a header modified at byte {offset}\n{}", output.render());
    }

    // The expanded tree keeps them under the names minisign looks for by default.
    run(&mut context.pkgrun_trusted("pkg.run", &["-x", "out"])).assert_success();
    run(context.program("minisign").args(["-V", "-m", "out/.package/header.json", "-p"]).arg(test_pub()))
        .assert_success();
}

/// A key made by stock `minisign -G -W` signs packages through `pkgbuild build --key`.
#[test]
fn key_made_by_minisign_signs_packages() {
    require_tool("minisign", "minisign");
    let context = TestContext::new();
    context.small_tree("src");
    run(context.program("minisign").args(["-G", "-W", "-p", "mini.pub", "-s", "mini.key"])).assert_success();
    context.build("src", "pkg.run", &BuildOptions::default().signing(Signing::Key(context.path("mini.key"))));
    let key_id = fs::read_to_string(context.path("mini.pub")).unwrap();
    let key_id = key_id.lines().next().unwrap().rsplit(' ').next().unwrap().to_owned();
    let check = run(context.pkgrun().args(["pkg.run", "--check", "--trust", "mini.pub"]));
    check.assert_success();
    assert!(check.stdout.contains(&key_id), "the minisign key id {key_id} is shown\n{}", check.render());
    run(context.pkgrun().args(["pkg.run", "--check", "--trust", common::TEST_PUB])).assert_code(exit::UNTRUSTED);
}

/// A key made by `pkgbuild keygen` signs files with stock `minisign -S`, unencrypted
/// or protected by a passphrase (which minisign reads from standard input); the
/// protected key signs packages too. (A wrong passphrase is refused in the unit
/// tests of `upkg_format::sign`, with cheaper scrypt parameters.)
#[test]
fn key_made_by_pkgbuild_keygen_signs_with_minisign() {
    require_tool("minisign", "minisign");
    let context = TestContext::new();
    context.write_file("message.txt", b"a file to sign\n", 0o644);
    context.write_file("passphrase.txt", b"correct horse battery staple\n", 0o600);

    run(context.pkgbuild().args(["keygen", "plain", "--no-passphrase"])).assert_success();
    run(context.program("minisign").args(["-S", "-s", "plain.key", "-m", "message.txt", "-x", "plain.sig"]))
        .assert_success();
    run(context.program("minisign").args(["-V", "-p", "plain.pub", "-m", "message.txt", "-x", "plain.sig"]))
        .assert_success();

    run(context.pkgbuild().args(["keygen", "protected", "--passphrase-file", "passphrase.txt"])).assert_success();
    // Each use of the protected key costs a scrypt of 1 GiB (minisign's parameters):
    // minisign signs while pkgbuild signs a package with the same key.
    context.small_tree("src");
    let mut sign = context.program("minisign");
    sign.args(["-S", "-s", "protected.key", "-m", "message.txt", "-x", "protected.sig"]);
    let signing = std::thread::spawn(move || run_with_stdin(&mut sign, b"correct horse battery staple\n"));
    let protected = BuildOptions::default().signing(Signing::Key("protected.key".into()));
    run(context.build_command("src", "pkg.run", &protected).args(["--passphrase-file", "passphrase.txt"]))
        .assert_success();
    signing.join().unwrap().assert_success();
    run(context.program("minisign").args(["-V", "-p", "protected.pub", "-m", "message.txt", "-x", "protected.sig"]))
        .assert_success();
    run(context.pkgrun().args(["pkg.run", "--check", "--trust", "protected.pub"])).assert_success();
}

/// Standard output of a tool, which must succeed.
fn run_bytes(context: &TestContext, argv: &[&str]) -> Vec<u8> {
    let output = context.program(argv[0]).args(&argv[1..]).stdin(std::process::Stdio::null()).output().unwrap();
    assert!(output.status.success(), "{argv:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}
