//! Trust: who may sign the packages `pkgrun` accepts. A trusted key (given with
//! `--trust`, or found in the `PKGRUN_TRUSTED_KEYS` directory) is accepted; an
//! unknown key is refused with exit 4 naming its key id, unless `--allow-untrusted`,
//! which goes on with a loud warning; an unsigned package is refused with exit 4
//! unless `--allow-unsigned`; `--info` and `--list` work whoever signed and show
//! it; a signature that does not verify with a trusted key is exit 3.

mod common;

use std::fs;

use common::{BuildOptions, Signing, TEST_KEY_ID, TEST_PUB, TestContext, assert_same_tree, exit, run, trailer_of};
use upkg_format::Trailer;
use upkg_format::{Digest, PublicKey, SecretKey};

fn signed_and_unsigned(context: &TestContext) {
    context.small_tree("src");
    context.build("src", "signed.run", &BuildOptions::default());
    context.build("src", "unsigned.run", &BuildOptions::default().signing(Signing::Unsigned));
}

#[test]
fn package_signed_by_a_key_given_with_trust_is_accepted() {
    let context = TestContext::new();
    signed_and_unsigned(&context);
    let check = run(context.pkgrun().args(["signed.run", "--check", "--trust", TEST_PUB]));
    check.assert_success();
    assert!(check.stdout.contains(&format!("trusted key {TEST_KEY_ID}")), "{}", check.render());
    assert!(!check.stderr.contains("WARNING"), "{}", check.render());
    run(context.pkgrun().args(["signed.run", "-x", "out", "--trust", TEST_PUB])).assert_success();
    assert_same_tree(&context.path("src/root"), &context.path("out"), &[".package"]);
}

/// `PKGRUN_TRUSTED_KEYS` names the directory of trusted keys (the context pins it to an empty one).
#[test]
fn package_signed_by_a_key_in_the_trusted_keys_directory_is_accepted() {
    let context = TestContext::new();
    signed_and_unsigned(&context);
    run(context.pkgrun().args(["signed.run", "--check"])).assert_code(exit::UNTRUSTED);
    fs::copy(context.path(TEST_PUB), context.trusted_keys.join("release.pub")).unwrap();
    run(context.pkgrun().args(["signed.run", "--check"])).assert_success();
    run(context.pkgrun().args(["signed.run", "-x", "out"])).assert_success();
    // Another directory given in the variable is read instead.
    let output = run(context.pkgrun().args(["signed.run", "--check"]).env("PKGRUN_TRUSTED_KEYS", context.path("keys")));
    output.assert_success();
    assert!(output.stdout.contains(TEST_KEY_ID), "{}", output.render());
}

#[test]
fn package_signed_by_an_unknown_key_is_refused_naming_the_key() {
    let context = TestContext::new();
    signed_and_unsigned(&context);
    for args in [&["--check"][..], &["-x", "out"][..]] {
        let output = run(context.pkgrun().arg("signed.run").args(args));
        output.assert_code(exit::UNTRUSTED).assert_stderr_contains(TEST_KEY_ID).assert_stderr_contains("not trusted");
    }
    assert!(!context.path("out").exists());
    // --allow-unsigned is not --allow-untrusted.
    run(context.pkgrun().args(["signed.run", "--check", "--allow-unsigned"])).assert_code(exit::UNTRUSTED);
}

#[test]
fn allow_untrusted_goes_on_with_a_loud_warning() {
    let context = TestContext::new();
    signed_and_unsigned(&context);
    for args in [&["--check"][..], &["-x", "out"][..]] {
        let output = run(context.pkgrun().arg("signed.run").args(args).arg("--allow-untrusted"));
        output.assert_success().assert_stderr_contains(TEST_KEY_ID);
        assert!(output.stderr.contains("WARNING: "), "the warning must be loud:\n{}", output.render());
        assert!(output.stderr.contains("NOT TRUSTED"), "{}", output.render());
        assert!(!output.stdout.contains("WARNING"), "warnings go to stderr, stdout is data:\n{}", output.render());
    }
    assert_same_tree(&context.path("src/root"), &context.path("out"), &[".package"]);
    // The warning is there with --json and --quiet too: it is not progress.
    for flag in ["--json", "--quiet"] {
        let output = run(context.pkgrun().args(["signed.run", "--check", "--allow-untrusted", flag]));
        output.assert_success();
        assert!(output.stderr.contains("WARNING: "), "{flag}:\n{}", output.render());
    }
}

