//! The JSON rules every header meets before its members are read (spec 4.1):
//! RFC 8259 text in UTF-8 with no duplicate member names at any level, no escape
//! that is a lone surrogate, no number beyond an IEEE-754 double, and objects and
//! arrays nested at most [`MAX_DEPTH`] deep.
//!
//! A header of a minor version this reader knows is also held to its canonical
//! encoding, which excludes all of these; a header of a newer minor version is not,
//! and may carry members this reader ignores. Those members are still walked here,
//! so that both forms of a header mean one thing to every reader, and a deeply
//! nested header is refused before a recursive parser sees it.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

/// Deepest nesting of objects and arrays (the header object itself is depth 1).
pub const MAX_DEPTH: usize = 64;

/// Why a header's JSON was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonProblem {
    /// Not JSON, or JSON that breaks one of the rules (malformed).
    Invalid(String),
    /// Nested deeper than [`MAX_DEPTH`] (limit).
    TooDeep,
}

/// Checks `bytes` against the JSON rules of the header.
pub fn check_json(bytes: &[u8]) -> Result<(), JsonProblem> {
    let too_deep = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let walked =
        Walk { depth: 1, too_deep: &too_deep }.deserialize(&mut deserializer).and_then(|()| deserializer.end());
    match walked {
        Ok(()) => Ok(()),
        Err(_) if too_deep.get() => Err(JsonProblem::TooDeep),
        Err(e) => Err(JsonProblem::Invalid(e.to_string())),
    }
}

/// Walks one JSON value at nesting `depth`.
#[derive(Clone, Copy)]
struct Walk<'a> {
    depth: usize,
    too_deep: &'a Cell<bool>,
}

impl Walk<'_> {
    fn nested<E: serde::de::Error>(self) -> Result<Self, E> {
        if self.depth > MAX_DEPTH {
            self.too_deep.set(true);
            return Err(E::custom(format!("objects and arrays are nested more than {MAX_DEPTH} deep")));
        }
        Ok(Walk { depth: self.depth + 1, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        // serde_json refuses a number that is infinite as a double before this.
        Ok(())
    }

    // Strings arrive decoded: serde_json refuses invalid UTF-8 and lone surrogates.
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        let mut names = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !names.insert(name.clone()) {
                return Err(A::Error::custom(format!("the member name {name:?} appears twice in one object")));
            }
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn accepts_ordinary_json() {
        assert_eq!(check_json(br#"{"a":[1,-2,3.5,true,null,"x\u00e9\ud83d\ude00"],"b":{"c":{}}}"#), Ok(()));
        assert_eq!(check_json(format!(r#"{{"a":{}}}"#, nested(MAX_DEPTH - 1)).as_bytes()), Ok(()));
    }

    #[test]
    fn refuses_what_the_rules_exclude() {
        for bad in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"x":{"a":1,"b":{"a":[{"k":1,"k":1}]}}}"#,
            br#"{"a":"\ud800"}"#,
            br#"{"a":"\udc00x"}"#,
            br#"{"\ud800":1}"#,
            br#"{"a":1e400}"#,
            br#"{"a":NaN}"#,
            b"{\"a\":\"\xff\"}",
            br#"{"a":1} x"#,
            b"\xef\xbb\xbf{}",
        ] {
            assert!(matches!(check_json(bad), Err(JsonProblem::Invalid(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(check_json(format!(r#"{{"a":{}}}"#, nested(MAX_DEPTH)).as_bytes()), Err(JsonProblem::TooDeep));
        // Far deeper than serde_json's own recursion limit: still the depth rule.
        assert_eq!(check_json(nested(100_000).as_bytes()), Err(JsonProblem::TooDeep));
    }
}
