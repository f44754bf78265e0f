//! Dotted numeric versions (`2.1.0.1042`) and version ranges (`>=2.1, <2.2`).
//!
//! Versions compare component by component as numbers; missing components count
//! as zero, so `2.1` equals `2.1.0`. This is the file-version rule of the classic
//! installers: a file is replaced only by a later version.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Maximum number of components in a version.
pub const MAX_COMPONENTS: usize = 8;

/// A dotted numeric version.
#[derive(Debug, Clone, Eq)]
pub struct Version {
    components: Vec<u64>,
}

/// Why a version or range string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {text:?}: {reason}")]
pub struct VersionError {
    text: String,
    reason: &'static str,
}

impl Version {
    /// The components, most significant first.
    pub fn components(&self) -> &[u64] {
        &self.components
    }

    fn significant(&self) -> &[u64] {
        let len = self.components.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
        &self.components[..len]
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| VersionError { text: text.to_owned(), reason };
        if text.is_empty() {
            return Err(err("it is empty"));
        }
        let mut components = Vec::new();
        for part in text.split('.') {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("expected numbers separated by dots, like 2.1.0"));
            }
            if part.len() > 1 && part.starts_with('0') {
                return Err(err("a component has a leading zero"));
            }
            components.push(part.parse::<u64>().map_err(|_| err("a component is too large"))?);
        }
        if components.len() > MAX_COMPONENTS {
            return Err(err("more than 8 components"));
        }
        Ok(Version { components })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, component) in self.components.iter().enumerate() {
            if index > 0 {
                f.write_str(".")?;
            }
            write!(f, "{component}")?;
        }
        Ok(())
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.significant() == other.significant()
    }
}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.significant().hash(state);
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.components.len().max(other.components.len());
        for index in 0..len {
            let a = self.components.get(index).copied().unwrap_or(0);
            let b = other.components.get(index).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => continue,
                unequal => return unequal,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A comparison operator in a version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

/// A set of comparators that must all hold, written `>=2.1, <2.2`; `*` matches any version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionReq {
    comparators: Vec<(Op, Version)>,
}

impl VersionReq {
    /// The range that matches every version.
    pub fn any() -> Self {
        VersionReq { comparators: Vec::new() }
    }

    /// Whether `version` is in the range.
    pub fn matches(&self, version: &Version) -> bool {
        self.comparators.iter().all(|(op, bound)| match op {
            Op::Eq => version == bound,
            Op::Gt => version > bound,
            Op::Ge => version >= bound,
            Op::Lt => version < bound,
            Op::Le => version <= bound,
        })
    }

    /// The range in words, for messages: "version 2.1 or later and before 2.2".
    pub fn describe(&self) -> String {
        if self.comparators.is_empty() {
            return "any version".to_owned();
        }
        let parts: Vec<String> = self
            .comparators
            .iter()
            .map(|(op, v)| match op {
                Op::Eq => format!("exactly {v}"),
                Op::Gt => format!("later than {v}"),
                Op::Ge => format!("{v} or later"),
                Op::Lt => format!("earlier than {v}"),
                Op::Le => format!("{v} or earlier"),
            })
            .collect();
        format!("version {}", parts.join(" and "))
    }
}

impl FromStr for VersionReq {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| VersionError { text: text.to_owned(), reason };
        let trimmed = text.trim();
        if trimmed == "*" {
            return Ok(VersionReq::any());
        }
        let mut comparators = Vec::new();
        for part in trimmed.split(',') {
            let part = part.trim();
            let (op, rest) = if let Some(rest) = part.strip_prefix(">=") {
                (Op::Ge, rest)
            } else if let Some(rest) = part.strip_prefix("<=") {
                (Op::Le, rest)
            } else if let Some(rest) = part.strip_prefix('>') {
                (Op::Gt, rest)
            } else if let Some(rest) = part.strip_prefix('<') {
                (Op::Lt, rest)
            } else if let Some(rest) = part.strip_prefix('=') {
                (Op::Eq, rest)
            } else {
                return Err(err("each comparison starts with =, >, >=, < or <= (like \">=2.1, <2.2\"), or use *"));
            };
            let version =
                rest.trim().parse::<Version>().map_err(|e| VersionError { text: text.to_owned(), reason: e.reason })?;
            comparators.push((op, version));
        }
        Ok(VersionReq { comparators })
    }
}

impl fmt::Display for VersionReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.comparators.is_empty() {
            return f.write_str("*");
        }
        for (index, (op, version)) in self.comparators.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            let op = match op {
                Op::Eq => "=",
                Op::Gt => ">",
                Op::Ge => ">=",
                Op::Lt => "<",
                Op::Le => "<=",
            };
            write!(f, "{op}{version}")?;
        }
        Ok(())
    }
}

impl Serialize for VersionReq {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VersionReq {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        text.parse().unwrap()
    }

    #[test]
    fn compares_numerically_not_as_text() {
        assert!(v("2.10") > v("2.9"));
        assert!(v("10.0.19041.1") > v("10.0.9999.99"));
        assert_eq!(v("2.1"), v("2.1.0"));
        assert!(v("2.1.0.1") > v("2.1"));
    }

    #[test]
    fn rejects_malformed_versions() {
        for bad in ["", "2.", ".1", "2..1", "v2", "2.1-beta", "01.2", "1.2.3.4.5.6.7.8.9"] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ranges() {
        let req: VersionReq = ">=2.1, <2.2".parse().unwrap();
        assert!(req.matches(&v("2.1")));
        assert!(req.matches(&v("2.1.9")));
        assert!(!req.matches(&v("2.2")));
        assert!(!req.matches(&v("2.0.9")));
        assert_eq!(req.to_string(), ">=2.1, <2.2");
        assert_eq!(req.describe(), "version 2.1 or later and earlier than 2.2");
        assert!("*".parse::<VersionReq>().unwrap().matches(&v("0.1")));
        assert!("2.1".parse::<VersionReq>().is_err());
    }
}
