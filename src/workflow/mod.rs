//! Workflow files: from TOML text to the validated [`Workflow`] the runner executes.
//!
//! Everything a user can get wrong in a workflow file is caught here, before any step runs,
//! and reported as a [`WorkflowError`] with the line and column of the mistake and, where one
//! can be given, a hint. The stages: `raw` (serde shapes with spans) → `parse` (every rule,
//! `[defaults]` merged) → `model` (what the rest of the crate sees). Placeholders are checked at
//! parse time and expanded per run by [`Workflow::resolve`] (`template`); `--var` values are
//! checked by [`Workflow::bind_vars`]. `find`/`list` locate workflows in a repository's
//! `.codemachine/workflows/` and among the built-ins.

mod builtin;
mod error;
mod find;
pub mod model;
mod parse;
mod raw;
mod template;
mod vars;

pub use builtin::builtin;
pub use error::WorkflowError;
pub use find::{find, list};
pub use model::*;
pub use parse::parse;
pub use template::expand;

#[cfg(test)]
mod tests;
