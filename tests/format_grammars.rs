//! The ABNF grammars of the spec (sections 4.5 and 10) against the readers.
//!
//! The ```abnf blocks are taken from `format-spec/SPEC.md` as written and loaded
//! into an independent ABNF parser (the `abnf` package from PyPI, installed by
//! `./test.sh`). For every rule, accepted and refused examples, and every
//! single-character edit of the accepted ones, are judged by the grammar (with
//! the limits the spec states beside it) and by the Rust reader; both must agree.
//!
//! The spec says quoted literals are case-sensitive: they are loaded as RFC
//! 7405's `%s"..."`. Texts are given to the parser as bytes (each byte one
//! character), so the byte-level UTF-8 rules mean what they say.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;
use upkg_format::{Digest, Mode, PublicKey, SecretKey, SignatureBlock, Version, VersionReq};

/// The grammar of the spec: every ```abnf block, literals made case-sensitive,
/// and the prose rule of the key files given as bytes.
fn grammar() -> String {
    let spec = std::fs::read_to_string(common::repo_dir().join("format-spec/SPEC.md")).unwrap();
    let mut grammar = String::new();
    let mut lines = spec.lines();
    while let Some(line) = lines.next() {
        if line == "```abnf" {
            for line in lines.by_ref().take_while(|l| *l != "```") {
                grammar.push_str(line);
                grammar.push('\n');
            }
        }
    }
    let prose = grammar.lines().find(|l| l.starts_with("line-char")).expect("the line-char rule").to_owned();
    // The prose rule, as bytes: any UTF-8 character (RFC 3629) but LF.
    grammar = grammar.replace(&prose, "line-char        = %x00-09 / %x0B-7F / %xC2-DF UTF8-tail / UTF8-3 / UTF8-4");
    // Quoted literals are case-sensitive (spec section 1).
    let mut out = String::new();
    let mut rest = grammar.as_str();
    while let Some(at) = rest.find('"') {
        let (before, after) = rest.split_at(at);
        let in_comment = before.rsplit('\n').next().is_some_and(|l| l.contains(';'));
        let close = after[1..].find('"').expect("a closed literal") + 2;
        out.push_str(before);
        if !in_comment {
            out.push_str("%s");
        }
        out.push_str(&after[..close]);
        rest = &after[close..];
    }
    out.push_str(rest);
    out
}

/// Whether the Rust reader accepts `text` as a value of `rule`, with the limits the spec states.
fn rust_accepts(rule: &str, text: &[u8]) -> bool {
    let Ok(utf8) = std::str::from_utf8(text) else {
        // Every rule is UTF-8 text; the readers take only valid UTF-8.
        return false;
    };
    let json = |t: &str| serde_json::Value::String(t.to_owned());
    match rule {
        "version" => utf8.parse::<Version>().is_ok(),
        "version-range" => utf8.parse::<VersionReq>().is_ok_and(|r| r.to_string() == utf8),
        "identifier" => upkg_format::check_identifier("id", utf8).is_ok(),
        "serial" => upkg_format::is_serial(utf8),
        "mode" => serde_json::from_value::<Mode>(json(utf8)).is_ok(),
        "digest" => serde_json::from_value::<Digest>(json(utf8)).is_ok(),
        // Without the names section 5.1 reserves, which no grammar says.
        "path" => upkg_format::check_entry_path(utf8).is_ok(),
        // Deep enough that the examples' ".." stay inside the tree.
        "link-target" => upkg_format::resolve_link_target("d1/d2/d3/d4/l", utf8, &|_| None).is_ok(),
        "public-key-file" => PublicKey::from_file(utf8).is_ok(),
        "secret-key-file" => SecretKey::file_is_encrypted(utf8).is_ok(),
        // A reader then requires the trusted comment to be the header's, which has this form.
        "signature-block" => SignatureBlock::decode(text).is_ok_and(|b| trusted_comment_ok(&b.trusted_comment)),
        "trusted-comment" => trusted_comment_ok(utf8),
        _ => unreachable!("{rule}"),
    }
}

