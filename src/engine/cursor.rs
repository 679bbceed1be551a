//! The `cursor` engine: Cursor's agent CLI in print mode with a JSON event stream.
//!
//! Command line: `cursor-agent -p --output-format stream-json --trust [--model M]
//! <permissions> --workspace WORKDIR [--resume ID] [args…] PROMPT`. `--trust` skips the
//! workspace-trust question a headless run cannot answer. Cursor has no reasoning setting on
//! its command line (reasoning is part of the model name, e.g. `…-thinking`).
//!
//! The prompt is an argument: Cursor documents no other way in (not stdin, not a file), and
//! Cursor cannot be installed where git machine is tested, so this follows its documentation
//! only. Linux refuses an argument over 128 KiB, so a prompt over
//! [`agent::ARGV_PROMPT_MAX`] (100 KiB) is written to the step's [`StepInput::prompt_file`]
//! (outside the worktree) and the argument becomes a short request to read that file first
//! ([`agent::pointer_prompt`]): the agent then reads its instructions with its own file tool
//! instead of receiving them in the first message.
//!
//! Permissions (default `edit`, see [`agent::DEFAULT_PERMISSIONS`]): `read` → `--mode ask`
//! (read-only), `edit` → `--force --sandbox enabled` (in print mode Cursor applies changes only
//! with `--force`; the sandbox keeps shell commands inside the workspace), `full` → `--force
//! --sandbox disabled`.
//!
//! Stream (documented by Cursor as mirroring Claude Code's): `{"type":"system","subtype":"init",
//! "session_id"}`, `user`, `assistant` (`message.content[].text`), `tool_call`
//! (`started`/`completed`), and the final `{"type":"result","subtype":"success","is_error",
//! "result","session_id"}`. On failure Cursor exits non-zero, the stream may end without a
//! result, and the error is written to stderr. Parsed by Claude's parser.
//!
//! Interactive (from Cursor's documentation only, like everything here): `cursor-agent
//! [--model M] <permissions> --workspace WORKDIR [--resume ID] [args…] [MESSAGE]`. `agent
//! "prompt"` starts the interactive agent with a first message and `--resume <chat-id>`
//! continues a chat. The user is at the terminal to approve, so `edit` is `--sandbox enabled`
//! without `--force` (which would also run every command unasked), `read` stays `--mode ask`,
//! and `full` stays `--force --sandbox disabled`. `--trust` is left to the user's answer.
//!
//! Sessions: Cursor assigns the chat id itself (`cursor-agent create-chat` could make one first,
//! but an engine starts nothing itself). Its CLI offers no scriptable listing (`ls` is a
//! picker), so the chat is found in its storage, as third-party tools that read it describe it
//! (not verified here): `~/.cursor/chats/<md5 of the workspace's real path>/<chat id>/store.db`,
//! or under `$XDG_CONFIG_HOME/Cursor/chats` (default `~/.config`) in some setups. The store is
//! SQLite, so there is no transcript file to keep.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::agent::{self, prompt_argument, Cli};
use super::claude::ClaudeParser;
use super::{
    Ending, Engine, EngineError, EventParser, Interactive, Invocation, Outcome, StepInput, Stream,
};
use crate::workflow::{Permissions, ResolvedStep};

pub const CLI: Cli = Cli {
    engine: "cursor",
    program: "cursor-agent",
    override_var: "MACHINE_CURSOR_BIN",
    install: "curl https://cursor.com/install -fsS | bash",
};

agent::cli_engine!(CursorEngine, CLI);

impl Engine for CursorEngine {
    agent::cli_engine_basics!(CLI);

    fn invocation(&self, input: &StepInput<'_>) -> Result<Invocation, EngineError> {
        let step = input.step;
        let mut args: Vec<String> = ["-p", "--output-format", "stream-json", "--trust"]
            .map(String::from)
            .to_vec();
        args.extend(options(input, false));
        args.extend(step.args.iter().cloned());
        args.push(prompt_argument(input)?);
        Ok(Invocation::agent(
            &self.program,
            args,
            agent::step_env(step),
            "",
        ))
    }

    fn parser(&self) -> Box<dyn EventParser> {
        Box::new(CursorParser(ClaudeParser::default()))
    }

    fn can_resume(&self) -> bool {
        true
    }

    /// `cursor-agent [--model M] <permissions> --workspace WORKDIR [--resume ID] [args…]
    /// [MESSAGE]`: see the module header.
    fn interactive(&self, input: &StepInput<'_>) -> Result<Interactive, EngineError> {
        let step = input.step;
        let mut args = options(input, true);
        args.extend(step.args.iter().cloned());
        args.extend(agent::first_message(input)?);
        Ok(Interactive {
            inv: Invocation::agent(&self.program, args, agent::step_env(step), ""),
            session: input.resume_session.map(String::from),
        })
    }

