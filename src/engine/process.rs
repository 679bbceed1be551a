//! Running a step's program: one place for process groups, limits, cancellation and logs.
//!
//! Supervision runs on a tokio event loop (one current-thread runtime per program run): the
//! child, its two output pipes, its stdin, the timeouts and the polling of the stop flags are
//! futures on that loop, joined by one bounded channel.
//!
//! Invariants:
//! - the program runs in a process group of its own, so a timeout, an idle timeout or Ctrl-C
//!   ends it and everything it started (SIGTERM to the group, SIGKILL after a grace period);
//! - if git machine itself dies (even by SIGKILL), the whole group dies with it: a guard (a
//!   tiny `sh`, one per git machine process, in a process group of its own, deaf to Ctrl-C and
//!   hangups) holds a pipe from git machine, is told each group as it starts and ends, and
//!   kills the groups still running when the pipe closes; the program itself also
//!   has `PR_SET_PDEATHSIG` on Linux, and the group id is reported through `on_spawn` so a later
//!   command that takes the run over kills a group the guard could not;
//! - stdin is a pipe that gets the invocation's bytes and is then closed;
//! - whatever the program leaves running when it exits is killed with its group;
//! - the log is bounded: the first [`LOG_HEAD`] bytes and the last [`LOG_TAIL`] bytes are kept;
//! - memory is bounded whatever the program prints: a line longer than [`MAX_LINE`] is cut
//!   (its rest skipped up to the next newline), and at most [`QUEUED_LINES`] lines wait between
//!   the readers and the loop that logs and parses them — a reader waits when they are full,
//!   which makes the program wait on its pipe.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{Ending, EventParser, Invocation, Stream};

pub const LOG_HEAD: u64 = 8 << 20;
pub const LOG_TAIL: usize = 256 << 10;
/// Longest line kept whole; the rest of a longer one is dropped (and said so in the log).
pub const MAX_LINE: usize = 4 << 20;
/// Lines in flight between the pipe readers and the loop that handles them.
pub const QUEUED_LINES: usize = 4;
/// Time between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(3);

/// Variables never passed to a step: they would point its git at the user's checkout.
pub const REMOVED_ENV: &[&str] = &["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"];

/// Where a step's output lines are shown live, if anywhere.
pub type Echo<'a> = &'a mut dyn FnMut(Stream, &str);

#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

/// Bounded log file: head kept in the file as it comes, tail kept in memory and appended.
struct Log {
    file: File,
    written: u64,
    dropped: u64,
    tail: VecDeque<u8>,
    /// The first write that failed (a full disk): reported once the program has ended.
    error: Option<std::io::Error>,
}

impl Log {
    fn write(&mut self, stream: Stream, line: &[u8]) {
        let prefix: &[u8] = if stream == Stream::Stderr {
            b"[stderr] "
        } else {
            b""
        };
        let len = (prefix.len() + line.len() + 1) as u64;
        if self.written + len <= LOG_HEAD {
            if self.error.is_none() {
                let written = self
                    .file
                    .write_all(prefix)
                    .and_then(|()| self.file.write_all(line))
                    .and_then(|()| self.file.write_all(b"\n"));
                self.error = written.err();
            }
            self.written += len;
            return;
        }
        self.dropped += len;
        self.tail.extend(prefix.iter().chain(line).chain(b"\n"));
        let excess = self.tail.len().saturating_sub(LOG_TAIL);
        self.tail.drain(..excess);
    }

    fn finish(mut self) -> std::io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.dropped > 0 {
            let cut = self.dropped - self.tail.len() as u64;
            writeln!(self.file, "[git machine: {cut} bytes of output not kept]")?;
            let (a, b) = self.tail.as_slices();
            self.file.write_all(a)?;
            self.file.write_all(b)?;
        }
        self.file.flush()
    }
}

