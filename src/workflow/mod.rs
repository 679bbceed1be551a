//! Workflow files: from TOML text to the validated [`Workflow`] the runner executes.
//!
//! Everything a user can get wrong in a workflow file is caught here, before any step runs,
//! and reported as a [`WorkflowError`] with the line and column of the mistake and, where one
//! can be given, a hint. The stages: `raw` (serde shapes with spans) → `parse` (every rule,
//! `[defaults]` merged) → `model` (what the rest of the crate sees). Placeholders are checked at
//! parse time and expanded per run by [`Workflow::resolve`] (`template`); `--var` values are
//! read by [`VarValue`] and checked by [`Workflow::bind_vars`]; [`loop_values`] gives the two built-ins that change from
//! one execution of a step to the next, `{loop_reason}` and `{loop_pass}`. `find`/`list` locate
//! workflows in a repository's `.codemachine/workflows/` and among the built-ins; [`load`] finds
//! and parses in one go.
//!
//! A step's prompt may come from a `prompt_file` next to the workflow file. Such files are
//! read once, when the workflow is loaded ([`load`], [`parse_with_base`]), and handed back in
//! [`Workflow::prompt_files`]; a run saves them with [`Workflow::source`], and a resume
//! re-parses with [`parse_with_files`], so it runs exactly what was started. Built-ins can't
//! use `prompt_file`.

mod builtin;
mod error;
mod find;
mod id;
pub mod model;
mod parse;
mod paths;
mod raw;
mod read;
mod template;
mod vars;

pub use builtin::{builtin, builtin_names};
pub use error::WorkflowError;
pub use find::{list, load, load_file, source_file};
pub use id::StepId;
pub use model::*;
pub use parse::{parse, parse_with_files};
pub use vars::{loop_values, BindError, MissingVars, VarValue};

#[cfg(test)]
mod tests;
