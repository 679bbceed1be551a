//! A step's id as a type: checked when made (from a workflow file or a stored record), so
//! code past the serde boundary never holds a step id that is not one.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

/// Longest id a workflow may use.
pub const MAX_ID_LEN: usize = 40;

/// Lowercase letters, digits and '-', starting with a letter or digit, at most
/// [`MAX_ID_LEN`] long.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct StepId(String);

impl StepId {
    pub fn parse(text: &str) -> Option<StepId> {
        let ok = text.len() <= MAX_ID_LEN
            && text
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        ok.then(|| StepId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for StepId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StepId, D::Error> {
        let text = String::deserialize(d)?;
        StepId::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a step id")))
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl Deref for StepId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for StepId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for StepId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for StepId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for StepId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for StepId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

/// Tests write ids as literals; a bad one is a bug in the test.
#[cfg(test)]
impl From<&str> for StepId {
    fn from(text: &str) -> StepId {
        StepId::parse(text).expect("a valid step id in a test")
    }
}

impl From<StepId> for String {
    fn from(id: StepId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_parse() {
        assert!(StepId::parse("build-2").is_some());
        for bad in ["", "-x", "Build", "a_b", "a b", &"x".repeat(41)] {
            assert!(StepId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_bad_stored_id_is_an_error() {
        #[derive(serde::Deserialize)]
        struct S {
            #[allow(dead_code)]
            id: StepId,
        }
        assert!(toml::from_str::<S>("id = \"Bad Id\"").is_err());
        assert!(toml::from_str::<S>("id = \"good\"").is_ok());
    }
}