/// The guard of this process's program groups (see the module header): one `sh` for the life
/// of git machine, told each group as it starts (`add <pgid>`) and once it has ended
/// (`del <pgid>`). When its stdin closes without a `del` — git machine exited or was killed —
/// it kills every group still listed. One `sh` per step cost a fork, an exec and a wait for
/// its exit at every step.
struct Guard {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
}

static GUARD: std::sync::Mutex<Option<Guard>> = std::sync::Mutex::new(None);

/// The guard's script: the listed groups are kept as ` <pgid> ` words, removed without
/// starting any process.
const GUARD_SCRIPT: &str = r#"trap '' INT HUP TERM
groups=' '
while read -r op g; do
  case $op in
    add) groups="$groups$g " ;;
    del) case $groups in *" $g "*) groups="${groups%% $g *} ${groups#* $g }" ;; esac ;;
  esac
done
for g in $groups; do kill -s KILL -- "-$g"; done"#;

fn start_guard() -> Option<Guard> {
    let mut child = Command::new("sh")
        .args(["-c", GUARD_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()?;
    let stdin = child.stdin.take()?;
    Some(Guard { child, stdin })
}

/// Tell the guard `line`, starting it (again, if it was killed) when needed; `false` when no
/// `sh` could be started.
fn tell_guard(line: &str) -> bool {
    let mut guard = GUARD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..2 {
        if guard.is_none() {
            *guard = start_guard();
        }
        let Some(g) = guard.as_mut() else {
            return false;
        };
        if g.stdin.write_all(line.as_bytes()).is_ok() {
            return true;
        }
        // Gone (killed from outside): a new guard takes over from here.
        let _ = g.child.kill();
        let _ = g.child.wait();
        *guard = None;
    }
    false
}

/// Have the guard kill group `pgid` if git machine dies. `None` when no `sh` could be started
/// (the group then relies on PR_SET_PDEATHSIG and on the next command that takes the run
/// over).
fn guard(pgid: i32) -> Option<i32> {
    tell_guard(&format!("add {pgid}\n")).then_some(pgid)
}

/// The group has ended: the guard forgets it.
fn release(guarded: Option<i32>) {
    if let Some(pgid) = guarded {
        tell_guard(&format!("del {pgid}\n"));
    }
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: killpg only sends a signal; the group is our own child's.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// A line of a program's output, as read from one of its pipes.
type Line = (Stream, Vec<u8>);

/// Read `reader` line by line into `tx`, never holding more than [`MAX_LINE`] bytes of a line.
async fn pump(stream: Stream, reader: impl AsyncRead + Unpin, tx: mpsc::Sender<Line>) {
    let mut reader = tokio::io::BufReader::with_capacity(64 << 10, reader);
    let mut line = Vec::new();
    // Bytes of the current line dropped past MAX_LINE.
    let mut cut = 0usize;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (part, end) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&part[..part.len().min(room)]);
        cut += part.len().saturating_sub(room);
        let used = end.unwrap_or(chunk.len());
        reader.consume(used);
        if end.is_some()
            && tx
                .send((stream, finish_line(&mut line, &mut cut)))
                .await
                .is_err()
        {
            return;
        }
    }
    if !line.is_empty() || cut > 0 {
        let _ = tx.send((stream, finish_line(&mut line, &mut cut))).await;
    }
}

/// The line gathered so far, with a note of what was cut.
fn finish_line(line: &mut Vec<u8>, cut: &mut usize) -> Vec<u8> {
    while line.last().is_some_and(|b| *b == b'\r') {
        line.pop();
    }
    if *cut > 0 {
        line.extend_from_slice(
            format!(" [git machine: {cut} more bytes of this line not kept]").as_bytes(),
        );
        *cut = 0;
    }
    std::mem::take(line)
}

/// How a supervised program ended: its status, why it was stopped (if it was), its guard.
type Supervised = (ExitStatus, Option<(Ending, Instant, bool)>, Option<i32>);

/// Start the program and follow it on the event loop until it has exited and its pipes closed.
#[allow(clippy::too_many_arguments)]
async fn supervise(
    inv: &Invocation,
    cwd: &Path,
    env: &[(String, String)],
    log: &mut Log,
    limits: Limits,
    stop: &[&AtomicBool],
    on_spawn: &mut dyn FnMut(i32),
    parser: &mut dyn EventParser,
    mut echo: Option<Echo<'_>>,
) -> std::io::Result<Supervised> {
    let mut cmd = tokio::process::Command::new(&inv.program);
    cmd.args(&inv.args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for var in REMOVED_ENV
        .iter()
        .copied()
        .chain(inv.env_remove.iter().map(String::as_str))
    {
        cmd.env_remove(var);
    }
    cmd.envs(inv.env.iter().map(|(k, v)| (k, v)));
    #[cfg(target_os = "linux")]
    // SAFETY: prctl and signal are async-signal-safe; they only set this child's parent-death
    // signal and give it back the default action of SIGXFSZ, which git machine ignores.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pgid = child.id().expect("a child that was just spawned has an id") as i32;
    let guard = guard(pgid);
    on_spawn(pgid);

    let (tx, mut rx) = mpsc::channel::<Line>(QUEUED_LINES);
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let input = inv.stdin.clone();
    tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
        // Dropping closes the pipe: programs that read stdin see EOF.
    });
    let out = child.stdout.take().expect("stdout was piped");
    let err = child.stderr.take().expect("stderr was piped");
    tokio::spawn(pump(Stream::Stdout, out, tx.clone()));
    tokio::spawn(pump(Stream::Stderr, err, tx));

    let started = Instant::now();
    let mut last_output = started;
    let mut open = true;
    let mut exit: Option<ExitStatus> = None;
    let mut stopping: Option<(Ending, Instant, bool)> = None;
    loop {
        if exit.is_some() && !open {
            break;
        }
        let now = Instant::now();
        if stopping.is_none() {
            let reason = if stop.iter().any(|f| f.load(Ordering::SeqCst)) {
                Some(Ending::Cancelled)
            } else if limits.timeout.is_some_and(|t| now >= started + t) {
                limits.timeout.map(Ending::TimedOut)
            } else if limits
                .idle_timeout
                .is_some_and(|t| now >= last_output + t && exit.is_none())
            {
                limits.idle_timeout.map(Ending::IdleTimedOut)
            } else {
                None
            };
            if let Some(reason) = reason {
                signal_group(pgid, libc::SIGTERM);
                stopping = Some((reason, now, false));
            }
        } else if let Some((_, since, killed)) = &mut stopping {
            if !*killed && now >= *since + KILL_GRACE {
                signal_group(pgid, libc::SIGKILL);
                *killed = true;
            }
        }
        let mut wait = Duration::from_millis(100);
        if let Some(t) = limits.timeout {
            wait = wait.min((started + t).saturating_duration_since(now));
        }
        if let Some(t) = limits.idle_timeout {
            wait = wait.min((last_output + t).saturating_duration_since(now));
        }
        tokio::select! {
            line = rx.recv(), if open => match line {
                Some((stream, bytes)) => {
                    last_output = Instant::now();
                    let text = String::from_utf8_lossy(&bytes);
                    log.write(stream, &bytes);
                    parser.line(stream, &text);
                    if let Some(echo) = echo.as_mut() {
                        echo(stream, &text);
                    }
                }
                // Both pipes are closed.
                None => open = false,
            },
            status = child.wait(), if exit.is_none() => {
                exit = Some(status?);
                // Whatever the program left behind goes with it; it also releases the pipes.
                signal_group(pgid, libc::SIGKILL);
            }
            () = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
        }
    }
    let status = exit.expect("the loop ends only after the program exited");
    Ok((status, stopping, guard))
}

