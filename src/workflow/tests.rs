//! Tests of the workflow module through its public API: parsing, errors with their exact
//! positions and hints, placeholders, `--var` binding and lookup.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

/// A valid header: version, name, one var with a default and one without.
const HEAD: &str = r#"version = 1
name = "hello"

[vars.feature_name]
help = "name of the feature"
default = "greeting"

[vars.owner]
help = "who owns it"
"#;

fn parse_ok(source: &str) -> Workflow {
    parse("wf.toml", source).unwrap_or_else(|e| panic!("{e}\nhint: {:?}", e.hint))
}

/// Parses `source`, expecting an error at `line:column` whose message and hint contain the
/// given texts; returns the error for further checks.
#[track_caller]
fn assert_err(
    source: &str,
    line: usize,
    column: usize,
    message: &str,
    hint: &str,
) -> WorkflowError {
    let e = match parse("wf.toml", source) {
        Ok(_) => panic!("expected an error {message:?}, got a workflow"),
        Err(e) => e,
    };
    let got_hint = e.hint.clone().unwrap_or_default();
    assert_eq!(
        (e.line, e.column),
        (Some(line), Some(column)),
        "position of {e} (hint: {got_hint})"
    );
    assert!(
        e.message.contains(message),
        "message {:?} lacks {message:?}",
        e.message
    );
    assert!(got_hint.contains(hint), "hint {got_hint:?} lacks {hint:?}");
    assert!(
        !e.message.contains('\n'),
        "one-line message: {:?}",
        e.message
    );
    e
}

/// `HEAD` followed by `rest`: errors in `rest` are on line 10 + their line in `rest`.
fn with_head(rest: &str) -> String {
    format!("{HEAD}\n{rest}")
}

// ---- valid files ------------------------------------------------------------------------

#[test]
fn valid_file_merges_defaults() {
    let wf = parse_ok(&with_head(
        r#"[defaults]
engine = "command"
timeout = "10m"
reasoning = "low"
env = { A = "1", B = "2" }
args = ["--default"]

[[steps]]
id = "design"
run = ["sh", "-c", "echo '# {feature_name}' > DESIGN.md"]
outputs = ["DESIGN.md"]
timeout = "2m"

[[steps]]
id = "implement"
engine = ["claude", "codex"]
prompt = "Implement {feature_name} for {owner} ({run_id})"
reasoning = "high"
permissions = "edit"
idle_timeout = "1h 30m"
model = "opus"
env = { B = "3", C = "{owner}" }
args = []
session = "design"
"#,
    ));
    assert_eq!(wf.name, "hello");
    assert_eq!(wf.description, "");
    assert_eq!(wf.origin, "wf.toml");
    assert!(wf.source.starts_with("version = 1"));
    let vars: Vec<_> = wf
        .vars
        .iter()
        .map(|v| (v.name.as_str(), v.default.as_deref()))
        .collect();
    assert_eq!(vars, [("feature_name", Some("greeting")), ("owner", None)]);
    assert_eq!(wf.vars[1].help, "who owns it");

    let [design, implement] = &wf.steps[..] else {
        panic!("two steps expected: {:?}", wf.steps)
    };
    // A step's own timeout beats the default; a string engine is a list of one.
    assert_eq!(design.engines, ["command"]);
    assert_eq!(design.timeout, Some(Duration::from_secs(120)));
    assert_eq!(design.run[2], "echo '# {feature_name}' > DESIGN.md");
    assert_eq!(design.outputs, ["DESIGN.md"]);
    assert_eq!(design.reasoning.as_deref(), Some("low"));
    assert_eq!(design.args, ["--default"]);
    assert_eq!(design.prompt, None);
    assert_eq!(design.idle_timeout, None);

    assert_eq!(implement.engines, ["claude", "codex"]);
    assert_eq!(implement.timeout, Some(Duration::from_secs(600)));
    assert_eq!(implement.idle_timeout, Some(Duration::from_secs(5400)));
    assert_eq!(implement.reasoning.as_deref(), Some("high"));
    assert_eq!(implement.permissions, Some(Permissions::Edit));
    assert_eq!(implement.model.as_deref(), Some("opus"));
    assert_eq!(implement.session.as_deref(), Some("design"));
    assert!(
        implement.args.is_empty(),
        "a step's empty args beat the default"
    );
    assert!(implement.run.is_empty());
    // env merges key by key, the step winning.
    let env: Vec<_> = implement
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, [("A", "1"), ("B", "3"), ("C", "{owner}")]);
}

