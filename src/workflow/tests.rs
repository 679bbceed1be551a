//! Tests of the workflow module through its public API: parsing, errors with their exact
//! positions and hints, placeholders, `--var` binding and lookup.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::find::find;
use super::parse::parse_with_base;
use super::template::expand;
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
        "{step}prompt = \"{{run_id}} {{workflow}} {{date}} {{base}} {{track}} {{conditions}} {{loop_reason}} {{loop_pass}}\"\n"
    )));
}

#[test]
fn loop_placeholders_are_built_ins() {
    let step = "[[steps]]\nid = \"a\"\nrun = [\"x\"]\n";
    let wf = parse_ok(&with_head(&format!(
        "{step}prompt = \"pass {{loop_pass}}: {{loop_reason}}\"\nargs = [\"--pass={{loop_pass}}\"]\n"
    )));
    // First pass: no feedback, an empty reason and pass 1.
    let mut v: BTreeMap<String, String> = loop_values(None).into_iter().collect();
    assert_eq!(wf.resolve(&v)[0].prompt.as_deref(), Some("pass 1: "));
    // A repeat: the reason goes in verbatim and is never expanded again.
    v.extend(loop_values(Some(("tests fail: {feature_name} ${HOME}", 2))));
    let s = &wf.resolve(&v)[0];
    assert_eq!(
        s.prompt.as_deref(),
        Some("pass 2: tests fail: {feature_name} ${HOME}")
    );
    assert_eq!(s.args, ["--pass=2"]);

    // A near miss gets its did-you-mean; anything else under `loop_` is unknown as ever.
    assert_err(
        &with_head(&format!("{step}prompt = \"{{loop_reasn}}\"\n")),
        14,
        11,
        "unknown placeholder `{loop_reasn}`",
        "did you mean `{loop_reason}`?",
    );
    assert_err(
        &with_head(&format!("{step}prompt = \"{{loop_pas}}\"\n")),
        14,
        11,
        "unknown placeholder `{loop_pas}`",
        "did you mean `{loop_pass}`?",
    );
    let e = assert_err(
        &with_head(&format!("{step}prompt = \"{{loop_foo}}\"\n")),
        14,
        11,
        "unknown placeholder `{loop_foo}`",
        "built-ins: run_id, workflow, date, base, track, conditions, loop_reason, loop_pass;",
    );
    assert_eq!(e.message, "unknown placeholder `{loop_foo}`");
    // A var can't take their names.
    assert_err(
        "version = 1\nname = \"x\"\n[vars.loop_reason]\n[[steps]]\nid = \"a\"\nrun = [\"x\"]\n",
        3,
        7,
        "var `loop_reason` has the name of a built-in placeholder",
        "pick another name",
    );
}

#[test]
fn loop_placeholders_are_accepted_in_prompt_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("prompts")).expect("create prompts dir");
    let text = "Design the {area}.\nPass {loop_pass}. Why again: {loop_reason}\n";
    std::fs::write(dir.path().join("prompts/design.md"), text).expect("write prompt");
    let wf = parse_with_base("wf.toml", PROMPT_STEP, Some(dir.path())).expect("parses");
    let mut v = values(&[("area", "api")]);
    v.extend(loop_values(Some(("the review wants tests", 3))));
    assert_eq!(
        wf.resolve(&v)[0].prompt.as_deref(),
        Some("Design the api.\nPass 3. Why again: the review wants tests\n")
    );
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
fn bind_vars_rejects_unknown_names_first() {
    let wf = parse_ok(&with_head("[[steps]]\nid = \"a\"\nrun = [\"x\"]\n"));
    // `owner` is missing too, but a misspelt name is told before anything could be asked.
    let Err(BindError::Unknown(e)) = wf.bind_vars(&[("feture_name".to_string(), "x".to_string())])
    else {
        panic!("an unknown var is BindError::Unknown");
    };
    assert_eq!(
        e.message,
        "--var feture_name: workflow `hello` has no var `feture_name`"
    );
    assert!(e.origin.is_empty(), "the mistake is in the command line");
    assert_eq!(
        e.hint.as_deref(),
        Some("did you mean `feature_name`? declared vars: feature_name, owner")
    );
    assert_eq!(e.line, None);
}

#[test]
fn bind_vars_reports_missing_vars_to_ask_for() {
    let wf = parse_ok(&with_head("[[steps]]\nid = \"a\"\nrun = [\"x\"]\n"));
    let given = [("feature_name".to_string(), "x".to_string())];
    let Err(BindError::Missing(missing)) = wf.bind_vars(&given) else {
        panic!("owner is required");
    };
    assert_eq!(missing.workflow, "hello");
    let names: Vec<(&str, &str)> = missing
        .vars
        .iter()
        .map(|v| (v.name.as_str(), v.help.as_str()))
        .collect();
    assert_eq!(names, [("owner", "who owns it")]);
    let e = missing.error();
    assert_eq!(
        e.message,
        "workflow `hello` needs var `owner` (who owns it)"
    );
    assert_eq!(
        e.hint.as_deref(),
        Some("pass --var owner=VALUE, or --var owner=@FILE to read it from a file")
    );
    assert_eq!(
        e.to_string(),
        "wf.toml: workflow `hello` needs var `owner` (who owns it)"
    );
    assert_eq!(WorkflowError::from(BindError::Missing(missing.clone())), e);

    // An answer (here as the CLI adds it after asking) completes the binding.
    let mut answered = given.to_vec();
    answered.push(("owner".to_string(), "me".to_string()));
    assert_eq!(
        wf.bind_vars(&answered),
        Ok(values(&[("feature_name", "x"), ("owner", "me")]))
    );
}

#[test]
fn missing_vars_are_all_listed() {
    let wf = parse_ok(
        "version = 1\nname = \"two\"\n[vars.a]\nhelp = \"first\"\n[vars.b]\n\
         [vars.c]\ndefault = \"\"\n[[steps]]\nid = \"s\"\nrun = [\"x\"]\n",
    );
    let Err(BindError::Missing(missing)) = wf.bind_vars(&[]) else {
        panic!("a and b are required");
    };
    let e = missing.error();
    assert_eq!(e.message, "workflow `two` needs vars `a` (first), `b`");
    assert_eq!(
        e.hint.as_deref(),
        Some("pass --var a=VALUE --var b=VALUE (--var NAME=@FILE reads a value from a file)")
    );
}

// ---- --var values -----------------------------------------------------------------------

#[test]
fn var_values_name_files_with_at_and_escape_it_with_two() {
    let text = |s: &str| Ok(VarValue::Text(s.to_string()));
    assert_eq!(VarValue::parse("plain"), text("plain"));
    assert_eq!(VarValue::parse(""), text(""));
    assert_eq!(VarValue::parse("a@b"), text("a@b"));
    assert_eq!(VarValue::parse("@@x"), text("@x"));
    assert_eq!(VarValue::parse("@@"), text("@"));
    assert_eq!(VarValue::parse("@@@x"), text("@@x"));
    assert_eq!(
        VarValue::parse("@notes/topic.md"),
        Ok(VarValue::File("notes/topic.md".into()))
    );
    let e = VarValue::parse("@").expect_err("no file name");
    assert!(e.contains("file name") && e.contains("`@@`"), "{e}");
}

#[test]
fn var_files_are_read_relative_to_the_directory_less_one_newline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let read = |file: &str, content: &[u8]| {
        std::fs::write(dir.path().join(file), content).expect("write");
        VarValue::File(file.into()).read("v", dir.path())
    };
    assert_eq!(read("one", b"fix the bug\n"), Ok("fix the bug".to_string()));
    assert_eq!(read("crlf", b"fix\r\n"), Ok("fix".to_string()));
    assert_eq!(read("two", b"a\n\n"), Ok("a\n".to_string()));
    assert_eq!(read("none", b"  kept  "), Ok("  kept  ".to_string()));
    assert_eq!(read("lines", b"a\nb\n"), Ok("a\nb".to_string()));
    assert_eq!(read("empty", b""), Ok(String::new()));
    assert_eq!(
        VarValue::Text("@x".into()).read("v", Path::new("/nonexistent")),
        Ok("@x".to_string())
    );

    let e = read("latin1", b"caf\xe9\n").expect_err("not UTF-8");
    assert_eq!(
        e.to_string(),
        "cannot read var `v` from `latin1` (--var v=@latin1): not UTF-8 text"
    );
    let e = VarValue::File("gone.txt".into())
        .read("topic", dir.path())
        .expect_err("no such file");
    assert!(
        e.message
            .starts_with("cannot read var `topic` from `gone.txt` (--var topic=@gone.txt): "),
        "{e}"
    );
    assert!(e
        .hint
        .as_deref()
        .is_some_and(|h| h.contains("relative to the current directory")));
    assert_eq!(e.origin, "", "not an error in a workflow file");
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

