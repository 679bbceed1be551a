//! Workflows compiled into the binary, usable by name from any repository.
//!
//! Each is a normal workflow file under `workflows/` at the crate root; a test parses every one
//! and checks that its `name` is the name it is listed under. Adding one is one line here.

/// (name, file text) of every built-in workflow, in the order `list` shows them.
const BUILTINS: &[(&str, &str)] = &[
    ("demo", include_str!("../../workflows/demo.toml")),
    (
        "feature-scaffold",
        include_str!("../../workflows/feature-scaffold.toml"),
    ),
    (
        "spec-driven",
        include_str!("../../workflows/spec-driven.toml"),
    ),
    (
        "bug-triage",
        include_str!("../../workflows/bug-triage.toml"),
    ),
    ("test-fix", include_str!("../../workflows/test-fix.toml")),
];

/// Built-in workflow text by name.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// Names of the built-in workflows.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses_under_its_own_name_with_no_warning() {
        for (name, text) in BUILTINS {
            let origin = format!("builtin:{name}");
            let wf = crate::workflow::parse(&origin, text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(wf.name, *name);
            assert!(!wf.description.is_empty(), "{name} needs a description");
            assert_eq!(wf.warnings, [], "{name} validates with no warning");
        }
    }

    /// The step a built-in loop goes back to gets the loop feedback section anyway; its prompt
    /// must also say which pass it is, and point to the reason.
    #[test]
    fn builtin_loops_tell_the_step_they_go_back_to() {
        let mut loops = 0;
        for (name, text) in BUILTINS {
            let wf = crate::workflow::parse(name, text).unwrap_or_else(|e| panic!("{e}"));
            for l in wf.steps.iter().filter_map(|s| s.loop_spec.as_ref()) {
                loops += 1;
                let to = wf.steps.iter().find(|s| s.id == l.to).expect("loop target");
                let prompt = to.prompt.as_deref().unwrap_or_default();
                assert!(
                    prompt.contains("{loop_pass}") && prompt.contains("Why this step runs again"),
                    "{name}: step `{}`",
                    to.id
                );
            }
        }
        assert_eq!(loops, 3, "test-fix, bug-triage, spec-driven");
        let wf = crate::workflow::parse("spec-driven", builtin("spec-driven").expect("built in"))
            .expect("parses");
        let implement = wf.steps.iter().find(|s| s.id == "implement").expect("step");
        assert!(implement.context.iter().any(|c| matches!(
            c,
            crate::workflow::ContextSource::Step { from, later: true, .. } if from == "review"
        )));
    }

    #[test]
    fn demo_is_three_command_steps() {
        let wf = crate::workflow::parse("builtin:demo", builtin("demo").expect("demo is built in"))
            .expect("demo parses");
        let ids: Vec<_> = wf.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["design", "implement", "test"]);
        assert!(wf.steps.iter().all(|s| s.engines == ["command"]));
        assert_eq!(wf.vars[0].name, "feature_name");
        assert!(builtin("nope").is_none());
    }

    /// `bug-triage` hands `{test_command}` to its shell scripts as an argument: a command with
    /// an apostrophe or `$(…)` stays one argument, never part of a script's text.
    #[test]
    fn bug_triage_passes_the_test_command_as_an_argument() {
        let wf = crate::workflow::parse("bug-triage", builtin("bug-triage").expect("built in"))
            .expect("parses");
        let evil = "cargo test it's $(touch pwned)";
        let values = [("test_command", evil), ("bug", "b")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let steps = wf.resolve(&values);
        let verify = steps.iter().find(|s| s.id == "verify").expect("verify");
        assert_eq!(verify.run[..3], ["sh", "-c", "echo \"verifying with: $1\""]);
        assert_eq!(verify.run[4], evil);
    }
}