#[test]
fn engine_defaults_to_command_and_agent_steps_need_no_run() {
    let wf = parse_ok(&with_head(
        "[[steps]]\nid = \"a\"\nrun = [\"true\"]\n\n[[steps]]\nid = \"b\"\nengine = \"claude\"\nprompt = '''\nDo {owner}'''\n",
    ));
    assert_eq!(wf.steps[0].engines, ["command"]);
    assert_eq!(wf.steps[1].engines, ["claude"]);
    assert_eq!(wf.steps[1].prompt.as_deref(), Some("Do {owner}"));
}

#[test]
fn inline_steps_and_dotted_keys_are_accepted() {
    let wf = parse_ok(
        "version = 1\nname = \"x\"\nvars.v.help = \"h\"\ndefaults.timeout = \"5s\"\nsteps = [{ id = \"a\", run = [\"echo\", \"{v}\"] }]\n",
    );
    assert_eq!(wf.vars[0].help, "h");
    assert_eq!(wf.steps[0].timeout, Some(Duration::from_secs(5)));
}

// ---- errors: syntax, keys and types -----------------------------------------------------

#[test]
fn toml_syntax_error_is_one_line() {
    assert_err(
        &with_head("[[steps]\nid = \"a\"\n"),
        11,
        8,
        "invalid table header",
        "",
    );
    assert_err(
        "version = 1\nname = \"x\ny\"\n",
        2,
        10,
        "invalid basic string",
        "",
    );
    assert_err(
        "version = 1\nversion = 1\n",
        2,
        1,
        "duplicate key `version`",
        "",
    );
}

#[test]
fn unknown_key_in_step_suggests_the_closest() {
    let source = r#"version = 1
name = "hello"

[vars.feature_name]
default = "greeting"

[defaults]
engine = "claude"

[[steps]]
id = "design"
promt = "Design {feature_name}"
"#;
    let e = assert_err(
        source,
        12,
        1,
        "unknown key `promt` in step `design`",
        "did you mean `prompt`?",
    );
    assert_eq!(
        e.to_string(),
        "wf.toml:12:1: unknown key `promt` in step `design`"
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `prompt`?"));
}

#[test]
fn unknown_keys_elsewhere() {
    assert_err(
        "version = 1\ndescripton = \"x\"\n",
        2,
        1,
        "unknown key `descripton`",
        "did you mean `description`?",
    );
    let e = assert_err(
        "version = 1\nwhatever = 1\n",
        2,
        1,
        "unknown key `whatever`",
        "allowed keys here: `version`",
    );
    assert_eq!(e.message, "unknown key `whatever`");
    assert_err(
        &with_head("[defaults]\nrun = [\"x\"]\n"),
        12,
        1,
        "unknown key `run` in [defaults]",
        "`run` can't have a default",
    );
    assert_err(
        "version = 1\n[vars.x]\nhlp = \"h\"\n",
        3,
        1,
        "unknown key `hlp` in var `x`",
        "did you mean `help`?",
    );
    // A top-level key after a table header lands in that table.
    assert_err(
        "version = 1\nname = \"x\"\n[vars.v]\nsteps = []\n",
        4,
        1,
        "unknown key `steps` in var `v`",
        "`steps` belongs at the top of the file, before the first [table] header",
    );
    // A step without a string id is named by its position.
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nrun = [\"x\"]\n[[steps]]\nrun = [\"x\"]\nbogus = 1\n"),
        16,
        1,
        "unknown key `bogus` in step #2",
        "",
    );
}