/// Run `futures` side by side on the current event loop, at most `n` at a time (the next
/// starts as one ends): their outputs, in order.
pub async fn at_most<F: std::future::Future>(n: usize, futures: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut waiting = futures.into_iter().enumerate();
    let mut running: Vec<(usize, std::pin::Pin<Box<F>>)> = Vec::new();
    for (i, f) in waiting.by_ref().take(n.max(1)) {
        running.push((i, Box::pin(f)));
    }
    while !running.is_empty() {
        let (k, value) = std::future::poll_fn(|cx| {
            for (k, (_, f)) in running.iter_mut().enumerate() {
                if let Poll::Ready(v) = f.as_mut().poll(cx) {
                    return Poll::Ready((k, v));
                }
            }
            Poll::Pending
        })
        .await;
        let (i, _) = running.swap_remove(k);
        out[i] = Some(value);
        if let Some((i, f)) = waiting.next() {
            running.push((i, Box::pin(f)));
        }
    }
    out.into_iter()
        .map(|o| o.expect("every future ran to its end"))
        .collect()
}

/// The one event loop of a command: a single thread with I/O and timers, on which the steps'
/// programs, a parallel group's members and the live view's redraw and keys all run. The
/// runner's own work (git) happens between its turns, on the same thread.
pub fn event_loop() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
}

