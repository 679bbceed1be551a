//! Reading a workflow file's text into the serde shapes of `raw`, one table at a time, so that
//! every shape mistake (a wrong type, an unknown key) of every table is found in one pass.
//!
//! serde stops at the first mistake of whatever it deserializes. So the text is first parsed
//! into a spanned TOML document (a syntax error can only be reported once: past it, nothing
//! is known), and then each part is deserialized on its own: each top-level value, `[defaults]`,
//! `[tracks]`, `[controller]`, each `[vars.<name>]`, each `[groups.<id>]`, each
//! `[[condition_groups]]` entry and each `[[steps]]` entry; and when one of those tables has a
//! mistake, each of its keys on its own, so two wrong keys of one step are both reported
//! (within a table nested in a key, like `loop = { … }`, the first). Every mistake comes back
//! with the [`Place`] it is in, so that `parse` words it without guessing where it is.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::Spanned;
use toml_edit::{DocumentMut, ImDocument, Item, Key, Table, Value};

use super::raw::{RawWorkflow, Str};

/// Keys of the file's top level.
pub const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "description",
    "vars",
    "defaults",
    "tracks",
    "condition_groups",
    "groups",
    "controller",
    "steps",
    "workspace",
    "commit_secrets",
];

/// Where in the file a mistake is, to name it in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Top,
    /// Directly in `[vars]`.
    Vars,
    Var(String),
    Defaults,
    /// `[tracks]` or `[tracks.options]`.
    Tracks,
    /// A condition group: its id when it has a string one, else its 1-based position.
    ConditionGroup(Result<String, usize>),
    /// Directly in `[groups]`.
    Groups,
    Group(String),
    /// A step: its id when it has a string one, else its 1-based position.
    Step(Result<String, usize>),
    Controller,
    Workspace,
}

impl Place {
    /// ` in step `x``, or nothing at top level.
    pub fn suffix(&self) -> String {
        match self {
            Place::Top => String::new(),
            Place::Vars => " in [vars]".to_string(),
            Place::Var(name) => format!(" in var `{name}`"),
            Place::Defaults => " in [defaults]".to_string(),
            Place::Tracks => " in [tracks]".to_string(),
            Place::ConditionGroup(Ok(id)) => format!(" in condition group `{id}`"),
            Place::ConditionGroup(Err(n)) => format!(" in condition group #{n}"),
            Place::Groups => " in [groups]".to_string(),
            Place::Group(id) => format!(" in [groups.{id}]"),
            Place::Step(Ok(id)) => format!(" in step `{id}`"),
            Place::Step(Err(n)) => format!(" in step #{n}"),
            Place::Controller => " in [controller]".to_string(),
            Place::Workspace => " in [workspace]".to_string(),
        }
    }
}

/// A mistake of shape, in serde's words (which `parse` rewrites into ours).
#[derive(Debug)]
pub struct ShapeError {
    pub message: String,
    /// Byte range in the file; `None` when nothing better than "the file" is known.
    pub span: Option<Range<usize>>,
    pub place: Place,
    /// A TOML syntax error: nothing past it could be read.
    pub syntax: bool,
    /// The top-level key the mistake is in, for when the text around it does not say.
    pub key: Option<String>,
}

/// The file's text as the spanned shapes of `raw`, or every shape mistake found, in file order.
pub fn read(source: &str) -> Result<RawWorkflow, Vec<ShapeError>> {
    let doc = ImDocument::parse(source).map_err(|e| {
        let e = toml_edit::de::Error::from(e);
        vec![ShapeError {
            message: e.message().to_string(),
            span: e.span(),
            place: Place::Top,
            syntax: true,
            key: None,
        }]
    })?;
    let mut reader = Reader::default();
    let mut raw = RawWorkflow::default();
    let root = doc.as_table();
    for (key, item) in root.iter() {
        let key_span = root.key(key).and_then(|k| k.span());
        let part = Part {
            name: key,
            item,
            key_span,
        };
        match key {
            "version" => raw.version = reader.one(&part, Place::Top),
            "name" => raw.name = reader.one(&part, Place::Top),
            "description" => raw.description = reader.one(&part, Place::Top),
            "vars" => raw.vars = reader.entries(&part, Place::Vars, Place::Var),
            "defaults" => {
                raw.defaults = reader.one(&part, Place::Defaults).map(Spanned::into_inner);
            }
            "tracks" => raw.tracks = reader.one(&part, Place::Tracks),
            "condition_groups" => {
                raw.condition_groups = reader.list(&part, Place::ConditionGroup);
            }
            "groups" => raw.groups = reader.entries(&part, Place::Groups, Place::Group),
            "controller" => raw.controller = reader.one(&part, Place::Controller),
            "steps" => raw.steps = reader.list(&part, Place::Step),
            "workspace" => raw.workspace = reader.one(&part, Place::Workspace),
            "commit_secrets" => raw.commit_secrets = reader.one(&part, Place::Top),
            other => reader.errors.push(ShapeError {
                message: format!(
                    "unknown field `{other}`, expected one of {}",
                    TOP_KEYS
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                span: part.key_span.clone(),
                place: Place::Top,
                syntax: false,
                key: None,
            }),
        }
    }
    if reader.errors.is_empty() {
        return Ok(raw);
    }
    reader
        .errors
        .sort_by_key(|e| e.span.as_ref().map_or(0, |s| s.start));
    Err(reader.errors)
}

/// One value of the document and the span of the key that names it.
struct Part<'d> {
    /// The top-level key it is under.
    name: &'d str,
    item: &'d Item,
    key_span: Option<Range<usize>>,
}