// ---- tracks, conditions, context, loops, checkpoints and parallel groups ----------------

/// A track question and one condition group; `with_choices(rest)` puts `rest` at line 18.
const CHOICES: &str = r#"version = 1
name = "x"

[tracks]
question = "Kind?"
[tracks.options]
new_project = "New"
existing = "Old"

[[condition_groups]]
id = "features"
question = "Parts?"
multi = true
[condition_groups.options]
has_ui = "UI"
has_db = "DB"
"#;

fn with_choices(rest: &str) -> String {
    format!("{CHOICES}\n{rest}")
}

/// Two command steps `a` and `b`; a third step written in `rest` starts at line 18.
fn after_two(rest: &str) -> String {
    format!(
        "version = 1\nname = \"x\"\n\n[vars.area]\ndefault = \"api\"\n\n[[steps]]\nid = \"a\"\nrun = [\"x\"]\noutputs = [\"docs/{{area}}.md\", \"schema.json\"]\n\n[[steps]]\nid = \"b\"\nrun = [\"x\"]\n\n[[steps]]\nid = \"c\"\n{rest}"
    )
}

#[test]
fn full_file_with_every_new_key() {
    let wf = parse_ok(
        r#"version = 1
name = "full"

[vars.area]
default = "api"

[defaults]
engine = "claude"
context_limit = "20k"

[tracks]
question = "What kind of project is this?"
default = "existing"

[tracks.options]
new_project = "Start from scratch"
existing = "Extend an existing codebase"

[[condition_groups]]
id = "features"
question = "Which parts does it have?"
multi = true
default = ["has_ui", "has_db"]

[condition_groups.options]
has_ui = "A user interface"
has_db = "A database"

[[condition_groups]]
id = "size"
question = "How big is it?"
default = "small"

[condition_groups.options]
small = "Small"
large = "Large"

[groups.checks]
on_conflict = "fix"

[[steps]]
id = "design"
prompt = "Design {area}"
outputs = ["docs/{area}.md", "schema.json"]
checkpoint = true
tracks = ["new_project"]

[[steps]]
id = "implement"
prompt = "Implement"
context = [
  { from = "design" },
  { from = "design", output = "schema.json", required = true },
  { files = "src/{area}/**/*.ts" },
  { file = "docs/api-standards.md", required = true },
]
context_limit = 5000
loop = { to = "implement", max = 5, until = { run = ["cargo", "test", "{area}"] }, on_max = "continue" }
when = ["has_db"]
when_any = "has_ui"

[[steps]]
id = "lint"
engine = "command"
run = ["make", "lint"]
group = "checks"

[[steps]]
id = "unit"
engine = "command"
run = ["make", "unit"]
group = "checks"
checkpoint = false

[[steps]]
id = "fix"
prompt = "Fix what the checks found"
loop = { to = "lint", until = { run = ["make", "check"] } }
context_limit = "64KiB"
"#,
    );
    let tracks = wf.tracks.as_ref().expect("has tracks");
    assert_eq!(tracks.id, "tracks");
    assert_eq!(tracks.question, "What kind of project is this?");
    assert!(!tracks.multi);
    assert_eq!(
        tracks.options,
        [
            ("new_project".to_string(), "Start from scratch".to_string()),
            (
                "existing".to_string(),
                "Extend an existing codebase".to_string()
            ),
        ],
        "options keep file order"
    );
    assert_eq!(tracks.default, ["existing"]);

    let [features, size] = &wf.condition_groups[..] else {
        panic!("two condition groups: {:?}", wf.condition_groups)
    };
    assert_eq!((features.id.as_str(), features.multi), ("features", true));
    assert_eq!(features.default, ["has_ui", "has_db"]);
    assert_eq!(features.options[0].0, "has_ui");
    assert_eq!((size.id.as_str(), size.multi), ("size", false));
    assert_eq!(size.default, ["small"]);
    assert_eq!(size.question, "How big is it?");

    assert_eq!(
        wf.groups,
        [GroupSpec {
            id: "checks".to_string(),
            on_conflict: Some("fix".into())
        }]
    );
    assert!(wf.prompt_files.is_empty());

    let [design, implement, lint, unit, fix] = &wf.steps[..] else {
        panic!("five steps: {:?}", wf.steps)
    };
    assert!(design.checkpoint);
    assert_eq!(design.tracks, ["new_project"]);
    assert_eq!(design.context_limit, Some(20_000), "from [defaults]");
    assert!(design.context.is_empty());
    assert_eq!(design.loop_spec, None);
    assert_eq!(design.group, None);

    assert_eq!(
        implement.context,
        [
            ContextSource::Step {
                from: "design".into(),
                output: None,
                required: false,
                later: false
            },
            ContextSource::Step {
                from: "design".into(),
                output: Some("schema.json".to_string()),
                required: true,
                later: false
            },
            ContextSource::Files {
                pattern: "src/{area}/**/*.ts".to_string(),
                required: false
            },
            ContextSource::File {
                path: "docs/api-standards.md".to_string(),
                required: true
            },
        ]
    );
    assert_eq!(implement.context_limit, Some(5000));
    assert_eq!(
        implement.loop_spec,
        Some(LoopSpec {
            to: "implement".into(),
            max: 5,
            until: vec!["cargo".into(), "test".into(), "{area}".into()],
            continue_on_max: true,
        })
    );
    assert_eq!(implement.when, ["has_db"]);
    assert_eq!(implement.when_any, ["has_ui"]);
    assert!(implement.tracks.is_empty());
    assert!(!implement.checkpoint);

    assert_eq!(lint.group.as_deref(), Some("checks"));
    assert_eq!(unit.group.as_deref(), Some("checks"));
    assert!(!unit.checkpoint);
    let fix_loop = fix.loop_spec.as_ref().expect("fix loops");
    assert_eq!(
        (fix_loop.to.as_str(), fix_loop.max, fix_loop.continue_on_max),
        ("lint", 3, false),
        "defaults: max 3, fail on max"
    );
    assert_eq!(fix.context_limit, Some(64 * 1024));

    // resolve expands the templates of context and loops.
    let steps = wf.resolve(&values(&[("area", "billing")]));
    assert_eq!(
        steps[1].context[2],
        ContextSource::Files {
            pattern: "src/billing/**/*.ts".to_string(),
            required: false
        }
    );
    assert_eq!(
        steps[1].loop_spec.as_ref().expect("loop").until,
        ["cargo", "test", "billing"]
    );
}

#[test]
fn a_loop_goes_back_to_its_own_step_by_default() {
    let wf = parse_ok(&after_two(
        "run = [\"x\"]\nloop = { until = { run = [\"true\"] } }\n",
    ));
    let spec = wf.steps[2].loop_spec.as_ref().expect("loop");
    assert_eq!((spec.to.as_str(), spec.max), ("c", 3));
    let wf = parse_ok(&after_two("run = [\"x\"]\nloop = { to = \"a\" }\n"));
    let spec = wf.steps[2].loop_spec.as_ref().expect("loop");
    assert_eq!(spec.to, "a");
    assert!(spec.until.is_empty());
}

#[test]
fn tracks_are_checked() {
    let steps = "[[steps]]\nid = \"s\"\nrun = [\"x\"]\n";
    assert_err(
        &format!("version = 1\nname = \"x\"\n[tracks]\n[tracks.options]\na = \"A\"\n{steps}"),
        3,
        1,
        "[tracks] has no `question`",
        "`--track`",
    );
    assert_err(
        &format!("version = 1\nname = \"x\"\n[tracks]\nquestion = \"q\"\n{steps}"),
        3,
        1,
        "[tracks] has no options",
        "[tracks.options]",
    );
    assert_err(
        &format!("version = 1\nname = \"x\"\n[tracks]\nquestion = \"q\"\noptions = {{}}\n{steps}"),
        5,
        11,
        "[tracks] has no options",
        "",
    );
    assert_err(
        &format!("version = 1\nname = \"x\"\n[tracks]\nquestion = \"q\"\n[tracks.options]\n\"New Project\" = \"A\"\n{steps}"),
        6,
        1,
        "bad option id `New Project`",
        "e.g. `new-project`",
    );
    assert_err(
        &format!("version = 1\nname = \"x\"\n[tracks]\nquestion = \"q\"\ndefault = \"exsting\"\n[tracks.options]\nexisting = \"A\"\nfresh = \"B\"\n{steps}"),
        5,
        11,
        "default `exsting` is not an option of [tracks]",
        "did you mean `existing`? options of [tracks]: `existing`, `fresh`",
    );
    assert_err(
        &format!("version = 1\nname = \"x\"\n[tracks]\nquestoin = \"q\"\n{steps}"),
        4,
        1,
        "unknown key `questoin` in [tracks]",
        "did you mean `question`?",
    );
    assert_err(
        &format!(
            "version = 1\nname = \"x\"\n[tracks]\nquestion = \"q\"\ndefault = [\"a\"]\n{steps}"
        ),
        5,
        11,
        "expected a string for `default`, found an array",
        "",
    );
}