/// Run `inv` in `cwd` with the given environment until it ends; stream its output to `log`
/// and `parser` (and `echo`, if given). `stop` is polled: once any flag is set, the program is
/// stopped (Ctrl-C, `git machine stop`, a person skipping the step). A future for the caller's
/// event loop, which may supervise several programs at once.
#[allow(clippy::too_many_arguments)]
pub async fn run_async(
    inv: &Invocation,
    cwd: &Path,
    env: &[(String, String)],
    log: &Path,
    limits: Limits,
    stop: &[&AtomicBool],
    on_spawn: &mut dyn FnMut(i32),
    parser: &mut dyn EventParser,
    echo: Option<Echo<'_>>,
) -> std::io::Result<Ending> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut log = Log {
        file: File::create(log)?,
        written: 0,
        dropped: 0,
        tail: VecDeque::new(),
        error: None,
    };
    let (status, stopping, guard) = supervise(
        inv, cwd, env, &mut log, limits, stop, on_spawn, parser, echo,
    )
    .await?;
    // The group is gone (killed when the program exited): its guard has nothing left to do.
    release(guard);
    // The program has ended either way; a log that could not be written (a full disk) is
    // reported as the error it is, after the program is gone.
    log.finish()?;
    Ok(match stopping {
        Some((reason, _, _)) => reason,
        None => match (status.code(), status.signal()) {
            (Some(code), _) => Ending::Exited(code),
            (None, Some(sig)) => Ending::Signaled(sig),
            (None, None) => Ending::Exited(1),
        },
    })
}

/// Run `inv` in `cwd` with the terminal handed to it (see [`crate::tty`]) until it exits; the
/// terminal is taken back on every path, its modes restored. No time limits apply: a person is
/// at the keys. A `stop` flag (`git machine stop`, or the run stopped from elsewhere) ends the
/// program as for a headless one. A program stopped by Ctrl-Z is continued: git machine is
/// not a job-control shell, and the person would be left without a terminal.
pub async fn run_foreground(
    inv: &Invocation,
    cwd: &Path,
    env: &[(String, String)],
    stop: &[&AtomicBool],
    on_spawn: &mut dyn FnMut(i32),
) -> std::io::Result<Ending> {
    let mut handover = crate::tty::Handover::begin(crate::signal::terminal_before_keys())?;
    let mut cmd = Command::new(&inv.program);
    cmd.args(&inv.args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)));
    for var in REMOVED_ENV
        .iter()
        .copied()
        .chain(inv.env_remove.iter().map(String::as_str))
    {
        cmd.env_remove(var);
    }
    cmd.envs(inv.env.iter().map(|(k, v)| (k, v)));
    // SAFETY: take_terminal_in_child, prctl and signal are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            crate::tty::take_terminal_in_child()?;
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    handover.give(pid);
    let guard = guard(pid);
    on_spawn(pid);
    let ending = wait_foreground(pid, stop, &handover).await;
    signal_group(pid, libc::SIGKILL);
    release(guard);
    handover.take_back();
    ending
}