#[test]
fn wrong_types_name_the_key() {
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nrun = [\"x\"]\ntimeout = 600\n"),
        14,
        11,
        "expected a string for `timeout`, found integer `600`",
        "durations are strings",
    );
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nrun = \"make test\"\n"),
        13,
        7,
        "expected an array for `run`, found string \"make test\"",
        "write an array of strings: `run = [\"make test\"]`",
    );
    assert_err(
        &with_head("[[steps]]\nid = 5\n"),
        12,
        6,
        "expected a string for `id`, found integer `5`",
        "put it in quotes: `id = \"5\"`",
    );
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nrun = [\"x\", 5]\n"),
        13,
        13,
        "expected a string for `run`, found integer `5`",
        "",
    );
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nrun = [\"x\"]\nenv = { A = true }\n"),
        14,
        13,
        "expected a string for `A`, found boolean `true`",
        "",
    );
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nengine = 5\n"),
        13,
        10,
        "expected an engine name or an array of engine names for `engine`, found integer `5`",
        "",
    );
    assert_err(
        "version = 1\nsteps = 3\n",
        2,
        9,
        "expected an array for `steps`, found integer `3`",
        "",
    );
    assert_err(
        "version = 1\nvars = { x = 3 }\n",
        2,
        14,
        "expected a table for `x`, found integer `3`",
        "",
    );
    assert_err(
        "version = 1\n[vars]\nx = \"a\"\n",
        3,
        5,
        "expected a table for `x`, found string \"a\"",
        "declare a var as a table: `[vars.x]`, with `default = \"a\"` under it",
    );
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nrun = [\"x\"]\nenv = 3\n"),
        14,
        7,
        "expected a table for `env`",
        "env = { NAME = \"value\" }",
    );
}

// ---- errors: top level ------------------------------------------------------------------

#[test]
fn version_is_required_and_must_be_1() {
    assert_err(
        "name = \"x\"\n",
        1,
        1,
        "missing `version`",
        "start the file with `version = 1`",
    );
    let e = assert_err(
        "version = 2\nname = \"x\"\n",
        1,
        11,
        "unsupported version 2",
        "",
    );
    assert_eq!(
        e.message,
        "unsupported version 2; this git machine reads version 1"
    );
    assert_err(
        "version = \"1\"\n",
        1,
        11,
        "`version` must be the number 1, found string",
        "write `version = 1`",
    );
}

#[test]
fn name_is_required_and_checked() {
    assert_err(
        "version = 1\n",
        1,
        1,
        "missing `name`",
        "name = \"my-workflow\"",
    );
    assert_err(
        "version = 1\nname = \"Hello World\"\n",
        2,
        8,
        "bad workflow name `Hello World`",
        "e.g. `hello-world`",
    );
}

#[test]
fn steps_are_required() {
    let e = assert_err(
        "version = 1\nname = \"x\"\n",
        3,
        1,
        "workflow has no steps",
        "[[steps]]\n    id = \"hello\"",
    );
    assert_eq!(e.message, "workflow has no steps");
    assert_err(
        "version = 1\nname = \"x\"\nsteps = []\n",
        3,
        9,
        "workflow has no steps",
        "[[steps]]",
    );
}

#[test]
fn var_names_are_checked() {
    assert_err(
        "version = 1\nname = \"x\"\n[vars.date]\n",
        3,
        7,
        "var `date` has the name of a built-in placeholder",
        "built-ins: run_id",
    );
    assert_err(
        "version = 1\nname = \"x\"\n[vars.\"a b\"]\n",
        3,
        7,
        "bad var name `a b`",
        "",
    );
}

// ---- errors: steps ----------------------------------------------------------------------