#[test]
fn condition_groups_are_checked() {
    let steps = "\n[[steps]]\nid = \"s\"\nrun = [\"x\"]\n";
    assert_err(
        &format!("{CHOICES}\n[[condition_groups]]\nquestion = \"q\"\n{steps}"),
        18,
        1,
        "condition group #2 has no `id`",
        "id = \"features\"",
    );
    assert_err(
        &format!("{CHOICES}\n[[condition_groups]]\nid = \"features\"\n{steps}"),
        19,
        6,
        "duplicate condition group id `features`",
        "at line 11",
    );
    assert_err(
        &format!("{CHOICES}\n[[condition_groups]]\nid = \"Big Parts\"\n{steps}"),
        19,
        6,
        "bad condition group id `Big Parts`",
        "e.g. `big-parts`",
    );
    assert_err(
        &format!("{CHOICES}\n[[condition_groups]]\nid = \"more\"\n{steps}"),
        18,
        1,
        "condition group `more` has no `question`",
        "`--with`",
    );
    // Option ids are unique across the track question and every group.
    assert_err(
        &format!("{CHOICES}\n[[condition_groups]]\nid = \"more\"\nquestion = \"q\"\n[condition_groups.options]\nhas_ui = \"again\"\n{steps}"),
        22,
        1,
        "option `has_ui` of condition group `more` is also an option of condition group `features` (line 15)",
        "unique across [tracks] and all condition groups",
    );
    assert_err(
        &format!("{CHOICES}\n[[condition_groups]]\nid = \"more\"\nquestion = \"q\"\n[condition_groups.options]\nexisting = \"x\"\n{steps}"),
        22,
        1,
        "option `existing` of condition group `more` is also an option of [tracks] (line 8)",
        "",
    );
    // Defaults: options of the group itself, one unless `multi`.
    let group = "\n[[condition_groups]]\nid = \"size\"\nquestion = \"q\"\n";
    let options = "[condition_groups.options]\nsmall = \"S\"\nlarge = \"L\"\n";
    assert_err(
        &format!("{CHOICES}{group}default = [\"small\", \"large\"]\n{options}{steps}"),
        21,
        21,
        "condition group `size` has 2 defaults but is not `multi`",
        "add `multi = true`",
    );
    assert_err(
        &format!("{CHOICES}{group}default = \"has_ui\"\n{options}{steps}"),
        21,
        11,
        "default `has_ui` is not an option of condition group `size`",
        "`has_ui` is an option of condition group `features`",
    );
    assert_err(
        &format!(
            "{CHOICES}{group}multi = true\ndefault = [\"small\", \"small\"]\n{options}{steps}"
        ),
        22,
        21,
        "`small` is listed twice in `default`",
        "",
    );
    assert_err(
        &format!("{CHOICES}{group}multi = \"yes\"\n{options}{steps}"),
        21,
        9,
        "expected a boolean for `multi`, found string \"yes\"",
        "write `multi = true` or `multi = false`",
    );
    assert_err(
        &format!("{CHOICES}{group}mutli = true\n{options}{steps}"),
        21,
        1,
        "unknown key `mutli` in condition group `size`",
        "did you mean `multi`?",
    );
}

#[test]
fn when_and_tracks_name_known_options() {
    let step = "[[steps]]\nid = \"s\"\nrun = [\"x\"]\n";
    assert_err(
        &with_choices(&format!("{step}when = [\"has_ui\", \"has_dv\"]\n")),
        21,
        19,
        "unknown condition `has_dv`",
        "did you mean `has_db`? conditions: has_ui, has_db",
    );
    assert_err(
        &with_choices(&format!("{step}when_any = [\"existing\"]\n")),
        21,
        13,
        "unknown condition `existing`",
        "`existing` is a track, not a condition: use `tracks = [\"existing\"]`",
    );
    assert_err(
        &with_choices(&format!("{step}when_any = []\n")),
        21,
        12,
        "`when_any` is empty in step `s`",
        "never run",
    );
    assert_err(
        &with_choices(&format!("{step}when = [\"has_ui\", \"has_ui\"]\n")),
        21,
        19,
        "`has_ui` is listed twice in `when`",
        "",
    );
    assert_err(
        &with_choices(&format!("{step}tracks = \"has_ui\"\n")),
        21,
        10,
        "unknown track `has_ui`",
        "`has_ui` is a condition, not a track: use `when = [\"has_ui\"]`",
    );
    assert_err(
        &with_choices(&format!("{step}tracks = [\"new_projct\"]\n")),
        21,
        11,
        "unknown track `new_projct`",
        "did you mean `new_project`? tracks: new_project, existing",
    );
    assert_err(
        &with_choices(&format!("{step}when = 3\n")),
        21,
        8,
        "expected a string or an array of strings for `when`, found integer `3`",
        "",
    );
    // Without the questions.
    assert_err(
        &after_two("run = [\"x\"]\nwhen = [\"has_ui\"]\n"),
        19,
        9,
        "`when` names condition `has_ui`, but the workflow has no [[condition_groups]]",
        "[[condition_groups]]",
    );
    assert_err(
        &after_two("run = [\"x\"]\ntracks = [\"new\"]\n"),
        19,
        10,
        "step `c` has `tracks`, but the workflow has no [tracks]",
        "[tracks.options]",
    );
}

/// Steps a, b, c, d: `b` has `ctx` as its context entry, `d` has `loop` (and outputs).
fn loop_over_b(ctx: &str, loop_: &str) -> String {
    format!(
        "version = 1\nname = \"x\"\n[[steps]]\nid = \"a\"\nrun = [\"x\"]\n[[steps]]\nid = \"b\"\nrun = [\"x\"]\ncontext = [{ctx}]\n[[steps]]\nid = \"c\"\nrun = [\"x\"]\n[[steps]]\nid = \"d\"\nrun = [\"x\"]\noutputs = [\"review.md\"]\n{loop_}\n"
    )
}

