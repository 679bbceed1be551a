//! `git machine new`: write a workflow of your own — from a built-in (`--from`), or by
//! answering a few questions on a terminal (what it is for, its steps and their engines,
//! interactive or autonomous, a loop, a checkpoint). What is written always validates, and an
//! existing file is never overwritten.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;

use super::error::{CliError, CliResult};
use super::Ctx;
use crate::workflow;

/// Write a new workflow: from a built-in, or by answering questions on a terminal
#[derive(Args, Debug)]
pub struct NewArgs {
    /// The workflow's name (its file is .codemachine/workflows/<name>.toml)
    pub name: String,
    /// Start from this built-in workflow (`git machine workflows` lists them)
    #[arg(long, value_name = "BUILT-IN")]
    pub from: Option<String>,
}

pub fn run(ctx: &mut Ctx, args: &NewArgs) -> CliResult {
    let repo = ctx.repo()?;
    let name = &args.name;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(CliError::usage(format!("bad workflow name `{name}`"))
            .with_hint("a workflow name uses lowercase letters, digits, '-' and '_'"));
    }
    let dir = repo
        .workdir()
        .ok_or_else(|| {
            CliError::usage("`new` needs a checkout; this repository is bare")
                .with_hint("run it in a clone with a working tree")
        })?
        .join(".codemachine/workflows");
    let path = dir.join(format!("{name}.toml"));
    if path.exists() {
        return Err(
            CliError::usage(format!(".codemachine/workflows/{name}.toml exists already"))
                .with_hint("pick another name, or edit that file"),
        );
    }
    let text = match &args.from {
        Some(from) => from_builtin(from, name)?,
        None => ask(name)?,
    };
    // What is written validates: checked before anything is created.
    let wf = workflow::parse(&format!(".codemachine/workflows/{name}.toml"), &text)
        .map_err(|e| CliError::failed(format!("the workflow would not validate: {e}")))?;
    std::fs::create_dir_all(&dir)?;
    std::fs::write(&path, &text)?;
    // Written here by the user's own command: it runs without the trust question.
    super::trust::trust_written(ctx, &repo, &path, &text)?;
    ctx.ui.out(&format!(
        "wrote .codemachine/workflows/{name}.toml ({} step{}); `git machine run {name}` starts it",
        wf.steps.len(),
        if wf.steps.len() == 1 { "" } else { "s" }
    ));
    Ok(())
}

/// A built-in's text under a new name.
fn from_builtin(from: &str, name: &str) -> CliResult<String> {
    let text = workflow::builtin(from).ok_or_else(|| {
        CliError::usage(format!("no built-in workflow `{from}`")).with_hint(format!(
            "built-ins: {}",
            workflow::builtin_names().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let mut out = String::new();
    let mut renamed = false;
    for line in text.lines() {
        if !renamed && line.trim_start().starts_with("name") && line.contains('=') {
            out.push_str(&format!("name = {}\n", quoted(name)));
            renamed = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// A TOML string.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// One answer read from the terminal; `default` on an empty line. EOF gives up.
fn answer(question: &str, default: &str) -> CliResult<String> {
    let mut err = std::io::stderr();
    if default.is_empty() {
        let _ = write!(err, "{question} ");
    } else {
        let _ = write!(err, "{question} [{default}] ");
    }
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        return Err(
            CliError::usage("the input ended before the workflow was described").with_hint(
                "nothing was written; `--from <built-in>` starts from a built-in without questions",
            ),
        );
    }
    let line = line.trim();
    Ok(if line.is_empty() {
        default.to_string()
    } else {
        line.to_string()
    })
}

/// Ask what matters, on a terminal, and write the workflow's text.
fn ask(name: &str) -> CliResult<String> {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(CliError::usage("`new` asks its questions on a terminal")
            .with_hint(format!("run it in a terminal, or start from a built-in: `git machine new {name} --from feature-scaffold`")));
    }
    let purpose = answer("What is the workflow for?", "")?;
    let engine = loop {
        let e = answer("Which agent engine do its steps use?", "claude")?;
        if workflow::ENGINES.contains(&e.as_str()) {
            break e;
        }
        eprintln!("engines: {}", workflow::ENGINES.join(", "));
    };
    let steps: Vec<String> = loop {
        let list = answer(
            "Its steps, in order (ids, comma-separated)?",
            "plan, implement, review",
        )?;
        let ids: Vec<String> = list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if !ids.is_empty() && ids.iter().all(|id| workflow::StepId::parse(id).is_some()) {
            break ids;
        }
        eprintln!("a step id uses lowercase letters, digits and '-'");
    };
    let mut text = format!(
        "version = 1\nname = {}\ndescription = {}\n\n[defaults]\nengine = {}\npermissions = \"edit\"\n",
        quoted(name),
        quoted(&purpose),
        quoted(&engine)
    );
    for (i, id) in steps.iter().enumerate() {
        let prompt = answer(
            &format!("What should `{id}` do?"),
            &format!("Do the {id} step."),
        )?;
        let interactive = answer(
            &format!("Do you work with the agent in `{id}` yourself (interactive)? y/n"),
            "n",
        )?;
        text.push_str(&format!(
            "\n[[steps]]\nid = {}\nprompt = {}\n",
            quoted(id),
            quoted(&prompt)
        ));
        if i > 0 {
            text.push_str(&format!(
                "context = [{{ from = {} }}]\n",
                quoted(&steps[i - 1])
            ));
        }
        if interactive.starts_with('y') {
            text.push_str("mode = \"interactive\"\n");
        }
    }
    let check = answer("A command that must pass after the last step (it loops back to the first until it does; empty: none)?", "")?;
    if !check.is_empty() {
        text.push_str(&format!(
            "loop = {{ to = {}, max = 3, until = {{ run = [\"sh\", \"-c\", {}] }} }}\n",
            quoted(&steps[0]),
            quoted(&check)
        ));
    }
    let pause = answer("Pause for your review after which step (empty: none)?", "")?;
    if !pause.is_empty() {
        let marker = format!("\n[[steps]]\nid = {}\n", quoted(&pause));
        if !text.contains(&marker) {
            return Err(
                CliError::usage(format!("`{pause}` is not one of the steps"))
                    .with_hint("nothing was written; answer with one of the ids you gave"),
            );
        }
        text = text.replacen(&marker, &format!("{marker}checkpoint = true\n"), 1);
    }
    Ok(text)
}