#[test]
fn step_ids_are_checked() {
    assert_err(
        &with_head("[[steps]]\nrun = [\"x\"]\n"),
        11,
        1,
        "step #1 has no `id`",
        "add a line like `id = \"build\"`",
    );
    assert_err(
        &with_head("[[steps]]\nid = \"Design It\"\n"),
        12,
        6,
        "bad step id `Design It`",
        "e.g. `design-it`",
    );
    assert_err(
        &with_head("[[steps]]\nid = \"-a\"\n"),
        12,
        6,
        "bad step id `-a`",
        "",
    );
    let long = format!("[[steps]]\nid = \"{}\"\n", "a".repeat(41));
    assert_err(
        &with_head(&long),
        12,
        6,
        "bad step id",
        "at most 40 characters",
    );
    let ok = format!("[[steps]]\nid = \"{}\"\nrun = [\"x\"]\n", "a".repeat(40));
    parse_ok(&with_head(&ok));
}

#[test]
fn duplicate_step_id_points_at_the_first() {
    let e = assert_err(
        &with_head("[[steps]]\nid = \"design\"\nrun = [\"x\"]\n\n[[steps]]\nid = \"design\"\n"),
        16,
        6,
        "duplicate step id `design`",
        "the first step `design` is at line 12",
    );
    assert_eq!(e.message, "duplicate step id `design`");
}

#[test]
fn durations_are_checked() {
    let e = assert_err(
        &with_head("[[steps]]\nid = \"a\"\nrun = [\"x\"]\ntimeout = \"ten minutes\"\n"),
        14,
        11,
        "bad duration `ten minutes`",
        r#"write it like "90s", "10m" or "1h 30m""#,
    );
    assert_eq!(e.message, "bad duration `ten minutes`");
    assert_err(
        &with_head("[defaults]\nidle_timeout = \"10\"\n"),
        12,
        16,
        "bad duration `10`",
        "",
    );
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nrun = [\"x\"]\ntimeout = \"0s\"\n"),
        14,
        11,
        "`timeout` must be more than zero",
        "",
    );
}

#[test]
fn engines_are_checked() {
    let e = assert_err(
        &with_head("[[steps]]\nid = \"a\"\nengine = \"claud\"\nprompt = \"p\"\n"),
        13,
        10,
        "unknown engine `claud`",
        "did you mean `claude`? engines: command, claude, codex, gemini, opencode, cursor, aider",
    );
    assert_eq!(e.message, "unknown engine `claud`");
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nengine = [\"claude\", \"codx\"]\nprompt = \"p\"\n"),
        13,
        21,
        "unknown engine `codx`",
        "did you mean `codex`?",
    );
    assert_err(
        &with_head("[defaults]\nengine = \"nope\"\n"),
        12,
        10,
        "unknown engine `nope`",
        "engines: command",
    );
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nengine = []\n"),
        13,
        10,
        "`engine` is an empty list",
        "",
    );
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nengine = [\"claude\", \"claude\"]\nprompt = \"p\"\n"),
        13,
        21,
        "engine `claude` is listed twice",
        "",
    );
}

#[test]
fn engines_need_their_inputs() {
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\n"),
        11,
        1,
        "step `a` uses the command engine but has no `run`",
        "run = [",
    );
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nrun = []\n"),
        13,
        7,
        "`run` is empty in step `a`",
        "",
    );
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nengine = \"codex\"\n"),
        11,
        1,
        "step `a` uses the `codex` engine but has no `prompt`",
        "prompt = \"...\"",
    );
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nengine = \"codex\"\nprompt = \"p\"\nrun = [\"x\"]\n"),
        15,
        7,
        "`run` is only used by the command engine",
        "add \"command\" to `engine`",
    );
    // A fallback to an agent needs a prompt too.
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nengine = [\"command\", \"gemini\"]\nrun = [\"x\"]\n"),
        11,
        1,
        "uses the `gemini` engine but has no `prompt`",
        "",
    );
}

#[test]
fn enumerated_values_are_checked() {
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nrun = [\"x\"]\nreasoning = \"hgh\"\n"),
        14,
        13,
        "unknown reasoning `hgh`",
        "did you mean `high`? `reasoning` is one of: minimal, low, medium, high",
    );
    assert_err(
        &with_head("[defaults]\npermissions = \"write\"\n"),
        12,
        15,
        "unknown permissions `write`",
        "`permissions` is one of: read, edit, full",
    );
}