#[test]
fn context_may_come_from_a_later_step_whose_loop_comes_back() {
    let from_d = |output: Option<&str>, required: bool| ContextSource::Step {
        from: "d".into(),
        output: output.map(str::to_string),
        required,
        later: true,
    };
    // The loop goes back to `b` itself, or to `a` before it: `b` runs again after `d`.
    for to in ["b", "a"] {
        let wf = parse_ok(&loop_over_b(
            r#"{ from = "d", required = true }"#,
            &format!("loop = {{ to = \"{to}\" }}"),
        ));
        assert_eq!(wf.steps[1].context, [from_d(None, true)], "loop to {to}");
    }
    // A declared output of the later step, as written; resolving keeps `later`.
    let wf = parse_ok(&loop_over_b(
        r#"{ from = "d", output = "review.md" }"#,
        r#"loop = { to = "b", max = 3 }"#,
    ));
    assert_eq!(
        wf.resolve(&BTreeMap::new())[1].context,
        [from_d(Some("review.md"), false)]
    );
    assert_err(
        &loop_over_b(
            r#"{ from = "d", output = "reveiw.md" }"#,
            r#"loop = { to = "b" }"#,
        ),
        9,
        35,
        "`reveiw.md` is not an output of step `d`",
        "did you mean `review.md`? outputs of step `d`: `review.md`",
    );

    // Not when the loop starts after `b`, goes back to `d` itself, or there is no loop.
    let later = "`from` names step `d`, which comes after step `b`";
    let hint = "context can only come from an earlier step, or from a later one whose `loop` goes back to this step or before it";
    for loop_ in [r#"loop = { to = "c" }"#, "loop = { max = 2 }", ""] {
        let e = assert_err(&loop_over_b(r#"{ from = "d" }"#, loop_), 9, 21, later, hint);
        assert_eq!(e.message, later, "{loop_}");
        assert_eq!(e.hint.as_deref(), Some(hint), "{loop_}");
    }
    // The later step's own loop is still checked when its turn comes.
    assert_err(
        &loop_over_b(r#"{ from = "d" }"#, r#"loop = { to = "b", max = 0 }"#),
        17,
        26,
        "`max` must be at least 1",
        "",
    );
}

#[test]
fn context_is_checked() {
    let run = "run = [\"x\"]\n";
    assert_err(
        &after_two(&format!("{run}context = [{{ from = \"d\" }}]\n")),
        19,
        21,
        "`from` names unknown step `d`",
        "earlier steps: a, b",
    );
    assert_err(
        &after_two(&format!("{run}context = [{{ from = \"c\" }}]\n")),
        19,
        21,
        "step `c` can't take context from itself",
        "",
    );
    assert_err(
        &after_two(&format!(
            "{run}context = [{{ from = \"e\" }}]\n[[steps]]\nid = \"e\"\nrun = [\"x\"]\n"
        )),
        19,
        21,
        "`from` names step `e`, which comes after step `c`",
        "context can only come from an earlier step",
    );
    assert_err(
        &after_two(&format!(
            "{run}context = [{{ from = \"a\", output = \"schema.jsn\" }}]\n"
        )),
        19,
        35,
        "`schema.jsn` is not an output of step `a`",
        "did you mean `schema.json`? outputs of step `a`: `docs/{area}.md`, `schema.json`",
    );
    // Outputs are compared as written, placeholders and all.
    parse_ok(&after_two(&format!(
        "{run}context = [{{ from = \"a\", output = \"docs/{{area}}.md\" }}]\n"
    )));
    assert_err(
        &after_two(&format!(
            "{run}context = [{{ from = \"b\", output = \"out.txt\" }}]\n"
        )),
        19,
        35,
        "step `b` declares no outputs",
        "leave out `output` to get its final message",
    );
    assert_err(
        &after_two(&format!(
            "{run}context = [{{ file = \"x\", output = \"y\" }}]\n"
        )),
        19,
        35,
        "`output` goes with `from`",
        "",
    );
    assert_err(
        &after_two(&format!(
            "{run}context = [{{ file = \"x\", files = \"y/*\" }}]\n"
        )),
        19,
        34,
        "a `context` entry has both `file` and `files`",
        "write one entry for each",
    );
    assert_err(
        &after_two(&format!("{run}context = [{{ required = true }}]\n")),
        19,
        12,
        "a `context` entry of step `c` names nothing to read",
        "{ from = ",
    );
    assert_err(
        &after_two(&format!("{run}context = [{{ file = \"/etc/passwd\" }}]\n")),
        19,
        21,
        "`file` must stay inside the worktree",
        "relative to the root of the worktree",
    );
    assert_err(
        &after_two(&format!("{run}context = [{{ files = \"src/../../*\" }}]\n")),
        19,
        22,
        "`files` must stay inside the worktree",
        "",
    );
    assert_err(
        &after_two(&format!(
            "{run}context = [{{ files = \"src/{{aera}}/*\" }}]\n"
        )),
        19,
        27,
        "unknown placeholder `{aera}`",
        "did you mean `{area}`?",
    );
    assert_err(
        &after_two(&format!(
            "{run}context = [{{ file = \"x\", requried = true }}]\n"
        )),
        19,
        26,
        "unknown key `requried` in a `context` entry of step `c`",
        "did you mean `required`?",
    );
    assert_err(
        &after_two(&format!("{run}context = [\"a\"]\n")),
        19,
        12,
        "expected a table for `context`, found string \"a\"",
        "{ from = \"<earlier step>\" }",
    );
    assert_err(
        &after_two(&format!(
            "{run}context = [{{ file = \"x\", required = 1 }}]\n"
        )),
        19,
        37,
        "expected a boolean for `required`, found integer `1`",
        "write `required = true`",
    );
}

#[test]
fn context_limit_is_checked() {
    let run = "run = [\"x\"]\n";
    let limit = |v: &str| {
        parse_ok(&after_two(&format!("{run}context_limit = {v}\n"))).steps[2].context_limit
    };
    assert_eq!(limit("20000"), Some(20_000));
    assert_eq!(limit("\"20k\""), Some(20_000));
    assert_eq!(limit("\"20 kB\""), Some(20_000));
    assert_eq!(limit("\"1M\""), Some(1_000_000));
    assert_eq!(limit("\"2MiB\""), Some(2 << 20));
    assert_eq!(limit("\"512\""), Some(512));
    assert_err(
        &after_two(&format!("{run}context_limit = 0\n")),
        19,
        17,
        "`context_limit` must be more than zero",
        "\"20k\"",
    );
    assert_err(
        &after_two(&format!("{run}context_limit = \"lots\"\n")),
        19,
        17,
        "bad size `lots` for `context_limit`",
        "write a number of bytes",
    );
    assert_err(
        &after_two(&format!("{run}context_limit = 1.5\n")),
        19,
        17,
        "`context_limit` must be a number of bytes, found float",
        "",
    );
    assert_err(
        "version = 1\nname = \"x\"\n[defaults]\ncontext_limit = \"-3k\"\n",
        4,
        17,
        "bad size `-3k`",
        "",
    );
}

#[test]
fn loops_are_checked() {
    let run = "run = [\"x\"]\n";
    assert_err(
        &after_two(&format!(
            "{run}loop = {{ to = \"d\" }}\n[[steps]]\nid = \"d\"\nrun = [\"x\"]\n"
        )),
        19,
        15,
        "`to` names step `d`, which comes after step `c`",
        "a loop goes back",
    );
    assert_err(
        &after_two(&format!("{run}loop = {{ to = \"bb\" }}\n")),
        19,
        15,
        "`to` names unknown step `bb`",
        "did you mean `b`? steps it can name: a, b, c",
    );
    assert_err(
        &after_two(&format!("{run}loop = {{ max = 0 }}\n")),
        19,
        16,
        "`max` must be at least 1, found 0",
        "leave it out for 3",
    );
    assert_err(
        &after_two(&format!("{run}loop = {{ max = \"3\" }}\n")),
        19,
        16,
        "`max` must be a whole number, found string",
        "`max = 3`",
    );
    assert_err(
        &after_two(&format!("{run}loop = {{ until = {{}} }}\n")),
        19,
        18,
        "`until` has no `run`",
        "until = { run = [\"make\", \"test\"] }",
    );
    assert_err(
        &after_two(&format!("{run}loop = {{ until = {{ run = [] }} }}\n")),
        19,
        26,
        "`run` is empty in `until`",
        "",
    );
    assert_err(
        &after_two(&format!(
            "{run}loop = {{ until = {{ run = [\"{{nope}}\"] }} }}\n"
        )),
        19,
        28,
        "unknown placeholder `{nope}`",
        "",
    );
    assert_err(
        &after_two(&format!("{run}loop = {{ until = {{ cmd = [\"x\"] }} }}\n")),
        19,
        20,
        "unknown key `cmd` in `until` of step `c`",
        "allowed keys here: `run`",
    );
    assert_err(
        &after_two(&format!("{run}loop = {{ on_max = \"contine\" }}\n")),
        19,
        19,
        "unknown on_max `contine`",
        "did you mean `continue`? `on_max` is one of: fail, continue",
    );
    assert_err(
        &after_two(&format!("{run}loop = {{ maxx = 2 }}\n")),
        19,
        10,
        "unknown key `maxx` in `loop` of step `c`",
        "did you mean `max`?",
    );
    assert_err(
        &after_two(&format!("{run}loop = \"b\"\n")),
        19,
        8,
        "expected a table for `loop`, found string \"b\"",
        "loop = { to = ",
    );
    assert_err(
        &after_two(&format!("{run}checkpoint = \"yes\"\n")),
        19,
        14,
        "expected a boolean for `checkpoint`",
        "write `checkpoint = true` or `checkpoint = false`",
    );
}

/// Steps `a`, `b` and `c`, with `b` and `c` in group `g`; `rest` (more steps) starts at line 15.
fn grouped(rest: &str) -> String {
    format!(
        "version = 1\nname = \"x\"\n[[steps]]\nid = \"a\"\nrun = [\"x\"]\n[[steps]]\nid = \"b\"\nrun = [\"x\"]\ngroup = \"g\"\n[[steps]]\nid = \"c\"\nrun = [\"x\"]\ngroup = \"g\"\n\n{rest}"
    )
}

#[test]
fn parallel_groups_are_checked() {
    let wf = parse_ok(&grouped(
        "[[steps]]\nid = \"d\"\nrun = [\"x\"]\nloop = { to = \"b\" }\n",
    ));
    assert_eq!(
        wf.groups,
        [GroupSpec {
            id: "g".to_string(),
            on_conflict: None
        }],
        "every group is listed, with or without [groups.<id>]"
    );
    assert_err(
        &grouped("[[steps]]\nid = \"d\"\nrun = [\"x\"]\n[[steps]]\nid = \"e\"\nrun = [\"x\"]\ngroup = \"g\"\n"),
        21,
        9,
        "step `e` is in group `g`, which ended at step `c`",
        "must be next to each other; move step `e` up after step `c`",
    );
    assert_err(
        "version = 1\nname = \"x\"\n[[steps]]\nid = \"a\"\nrun = [\"x\"]\ngroup = \"solo\"\n",
        6,
        9,
        "group `solo` has only one step, `a`",
        "two or more steps",
    );
    assert_err(
        &grouped("[[steps]]\nid = \"d\"\nrun = [\"x\"]\ngroup = \"Checks\"\n"),
        18,
        9,
        "bad group id `Checks`",
        "e.g. `checks`",
    );
    // What a step of a group can't do, because the group is one merge.
    let e = assert_err(
        &grouped("[[steps]]\nid = \"d\"\nrun = [\"x\"]\ngroup = \"h\"\nloop = { to = \"a\" }\n[[steps]]\nid = \"e\"\nrun = [\"x\"]\ngroup = \"h\"\n"),
        19,
        8,
        "step `d` is in group `h`, so it can't have a `loop`",
        "committed as one merge",
    );
    assert!(e
        .hint
        .expect("hint")
        .contains("put the loop on a step after the group"));
    assert_err(
        &grouped("[[steps]]\nid = \"d\"\nrun = [\"x\"]\ngroup = \"g\"\ncheckpoint = true\n"),
        19,
        14,
        "step `d` is in group `g`, so it can't have `checkpoint`",
        "committed as one merge",
    );
    assert_err(
        &grouped("[[steps]]\nid = \"d\"\nrun = [\"x\"]\nloop = { to = \"c\" }\n"),
        18,
        15,
        "`to` names step `c`, in the middle of group `g`",
        "`to = \"b\"`",
    );
    // Steps of one group run at the same time: no sessions or context between them.
    assert_err(
        &grouped(
            "[[steps]]\nid = \"d\"\nrun = [\"x\"]\ngroup = \"g\"\ncontext = [{ from = \"b\" }]\n",
        ),
        19,
        21,
        "`from` names step `b`, which runs at the same time as step `d` in group `g`",
        "name a step that runs before the group",
    );
    assert_err(
        &grouped("[[steps]]\nid = \"d\"\nengine = \"claude\"\nprompt = \"p\"\ngroup = \"g\"\nsession = \"c\"\n"),
        20,
        11,
        "`session` names step `c`, which runs at the same time as step `d` in group `g`",
        "",
    );
    // [groups.<id>]
    assert_err(
        &grouped("[groups.gg]\non_conflict = \"a\"\n"),
        15,
        9,
        "[groups.gg] is not the group of any step",
        "did you mean `g`? groups of steps: g",
    );
    assert_err(
        "version = 1\nname = \"x\"\n[groups.g]\n[[steps]]\nid = \"a\"\nrun = [\"x\"]\n",
        3,
        9,
        "[groups.g] is not the group of any step",
        "no step has a `group`",
    );
    assert_err(
        &grouped("[groups.g]\non_conflict = \"b\"\n"),
        16,
        15,
        "`on_conflict` names step `b`, which is in group `g` itself",
        "a step outside it",
    );
    assert_err(
        &grouped("[groups.g]\non_conflict = \"aa\"\n"),
        16,
        15,
        "`on_conflict` names unknown step `aa`",
        "did you mean `a`? steps: a, b, c",
    );
    assert_err(
        &grouped("[groups.g]\non_confict = \"a\"\n"),
        16,
        1,
        "unknown key `on_confict` in [groups.g]",
        "did you mean `on_conflict`?",
    );
    assert_err(
        &grouped("[groups]\ng = \"a\"\n"),
        16,
        5,
        "expected a table for `g`, found string \"a\"",
        "`[groups.g]`, with `on_conflict = \"<step>\"` under it",
    );
    let wf = parse_ok(&grouped("[groups.g]\non_conflict = \"a\"\n"));
    assert_eq!(wf.groups[0].on_conflict.as_deref(), Some("a"));
}

#[test]
fn new_step_keys_have_no_defaults() {
    assert_err(
        &with_head("[defaults]\ncheckpoint = true\n"),
        12,
        1,
        "unknown key `checkpoint` in [defaults]",
        "`checkpoint` can't have a default; set it in each step",
    );
    assert_err(
        &with_head("[defaults]\nprompt_file = \"p.md\"\n"),
        12,
        1,
        "unknown key `prompt_file` in [defaults]",
        "can't have a default",
    );
}

// ---- prompt files -------------------------------------------------------------------------

const PROMPT_STEP: &str = "version = 1\nname = \"x\"\n[vars.area]\ndefault = \"api\"\n[[steps]]\nid = \"design\"\nengine = \"claude\"\nprompt_file = \"prompts/design.md\"\n";

#[test]
fn prompt_file_is_read_next_to_the_workflow_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("prompts")).expect("create prompts dir");
    let text = "Design the {area}.\n";
    std::fs::write(dir.path().join("prompts/design.md"), text).expect("write prompt");
    std::fs::write(dir.path().join("wf.toml"), PROMPT_STEP).expect("write workflow");

    let wf = parse_with_base("wf.toml", PROMPT_STEP, Some(dir.path())).expect("parses");
    assert_eq!(wf.steps[0].prompt.as_deref(), Some(text));
    assert_eq!(wf.source, PROMPT_STEP, "the source stays as written");
    let files: Vec<_> = wf
        .prompt_files
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(files, [("prompts/design.md", text)]);

    // load: the path is relative to the workflow file, not to the cwd.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("wf.toml");
    let loaded = load(elsewhere.path(), None, path.to_str().expect("utf-8 path")).expect("loads");
    assert_eq!(loaded.steps[0].prompt.as_deref(), Some(text));

    // A resume re-parses from the saved files, even once the file is gone or changed.
    std::fs::remove_file(dir.path().join("prompts/design.md")).expect("remove prompt");
    let again = parse_with_files("wf.toml", PROMPT_STEP, &wf.prompt_files).expect("re-parses");
    assert_eq!(again, wf);
    let e = parse_with_files("wf.toml", PROMPT_STEP, &BTreeMap::new()).expect_err("not saved");
    assert_eq!(
        e.to_string(),
        "wf.toml:8:15: prompt file `prompts/design.md` is not among the files saved with this run"
    );

    // Missing: the message says which file was tried.
    let e = parse_with_base("wf.toml", PROMPT_STEP, Some(dir.path())).expect_err("missing");
    assert_eq!((e.line, e.column), (Some(8), Some(15)));
    let tried = dir.path().join("prompts/design.md");
    assert!(
        e.message
            .starts_with(&format!("cannot read prompt file {}: ", tried.display())),
        "{e}"
    );
    assert!(
        e.hint
            .expect("hint")
            .contains("relative to the directory of the workflow file"),
        "hint"
    );
}

#[test]
fn prompt_file_templates_are_checked_in_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("prompts")).expect("create prompts dir");
    std::fs::write(
        dir.path().join("prompts/design.md"),
        "Design\nthe {aera} part.\n",
    )
    .expect("write prompt");
    let e = parse_with_base("wf.toml", PROMPT_STEP, Some(dir.path())).expect_err("bad placeholder");
    let shown = dir.path().join("prompts/design.md").display().to_string();
    assert_eq!(e.origin, shown, "the error is placed in the prompt file");
    assert_eq!((e.line, e.column), (Some(2), Some(5)));
    assert_eq!(e.message, "unknown placeholder `{aera}`");
    assert!(e.hint.expect("hint").contains("did you mean `{area}`?"));

    // The saved copy reports errors at the file's path as the workflow names it.
    let files = BTreeMap::from([("prompts/design.md".to_string(), "{nope}".to_string())]);
    let e = parse_with_files(".codemachine/workflows/wf.toml", PROMPT_STEP, &files)
        .expect_err("bad placeholder");
    assert_eq!(
        e.to_string(),
        ".codemachine/workflows/prompts/design.md:1:1: unknown placeholder `{nope}`"
    );

    // An agent needs something to do.
    std::fs::write(dir.path().join("prompts/design.md"), " \n").expect("write prompt");
    let e = parse_with_base("wf.toml", PROMPT_STEP, Some(dir.path())).expect_err("empty");
    assert_eq!(
        e.to_string(),
        "wf.toml:8:15: prompt file `prompts/design.md` of step `design` is empty"
    );
}

