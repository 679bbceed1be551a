//! A run's settings for its agent steps, and how they meet what the workflow names.
//!
//! The settings are stored in the run's `run.toml` (`[overrides]`) when the run starts, so a
//! resume runs every step the same way. Precedence, like git's for its own settings: a flag
//! (`--engine`, `--model`) beats everything; what the workflow names (a step's `engine` or
//! fallback list, its `model`, or `[defaults]`) beats configuration; configuration
//! (`machine.engine`, `machine.model`, already merged by git's rules: `git -c`, repository,
//! global) only fills what the workflow leaves open. Engine arguments from configuration
//! (`machine.<engine>.args`) are added after the step's own `args` when that engine runs.

use std::collections::BTreeMap;

use crate::workflow::ResolvedStep;

/// `--engine`: the engine of every agent step.
pub const ENGINE: &str = "engine";
/// `--model`: the model of every agent step.
pub const MODEL: &str = "model";
/// `machine.engine`: the engine of agent steps whose workflow names none.
pub const DEFAULT_ENGINE: &str = "default_engine";
/// `machine.model`: the model of agent steps whose workflow names none.
pub const DEFAULT_MODEL: &str = "default_model";

/// The key of `machine.<engine>.args` (kept as written; split by [`split_args`]).
pub fn args_key(engine: &str) -> String {
    format!("args.{engine}")
}

/// The engines a step tries: the flag's for any agent step, else the workflow's when it names
/// them, else configuration's, else what the parser filled in (the built-in default).
pub fn chosen_engines(
    workflow: &[String],
    named: bool,
    flag: Option<&str>,
    config: Option<&str>,
) -> Vec<String> {
    if workflow.iter().all(|e| e == "command") {
        return workflow.to_vec();
    }
    match (flag, config) {
        (Some(engine), _) => vec![engine.to_string()],
        (None, Some(engine)) if !named => vec![engine.to_string()],
        _ => workflow.to_vec(),
    }
}

/// The model of an agent step: the flag's, else the workflow's, else configuration's.
pub fn chosen_model(
    workflow: Option<&str>,
    flag: Option<&str>,
    config: Option<&str>,
) -> Option<String> {
    flag.or(workflow).or(config).map(str::to_string)
}

/// Apply a run's settings to its resolved steps: engines, models and per-engine arguments.
pub fn apply(steps: &mut [ResolvedStep], settings: &BTreeMap<String, String>) {
    let get = |key: &str| settings.get(key).map(String::as_str);
    for step in steps.iter_mut() {
        if step.engines.iter().all(|e| e == "command") {
            continue;
        }
        step.engines = chosen_engines(
            &step.engines,
            step.engine_named,
            get(ENGINE),
            get(DEFAULT_ENGINE),
        );
        step.model = chosen_model(step.model.as_deref(), get(MODEL), get(DEFAULT_MODEL));
        for engine in &step.engines {
            if let Some(args) = get(&args_key(engine)) {
                step.engine_args
                    .insert(engine.clone(), split_args(args).unwrap_or_default());
            }
        }
    }
}

/// Split `text` into words as a shell splits simple words: blanks separate, `'…'` and `"…"`
/// keep blanks, `\` takes the next character as is. No expansion of any kind.
pub fn split_args(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => match chars.next() {
                Some(n) => word.get_or_insert_with(String::new).push(n),
                None => return Err("it ends with a lone `\\`".to_string()),
            },
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(q) = quote {
        return Err(format!("a `{q}` is not closed"));
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flag_beats_the_workflow_which_beats_config() {
        let named = v(&["claude", "codex"]);
        assert_eq!(chosen_engines(&named, true, None, Some("gemini")), named);
        assert_eq!(
            chosen_engines(&named, true, Some("aider"), Some("gemini")),
            v(&["aider"])
        );
        let unnamed = v(&["claude"]);
        assert_eq!(
            chosen_engines(&unnamed, false, None, Some("gemini")),
            v(&["gemini"])
        );
        assert_eq!(chosen_engines(&unnamed, false, None, None), unnamed);
        assert_eq!(
            chosen_engines(&v(&["command"]), false, Some("codex"), None),
            v(&["command"]),
            "a command step stays one"
        );
    }

    #[test]
    fn config_model_fills_only_steps_without_one() {
        assert_eq!(
            chosen_model(Some("a"), None, Some("c")).as_deref(),
            Some("a")
        );
        assert_eq!(chosen_model(None, None, Some("c")).as_deref(), Some("c"));
        assert_eq!(
            chosen_model(Some("a"), Some("f"), Some("c")).as_deref(),
            Some("f")
        );
        assert_eq!(chosen_model(None, None, None), None);
    }

    #[test]
    fn args_split_like_simple_shell_words() {
        assert_eq!(
            split_args(r#"--max-turns 20  --append "a b" 'c d' e\ f """#),
            Ok(v(&[
                "--max-turns",
                "20",
                "--append",
                "a b",
                "c d",
                "e f",
                ""
            ]))
        );
        assert!(split_args("'open").is_err());
        assert_eq!(split_args("  "), Ok(vec![]));
    }
}