#[test]
fn env_names_are_checked() {
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nrun = [\"x\"]\nenv = { \"1A\" = \"x\" }\n"),
        14,
        9,
        "bad environment variable name `1A`",
        "",
    );
}

#[test]
fn session_must_name_an_earlier_step() {
    let steps = "[[steps]]\nid = \"design\"\nrun = [\"x\"]\n\n[[steps]]\nid = \"build\"\nrun = [\"x\"]\nsession = \"";
    assert_err(
        &with_head(&format!("{steps}desgn\"\n")),
        18,
        11,
        "`session` names unknown step `desgn`",
        "did you mean `design`? earlier steps: design",
    );
    assert_err(
        &with_head(&format!("{steps}build\"\n")),
        18,
        11,
        "step `build` can't continue its own session",
        "",
    );
    assert_err(
        &with_head(&format!(
            "{steps}test\"\n\n[[steps]]\nid = \"test\"\nrun = [\"x\"]\n"
        )),
        18,
        11,
        "`session` names step `test`, which comes after step `build`",
        "earlier step",
    );
}

// ---- errors: placeholders ---------------------------------------------------------------

#[test]
fn unknown_placeholder_points_into_the_string() {
    let e = assert_err(
        &with_head("[[steps]]\nid = \"a\"\nrun = [\"sh\", \"-c\", \"echo {feture_name}\"]\n"),
        13,
        26,
        "unknown placeholder `{feture_name}`",
        "did you mean `{feature_name}`? declared vars: feature_name, owner",
    );
    assert!(e
        .hint
        .as_deref()
        .expect("has a hint")
        .contains("write `{{` for a literal brace"));
    assert_eq!(e.message, "unknown placeholder `{feture_name}`");
}

#[test]
fn placeholders_are_checked_in_every_template() {
    let step = "[[steps]]\nid = \"a\"\nrun = [\"x\"]\n";
    assert_err(
        &with_head(&format!("{step}outputs = [\"{{nope}}\"]\n")),
        14,
        13,
        "unknown placeholder `{nope}`",
        "",
    );
    assert_err(
        &with_head(&format!("{step}args = [\"--x={{nope}}\"]\n")),
        14,
        14,
        "unknown placeholder",
        "",
    );
    assert_err(
        &with_head(&format!("{step}env = {{ A = \"{{nope}}\" }}\n")),
        14,
        14,
        "unknown placeholder",
        "",
    );
    assert_err(
        &with_head(&format!("{step}prompt = \"ab {{nope}}\"\n")),
        14,
        14,
        "unknown placeholder",
        "",
    );
    assert_err(
        &with_head("[defaults]\nargs = [\"{nope}\"]\n"),
        12,
        10,
        "unknown placeholder",
        "",
    );
    // Escapes before the placeholder: found by its text instead.
    assert_err(
        &with_head(&format!("{step}prompt = \"\\t{{nope}}\"\n")),
        14,
        13,
        "unknown placeholder",
        "",
    );
    // Multi-line literal strings: the newline after the quotes is not part of the value.
    assert_err(
        &with_head(&format!("{step}prompt = '''\nline\n  {{nope}}'''\n")),
        16,
        3,
        "unknown placeholder",
        "",
    );
    // Built-ins are always known.
    parse_ok(&with_head(&format!(
        "{step}prompt = \"{{run_id}} {{workflow}} {{date}} {{base}} {{track}} {{conditions}}\"\n"
    )));
}

#[test]
fn shell_braces_get_a_shell_hint() {
    assert_err(
        &with_head("[[steps]]\nid = \"a\"\nrun = [\"sh\", \"-c\", \"echo ${HOME}\"]\n"),
        13,
        27,
        "unknown placeholder `{HOME}`",
        "for the shell's `${HOME}` write `${{HOME}}`",
    );
    let wf = parse_ok(&with_head(
        "[[steps]]\nid = \"a\"\nrun = [\"sh\", \"-c\", \"echo ${{HOME}}\"]\n",
    ));
    assert_eq!(wf.resolve(&BTreeMap::new())[0].run[2], "echo ${HOME}");
}