#[test]
fn prompt_file_errors() {
    assert_err(
        &format!("{PROMPT_STEP}prompt = \"inline\"\n"),
        8,
        15,
        "step `design` has both `prompt` and `prompt_file`",
        "keep one",
    );
    // Text with no file behind it, and built-ins, can't use it.
    assert_err(
        PROMPT_STEP,
        8,
        15,
        "`prompt_file` can't be read: this workflow has no directory to read it from",
        "prompt = '''...'''",
    );
    let e = parse("builtin:x", PROMPT_STEP).expect_err("built-ins have no files");
    assert_eq!(
        e.to_string(),
        "builtin:x:8:15: built-in workflows cannot use `prompt_file`"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let e = parse_with_base(
        "wf.toml",
        &PROMPT_STEP.replace("prompts/design.md", ""),
        Some(dir.path()),
    )
    .expect_err("empty path");
    assert_eq!(e.message, "`prompt_file` is empty");
    // An agent step without either says both are possible.
    assert_err(
        "version = 1\nname = \"x\"\n[[steps]]\nid = \"a\"\nengine = \"claude\"\n",
        3,
        1,
        "step `a` uses the `claude` engine but has no `prompt`",
        "`prompt_file = \"prompts/<name>.md\"`",
    );
}

#[test]
fn list_reads_prompt_files_of_repo_workflows() {
    let repo = tempfile::tempdir().expect("temp dir");
    let dir = repo.path().join(".codemachine/workflows");
    std::fs::create_dir_all(dir.join("prompts")).expect("create workflows dir");
    std::fs::write(dir.join("prompts/design.md"), "Design {area}").expect("write prompt");
    std::fs::write(
        dir.join("withfile.toml"),
        PROMPT_STEP.replace("name = \"x\"", "name = \"withfile\"\ndescription = \"d\""),
    )
    .expect("write workflow");
    let listed = list(Some(repo.path()));
    assert_eq!(listed[0].0, "withfile");
    assert_eq!(listed[0].1, "d");
    let wf = load(repo.path(), Some(repo.path()), "withfile").expect("loads by name");
    assert_eq!(wf.steps[0].prompt.as_deref(), Some("Design {area}"));
    assert_eq!(wf.origin, ".codemachine/workflows/withfile.toml");
}

// ---- interactive steps and the controller -------------------------------------------------

const CONTROLLED: &str = r#"version = 1
name = "c"

[controller]
engine = "claude"
prompt = "Ask what to build, then write spec.md"

[[steps]]
id = "build"
engine = "codex"
prompt = "Build what spec.md says"
context = [{ from = "controller" }]

[[steps]]
id = "manual"
run = ["bash"]
mode = "interactive"
interactive_fallback = "headless"
"#;

#[test]
fn the_controller_is_the_first_step_and_later_steps_may_name_it() {
    let wf = parse_ok(CONTROLLED);
    let ids: Vec<&str> = wf.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["controller", "build", "manual"]);
    assert_eq!(wf.controller, Some(None));
    assert_eq!(wf.steps[0].mode, Mode::Conversation);
    assert_eq!(wf.steps[0].engines, ["claude"]);
    assert_eq!(wf.steps[1].mode, Mode::Autonomous);
    assert_eq!(wf.steps[2].mode, Mode::Interactive);
    assert_eq!(wf.steps[2].interactive_fallback, Fallback::Headless);
    let resolved = wf.resolve(&BTreeMap::new());
    assert_eq!(resolved[0].mode, Mode::Conversation);
    assert_eq!(resolved[2].interactive_fallback, Fallback::Headless);
}