#[test]
fn unsigned_package_is_refused_unless_allowed() {
    let context = TestContext::new();
    signed_and_unsigned(&context);
    for args in [&["--check"][..], &["-x", "out"][..], &["--check", "--allow-untrusted"][..]] {
        let output = run(context.pkgrun().arg("unsigned.run").args(args).args(["--trust", TEST_PUB]));
        output.assert_code(exit::UNTRUSTED).assert_stderr_contains("not signed");
    }
    assert!(!context.path("out").exists());
    for args in [&["--check"][..], &["-x", "out"][..]] {
        let output = run(context.pkgrun().arg("unsigned.run").args(args).arg("--allow-unsigned"));
        output.assert_success();
        assert!(output.stderr.contains("WARNING: ") && output.stderr.contains("NOT SIGNED"), "{}", output.render());
    }
    assert_same_tree(&context.path("src/root"), &context.path("out"), &[".package"]);
}

/// A signed package whose signature block was cut off is an unsigned package, and is refused as one.
#[test]
fn package_with_its_signature_stripped_is_refused_as_unsigned() {
    let context = TestContext::new();
    signed_and_unsigned(&context);
    let layout = context.layout("signed.run");
    let good = fs::read(context.path("signed.run")).unwrap();
    let mut trailer = trailer_of(&good);
    trailer.signature_len = 0;
    let mut stripped = good[..layout.signature.0 as usize].to_vec();
    stripped.extend_from_slice(&trailer.encode());
    context.write_file("stripped.run", &stripped, 0o644);
    let output = run(&mut context.pkgrun_trusted("stripped.run", &["-x", "out"]));
    output.assert_code(exit::UNTRUSTED).assert_stderr_contains("not signed");
    assert!(!context.path("out").exists());
}

#[test]
fn info_and_list_work_on_untrusted_and_unsigned_packages_and_show_the_status() {
    let context = TestContext::new();
    signed_and_unsigned(&context);
    for (package, trust, status, text) in [
        ("signed.run", true, "trusted", "valid, by trusted key 408A83A615002445"),
        ("signed.run", false, "untrusted", "by key 408A83A615002445, which is NOT TRUSTED"),
        ("unsigned.run", false, "unsigned", "NONE: the package is not signed"),
    ] {
        let mut info = context.pkgrun();
        info.args([package, "--info"]);
        if trust {
            info.args(["--trust", TEST_PUB]);
        }
        let output = run(&mut info);
        output.assert_success();
        assert!(output.stdout.contains(text), "{package}:\n{}", output.render());
        let json = run(info.arg("--json")).assert_success().data();
        assert_eq!(json["signer"]["status"], status, "{package}");
        let list = run(context.pkgrun().args([package, "--list"]));
        list.assert_success();
        assert!(list.stdout.contains("bin/tool-link -> tool"), "{}", list.render());
    }
}

/// The header changed after signing, the old signature kept: the trusted key refuses it (exit 3, not 4).
#[test]
fn signature_that_does_not_match_the_header_is_a_bad_signature() {
    let context = TestContext::new();
    signed_and_unsigned(&context);
    let good = fs::read(context.path("signed.run")).unwrap();
    let layout = context.layout("signed.run");
    let mut header = context.header("signed.run");
    header.package.title = "Test package small, now with a different title".into();
    let header_bytes = header.to_bytes();
    let signature = &good[layout.signature.0 as usize..layout.signature.1 as usize];
    let old = trailer_of(&good);
    let trailer = Trailer { header_sha256: Digest::of(&header_bytes).0, header_len: header_bytes.len() as u64, ..old };
    let mut forged = good[..layout.header.0 as usize].to_vec();
    forged.extend_from_slice(&header_bytes);
    forged.extend_from_slice(signature);
    forged.extend_from_slice(&trailer.encode());
    context.write_file("forged.run", &forged, 0o644);
    for args in [&["--check"][..], &["-x", "out"][..], &["--info"][..]] {
        let output = run(&mut context.pkgrun_trusted("forged.run", args));
        output.assert_code(exit::INVALID).assert_stderr_contains("bad signature");
    }
    assert!(!context.path("out").exists());
}