#[test]
fn braces_around_anything_but_a_name_are_text() {
    let wf = parse_ok(&with_head(
        "[[steps]]\nid = \"a\"\nrun = [\"sh\", \"-c\", \"test -e x || { exit 3; }\"]\nprompt = \"a { b } c\"\n",
    ));
    let step = &wf.resolve(&BTreeMap::new())[0];
    assert_eq!(step.run[2], "test -e x || { exit 3; }");
    assert_eq!(step.prompt.as_deref(), Some("a { b } c"));
}

// ---- placeholders and vars --------------------------------------------------------------

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn resolve_keeps_values_literal() {
    let wf = parse_ok(&with_head(
        r#"[[steps]]
id = "a"
run = ["sh", "-c", "echo \"$1\" {{x}}", "sh", "{feature_name}"]
prompt = "for {owner} in {run_id}"
outputs = ["src/{feature_name}.sh"]
env = { NAME = "{feature_name}" }
args = ["--owner={owner}"]
"#,
    ));
    let v = values(&[
        ("feature_name", "$(rm -rf ~)"),
        ("owner", "'; reboot {feature_name}"),
        ("run_id", "r1"),
    ]);
    let steps = wf.resolve(&v);
    let s = &steps[0];
    assert_eq!(s.run, ["sh", "-c", "echo \"$1\" {x}", "sh", "$(rm -rf ~)"]);
    assert_eq!(
        s.prompt.as_deref(),
        Some("for '; reboot {feature_name} in r1")
    );
    assert_eq!(s.outputs, ["src/$(rm -rf ~).sh"]);
    assert_eq!(s.env["NAME"], "$(rm -rf ~)");
    assert_eq!(s.args, ["--owner='; reboot {feature_name}"]);
    assert_eq!(s.id, "a");
    assert_eq!(s.engines, ["command"]);
}

#[test]
fn bind_vars_applies_defaults_and_given_values() {
    let wf = parse_ok(&with_head("[[steps]]\nid = \"a\"\nrun = [\"x\"]\n"));
    let given = vec![("owner".to_string(), "me".to_string())];
    assert_eq!(
        wf.bind_vars(&given),
        Ok(values(&[("feature_name", "greeting"), ("owner", "me")]))
    );
    let given = vec![
        ("owner".to_string(), "me".to_string()),
        ("feature_name".to_string(), "x".to_string()),
        ("owner".to_string(), "you".to_string()),
    ];
    assert_eq!(
        wf.bind_vars(&given),
        Ok(values(&[("feature_name", "x"), ("owner", "you")]))
    );
}

#[test]
fn bind_vars_rejects_unknown_and_missing() {
    let wf = parse_ok(&with_head("[[steps]]\nid = \"a\"\nrun = [\"x\"]\n"));
    let e = wf
        .bind_vars(&[("feture_name".to_string(), "x".to_string())])
        .expect_err("unknown var");
    assert_eq!(e.message, "unknown var `feture_name` for workflow `hello`");
    assert_eq!(
        e.hint.as_deref(),
        Some("did you mean `feature_name`? declared vars: feature_name, owner")
    );
    assert_eq!(e.line, None);

    let e = wf.bind_vars(&[]).expect_err("owner is required");
    assert_eq!(
        e.message,
        "workflow `hello` needs var `owner` (who owns it)"
    );
    assert_eq!(e.hint.as_deref(), Some("pass --var owner=VALUE"));
    assert_eq!(
        e.to_string(),
        "wf.toml: workflow `hello` needs var `owner` (who owns it)"
    );
}

// ---- find and list ----------------------------------------------------------------------