#[test]
fn an_interactive_step_pauses_without_a_terminal_unless_told_otherwise() {
    let wf = parse_ok(
        "version = 1\nname = \"i\"\n[[steps]]\nid = \"talk\"\nengine = \"claude\"\nprompt = \"p\"\nmode = \"interactive\"\n",
    );
    assert_eq!(wf.steps[0].mode, Mode::Interactive);
    assert_eq!(wf.steps[0].interactive_fallback, Fallback::Pause);
    assert_eq!(wf.controller, None);
}

#[test]
fn a_controller_that_takes_over_the_first_step_starts_from_its_settings() {
    let wf = parse_ok(
        "version = 1\nname = \"c\"\n[controller]\nstep = \"spec\"\nmodel = \"opus\"\nmode = \"interactive\"\n[[steps]]\nid = \"spec\"\nengine = \"gemini\"\nprompt = \"Write the spec\"\npermissions = \"edit\"\n[[steps]]\nid = \"build\"\nengine = \"codex\"\nprompt = \"b\"\n",
    );
    assert_eq!(
        wf.controller,
        Some(Some(StepId::parse("spec").expect("id")))
    );
    let c = &wf.steps[0];
    assert_eq!(c.id.as_str(), "controller");
    assert_eq!(c.engines, ["gemini"]);
    assert_eq!(c.model.as_deref(), Some("opus"));
    assert_eq!(c.prompt.as_deref(), Some("Write the spec"));
    assert_eq!(c.permissions, Some(Permissions::Edit));
    assert_eq!(c.mode, Mode::Interactive);
    assert_eq!(wf.steps[1].id.as_str(), "spec");
}

#[test]
fn controller_mistakes_are_placed_and_explained() {
    let head = "version = 1\nname = \"c\"\n";
    let agent = "[[steps]]\nid = \"a\"\nengine = \"claude\"\nprompt = \"p\"\n";
    assert_err(
        &format!("{head}[controller]\nstep = \"b\"\n{agent}[[steps]]\nid = \"b\"\nengine = \"claude\"\nprompt = \"p\"\n"),
        4,
        8,
        "`step` in [controller] names `b`, which is not the first step",
        "the first step is `a`",
    );
    assert_err(
        &format!("{head}[controller]\nengine = \"claude\"\nprompt = \"p\"\nloop = {{ to = \"a\" }}\n{agent}"),
        6,
        8,
        "`loop` can't be set in [controller]",
        "interactive_fallback, and optionally `step`",
    );
    assert_err(
        &format!("{head}[controller]\nrun = [\"sh\"]\n{agent}"),
        3,
        1,
        "the controller's conversation needs an agent engine",
        "mode = \"interactive\"",
    );
    assert_err(
        &format!("{head}[controller]\nengine = \"claude\"\nprompt = \"p\"\nmode = \"autonomous\"\n{agent}"),
        6,
        8,
        "unknown mode `autonomous`",
        "conversation, interactive",
    );
    assert_err(
        &format!("{head}[[steps]]\nid = \"controller\"\nrun = [\"true\"]\n"),
        4,
        6,
        "step id `controller` is taken by the controller",
        "give this step another id",
    );
    assert_err(
        &format!("{head}[controller]\nengine = \"claude\"\nprompt = \"p\"\n{agent}loop = {{ to = \"controller\" }}\n"),
        10,
        15,
        "loop can't go back to the controller",
        "git machine controller",
    );
    assert_err(
        &format!(
            "{head}[[steps]]\nid = \"a\"\nrun = [\"true\"]\ninteractive_fallback = \"pause\"\n"
        ),
        6,
        24,
        "`interactive_fallback` is for interactive steps",
        "mode = \"interactive\"",
    );
    assert_err(
        &format!("{head}[[steps]]\nid = \"a\"\nrun = [\"true\"]\nmode = \"interactive\"\ngroup = \"g\"\n[[steps]]\nid = \"b\"\nrun = [\"true\"]\ngroup = \"g\"\n"),
        7,
        9,
        "step `a` is interactive, so it can't be in group `g`",
        "one terminal",
    );
}