/// A trusted comment as readers check it: the one a header with these values gives.
fn trusted_comment_ok(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("upkg package id=") else { return false };
    let Some((id, rest)) = rest.split_once(" version=") else { return false };
    let Some((version, build)) = rest.split_once(" build=") else { return false };
    upkg_format::check_identifier("id", id).is_ok()
        && version.parse::<Version>().is_ok_and(|v| v.to_string() == version)
        && build.parse::<u64>().is_ok_and(|b| b.to_string() == build)
}

/// The limits the spec states beside a rule, which the grammar cannot say.
fn within_limits(rule: &str, text: &[u8]) -> bool {
    let utf8 = String::from_utf8_lossy(text);
    // Every run of digits (a version component) fits a u64.
    let numbers_fit =
        |t: &str| t.split(|c: char| !c.is_ascii_digit()).all(|n| n.is_empty() || n.parse::<u64>().is_ok());
    match rule {
        "version" | "version-range" => numbers_fit(&utf8),
        "serial" => utf8.strip_suffix('%').map_or_else(|| utf8.parse::<u32>().is_ok(), |p| p.parse::<u8>().is_ok()),
        "path" => {
            text.len() <= 4096
                && utf8.split('/').all(|c| c.len() <= 255 && c != "." && c != "..")
                && ![".package/header.json", ".package/header.json.minisig", ".package/pkgrun"].contains(&&*utf8)
                && utf8 != ".pkgrun"
                && !utf8.starts_with(".pkgrun/")
        }
        // The grammar gives the form; resolution (section 5.5) decides the rest, and
        // the examples stay inside the tree.
        "link-target" => text.len() <= 4096,
        "trusted-comment" => utf8.rsplit_once(" build=").is_some_and(|(_, b)| b.parse::<u64>().is_ok()),
        "public-key-file" | "secret-key-file" | "signature-block" => base64_canonical(rule, text),
        _ => true,
    }
}

/// The key and signature lines hold canonical base64 of the stated bytes ("Ed" or "ED" first).
fn base64_canonical(rule: &str, text: &[u8]) -> bool {
    let engine = base64::engine::general_purpose::STANDARD;
    let text = String::from_utf8_lossy(text);
    let lines: Vec<&str> = text.split('\n').collect();
    let decoded = |line: &str| engine.decode(line.strip_suffix('\r').unwrap_or(line).trim_matches([' ', '\t'])).ok();
    match rule {
        "public-key-file" => lines.get(1).and_then(|l| decoded(l)).is_some_and(|raw| {
            raw.len() == 42
                && raw.starts_with(b"Ed")
                && ed25519_dalek::VerifyingKey::from_bytes(&raw[10..].try_into().unwrap()).is_ok()
        }),
        "secret-key-file" => lines
            .get(1)
            .and_then(|l| decoded(l))
            .is_some_and(|raw| raw.len() == 158 && raw.starts_with(b"Ed") && &raw[4..6] == b"B2"),
        // Line 1 names the key id of line 2 (section 10.5).
        _ => {
            lines.get(1).and_then(|l| decoded(l)).is_some_and(|raw| {
                let id = format!(
                    "{:016X}",
                    u64::from_le_bytes(raw.get(2..10).and_then(|b| b.try_into().ok()).unwrap_or_default())
                );
                raw.len() == 74 && raw.starts_with(b"ED") && lines[0].ends_with(&id)
            }) && lines.get(3).and_then(|l| decoded(l)).is_some_and(|raw| raw.len() == 64)
        }
    }
}

