//! `git-machine` on a terminal of its own: a real pseudo-terminal, so that what git machine does
//! only on a terminal (the live view, its keys, Ctrl-C, questions) is tested as a person meets it.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{wait_until, TestEnv, BIN};

/// The environment `TestEnv::machine_cmd` gives, as a full list (for a pty command).
fn machine_env(env: &TestEnv) -> Vec<(String, String)> {
    env_of(&env.machine_cmd(&[]))
}

/// The environment `cmd` would run with, as a full list.
fn env_of(cmd: &std::process::Command) -> Vec<(String, String)> {
    let mut vars: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    for (k, v) in cmd.get_envs() {
        let k = k.to_string_lossy().into_owned();
        match v {
            Some(v) => {
                vars.insert(k, v.to_string_lossy().into_owned());
            }
            None => {
                vars.remove(&k);
            }
        }
    }
    vars.into_iter().collect()
}

/// The pty's input, shared by the test typing and the terminal answering queries.
#[derive(Clone)]
struct Writer(Arc<Mutex<Box<dyn Write + Send>>>);

impl Writer {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.lock().expect("pty writer lock").write_all(bytes)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().expect("pty writer lock").flush()
    }
}

/// Answer what full-screen programs ask their terminal at start, as a terminal emulator does
/// (a program such as Codex waits for the answers): the cursor position, the default colours,
/// the device attributes, the kitty keyboard flags, the window size.
fn answer_queries(bytes: &[u8], writer: &Writer, cols: u16) {
    let text = String::from_utf8_lossy(bytes);
    let answers: [(&str, String); 8] = [
        ("\x1b[6n", "\x1b[1;1R".to_string()),
        ("\x1b]10;?", "\x1b]10;rgb:ffff/ffff/ffff\x1b\\".to_string()),
        ("\x1b]11;?", "\x1b]11;rgb:0000/0000/0000\x1b\\".to_string()),
        ("\x1b[c", "\x1b[?62;22c".to_string()),
        ("\x1b[0c", "\x1b[?62;22c".to_string()),
        ("\x1b[>c", "\x1b[>1;10;0c".to_string()),
        ("\x1b[?u", "\x1b[?0u".to_string()),
        ("\x1b[18t", format!("\x1b[8;24;{cols}t")),
    ];
    let mut w = writer.clone();
    for (query, answer) in &answers {
        for _ in text.matches(query) {
            let _ = w.write_all(answer.as_bytes());
            let _ = w.flush();
        }
    }
}

