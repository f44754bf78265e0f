//! Every fuzz target, for a bounded budget, seeded from the spec's vectors, and
//! the replay of the committed corpus and crash reproducers.
//!
//! CI runs a quick budget (a few hundred to a few thousand inputs per target).
//! `UPKG_FUZZ_SECONDS=N` runs each target for N seconds instead, and
//! `UPKG_FUZZ_SEED` changes the generator's seed (the default is fixed, so a run
//! is reproducible). `UPKG_FUZZ_SAVE_CORPUS=1` adds the inputs that reached a new
//! outcome to `corpus/TARGET/` (small ones only). An input that panics is written
//! to `target/upkg-fuzz-crashes/`: fix the parser, then copy it to
//! `regressions/TARGET/` so that the replay keeps it fixed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use upkg_fuzz::{Budget, Seeds, Target, fuzz, replay};

/// Largest input kept in the committed corpus.
const CORPUS_MAX: usize = 16 * 1024;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The quick budget of each target: its inputs cost from microseconds (a trailer)
/// to milliseconds (a package checked in full, a tree on disk).
fn quick(target: Target) -> u64 {
    match target {
        Target::Trailer | Target::SignatureBlock | Target::PublicKey => 20_000,
        Target::SecretKey => 5_000,
        Target::Header | Target::Manifest => 10_000,
        Target::Package => 5_000,
        Target::Tree => 100,
    }
}

fn run(target: Target) {
    let seeds = Seeds::load().of(target);
    assert!(!seeds.is_empty(), "{}: no seeds", target.name());
    let budget = match std::env::var("UPKG_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()) {
        Some(seconds) => Budget { iterations: u64::MAX, time: Duration::from_secs(seconds) },
        None => Budget { iterations: quick(target), time: Duration::from_secs(600) },
    };
    let seed = std::env::var("UPKG_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_u64);
    let crashes = crate_dir().join("../../target/upkg-fuzz-crashes");
    let report = fuzz(target, &seeds, budget, seed, &crashes);
    eprintln!(
        "fuzz {}: {} inputs in {:.1?}, {} outcomes, {} crashes (seed {seed})",
        target.name(),
        report.iterations,
        report.elapsed,
        report.outcomes.len(),
        report.crashes.len()
    );
    if std::env::var("UPKG_FUZZ_SAVE_CORPUS").is_ok_and(|v| v == "1") {
        let dir = crate_dir().join("corpus").join(target.name());
        std::fs::create_dir_all(&dir).unwrap();
        for input in report.corpus.iter().filter(|i| i.len() <= CORPUS_MAX) {
            std::fs::write(dir.join(&upkg_format::Digest::of(input).to_hex()[..16]), input).unwrap();
        }
    }
    assert!(
        report.crashes.is_empty(),
        "{}: inputs that panic (reproducers and messages): {:#?}",
        target.name(),
        report.crashes
    );
    assert!(report.outcomes.len() > 1, "{}: every input had the same outcome: {:?}", target.name(), report.outcomes);
}

#[test]
fn fuzz_trailer() {
    run(Target::Trailer);
}

#[test]
fn fuzz_header() {
    run(Target::Header);
}

#[test]
fn fuzz_signature_block() {
    run(Target::SignatureBlock);
}

#[test]
fn fuzz_public_key() {
    run(Target::PublicKey);
}

#[test]
fn fuzz_secret_key() {
    run(Target::SecretKey);
}

#[test]
fn fuzz_manifest() {
    run(Target::Manifest);
}

#[test]
fn fuzz_package() {
    run(Target::Package);
}

#[test]
fn fuzz_tree() {
    run(Target::Tree);
}

/// The committed corpus and every crash reproducer run without a panic.
#[test]
fn corpus_and_regressions_replay() {
    let mut total = 0;
    for target in Target::ALL {
        for kind in ["corpus", "regressions"] {
            let dir: PathBuf = crate_dir().join(kind).join(target.name());
            total += replay(target, Path::new(&dir)).unwrap_or_else(|e| panic!("{kind}/{}: {e}", target.name()));
        }
    }
    assert!(total > 0, "no corpus committed");
}