/// Accepted examples of each rule; refused ones come from their edits and from [`refused`].
fn accepted() -> Vec<(&'static str, Vec<u8>)> {
    let vectors = common::repo_dir().join("format-spec/vectors");
    let read = |name: &str| std::fs::read(vectors.join(name)).unwrap();
    let key = SecretKey::from_file(&String::from_utf8(read("test-key.key")).unwrap(), None).unwrap();
    let block = key.sign(b"header", "upkg package id=upkg-test-vector version=1.2.3 build=42").encode();
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    for (rule, texts) in [
        ("version", &["0", "1", "2.10", "10.0.19041.1", "1.2.3.4.5.6.7.8", "18446744073709551615"][..]),
        ("version-range", &["*", ">=2.1, <2.2", "=1", ">0.1", "<=3.0.0", ">=1, >1.0, <=3, <3.0.1, =2.5"]),
        ("identifier", &["a", "0", "acme-server-2.1-hotfix-1042", "A._+-z"]),
        ("serial", &["1", "12", "4294967295", "1%", "9%", "50%", "100%"]),
        ("mode", &["0000", "0644", "7777", "4755"]),
        ("digest", &["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]),
        (
            "path",
            &[
                "a",
                "bin/server",
                "a b/c d ",
                " x",
                "...",
                "a..",
                "docs/ünïcode.txt",
                ".pkgrun2",
                "sub/.pkgrun",
                "a\u{a0}b",
            ],
        ),
        ("link-target", &["tool", "../lib/tool", "./a/./b/", "a//b", "sub dir /x", "ü"]),
        (
            "trusted-comment",
            &["upkg package id=acme-server version=2.1.0 build=1042", "upkg package id=x version=0 build=0"],
        ),
    ] {
        for text in texts {
            cases.push((rule, text.as_bytes().to_vec()));
        }
    }
    cases.push(("path", format!("{}/{}", "p".repeat(255), "q".repeat(255)).into_bytes()));
    cases.push(("public-key-file", read("test-key.pub")));
    cases
        .push(("public-key-file", String::from_utf8(read("test-key.pub")).unwrap().replace('\n', "\r\n").into_bytes()));
    cases.push((
        "public-key-file",
        String::from_utf8(read("other-key.pub")).unwrap().replace("\nRWQ", "\n \tRWQ").into_bytes(),
    ));
    cases.push(("secret-key-file", read("test-key.key")));
    cases.push(("signature-block", block.into_bytes()));
    cases
}

/// Refused examples that single edits of the accepted ones do not reach.
fn refused() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    for (rule, texts) in [
        ("version", &["", "01", "1.2.3.4.5.6.7.8.9", "18446744073709551616", "v1"][..]),
        ("version-range", &["", ">=2.1,<2.2", ">= 2.1", " *", "2.1", ">=2.1,  <2.2"]),
        ("identifier", &["", "-a", ".a", "a b", "a/b", &"a".repeat(129)]),
        ("serial", &["", "0", "01", "05%", "101%", "4294967296", "+1", " 1"]),
        (
            "path",
            &[
                "",
                "/a",
                "a//b",
                "a/",
                "a/./b",
                "a\\b",
                "a\tb",
                "a\u{7f}b",
                "a\u{85}b",
                ".package/pkgrun",
                ".pkgrun/x",
                &"c".repeat(256),
            ],
        ),
        ("link-target", &["", "/etc/passwd", "a\nb"]),
        (
            "trusted-comment",
            &[
                "upkg package id=x version=01 build=0",
                "upkg package id=x version=1 build=01",
                "upkg package  id=x version=1 build=1",
            ],
        ),
    ] {
        for text in texts {
            cases.push((rule, text.as_bytes().to_vec()));
        }
    }
    cases.push(("path", b"a\xffb".to_vec()));
    cases.push(("identifier", "caf\u{e9}".as_bytes().to_vec()));
    cases
}

/// Every text one edit away from `text`: each byte deleted, replaced and preceded
/// by each byte of `alphabet`. In a text of several lines (a key file, a signature
/// block), only around the start and the line ends, where the rules are: the
/// ABNF parser is slow on long base64 runs, and their middle is all alike.
fn edits(text: &[u8], alphabet: &[u8]) -> Vec<Vec<u8>> {
    let near_a_rule = |at: usize| {
        text.len() < 200 || at < 24 || text.iter().enumerate().any(|(i, &b)| b == b'\n' && i.abs_diff(at) <= 3)
    };
    let mut out = Vec::new();
    for at in (0..=text.len()).filter(|&at| near_a_rule(at)) {
        if at < text.len() {
            let mut deleted = text.to_vec();
            deleted.remove(at);
            out.push(deleted);
        }
        for &byte in alphabet {
            let mut inserted = text.to_vec();
            inserted.insert(at, byte);
            out.push(inserted);
            if at < text.len() {
                let mut replaced = text.to_vec();
                replaced[at] = byte;
                out.push(replaced);
            }
        }
    }
    out
}

/// The grammar's verdicts on `cases`, from the `abnf` package, in order: every
/// other case each in two Python processes at once (the parser is slow, one
/// process uses one core, and the slow cases come together).
fn grammar_verdicts(grammar: &str, cases: &[(&str, Vec<u8>)]) -> Vec<bool> {
    let even: Vec<_> = cases.iter().step_by(2).cloned().collect();
    let odd: Vec<_> = cases.iter().skip(1).step_by(2).cloned().collect();
    let (even, odd) = std::thread::scope(|scope| {
        let odd = scope.spawn(|| grammar_verdicts_in_one_process(grammar, &odd));
        (grammar_verdicts_in_one_process(grammar, &even), odd.join().expect("the second ABNF process"))
    });
    let mut verdicts = Vec::with_capacity(cases.len());
    for i in 0..cases.len() {
        verdicts.push(if i % 2 == 0 { even[i / 2] } else { odd[i / 2] });
    }
    verdicts
}

/// The grammar's verdicts on `cases`, from one Python process, in order.
fn grammar_verdicts_in_one_process(grammar: &str, cases: &[(&str, Vec<u8>)]) -> Vec<bool> {
    const SCRIPT: &str = r#"
import json, sys
try:
    from abnf.parser import Rule, ParseError
except ImportError:
    sys.exit("the Python package abnf is not installed: ./test.sh installs it (pip install abnf==2.9.1)")
class Spec(Rule):
    pass
request = json.load(sys.stdin)
Spec.load_grammar(request["grammar"].replace("\n", "\r\n"), strict=False)  # RFC 5234 lines end in CRLF
verdicts = []
for rule, text in request["cases"]:
    try:
        Spec(rule).parse_all(bytes.fromhex(text).decode("latin-1"))
        verdicts.append(True)
    except ParseError:
        verdicts.append(False)
json.dump(verdicts, sys.stdout)
"#;
    let request = serde_json::json!({
        "grammar": grammar,
        "cases": cases.iter().map(|(rule, text)| (rule.to_string(), hex::encode(text))).collect::<Vec<_>>(),
    });
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the ABNF check failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_grammars_of_the_spec_accept_exactly_what_the_readers_accept() {
    let grammar = grammar();
    // The first eight are used on the long texts: base64, line ends, spaces, UTF-8.
    let alphabet: Vec<u8> = b"0+/ \t\r\n\xc2a9Z.-_%\\,=<>*\x7f\x85\xa0\x00\"ED1".to_vec();
    let mut cases = Vec::new();
    for (rule, text) in accepted() {
        cases.push((rule, text.clone()));
        // A smaller alphabet for the key files and signature blocks: their parse is slow.
        let alphabet = if text.len() > 200 { &alphabet[..8] } else { &alphabet[..] };
        cases.extend(edits(&text, alphabet).into_iter().map(|edit| (rule, edit)));
    }
    cases.extend(refused());
    let verdicts = grammar_verdicts(&grammar, &cases);
    let mut disagreements: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for ((rule, text), grammar_ok) in cases.iter().zip(verdicts) {
        let spec = grammar_ok && within_limits(rule, text);
        let reader = rust_accepts(rule, text);
        let count = counts.entry(rule).or_default();
        if spec {
            count.0 += 1
        } else {
            count.1 += 1
        }
        if spec != reader {
            disagreements.entry(rule).or_default().push(format!(
                "{:?}: the grammar {} it, the reader {} it",
                String::from_utf8_lossy(text),
                if spec { "accepts" } else { "refuses" },
                if reader { "accepts" } else { "refuses" }
            ));
        }
    }
    for (rule, (accepted, refused)) in &counts {
        assert!(*accepted > 0 && *refused > 0, "{rule}: {accepted} accepted and {refused} refused examples");
    }
    assert!(disagreements.is_empty(), "the grammars and the readers disagree:\n{disagreements:#?}");
    let total: usize = counts.values().map(|(a, r)| a + r).sum();
    eprintln!("format_grammars: {total} texts, {} rules, grammar and readers agree", counts.len());
}
