//! The fuzzing loop and the replay of saved inputs.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::mutate::{Mutator, Rng};
use crate::targets::Target;

/// How long a run goes on: a number of inputs, or a time, whichever ends first.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Most inputs to run.
    pub iterations: u64,
    /// Longest time to run.
    pub time: Duration,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Inputs run.
    pub iterations: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// Every outcome reached, with how many inputs reached it.
    pub outcomes: BTreeMap<String, u64>,
    /// Inputs that made the target panic, saved under `crash_dir`.
    pub crashes: Vec<PathBuf>,
    /// The first input to reach each outcome, smallest first (a corpus).
    pub corpus: Vec<Vec<u8>>,
}

/// Runs `target` on mutations of `seeds` within `budget`, the generator seeded
/// with `seed`. An input that panics is written to `crash_dir` (named after its
/// digest) and the loop goes on.
pub fn fuzz(target: Target, seeds: &[Vec<u8>], budget: Budget, seed: u64, crash_dir: &Path) -> Report {
    let start = Instant::now();
    let mut report = Report::default();
    let mut pool: Vec<Vec<u8>> = seeds.to_vec();
    let mut mutator = Mutator::new(Rng::new(seed), seeds);
    // The seeds first, as they are.
    let mut queue: Vec<Vec<u8>> = seeds.to_vec();
    while report.iterations < budget.iterations && start.elapsed() < budget.time {
        let input = match queue.pop() {
            Some(input) => input,
            None if pool.is_empty() => break,
            None => {
                let parent = mutator.rng().below(pool.len());
                let parent = pool[parent].clone();
                mutator.mutate(target, &parent)
            }
        };
        report.iterations += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| target.run(&input)));
        match outcome {
            Ok(outcome) => {
                let count = report.outcomes.entry(outcome).or_insert(0);
                *count += 1;
                if *count == 1 {
                    // A new outcome: keep the input, to mutate further and as corpus.
                    report.corpus.push(input.clone());
                    pool.push(input);
                }
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                std::fs::create_dir_all(crash_dir).expect("the crash directory");
                let path =
                    crash_dir.join(format!("{}-{}", target.name(), &upkg_format::Digest::of(&input).to_hex()[..16]));
                std::fs::write(&path, &input).expect("write the crash reproducer");
                std::fs::write(path.with_extension("txt"), message).expect("write the crash message");
                report.crashes.push(path);
            }
        }
    }
    report.corpus.sort_by_key(Vec::len);
    report.elapsed = start.elapsed();
    report
}

/// Runs `target` on every file of `dir` (a corpus or the crash reproducers);
/// returns how many, or the first file that panics.
pub fn replay(target: Target, dir: &Path) -> Result<usize, String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(0) };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.expect("a corpus entry").path()).collect();
    paths.retain(|p| p.extension().is_none_or(|e| e != "txt"));
    paths.sort();
    for path in &paths {
        let input = std::fs::read(path).expect("read a corpus file");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target.run(&input))) {
            let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            return Err(format!("{}: {message}", path.display()));
        }
    }
    Ok(paths.len())
}
