//! `git machine engines`: which agent CLIs this machine can run, and how to get the others.
//!
//! An engine is installed when its program is found: the path in its override variable
//! (`MACHINE_CLAUDE_BIN`, …) if set, else its name on `PATH` — the same lookup a run does
//! before starting a step. The version is what `<program> --version` prints within 5 s (some
//! CLIs start slowly or hang without a network; a missing version is not an error).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use super::error::{CliError, CliResult};
use super::Ctx;
use crate::engine::{self, agent::Cli};

/// List the agent engines: installed or not, where, which version, how to install
#[derive(Args, Debug)]
pub struct EnginesArgs {
    /// Print one JSON array instead of text
    #[arg(long)]
    pub json: bool,
}

const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Serialize)]
struct EngineInfo {
    engine: &'static str,
    installed: bool,
    path: Option<String>,
    version: Option<String>,
    /// Why it cannot run, when it cannot.
    problem: Option<String>,
    install: &'static str,
    override_var: &'static str,
}

fn var<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// First line of `program --version`, or `None` if it fails or takes too long.
fn version(program: &Path, vars: &[(String, String)]) -> Option<String> {
    let mut child = Command::new(program)
        .arg("--version")
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                child.stdout.take()?.read_to_string(&mut out).ok()?;
                return status
                    .success()
                    .then(|| {
                        out.lines()
                            .map(str::trim)
                            .find(|l| !l.is_empty())
                            .map(String::from)
                    })
                    .flatten();
            }
            Ok(None) if started.elapsed() < VERSION_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

fn inspect(cli: &Cli, vars: &[(String, String)]) -> EngineInfo {
    let program = var(vars, cli.override_var).unwrap_or(cli.program);
    let path = var(vars, "PATH").map(std::ffi::OsStr::new);
    let (found, problem) = match cli.locate(program, path) {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e.to_string())),
    };
    EngineInfo {
        engine: cli.engine,
        installed: found.is_some(),
        version: found.as_deref().and_then(|p| version(p, vars)),
        path: found.map(|p| p.display().to_string()),
        problem,
        install: cli.install,
        override_var: cli.override_var,
    }
}

pub fn run(ctx: &mut Ctx, args: &EnginesArgs) -> CliResult {
    let infos: Vec<EngineInfo> = engine::AGENTS
        .iter()
        .map(|cli| inspect(cli, &ctx.env.vars))
        .collect();
    if args.json {
        let text = serde_json::to_string_pretty(&infos)
            .map_err(|e| CliError::failed(format!("cannot render JSON: {e}")))?;
        ctx.ui.out(&text);
        return Ok(());
    }
    let width = infos.iter().map(|i| i.engine.len()).max().unwrap_or(0);
    for info in &infos {
        let line = if let Some(path) = &info.path {
            format!(
                "{:width$}  {}  {path}{}",
                info.engine,
                ctx.ui.green("installed"),
                info.version
                    .as_deref()
                    .map(|v| format!("  ({v})"))
                    .unwrap_or_default()
            )
        } else {
            format!(
                "{:width$}  {}  {}",
                info.engine,
                ctx.ui.yellow("missing  "),
                ctx.ui.dim(&format!("install: {}", info.install))
            )
        };
        ctx.ui.out(&line);
    }
    ctx.ui.out(&ctx.ui.dim(
        "the `command` engine is always available; MACHINE_<ENGINE>_BIN=/path overrides a program",
    ));
    Ok(())
}
