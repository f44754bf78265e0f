//! Seeds: the spec's test vectors (packages and expanded trees), the parts cut out
//! of them, the key files and the sample manifests of the repository.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::targets::Target;

/// The repository's root.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository")
}

/// Seed inputs of every target.
#[derive(Debug, Default, Clone)]
pub struct Seeds {
    /// Package files: every package vector.
    pub packages: Vec<Vec<u8>>,
    /// The good packages among them (for mutations that need a payload to decode).
    pub good_packages: Vec<Vec<u8>>,
    /// Expanded trees, as the tree vectors' `.tar.gz`.
    pub trees: Vec<Vec<u8>>,
    /// Key files, public and secret.
    pub keys: Vec<Vec<u8>>,
    /// Manifests.
    pub manifests: Vec<Vec<u8>>,
}

impl Seeds {
    /// Reads the seeds from the repository.
    pub fn load() -> Seeds {
        let root = repository();
        let mut seeds = Seeds::default();
        let vectors = root.join("format-spec/vectors");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&vectors).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for path in names {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".pub") || name.ends_with(".key") {
                seeds.keys.push(std::fs::read(&path).unwrap());
                continue;
            }
            if !name.ends_with(".txt") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let encoded: String = text.lines().filter(|l| !l.starts_with('#')).collect();
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
            if text.contains("\n# form: expanded-tree\n") {
                seeds.trees.push(bytes);
            } else {
                if text.contains("\n# expected: ok\n") {
                    seeds.good_packages.push(bytes.clone());
                }
                seeds.packages.push(bytes);
            }
        }
        for dir in ["tests/data", "samples"] {
            for entry in walk_files(&root.join(dir)) {
                let name = entry.file_name().unwrap().to_string_lossy().into_owned();
                if name.ends_with(".pub") || name.ends_with(".key") {
                    seeds.keys.push(std::fs::read(&entry).unwrap());
                } else if name == "package.toml" {
                    seeds.manifests.push(std::fs::read(&entry).unwrap());
                }
            }
        }
        seeds
    }

    /// The seeds of `target`.
    pub fn of(&self, target: Target) -> Vec<Vec<u8>> {
        let parts = |f: fn(&[u8]) -> Option<Vec<u8>>| self.packages.iter().filter_map(|p| f(p)).collect();
        match target {
            Target::Trailer => parts(|p| {
                let start = p.len().checked_sub(upkg_format::TRAILER_LEN)?;
                Some([&(p.len() as u64).to_le_bytes()[..], &p[start..]].concat())
            }),
            Target::Header => parts(|p| part(p, 2)),
            Target::SignatureBlock => parts(|p| part(p, 3).filter(|s| !s.is_empty())),
            Target::PublicKey | Target::SecretKey => self.keys.clone(),
            Target::Manifest => self.manifests.clone(),
            Target::Package => self.packages.clone(),
            Target::Tree => self.trees.clone(),
        }
    }
}

/// Part `index` of a package (0 stub, 1 payload, 2 header, 3 signature), when its trailer can be read.
pub(crate) fn part(package: &[u8], index: usize) -> Option<Vec<u8>> {
    let ranges = part_ranges(package)?;
    Some(package[ranges[index].clone()].to_vec())
}

/// The byte ranges of a package's stub, payload, header and signature, from its trailer alone.
pub(crate) fn part_ranges(package: &[u8]) -> Option<[std::ops::Range<usize>; 4]> {
    let start = package.len().checked_sub(upkg_format::TRAILER_LEN)?;
    let trailer = &package[start..];
    let len = |at: usize| u64::from_le_bytes(trailer[at..at + 8].try_into().unwrap());
    let lens = [len(32), len(40), len(48), len(56)];
    let mut offset = 0usize;
    let mut ranges: [std::ops::Range<usize>; 4] = Default::default();
    for (range, len) in ranges.iter_mut().zip(lens) {
        let end = offset.checked_add(usize::try_from(len).ok()?)?;
        *range = offset..end;
        offset = end;
    }
    (offset == start).then_some(ranges)
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    crate::targets::walk(dir, false).into_iter().filter(|p| p.is_file()).collect()
}