/// A trusted key file with the signer's key id but another public key: the signature does not verify.
#[test]
fn trusted_key_with_the_same_id_but_another_key_is_a_bad_signature() {
    let context = TestContext::new();
    signed_and_unsigned(&context);
    let test_key = PublicKey::from_file(&fs::read_to_string(context.path(TEST_PUB)).unwrap()).unwrap();
    let impostor = PublicKey { key_id: test_key.key_id, key: SecretKey::generate().public_key().key };
    context.write_file("keys/impostor.pub", impostor.to_file().as_bytes(), 0o644);
    let output = run(context.pkgrun().args(["signed.run", "--check", "--trust", "keys/impostor.pub"]));
    output.assert_code(exit::INVALID).assert_stderr_contains("bad signature");
    // --allow-untrusted does not excuse a signature that fails with a trusted key.
    let output =
        run(context.pkgrun().args(["signed.run", "-x", "out", "--trust", "keys/impostor.pub", "--allow-untrusted"]));
    output.assert_code(exit::INVALID);
    assert!(!context.path("out").exists());
}

/// Setuid, setgid and sticky bits are written only for a verified signer: with
/// `--allow-untrusted` or `--allow-unsigned` the package is refused (exit 4, naming
/// the entry) before anything is written, and the libraries that write files
/// refuse it on their own, so a second caller cannot bypass the rule.
#[test]
fn special_bits_need_a_verified_signer_in_the_tool_and_in_the_libraries() {
    let context = TestContext::new();
    context.small_tree("src");
    context.write_file("src/suid/tool", b"#!/bin/sh\necho set-user-id\n", 0o755);
    context.write_manifest(
        "src",
        "small",
        "\n[[files]]\nsource = \"suid/tool\"\ndest = \"bin/suid-tool\"\nmode = \"4755\"\n",
    );
    context.build("src", "signed.run", &BuildOptions::default());
    context.build("src", "unsigned.run", &BuildOptions::default().signing(Signing::Unsigned));
    for (package, allow) in [("signed.run", "--allow-untrusted"), ("unsigned.run", "--allow-unsigned")] {
        for args in [&["-x", "out"][..], &["--target", "t", "-q"][..], &["--plan", "--target", "t"][..]] {
            let output = run(context.pkgrun().arg(package).args(args).arg(allow));
            output.assert_code(exit::UNTRUSTED).assert_stderr_contains("\"bin/suid-tool\" has mode 4755");
        }
        assert!(!context.path("out").exists() && !context.path("t").exists(), "nothing was written");
    }

    // The libraries, driven directly with an accepted but unverified signer.
    let package = upkg_format::Package::open(&context.path("signed.run")).unwrap();
    let store = upkg_format::TrustStore::new();
    let signer = upkg_format::identify_signer(package.header_bytes(), package.signature(), &store).unwrap();
    let policy = upkg_format::TrustPolicy { allow_untrusted: true, allow_unsigned: false };
    let accepted = upkg_format::enforce_trust(&signer, policy).unwrap();
    let upkg_format::Package::File(file) = package else { panic!("a package file") };
    let options = upkg_unpack::WriteOptions {
        threads: 1,
        durability: upkg_unpack::Durability::None,
        progress: &|_| {},
        verify_all: true,
    };
    let error = upkg_unpack::expand(file, &context.path("lib-out"), &accepted, &options).unwrap_err();
    assert!(error.to_string().contains("has mode 4755"), "{error}");
    assert!(!context.path("lib-out").exists());

    // A verified signer gets the bits.
    run(context.pkgrun().args(["signed.run", "-x", "out", "--trust", TEST_PUB])).assert_success();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &fs::metadata(context.path("out/bin/suid-tool")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o7777, 0o4755);
}