/// Wait for the program `pid` (leader of its group) to exit, stopping it when a `stop` flag is
/// set and continuing it when Ctrl-Z stopped it.
async fn wait_foreground(
    pid: i32,
    stop: &[&AtomicBool],
    handover: &crate::tty::Handover,
) -> std::io::Result<Ending> {
    let mut stopping: Option<(Instant, bool)> = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child, not blocking.
        let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::WUNTRACED) };
        if got < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if got == pid && libc::WIFSTOPPED(status) {
            handover.give(pid);
            signal_group(pid, libc::SIGCONT);
        } else if got == pid {
            return Ok(match stopping {
                Some(_) => Ending::Cancelled,
                None if libc::WIFSIGNALED(status) => Ending::Signaled(libc::WTERMSIG(status)),
                None => Ending::Exited(libc::WEXITSTATUS(status)),
            });
        }
        match &mut stopping {
            None if stop.iter().any(|f| f.load(Ordering::SeqCst)) => {
                signal_group(pid, libc::SIGHUP);
                signal_group(pid, libc::SIGTERM);
                stopping = Some((Instant::now(), false));
            }
            Some((since, killed)) if !*killed && since.elapsed() >= KILL_GRACE => {
                signal_group(pid, libc::SIGKILL);
                *killed = true;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn sleeper() -> std::process::Child {
        Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn sleep")
    }

    /// When git machine's end closes the guard's stdin, the guard kills the groups still
    /// listed, and only those: a group it was told has ended is left alone, even if its id
    /// were reused.
    #[test]
    fn the_guard_kills_the_groups_still_listed_when_its_pipe_closes() {
        let (mut listed, mut ended) = (sleeper(), sleeper());
        let mut g = start_guard().expect("a guard");
        let (a, b) = (listed.id(), ended.id());
        let told = format!("add {a}\nadd {b}\ndel {b}\ndel 999999\n");
        g.stdin.write_all(told.as_bytes()).expect("tell");
        drop(g.stdin);
        assert!(g.child.wait().expect("guard ends").success());
        let status = listed.wait().expect("wait");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the listed group was killed"
        );
        assert!(
            ended.try_wait().expect("try_wait").is_none(),
            "the ended one was not"
        );
        ended.kill().expect("kill");
        let _ = ended.wait();
    }

    /// `at_most` runs the futures side by side, never more than `n` at once, and gives their
    /// outputs in the order the futures were given.
    #[test]
    fn at_most_bounds_how_many_run_at_once_and_keeps_the_order() {
        use std::cell::Cell;
        let (now, most) = (Cell::new(0), Cell::new(0));
        let futures: Vec<_> = (0..7)
            .map(|i| {
                let (now, most) = (&now, &most);
                async move {
                    now.set(now.get() + 1);
                    most.set(most.get().max(now.get()));
                    for _ in 0..(7 - i) {
                        tokio::task::yield_now().await;
                    }
                    now.set(now.get() - 1);
                    i * 10
                }
            })
            .collect();
        let rt = event_loop().expect("event loop");
        let out = rt.block_on(at_most(3, futures));
        assert_eq!(out, [0, 10, 20, 30, 40, 50, 60]);
        assert_eq!(most.get(), 3, "three at once, never more");
    }

    fn guard_pid() -> Option<u32> {
        GUARD
            .lock()
            .expect("guard lock")
            .as_ref()
            .map(|g| g.child.id())
    }

    /// Every program run tells the one guard of this process; a killed guard is replaced.
    #[test]
    fn a_killed_guard_is_replaced_by_the_next_program_run() {
        assert!(tell_guard("del 1\n"));
        let pid = guard_pid().expect("a guard");
        signal_group(pid as i32, libc::SIGKILL);
        std::thread::sleep(Duration::from_millis(50));
        let mut tries = 0;
        while !tell_guard("del 1\n") && tries < 3 {
            tries += 1;
        }
        let now = guard_pid().expect("a guard again");
        assert_ne!(now, pid, "a new guard took over");
    }
}
