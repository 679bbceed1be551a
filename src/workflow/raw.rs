//! The serde form of a workflow file: exactly what TOML allows, with the span of every value.
//!
//! These structs only decide shape (which keys exist, which types they hold); every other rule
//! lives in `parse`, which turns them into the validated [`super::model`]. Every struct denies
//! unknown keys, and every key is optional here so that a missing one is reported by `parse`
//! with a message of ours rather than serde's. `read` fills [`RawWorkflow`] one top-level key
//! at a time (so that every table's mistakes are found in one pass); keep its `TOP_KEYS` and
//! the key lists in `parse` in sync.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

pub type Str = Spanned<String>;
pub type StrList = Spanned<Vec<Str>>;
pub type StrMap = BTreeMap<Str, Str>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflow {
    /// A `Value` so that `version = "1"` gets a message of ours.
    pub version: Option<Spanned<toml::Value>>,
    pub name: Option<Str>,
    pub description: Option<Str>,
    pub vars: Option<BTreeMap<Str, RawVar>>,
    pub defaults: Option<RawDefaults>,
    pub tracks: Option<Spanned<RawTracks>>,
    pub condition_groups: Option<Spanned<Vec<Spanned<RawConditionGroup>>>>,
    pub groups: Option<BTreeMap<Str, RawGroup>>,
    /// `[controller]`: a step table without `id`, plus `step`.
    pub controller: Option<Spanned<RawStep>>,
    pub steps: Option<Spanned<Vec<Spanned<RawStep>>>>,
    pub workspace: Option<Spanned<RawWorkspace>>,
    /// Secret files its runs may commit (paths from the repository's root).
    pub commit_secrets: Option<StrList>,
}

/// `[workspace]`: how a new worktree is made ready before the first step runs in it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkspace {
    pub copy: Option<StrList>,
    pub link: Option<StrList>,
    pub setup: Option<StrList>,
    pub setup_key: Option<StrList>,
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
    pub context_limit: Option<Spanned<toml::Value>>,
}

/// `[tracks]`: one question whose answer picks the run's track.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracks {
    pub question: Option<Str>,
    pub default: Option<Str>,
    pub options: Option<Spanned<StrMap>>,
}

/// One `[[condition_groups]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConditionGroup {
    pub id: Option<Str>,
    pub question: Option<Str>,
    pub multi: Option<Spanned<bool>>,
    pub default: Option<Spanned<Names>>,
    pub options: Option<Spanned<StrMap>>,
}

/// `[groups.<id>]`: settings of a parallel group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub on_conflict: Option<Str>,
}

/// One entry of a step's `context`: exactly one of `from`, `files`, `file` (checked by `parse`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContext {
    pub from: Option<Str>,
    pub output: Option<Str>,
    pub files: Option<Str>,
    pub file: Option<Str>,
    pub required: Option<Spanned<bool>>,
}

/// A step's `loop = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoop {
    pub to: Option<Str>,
    /// A `Value` so that `max = "3"` or `max = 0` gets a message of ours.
    pub max: Option<Spanned<toml::Value>>,
    pub until: Option<Spanned<RawUntil>>,
    pub on_max: Option<Str>,
}

/// `until = { run = [...] }` of a loop.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUntil {
    pub run: Option<StrList>,
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
    pub prompt_file: Option<Str>,
    pub context: Option<Spanned<Vec<Spanned<RawContext>>>>,
    /// A `Value`: a number of bytes or a string like "20k", told apart by `parse`.
    pub context_limit: Option<Spanned<toml::Value>>,
    #[serde(rename = "loop")]
    pub loop_: Option<Spanned<RawLoop>>,
    pub checkpoint: Option<Spanned<bool>>,
    pub when: Option<Spanned<Names>>,
    pub when_any: Option<Spanned<Names>>,
    pub tracks: Option<Spanned<Names>>,
    pub group: Option<Str>,
    pub mode: Option<Str>,
    pub interactive_fallback: Option<Str>,
    /// `[controller]` only: the first step, which the conversation is.
    pub step: Option<Str>,
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

/// `when = "has_db"` or `when = ["has_db", "has_ui"]`: names of options, one or several.
///
/// Like [`Engines`], a single string takes the span of the enclosing `Spanned<Names>`.
#[derive(Debug)]
pub enum Names {
    One(String),
    Many(Vec<Str>),
}

impl<'de> Deserialize<'de> for Engines {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let visitor = OneOrMany("an engine name or an array of engine names");
        Ok(match deserializer.deserialize_any(visitor)? {
            Ok(one) => Engines::One(one),
            Err(many) => Engines::Many(many),
        })
    }
}

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let visitor = OneOrMany("a string or an array of strings");
        Ok(match deserializer.deserialize_any(visitor)? {
            Ok(one) => Names::One(one),
            Err(many) => Names::Many(many),
        })
    }
}

/// Reads a string (`Ok`) or an array of strings (`Err`); the text is what serde's "expected"
/// says.
struct OneOrMany(&'static str);

impl<'de> Visitor<'de> for OneOrMany {
    type Value = Result<String, Vec<Str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok(v.to_string()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut names = Vec::new();
        while let Some(name) = seq.next_element::<Str>()? {
            names.push(name);
        }
        Ok(Err(names))
    }
}
