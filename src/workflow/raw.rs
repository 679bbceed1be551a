//! The serde form of a workflow file: exactly what TOML allows, with the span of every value.
//!
//! These structs only decide shape (which keys exist, which types they hold); every other rule
//! lives in `parse`, which turns them into the validated [`super::model`]. Every struct denies
//! unknown keys, and every key is optional here so that a missing one is reported by `parse`
//! with a message of ours rather than serde's. Keep the key lists in `parse` in sync.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

pub type Str = Spanned<String>;
pub type StrList = Spanned<Vec<Str>>;
pub type StrMap = BTreeMap<Str, Str>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflow {
    /// A `Value` so that `version = "1"` gets a message of ours.
    pub version: Option<Spanned<toml::Value>>,
    pub name: Option<Str>,
    pub description: Option<Str>,
    pub vars: Option<BTreeMap<Str, RawVar>>,
    pub defaults: Option<RawDefaults>,
    pub steps: Option<Spanned<Vec<Spanned<RawStep>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVar {
    pub help: Option<Str>,
    pub default: Option<Str>,
}

/// `[defaults]`: the keys of a step that may be shared.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub engine: Option<Spanned<Engines>>,
    pub timeout: Option<Str>,
    pub idle_timeout: Option<Str>,
    pub model: Option<Str>,
    pub reasoning: Option<Str>,
    pub permissions: Option<Str>,
    pub env: Option<StrMap>,
    pub args: Option<StrList>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub id: Option<Str>,
    pub engine: Option<Spanned<Engines>>,
    pub run: Option<StrList>,
    pub prompt: Option<Str>,
    pub outputs: Option<StrList>,
    pub timeout: Option<Str>,
    pub idle_timeout: Option<Str>,
    pub model: Option<Str>,
    pub reasoning: Option<Str>,
    pub permissions: Option<Str>,
    pub env: Option<StrMap>,
    pub args: Option<StrList>,
    pub session: Option<Str>,
}

/// `engine = "claude"` or `engine = ["claude", "codex"]`.
///
/// A single string has no span of its own here; `parse` uses the span of the enclosing
/// `Spanned<Engines>`.
#[derive(Debug)]
pub enum Engines {
    One(String),
    Many(Vec<Str>),
}

impl<'de> Deserialize<'de> for Engines {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnginesVisitor;

        impl<'de> Visitor<'de> for EnginesVisitor {
            type Value = Engines;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an engine name or an array of engine names")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Engines, E> {
                Ok(Engines::One(v.to_string()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Engines, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<Str>()? {
                    names.push(name);
                }
                Ok(Engines::Many(names))
            }
        }

        deserializer.deserialize_any(EnginesVisitor)
    }
}

/// A forgiving second reading of a file whose strict reading failed: just enough structure to
/// say which step an error offset falls in.
#[derive(Debug, Deserialize)]
pub struct LooseWorkflow {
    pub steps: Option<Vec<Spanned<toml::Table>>>,
}
