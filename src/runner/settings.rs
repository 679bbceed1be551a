//! A run's settings for its agent steps, and how they meet what the workflow names.
//!
//! The settings are stored in the run's `run.toml` (`[overrides]`) when the run starts, so a
//! resume runs every step the same way. Precedence, like git's for its own settings: a flag
//! (`--engine`, `--model`) beats everything; what the workflow names (a step's `engine` or
//! fallback list, its `model`, or `[defaults]`) beats configuration; configuration
//! (`machine.engine`, `machine.model`, already merged by git's rules: `git -c`, repository,
//! global) only fills what the workflow leaves open. Engine arguments from configuration
//! (`machine.<engine>.args`) are added after the step's own `args` when that engine runs.
//!
//! The workspace (`[workspace]` of the workflow, `machine.workspace.*` of configuration) meets
//! the same way, by [`workspace`]: paths to copy or link are personal as much as the
//! project's (a `.envrc` of one's own), so configuration's are added after the workflow's;
//! a setup command is the project's, so configuration's `setup` (with its `setupKey`) is used
//! only when the workflow has none.

use std::collections::BTreeMap;

use crate::workflow::{ResolvedStep, WorkspaceSpec};

/// `--engine`: the engine of every agent step.
pub const ENGINE: &str = "engine";
/// `--model`: the model of every agent step.
pub const MODEL: &str = "model";
/// `machine.engine`: the engine of agent steps whose workflow names none.
pub const DEFAULT_ENGINE: &str = "default_engine";
/// `machine.model`: the model of agent steps whose workflow names none.
pub const DEFAULT_MODEL: &str = "default_model";

/// `machine.workspace.copy`: paths added to `[workspace] copy`.
pub const WORKSPACE_COPY: &str = "workspace.copy";
/// `machine.workspace.link`: paths added to `[workspace] link`.
pub const WORKSPACE_LINK: &str = "workspace.link";
/// `machine.workspace.setup`: the setup of workflows whose `[workspace]` has none.
pub const WORKSPACE_SETUP: &str = "workspace.setup";
/// `machine.workspace.setupKey`: the key files of that setup.
pub const WORKSPACE_SETUP_KEY: &str = "workspace.setup_key";
/// (settings key, git config key) of the workspace settings, kept as written and split by
/// [`split_args`].
pub const WORKSPACE_KEYS: [(&str, &str); 4] = [
    (WORKSPACE_COPY, "machine.workspace.copy"),
    (WORKSPACE_LINK, "machine.workspace.link"),
    (WORKSPACE_SETUP, "machine.workspace.setup"),
    (WORKSPACE_SETUP_KEY, "machine.workspace.setupKey"),
];

/// The run's workspace: the workflow's `[workspace]` with configuration's paths added, and
/// configuration's setup when the workflow has none.
pub fn workspace(spec: &WorkspaceSpec, settings: &BTreeMap<String, String>) -> WorkspaceSpec {
    let words = |key: &str| -> Vec<String> {
        settings
            .get(key)
            .and_then(|text| split_args(text).ok())
            .unwrap_or_default()
    };
    let paths = |own: &[String], key: &str| -> Vec<String> {
        let mut all = own.to_vec();
        for path in words(key) {
            let path = path.trim_end_matches('/').to_string();
            if !all.contains(&path) {
                all.push(path);
            }
        }
        all
    };
    let mut out = WorkspaceSpec {
        copy: paths(&spec.copy, WORKSPACE_COPY),
        link: paths(&spec.link, WORKSPACE_LINK),
        setup: spec.setup.clone(),
        setup_key: spec.setup_key.clone(),
    };
    // A path both copied and linked: the workflow's word wins, else the copy.
    out.link
        .retain(|p| !out.copy.contains(p) || spec.link.contains(p));
    out.copy.retain(|p| !out.link.contains(p));
    if out.setup.is_empty() {
        out.setup = words(WORKSPACE_SETUP);
        out.setup_key = if out.setup.is_empty() {
            Vec::new()
        } else {
            words(WORKSPACE_SETUP_KEY)
        };
    }
    out
}

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
    fn config_adds_paths_and_fills_a_missing_setup() {
        let settings: BTreeMap<String, String> = [
            ("workspace.copy", ".envrc .env"),
            ("workspace.link", ".venv/"),
            ("workspace.setup", "make deps"),
            ("workspace.setup_key", "Makefile"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let workflow = WorkspaceSpec {
            copy: v(&[".env"]),
            link: v(&["node_modules"]),
            setup: v(&["npm", "ci"]),
            setup_key: v(&["package-lock.json"]),
        };
        let both = workspace(&workflow, &settings);
        assert_eq!(both.copy, v(&[".env", ".envrc"]));
        assert_eq!(both.link, v(&["node_modules", ".venv"]));
        assert_eq!(both.setup, v(&["npm", "ci"]), "the workflow's setup wins");
        assert_eq!(both.setup_key, v(&["package-lock.json"]));
        let alone = workspace(&WorkspaceSpec::default(), &settings);
        assert_eq!(alone.setup, v(&["make", "deps"]));
        assert_eq!(alone.setup_key, v(&["Makefile"]));
        assert_eq!(workspace(&workflow, &BTreeMap::new()), workflow);
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