impl Part<'_> {
    /// The value's span, else its key's, else the start of the file.
    fn span(&self) -> Range<usize> {
        self.item
            .span()
            .or_else(|| self.key_span.clone())
            .unwrap_or(0..0)
    }
}

/// Collects the mistakes of every part it reads.
#[derive(Default)]
struct Reader {
    errors: Vec<ShapeError>,
}

impl Reader {
    /// One part as a `T`; on a mistake, `None` and the mistake is kept — for a table, the
    /// mistake of each of its keys (every key of the raw tables is optional, so a key read
    /// alone is wrong only if it is unknown or of the wrong type).
    fn one<T: DeserializeOwned>(&mut self, part: &Part<'_>, place: Place) -> Option<Spanned<T>> {
        let e = match deserialize::<T>(part.item) {
            Ok(value) => return Some(Spanned::new(part.span(), value)),
            Err(e) => e,
        };
        let before = self.errors.len();
        // A mistake about the whole value (a table where a list belongs) is told once.
        let inside = e.span().is_some_and(|s| s.start != part.span().start);
        let entries = table_entries(part.item).filter(|_| inside);
        for (key, item) in entries.unwrap_or_default() {
            let mut alone = Table::new();
            alone.insert_formatted(&key, item);
            if let Err(e) = deserialize::<T>(&Item::Table(alone)) {
                self.keep(&e, part, place.clone());
            }
        }
        if self.errors.len() == before {
            self.keep(&e, part, place);
        }
        None
    }

    /// A table of named tables (`[vars.<name>]`, `[groups.<id>]`), each read on its own.
    /// `whole` is where a mistake about the table itself is; `each` where one in an entry is.
    fn entries<T: DeserializeOwned>(
        &mut self,
        part: &Part<'_>,
        whole: Place,
        each: fn(String) -> Place,
    ) -> Option<BTreeMap<Str, T>> {
        let Some(entries) = table_entries(part.item) else {
            // Not a table: serde says what it is instead.
            return self.one(part, whole).map(Spanned::into_inner);
        };
        let mut out = BTreeMap::new();
        let before = self.errors.len();
        for (key, item) in entries {
            let (name, key_span) = (key.get().to_string(), key.span());
            let entry = Part {
                name: part.name,
                item: &item,
                key_span: key_span.clone(),
            };
            let place = if table_entries(&item).is_some() {
                each(name.clone())
            } else {
                whole.clone()
            };
            if let Some(value) = self.one(&entry, place) {
                let key_span = key_span.unwrap_or_else(|| entry.span());
                out.insert(Spanned::new(key_span, name), value.into_inner());
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    /// An array of tables (`[[steps]]`, `[[condition_groups]]`), each entry read on its own;
    /// `place` names an entry by its `id` or its 1-based position.
    fn list<T: DeserializeOwned>(
        &mut self,
        part: &Part<'_>,
        place: fn(Result<String, usize>) -> Place,
    ) -> Option<Spanned<Vec<Spanned<T>>>> {
        let items: Vec<Item> = match part.item {
            Item::ArrayOfTables(tables) => tables.iter().cloned().map(Item::Table).collect(),
            Item::Value(Value::Array(array)) => array.iter().cloned().map(Item::Value).collect(),
            _ => return self.one(part, Place::Top),
        };
        let mut out = Vec::new();
        let before = self.errors.len();
        for (i, item) in items.iter().enumerate() {
            let id = table_entries(item)
                .and_then(|entries| entries.into_iter().find(|(k, _)| k.get() == "id"))
                .and_then(|(_, id)| id.as_str().map(str::to_string));
            let entry = Part {
                name: part.name,
                item,
                key_span: part.key_span.clone(),
            };
            if let Some(value) = self.one(&entry, place(id.ok_or(i + 1))) {
                out.push(value);
            }
        }
        (self.errors.len() == before).then(|| Spanned::new(part.span(), out))
    }

    fn keep(&mut self, e: &toml_edit::de::Error, part: &Part<'_>, place: Place) {
        let span = e.span().unwrap_or_else(|| part.span());
        // About the top-level value itself: its key names it. (Deeper, the text says which.)
        let top = span.start == part.span().start && part.key_span.is_some();
        self.errors.push(ShapeError {
            message: e.message().to_string(),
            span: Some(span),
            place,
            syntax: false,
            key: top.then(|| part.name.to_string()),
        });
    }
}

/// Deserializes one item of the document, keeping the spans of everything in it.
fn deserialize<T: DeserializeOwned>(item: &Item) -> Result<T, toml_edit::de::Error> {
    match item {
        Item::Value(value) => T::deserialize(value.clone().into_deserializer()),
        Item::Table(table) => toml_edit::de::from_document(DocumentMut::from(table.clone())),
        Item::ArrayOfTables(tables) => {
            let array = Value::Array(tables.clone().into_array());
            T::deserialize(array.into_deserializer())
        }
        Item::None => T::deserialize(Value::from("").into_deserializer()),
    }
}

/// The entries of a table or inline table, keys with their spans; `None` for anything else.
fn table_entries(item: &Item) -> Option<Vec<(Key, Item)>> {
    match item {
        Item::Table(table) => Some(
            table
                .iter()
                .filter_map(|(k, v)| Some((table.key(k)?.clone(), v.clone())))
                .collect(),
        ),
        Item::Value(Value::InlineTable(table)) => Some(
            table
                .iter()
                .filter_map(|(k, v)| Some((table.key(k)?.clone(), Item::Value(v.clone()))))
                .collect(),
        ),
        _ => None,
    }
}