/// `git-machine` on a terminal of its own (a real pty), its screen collected as it comes.
pub(crate) struct OnPty {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Writer,
    screen: Arc<Mutex<Vec<u8>>>,
    /// Set once everything the program wrote has been read (the pty's end).
    drained: Arc<std::sync::atomic::AtomicBool>,
    /// The terminal's width now (a resize changes it).
    cols: std::sync::atomic::AtomicU16,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl OnPty {
    pub(crate) fn spawn(env: &TestEnv, args: &[&str]) -> OnPty {
        OnPty::spawn_sized(env, args, 200)
    }

    pub(crate) fn spawn_sized(env: &TestEnv, args: &[&str], cols: u16) -> OnPty {
        OnPty::spawn_with(env, args, cols, &[])
    }

    /// `cmd` (a `git-machine` command: its arguments and environment) on a pty, in `env`'s
    /// repository.
    pub(crate) fn spawn_command(env: &TestEnv, cmd: &std::process::Command, cols: u16) -> OnPty {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let base: std::collections::BTreeMap<String, String> =
            machine_env(env).into_iter().collect();
        let extra: Vec<(String, String)> = env_of(cmd)
            .into_iter()
            .filter(|(k, v)| base.get(k) != Some(v))
            .collect();
        let removed: Vec<String> = base
            .keys()
            .filter(|k| !env_of(cmd).iter().any(|(n, _)| n == *k))
            .cloned()
            .collect();
        OnPty::spawn_full(env, &args, cols, &extra, &removed)
    }

    /// As [`OnPty::spawn_sized`], with `extra` variables added to the environment.
    pub(crate) fn spawn_with(
        env: &TestEnv,
        args: &[&str],
        cols: u16,
        extra: &[(String, String)],
    ) -> OnPty {
        OnPty::spawn_full(env, args, cols, extra, &[])
    }

    fn spawn_full(
        env: &TestEnv,
        args: &[&str],
        cols: u16,
        extra: &[(String, String)],
        removed: &[String],
    ) -> OnPty {
        use portable_pty::{native_pty_system, CommandBuilder, PtySize};
        let size = PtySize {
            rows: 24,
            cols,
            pixel_width: 0,
            pixel_height: 0,
        };
        let pair = native_pty_system().openpty(size).expect("open a pty");
        let mut cmd = CommandBuilder::new(BIN);
        cmd.args(args);
        cmd.cwd(&env.repo);
        cmd.env_clear();
        for (k, v) in machine_env(env).into_iter().chain(extra.iter().cloned()) {
            if !removed.contains(&k) {
                cmd.env(k, v);
            }
        }
        let child = pair
            .slave
            .spawn_command(cmd)
            .expect("spawn git-machine on a pty");
        drop(pair.slave);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = pair.master.try_clone_reader().expect("pty reader");
        let sink = Arc::clone(&screen);
        let drained = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = Arc::clone(&drained);
        let writer = Writer(Arc::new(Mutex::new(
            pair.master.take_writer().expect("pty writer"),
        )));
        let answers = writer.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                answer_queries(&buf[..n], &answers, cols);
                sink.lock()
                    .expect("screen lock")
                    .extend_from_slice(&buf[..n]);
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        OnPty {
            child,
            writer,
            screen,
            drained,
            cols: std::sync::atomic::AtomicU16::new(cols),
            _master: pair.master,
        }
    }

    pub(crate) fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().expect("screen lock")).into_owned()
    }

    /// Make the terminal `cols` wide, as a person resizing the window does.
    pub(crate) fn resize(&self, cols: u16) {
        self.cols.store(cols, std::sync::atomic::Ordering::SeqCst);
        self._master
            .resize(portable_pty::PtySize {
                rows: 24,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("resize the pty");
    }

    /// Type bytes as they come from a key (an arrow's escape sequence, say).
    pub(crate) fn keys(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("type keys");
        self.writer.flush().expect("flush");
    }

    /// Type one key.
    pub(crate) fn key(&mut self, key: u8) {
        self.writer.write_all(&[key]).expect("type a key");
        self.writer.flush().expect("flush");
    }

    /// What a person sees on the terminal now: everything written so far played through a
    /// terminal emulator of the pty's size, its visible rows as text. A full-screen interface
    /// that redraws a line in pieces shows it whole here.
    pub(crate) fn visible(&self) -> String {
        let cols = self.cols.load(std::sync::atomic::Ordering::SeqCst);
        let size = |n: u16| std::num::NonZeroU16::new(n).expect("a terminal is never 0 wide");
        let mut terminal = vt100::Parser::new(size(24), size(cols), 0);
        terminal.process(&self.screen.lock().expect("screen lock"));
        terminal.screen().contents()
    }

    /// The screen without colours and cursor moves, as text.
    pub(crate) fn text(&self) -> String {
        let raw = self.screen();
        let mut out = String::new();
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' && chars.peek() == Some(&'[') {
                chars.next();
                // Colours go; cursor moves and erasures end a line.
                let end = chars.by_ref().find(|c| c.is_ascii_alphabetic());
                if end != Some('m') {
                    out.push('\n');
                }
                continue;
            }
            out.push(c);
        }
        out
    }

    /// Type a line, as a person does: the text and Enter.
    pub(crate) fn line(&mut self, text: &str) {
        self.writer
            .write_all(format!("{text}\r").as_bytes())
            .expect("type a line");
        self.writer.flush().expect("flush");
    }

    /// git machine's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.process_id().expect("a running child has a pid")
    }

    /// Type Ctrl-C: the terminal sends SIGINT to its foreground process group.
    pub(crate) fn ctrl_c(&mut self) {
        self.writer.write_all(b"\x03").expect("type Ctrl-C");
        self.writer.flush().expect("flush");
    }

    /// The exit code, if it exits within `limit` (otherwise it is killed).
    pub(crate) fn wait(&mut self, limit: Duration) -> Option<u32> {
        let mut status = None;
        wait_until(limit, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        if status.is_none() {
            let _ = self.child.kill();
        }
        // What it wrote just before exiting may still be on its way through the pty: read
        // it all before the caller looks at the screen.
        wait_until(Duration::from_secs(5), || {
            self.drained.load(std::sync::atomic::Ordering::SeqCst)
        });
        status.map(|s| s.exit_code())
    }
}