    /// `expected` exists when some workspace folder holds its chat; without one, the chat of
    /// `workdir`'s workspace folder written last since `since`.
    fn find_session(
        &self,
        env: &[(String, String)],
        workdir: &Path,
        since: SystemTime,
        expected: Option<&str>,
    ) -> Option<String> {
        let roots = chat_roots(env);
        if let Some(id) = expected {
            if !agent::safe_id(id) {
                return None;
            }
            let found = roots.iter().any(|root| {
                std::fs::read_dir(root).is_ok_and(|workspaces| {
                    workspaces
                        .flatten()
                        .any(|w| w.path().join(id).join(STORE).is_file())
                })
            });
            return found.then(|| id.to_string());
        }
        let real = workdir
            .canonicalize()
            .unwrap_or_else(|_| workdir.to_path_buf());
        let hash = md5_hex(real.to_string_lossy().as_bytes());
        let stores = roots.iter().flat_map(|root| {
            let chats = std::fs::read_dir(root.join(&hash)).into_iter().flatten();
            chats.flatten().map(|chat| chat.path().join(STORE))
        });
        agent::newest_since(stores, since, |store| {
            let id = store.parent()?.file_name()?.to_str()?;
            agent::safe_id(id).then(|| id.to_string())
        })
    }
}

/// Model, permissions, workspace and chat to continue, shared by print mode and the
/// interactive agent (whose `edit` leaves commands to the user: see the module header).
fn options(input: &StepInput<'_>, interactive: bool) -> Vec<String> {
    let step: &ResolvedStep = input.step;
    let mut args = Vec::new();
    if let Some(model) = &step.model {
        args.extend(["--model".into(), model.clone()]);
    }
    match agent::permissions(step) {
        Permissions::Read => args.extend(["--mode".into(), "ask".into()]),
        Permissions::Edit if interactive => args.extend(["--sandbox".into(), "enabled".into()]),
        Permissions::Edit => args.extend(["--force".into(), "--sandbox".into(), "enabled".into()]),
        Permissions::Full => args.extend(["--force".into(), "--sandbox".into(), "disabled".into()]),
    }
    args.extend(["--workspace".into(), input.workdir.display().to_string()]);
    if let Some(id) = input.resume_session {
        args.extend(["--resume".into(), id.to_string()]);
    }
    args
}

/// A chat's database file in its folder.
const STORE: &str = "store.db";