#[test]
fn find_looks_in_the_repo_then_builtins() {
    let repo = tempfile::tempdir().expect("temp dir");
    let dir = repo.path().join(".codemachine/workflows");
    std::fs::create_dir_all(&dir).expect("create workflows dir");
    let hello = "version = 1\nname = \"hello\"\ndescription = \"Say hi\"\n[[steps]]\nid = \"a\"\nrun = [\"true\"]\n";
    std::fs::write(dir.join("hello.toml"), hello).expect("write hello");
    std::fs::write(dir.join("broken.toml"), "version = 1\n").expect("write broken");

    // A repo workflow, named relative to the cwd when the cwd is the repo.
    let (origin, text) = find(repo.path(), Some(repo.path()), "hello").expect("found in repo");
    assert_eq!(origin, ".codemachine/workflows/hello.toml");
    assert_eq!(text, hello);
    // From elsewhere the origin is the full path.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let (origin, _) = find(elsewhere.path(), Some(repo.path()), "hello").expect("found in repo");
    assert_eq!(origin, dir.join("hello.toml").display().to_string());

    // A path, relative to the cwd.
    let (origin, text) = find(&dir, None, "./hello.toml").expect("found by path");
    assert_eq!((origin.as_str(), text.as_str()), ("./hello.toml", hello));
    let (origin, _) = find(&dir, None, "hello.toml").expect("a .toml name is a path");
    assert_eq!(origin, "hello.toml");

    // A built-in, with and without a repo.
    let (origin, text) = find(repo.path(), Some(repo.path()), "demo").expect("built-in");
    assert_eq!(origin, "builtin:demo");
    assert_eq!(Some(text.as_str()), builtin("demo"));
    assert_eq!(
        find(repo.path(), None, "demo").expect("built-in").0,
        "builtin:demo"
    );

    // Not found: says what was tried and what exists.
    let e = find(repo.path(), Some(repo.path()), "helo").expect_err("no such workflow");
    assert_eq!(e.to_string(), "no workflow named `helo`");
    let hint = e.hint.expect("has a hint");
    assert!(
        hint.starts_with("did you mean `hello`? looked for "),
        "{hint}"
    );
    assert!(hint.contains("helo.toml and the built-ins"), "{hint}");
    assert!(hint.contains("available: broken, hello, demo"), "{hint}");
    let e = find(repo.path(), None, "helo").expect_err("no such workflow");
    assert!(e
        .hint
        .expect("has a hint")
        .contains("only built-ins were searched"));
    let e = find(repo.path(), None, "nope/x.toml").expect_err("no such file");
    assert!(
        e.to_string()
            .starts_with("nope/x.toml: cannot read workflow file: "),
        "{e}"
    );

    // list: repo files sorted, then built-ins; a broken file shows why.
    let listed = list(Some(repo.path()));
    let names: Vec<_> = listed
        .iter()
        .map(|(n, d, _)| (n.as_str(), d.as_str()))
        .collect();
    assert_eq!(
        names[..3],
        [
            ("broken", "(invalid: missing `name`)"),
            ("hello", "Say hi"),
            (
                "demo",
                "A three-step tour of git machine using only shell commands"
            ),
        ]
    );
    assert_eq!(listed[2].2, "builtin:demo");
}

#[test]
fn a_repo_workflow_replaces_a_builtin_of_the_same_name() {
    let repo = tempfile::tempdir().expect("temp dir");
    let dir = repo.path().join(".codemachine/workflows");
    std::fs::create_dir_all(&dir).expect("create workflows dir");
    let demo = "version = 1\nname = \"demo\"\ndescription = \"mine\"\n[[steps]]\nid = \"a\"\nrun = [\"true\"]\n";
    std::fs::write(dir.join("demo.toml"), demo).expect("write demo");
    let (origin, text) = find(repo.path(), Some(repo.path()), "demo").expect("found");
    assert_eq!(
        (origin.as_str(), text.as_str()),
        (".codemachine/workflows/demo.toml", demo)
    );
    let listed = list(Some(repo.path()));
    let demos: Vec<_> = listed
        .iter()
        .filter(|(name, _, _)| name == "demo")
        .collect();
    assert_eq!(demos.len(), 1);
    assert_eq!(demos[0].1, "mine");
}

#[test]
fn expand_is_public() {
    let v = values(&[("a", "1")]);
    assert_eq!(expand("{a}-{{a}}-{b}", &v), "1-{a}-{b}");
}
