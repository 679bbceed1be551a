//! `--detach`: the same command again in the background, in a session of its own (no
//! terminal, so closing it does not stop the run), and back at once with the run id.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::error::{CliError, CliResult};
use super::Ctx;

/// Start this command again without `--detach` (plus `extra` arguments), detached; print the
/// run id it prints first.
pub fn detach(ctx: &mut Ctx, extra: &[&str]) -> CliResult {
    let exe = ctx.env.exe.clone().ok_or_else(|| {
        CliError::failed("cannot find git machine's own program to start it in the background")
            .with_hint("run without --detach")
    })?;
    // Its output goes nowhere once the id is read; `--json` would put JSON before the id
    // (`watch --json` shows the events of a detached run).
    let args: Vec<&String> = ctx
        .env
        .args
        .iter()
        .filter(|a| !["--detach", "--json"].contains(&a.as_str()))
        .collect();
    let mut cmd = Command::new(exe);
    cmd.args(&args)
        .args(extra)
        .current_dir(&ctx.env.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid only makes the child the leader of a new session, away from this terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        CliError::failed(format!("cannot start git machine in the background: {e}"))
    })?;
    let mut first = String::new();
    let stdout = child.stdout.take().expect("stdout was piped");
    let _ = BufReader::new(stdout).read_line(&mut first);
    let id = first.trim();
    if id.is_empty() {
        // It ended before starting the run: show why, with its exit code.
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = child.wait()?;
        for line in err.lines() {
            ctx.ui.note(line);
        }
        return Err(
            CliError::new(status.code().unwrap_or(1), "the run did not start")
                .with_hint("the error above says why"),
        );
    }
    ctx.ui.out(id);
    ctx.ui.note(&format!(
        "run {id} goes on in the background (pid {}); `git machine watch {id}` follows it, `git machine stop {id}` stops it",
        child.id()
    ));
    Ok(())
}