/// The folders Cursor's CLI may keep chats in: `~/.cursor/chats` and
/// `${XDG_CONFIG_HOME:-~/.config}/Cursor/chats`.
fn chat_roots(env: &[(String, String)]) -> Vec<PathBuf> {
    let home = agent::home(env);
    let config = agent::var(env, "XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    let mut roots: Vec<PathBuf> = home
        .map(|h| h.join(".cursor").join("chats"))
        .into_iter()
        .collect();
    roots.extend(config.map(|c| c.join("Cursor").join("chats")));
    roots
}

/// The MD5 digest of `data` in lower-case hex, the name Cursor gives a workspace's chat
/// folder. Not for security: only to find that folder.
fn md5_hex(data: &[u8]) -> String {
    format!("{:x}", md5::compute(data))
}

struct CursorParser(ClaudeParser);

impl EventParser for CursorParser {
    fn line(&mut self, stream: Stream, line: &str) {
        self.0.line(stream, line);
    }

    fn session(&self) -> Option<&str> {
        self.0.session()
    }

    fn finish(self: Box<Self>, ending: &Ending) -> Outcome {
        self.0.finish_as(CLI.engine, ending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::agent::{pointer_prompt, ARGV_PROMPT_MAX};
    use crate::engine::testing::{
        home_env, interactive, interactive_args, large_prompt_goes_to_the_file, parse, resolved,
        write,
    };

    // Shapes from Cursor's output-format documentation.
    const INIT: &str = r#"{"type":"system","subtype":"init","apiKeySource":"login","cwd":"/w","session_id":"c6b62c6f-7ead-4fd6-9922-e952131177ff","model":"Auto","permissionMode":"default"}"#;
    const ASSISTANT: &str = r#"{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Done: wrote a.txt"}]},"session_id":"c6b62c6f-7ead-4fd6-9922-e952131177ff"}"#;
    const RESULT: &str = r#"{"type":"result","subtype":"success","duration_ms":1234,"duration_api_ms":1234,"is_error":false,"result":"Done: wrote a.txt","session_id":"c6b62c6f-7ead-4fd6-9922-e952131177ff","request_id":"r1"}"#;
    const RESULT_ERR: &str = r#"{"type":"result","subtype":"error","is_error":true,"result":"Rate limit exceeded","session_id":"c6b62c6f-7ead-4fd6-9922-e952131177ff"}"#;

    fn engine() -> CursorEngine {
        CursorEngine::new("cursor-agent")
    }

    #[test]
    fn command_line() {
        let step = resolved("s");
        let inv = engine()
            .invocation(&StepInput {
                step: &step,
                prompt: "go",
                workdir: Path::new("/w"),
                resume_session: Some("c6b6"),
                fork_session: false,
                prompt_file: Path::new("/nonexistent/p.prompt"),
            })
            .expect("inv");
        assert_eq!(
            inv.args,
            [
                "-p",
                "--output-format",
                "stream-json",
                "--trust",
                "--force",
                "--sandbox",
                "enabled",
                "--workspace",
                "/w",
                "--resume",
                "c6b6",
                "go"
            ]
        );
    }

    #[test]
    fn a_prompt_too_long_for_argv_goes_in_the_prompt_file() {
        let step = resolved("s");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("01-s.prompt");
        let prompt = "x".repeat(ARGV_PROMPT_MAX + 1);
        let inv = engine()
            .invocation(&StepInput {
                step: &step,
                prompt: &prompt,
                workdir: Path::new("/w"),
                resume_session: None,
                fork_session: false,
                prompt_file: &file,
            })
            .expect("inv");
        let last = inv.args.last().expect("prompt argument");
        assert_eq!(*last, pointer_prompt(&file, prompt.len()));
        assert_eq!(std::fs::read_to_string(&file).expect("prompt file"), prompt);
    }

    #[test]
    fn success_and_errors() {
        let o = parse(&engine(), &[INIT, ASSISTANT, RESULT], &[], 0);
        assert!(o.success, "{o:?}");
        assert_eq!(
            o.session.as_deref(),
            Some("c6b62c6f-7ead-4fd6-9922-e952131177ff")
        );
        assert_eq!(o.summary.as_deref(), Some("Done: wrote a.txt"));
        let o = parse(&engine(), &[INIT, RESULT_ERR], &[], 0);
        assert!(!o.success);
        assert_eq!(o.fallback_reason.as_deref(), Some("rate-limited"));
        let o = parse(
            &engine(),
            &[INIT],
            &["Error: Authentication required. Please run 'cursor-agent login'"],
            1,
        );
        assert!(!o.success);
        assert!(o.error.expect("error").contains("Authentication required"));
        assert!(o.fallback_reason.is_some());
    }

    #[test]
    fn interactive_new_and_resumed() {
        let mut step = resolved("s");
        step.model = Some("sonnet-4".into());
        let i = interactive(&engine(), &step, "go", None).expect("interactive");
        assert_eq!(i.session, None, "Cursor picks its own id");
        assert_eq!(
            i.inv.args,
            [
                "--model",
                "sonnet-4",
                "--sandbox",
                "enabled",
                "--workspace",
                "/w",
                "go"
            ]
        );
        step.model = None;
        step.permissions = Some(Permissions::Full);
        let i = interactive(&engine(), &step, "", Some("c6b6")).expect("interactive");
        assert_eq!(i.session.as_deref(), Some("c6b6"));
        assert_eq!(
            i.inv.args,
            [
                "--force",
                "--sandbox",
                "disabled",
                "--workspace",
                "/w",
                "--resume",
                "c6b6"
            ]
        );
        step.permissions = Some(Permissions::Read);
        let a = interactive_args(&engine(), &step, "look", None);
        assert_eq!(a, ["--mode", "ask", "--workspace", "/w", "look"]);
        let args = large_prompt_goes_to_the_file(&engine());
        assert!(!args.contains(&"-p".to_string()));
    }

    #[test]
    fn md5_matches_rfc_1321() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            md5_hex(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            ),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }

    #[test]
    fn find_session_reads_the_workspaces_chat_folder() {
        let home = tempfile::tempdir().expect("home");
        let env = home_env(home.path());
        let w = home.path().join("w");
        std::fs::create_dir_all(&w).expect("workdir");
        let since = SystemTime::now() - std::time::Duration::from_secs(60);
        let e = engine();
        let id = "c6b62c6f-7ead-4fd6-9922-e952131177ff";
        assert_eq!(e.find_session(&env, &w, since, Some(id)), None);
        assert_eq!(e.find_session(&env, &w, since, None), None);
        let real = w.canonicalize().expect("real path");
        let hash = md5_hex(real.to_string_lossy().as_bytes());
        let chats = home.path().join(".cursor/chats");
        write(&chats.join(&hash).join(id).join(STORE), "");
        assert_eq!(
            e.find_session(&env, &w, since, Some(id)).as_deref(),
            Some(id)
        );
        assert_eq!(e.find_session(&env, &w, since, None).as_deref(), Some(id));
        assert_eq!(e.find_session(&env, &w, since, Some("other")), None);
        // Another workspace's chat is not this one's.
        let other = home.path().join("other");
        std::fs::create_dir_all(&other).expect("other");
        assert_eq!(e.find_session(&env, &other, since, None), None);
        // The XDG location is searched as well.
        let xdg = home.path().join(".config/Cursor/chats");
        write(&xdg.join(&hash).join("x-1").join(STORE), "");
        assert_eq!(
            e.find_session(&env, &w, since, Some("x-1")).as_deref(),
            Some("x-1")
        );
    }
}