/// The keys the parser accepts in the table `toml` puts an unknown key `zzz` in, as serde
/// lists them.
fn accepted_keys(toml: &str) -> Vec<String> {
    let e = toml::from_str::<super::raw::RawWorkflow>(toml)
        .err()
        .unwrap_or_else(|| panic!("`zzz` was accepted in:\n{toml}"));
    let message = e.message().to_string();
    let (_, expected) = message
        .split_once("expected")
        .unwrap_or_else(|| panic!("not an unknown-key message: {message}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_format_reference_lists_every_key() {
    let doc = include_str!("../../docs/workflow-format.md");
    let section = |heading: &str| -> &str {
        let start = doc
            .find(&format!("\n## {heading}\n"))
            .unwrap_or_else(|| panic!("docs/workflow-format.md has no section `## {heading}`"));
        let rest = &doc[start + 1..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
        &rest[..end]
    };
    let step = "[[steps]]\nid = \"a\"\nrun = [\"true\"]\n";
    let tables = [
        ("Top level", "zzz = 1\n".to_string()),
        ("`[vars.<name>]`", "[vars.x]\nzzz = 1\n".to_string()),
        ("`[defaults]`", "[defaults]\nzzz = 1\n".to_string()),
        ("`[[steps]]`", format!("{step}zzz = 1\n")),
        ("`[[steps]]`", "[controller]\nzzz = 1\n".to_string()),
        (
            "`context` entries",
            format!("{step}context = [{{ zzz = 1 }}]\n"),
        ),
        ("`loop = { … }`", format!("{step}loop = {{ zzz = 1 }}\n")),
        (
            "`loop = { … }`",
            format!("{step}loop = {{ until = {{ zzz = 1 }} }}\n"),
        ),
        ("`[tracks]`", "[tracks]\nzzz = 1\n".to_string()),
        (
            "`[[condition_groups]]`",
            "[[condition_groups]]\nzzz = 1\n".to_string(),
        ),
        ("`[groups.<id>]`", "[groups.g]\nzzz = 1\n".to_string()),
        ("`[workspace]`", "[workspace]\nzzz = 1\n".to_string()),
    ];
    let mut missing = Vec::new();
    for (heading, toml) in &tables {
        let text = section(heading);
        let keys = accepted_keys(toml);
        assert!(!keys.is_empty(), "{heading}: {keys:?}");
        for key in keys {
            if !text.contains(&format!("| `{key}` |")) {
                missing.push(format!("{heading}: `{key}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/workflow-format.md does not document: {missing:?}"
    );
}

#[test]
fn a_step_with_a_prompt_and_no_engine_is_an_agent_step_the_run_may_fill() {
    let wf = parse_ok(
        "version = 1\nname = \"t\"\n[[steps]]\nid = \"open\"\nprompt = \"p\"\n[[steps]]\nid = \"named\"\nengine = \"codex\"\nprompt = \"p\"\n[[steps]]\nid = \"cmd\"\nrun = [\"true\"]\n",
    );
    let s = &wf.steps;
    assert_eq!(
        (s[0].engines.clone(), s[0].engine_named),
        (vec![DEFAULT_ENGINE.to_string()], false)
    );
    assert_eq!(
        (s[1].engines.clone(), s[1].engine_named),
        (vec!["codex".to_string()], true)
    );
    assert_eq!(
        (s[2].engines.clone(), s[2].engine_named),
        (vec!["command".to_string()], false)
    );
}

#[test]
fn mistakes_in_several_steps_are_all_reported_in_one_pass() {
    let e = parse(
        "wf.toml",
        "version = 1\nname = \"m\"\n[[steps]]\nid = \"a\"\nengine = \"claude\"\n[[steps]]\nid = \"b\"\nrun = [\"true\"]\ntimeout = \"soon\"\n[[steps]]\nid = \"c\"\nrun = [\"true\"]\ncontext = [{ from = \"nope\" }]\n[[steps]]\nid = \"d\"\nrun = [\"true\"]\ncontext = [{ from = \"a\" }]\n",
    )
    .expect_err("mistakes");
    assert!(e.message.contains("has no `prompt`"), "{e}");
    let also: Vec<(Option<usize>, &str)> = e
        .also
        .iter()
        .map(|a| (a.line, a.message.as_str()))
        .collect();
    assert_eq!(
        also,
        [
            (Some(9), "bad duration `soon`"),
            (Some(13), "`from` names unknown step `nope`")
        ],
        "a step after a broken one may still name it"
    );
}

const WS_STEP: &str = "[[steps]]\nid = \"a\"\nrun = [\"true\"]\n";

#[test]
fn workspace_keys_are_read_with_trailing_slashes_dropped() {
    let wf = parse_ok(&format!(
        "version = 1\nname = \"t\"\n[workspace]\ncopy = [\".env\", \"config/local.toml\", \".env\"]\nlink = [\"node_modules/\"]\nsetup = [\"npm\", \"ci\"]\nsetup_key = [\"package-lock.json\"]\n{WS_STEP}"
    ));
    let ws = &wf.workspace;
    assert_eq!(ws.copy, [".env", "config/local.toml"]);
    assert_eq!(ws.link, ["node_modules"]);
    assert_eq!(ws.setup, ["npm", "ci"]);
    assert_eq!(ws.setup_key, ["package-lock.json"]);
    assert_eq!(
        parse_ok(&format!("version = 1\nname = \"t\"\n{WS_STEP}")).workspace,
        WorkspaceSpec::default()
    );
}

// ---- paths stay inside ------------------------------------------------------------------

#[test]
fn paths_written_in_the_file_stay_inside() {
    let run = "[[steps]]\nid = \"a\"\nrun = [\"x\"]\n";
    assert_err(
        &with_head(&format!("{run}outputs = [\"ok.md\", \"../out.md\"]\n")),
        14,
        21,
        "`outputs` must stay inside the worktree: `../out.md` goes up with `..`",
        "relative to the root of the worktree",
    );
    assert_err(
        &with_head(&format!("{run}outputs = [\"/tmp/x\"]\n")),
        14,
        12,
        "`/tmp/x` is absolute",
        "without `..`",
    );
    assert_err(
        &with_head(&format!("{run}outputs = [\"a\\u0000b\"]\n")),
        14,
        12,
        "`a\\0b` holds a NUL byte",
        "",
    );
    assert_err(
        &with_head(&format!("{run}outputs = [\"notes/{{loop_reason}}.md\"]\n")),
        14,
        19,
        "`{loop_reason}` can't be part of a path (`outputs`)",
        "an agent wrote",
    );
    assert_err(
        &with_head(&format!(
            "{run}context = [{{ file = \"{{owner}}/../x\" }}]\n"
        )),
        14,
        21,
        "`file` must stay inside the worktree",
        "",
    );
    let step = "version = 1\nname = \"x\"\n[[steps]]\nid = \"d\"\nengine = \"claude\"\n";
    for (path, why) in [("../p.md", "goes up"), ("/etc/passwd", "is absolute")] {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = format!("{step}prompt_file = \"{path}\"\n");
        let e = parse_with_base("wf.toml", &source, Some(dir.path())).expect_err("refused");
        assert_eq!((e.line, e.column), (Some(6), Some(15)), "{e}");
        assert!(e.message.contains("`prompt_file` must stay inside"), "{e}");
        assert!(e.message.contains(why), "{e}");
    }
}

#[test]
fn a_var_that_takes_a_path_outside_is_refused_when_bound() {
    let wf = parse_ok(&with_head(
        "[[steps]]\nid = \"a\"\nrun = [\"x\"]\noutputs = [\"{feature_name}.md\"]\n\n\
         [[steps]]\nid = \"b\"\nrun = [\"x\"]\ncontext = [{ files = \"{owner}/*\" }]\n",
    ));
    let bind = |pairs: &[(&str, &str)]| {
        let given: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        wf.bind_vars(&given)
    };
    assert!(bind(&[("owner", "me"), ("feature_name", "notes/a..b")]).is_ok());
    let Err(BindError::Escape(e)) = bind(&[("owner", "me"), ("feature_name", "../../escape")])
    else {
        panic!("an escaping value is BindError::Escape");
    };
    assert_eq!(
        e.message,
        "var `feature_name` takes `outputs` of step `a` out of the worktree: \
         `{feature_name}.md` becomes `../../escape.md`, which goes up with `..`"
    );
    assert!(e
        .hint
        .as_deref()
        .unwrap_or_default()
        .contains("`feature_name`"));
    assert_eq!(e.origin, "wf.toml");
    let Err(BindError::Escape(e)) = bind(&[("owner", "/abs")]) else {
        panic!("an absolute value is refused");
    };
    assert!(
        e.message
            .starts_with("var `owner` takes `files` of step `b`"),
        "{e}"
    );
    // A path that only becomes `..` from two values together names the first of them.
    let wf = parse_ok(&with_head(
        "[[steps]]\nid = \"a\"\nrun = [\"x\"]\noutputs = [\"x/{feature_name}{owner}/y\"]\n",
    ));
    let given =
        [("feature_name", "."), ("owner", ".")].map(|(k, v)| (k.to_string(), v.to_string()));
    let Err(BindError::Escape(e)) = wf.bind_vars(&given) else {
        panic!("`.` + `.` is `..`");
    };
    assert!(e.message.starts_with("var `feature_name`"), "{e}");
}

// ---- every mistake of shape in one pass ------------------------------------------------

#[test]
fn shape_mistakes_of_every_table_are_reported_together() {
    let source = r#"version = 1
name = "multi"
colour = "red"

[vars.who]
help = 3

[vars.what]
defualt = "x"

[defaults]
timeout = 30

[[steps]]
id = "a"
run = "make"

[[steps]]
id = "b"
run = ["x"]
checkpoint = "yes"

[[steps]]
run = ["x"]
loop = { to = "a", maxx = 3 }

[[condition_groups]]
id = "c"
multi = 1

[tracks]
question = 2

[groups.g]
on_conflikt = "a"

[controller]
engin = "claude"
"#;
    let e = parse("wf.toml", source).expect_err("many mistakes");
    let all: Vec<String> = std::iter::once(&e)
        .chain(e.also.iter())
        .map(|e| format!("{}  [{}]", e, e.hint.as_deref().unwrap_or_default()))
        .collect();
    let expected = [
        "wf.toml:3:1: unknown key `colour`",
        "wf.toml:6:8: expected a string for `help`, found integer `3`",
        "wf.toml:9:1: unknown key `defualt` in var `what`  [did you mean `default`?]",
        "wf.toml:12:11: expected a string for `timeout`, found integer `30`",
        "wf.toml:16:7: expected an array for `run`, found string \"make\"",
        "wf.toml:21:14: expected a boolean for `checkpoint`, found string \"yes\"",
        "wf.toml:25:20: unknown key `maxx` in `loop` of step #3  [did you mean `max`?]",
        "wf.toml:29:9: expected a boolean for `multi`, found integer `1`",
        "wf.toml:32:12: expected a string for `question`, found integer `2`",
        "wf.toml:35:1: unknown key `on_conflikt` in [groups.g]  [did you mean `on_conflict`?]",
        "wf.toml:38:1: unknown key `engin` in [controller]  [did you mean `engine`?]",
    ];
    assert_eq!(all.len(), expected.len(), "{all:#?}");
    for (got, want) in all.iter().zip(expected) {
        assert!(
            got.starts_with(want),
            "{got:?} does not start with {want:?}"
        );
    }
}

#[test]
fn a_syntax_error_is_reported_once_with_its_position() {
    let e = parse("wf.toml", "version = 1\nname = \"x\"\n[[steps]\nid = 3\n").expect_err("syntax");
    assert_eq!((e.line, e.column), (Some(3), Some(8)), "{e}");
    assert!(e.also.is_empty());
}

// ---- placeholders inside quoted shell ----------------------------------------------------

#[test]
fn placeholders_inside_quotes_of_a_shell_script_are_warnings() {
    let wf = parse_ok(&with_head(
        r#"[[steps]]
id = "a"
run = ["sh", "-c", "echo '{feature_name}' \"{owner}\" {run_id} '{run_id}'"]
loop = { to = "a", until = { run = ["/bin/bash", "-euc", "test '{loop_reason}' = x"] } }

[[steps]]
id = "b"
run = ["env", "A=1", "sh", "-c", "echo \"$1\"", "sh", "{owner}"]

[[steps]]
id = "c"
run = ["sh", "-c", "{owner}"]

[[steps]]
id = "d"
run = ["python3", "-c", "print('{owner}')"]
"#,
    ));
    let got: Vec<String> = wf
        .warnings
        .iter()
        .map(|w| {
            format!(
                "{}:{} {}",
                w.line.unwrap_or(0),
                w.column.unwrap_or(0),
                w.message
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "13:27 `{feature_name}` is pasted inside single quotes of the shell script in `run` of step `a`: a `'` in its value ends the quotes",
            "13:45 `{owner}` is pasted inside double quotes of the shell script in `run` of step `a`: a `\"`, `$(…)` or backtick in its value is read by the shell",
            "14:65 `{loop_reason}` is pasted inside single quotes of the shell script in `until.run` of step `a`: a `'` in its value ends the quotes",
        ]
    );
    let hint = wf.warnings[0].hint.as_deref().unwrap_or_default();
    assert!(
        hint.contains(r#"["sh", "-c", "echo \"$1\"", "sh", "{feature_name}"]"#),
        "{hint}"
    );
}

// ---- no input breaks the parser -----------------------------------------------------------

/// Every error of `result` (and of its `also`) has a line and a column, and no message runs
/// over lines; a workflow is fine too.
#[track_caller]
fn placed_or_ok(result: std::result::Result<Workflow, WorkflowError>, what: &str) {
    let Err(e) = result else { return };
    for e in std::iter::once(&e).chain(e.also.iter()) {
        assert!(e.line.is_some() && e.column.is_some(), "{what}: {e}");
        assert!(!e.message.contains('\n'), "{what}: {e}");
    }
}

/// Every built-in workflow cut after every 5th character, and with one character replaced by a
/// quote, a bracket, a brace, `=`, a newline or a NUL (at every 37th character): parsing never
/// panics, and each mistake it reports has its line and column. About 5,000 inputs.
#[test]
fn cut_and_corrupted_builtins_are_errors_with_a_place() {
    let mut tried = 0;
    for name in builtin_names() {
        let text = builtin(name).expect("built in");
        let cuts: Vec<usize> = (0..=text.len())
            .filter(|i| text.is_char_boundary(*i))
            .collect();
        for &i in cuts.iter().step_by(5) {
            placed_or_ok(parse(name, &text[..i]), &format!("{name} cut at {i}"));
            tried += 1;
        }
        for (n, &i) in cuts.iter().enumerate().filter(|(n, _)| n % 37 == 0) {
            let Some(&end) = cuts.get(n + 1) else {
                continue;
            };
            for c in ["\"", "'", "[", "]", "{", "}", "=", "\n", "\0"] {
                let corrupted = format!("{}{c}{}", &text[..i], &text[end..]);
                placed_or_ok(parse(name, &corrupted), &format!("{name}: {c:?} at {i}"));
                tried += 1;
            }
        }
    }
    assert!(tried > 4_000, "tried {tried}");
}

#[test]
fn every_wrong_key_of_one_step_is_reported() {
    let e = parse(
        "wf.toml",
        "version = 1\nname = \"x\"\n[[steps]]\nid = \"a\"\npromt = \"p\"\ntimeout = 5\nloop = { to = \"a\", maxx = 1, onmax = \"x\" }\n",
    )
    .expect_err("three mistakes");
    let all: Vec<String> = std::iter::once(&e)
        .chain(e.also.iter())
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        all,
        [
            "wf.toml:5:1: unknown key `promt` in step `a`",
            "wf.toml:6:11: expected a string for `timeout`, found integer `5`",
            "wf.toml:7:20: unknown key `maxx` in `loop` of step `a`",
        ]
    );
}

#[test]
fn workspace_paths_stay_inside_the_repository() {
    let head = "version = 1\nname = \"t\"\n[workspace]\n";
    assert_err(
        &format!("{head}copy = [\"../up\"]\n{WS_STEP}"),
        4,
        9,
        "it goes up with `..`",
        "relative to the repository's root",
    );
    assert_err(
        &format!("{head}link = [\"/abs\"]\n{WS_STEP}"),
        4,
        9,
        "it is absolute",
        "relative",
    );
    assert_err(
        &format!("{head}copy = [\".git/config\"]\n{WS_STEP}"),
        4,
        9,
        "inside `.git`",
        "relative",
    );
    assert_err(
        &format!("{head}copy = [\"\"]\n{WS_STEP}"),
        4,
        9,
        "it names no file",
        "relative",
    );
}

#[test]
fn a_workspace_setup_needs_a_program_and_its_key_needs_a_setup() {
    let head = "version = 1\nname = \"t\"\n[workspace]\n";
    assert_err(
        &format!("{head}setup = []\n{WS_STEP}"),
        4,
        9,
        "names no program",
        "setup = [",
    );
    assert_err(
        &format!("{head}setup_key = [\"a.lock\"]\n{WS_STEP}"),
        4,
        13,
        "without a `setup`",
        "setup = [",
    );
    assert_err(
        &format!("{head}copy = [\"x\"]\nlink = [\"x\"]\n{WS_STEP}"),
        5,
        8,
        "both copied and linked",
        "copy",
    );
}

#[test]
fn version_name_and_step_mistakes_are_reported_together() {
    let e = parse(
        "wf.toml",
        "version = 2\nname = \"Bad Name\"\n[[steps]]\nid = \"a\"\nrun = [\"x\"]\ntimeout = \"soon\"\n\n[[steps]]\nid = \"b\"\nengine = \"claud\"\nprompt = \"p\"\n",
    )
    .expect_err("four mistakes");
    let all: Vec<String> = std::iter::once(&e)
        .chain(e.also.iter())
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        all,
        [
            "wf.toml:1:11: unsupported version 2; this git machine reads version 1",
            "wf.toml:2:8: bad workflow name `Bad Name`",
            "wf.toml:6:11: bad duration `soon`",
            "wf.toml:10:10: unknown engine `claud`",
        ]
    );
}
