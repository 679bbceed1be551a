//! Overhead benchmark: what `git machine` costs on top of the programs its steps run, against
//! the git CLI doing the same work by hand.
//!
//! `cargo bench --bench overhead` (harness = false). It drives the release `git-machine` binary
//! and the `git` on PATH, each in a hermetic environment (temp HOME with its own `.gitconfig`,
//! `GIT_CONFIG_NOSYSTEM=1`, `LC_ALL=C`, `TZ=UTC`), on generated repositories of 1k, 10k and
//! 100k files (100 files a directory), and prints a markdown table of medians and minimums.
//!
//! What is measured, per repository size:
//! - per-step overhead: a workflow of K+1 steps, each `sh -c 'date +%s%N >> TS; echo i >> f'`,
//!   records when every step's process started (after an untimed first step that sleeps past
//!   git's racy-timestamp window of the fresh checkout, as any real step would). The interval between two step starts is the
//!   step process plus everything the tool does between them (stage, write the step record,
//!   commit, update refs, spawn); the same command run back to back on its own gives the process
//!   part. Their difference is the tool's per-step cost. Baseline: in the same worktree, after
//!   the run, the same change committed by `git add -A` + `git commit -q -m x` (timed alone).
//! - run start: from spawning `git machine run` to the first step's process starting (minus the
//!   latency from spawn to `date` of that command on its own), against `git worktree add <path>
//!   -b <branch> HEAD`. Also the whole 1-step run minus one step (start + finish). Runs start
//!   from the worktree pool, warmed first by an untimed group run (see `store::pool`).
//! - a group: the whole run of a workflow of one parallel group of four trivial members
//!   against the whole 1-step run, the pool warm.
//! - `git machine status` (and `--json`) with 200 runs in a small repository.
//! - memory: the peak RSS of the `git-machine` process itself (`VmHWM` from
//!   `/proc/<pid>/status`, polled until it exits, and `ru_maxrss` from `wait4`) and the wall
//!   time of a one-step `command` workflow that prints 1 GiB as 1000-byte lines, as one line
//!   with no newline, as lines of 4 MiB (the longest kept whole), and nothing (the baseline);
//!   the same scripts on their own, and the size of the record each run committed.
//! - start-up: spawn to exit of `git-machine --version` and of `git-machine status` in a
//!   repository with no runs (median and min of 50), with `git` and `true` for reference.
//!
//! The binary is spawned directly, never as `git machine`: git would exec it as its child, and
//! the figures would be git's.
//!
//! Environment: `OVERHEAD_PARTS=steps,status,memory,startup` chooses the parts (default all of
//! them; `steps` is per-step overhead and run start, for every size).
//! `OVERHEAD_SIZES=1000,10000` chooses sizes (default 1000,10000,100000),
//! `OVERHEAD_REPS` repetitions (default 5; `OVERHEAD_REPS_BIG`, default 2, from 50k files),
//! `OVERHEAD_STEPS` K (default 15), `OVERHEAD_WATCH` git machine's `machine.watch` (default:
//! unset, as a user has it), `OVERHEAD_RUNS`
//! the number of runs for the status measurement (default 200), `OVERHEAD_PRINT_BYTES` what the
//! memory steps print (default 1 GiB), `OVERHEAD_MEMORY_REPS` (default 3),
//! `OVERHEAD_STARTUP_N` calls timed for start-up (default 50). Temp files go under `TMPDIR`.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_git-machine");
const FILES_PER_DIR: usize = 100;
/// `MAX_LINE` in src/engine/process.rs: the longest line git machine keeps whole.
const MAX_LINE: usize = 4 << 20;
/// Seconds the untimed first step sleeps (see `bench_size`).
const RACY_WAIT: &str = "1.2";

/// Hermetic environment for every child process.
struct Env {
    home: PathBuf,
    gitconfig: PathBuf,
    path: String,
}

impl Env {
    fn new(root: &Path) -> Env {
        let home = root.join("home");
        fs::create_dir_all(&home).expect("create temp HOME");
        let gitconfig = home.join(".gitconfig");
        let mut config =
            "[user]\n\tname = Bench\n\temail = bench@example.com\n[init]\n\tdefaultBranch = main\n"
                .to_string();
        if let Ok(watch) = std::env::var("OVERHEAD_WATCH") {
            config.push_str(&format!("[machine]\n\twatch = {watch}\n"));
        }
        fs::write(&gitconfig, config).expect("write .gitconfig");
        Env {
            home,
            gitconfig,
            path: std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        }
    }

    fn cmd(&self, program: impl AsRef<OsStr>, cwd: &Path) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", &self.path)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", &self.gitconfig)
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .current_dir(cwd)
            .stdin(Stdio::null());
        c
    }

    fn git(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self
            .cmd("git", cwd)
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .expect("spawn git");
        assert!(
            out.status.success(),
            "git {args:?} in {} failed",
            cwd.display()
        );
        String::from_utf8(out.stdout).expect("git prints UTF-8 here")
    }

    /// Run and time a command whose output is not wanted; panics on failure.
    fn timed(&self, mut c: Command, what: &str) -> Duration {
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let start = Instant::now();
        let out = c.output().expect("spawn");
        let took = start.elapsed();
        if !out.status.success() {
            panic!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        took
    }
}

/// Seconds-since-epoch nanoseconds, the same clock as `date +%s%N`.
fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i128
}

fn read_stamps(path: &Path) -> Vec<i128> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().expect("date +%s%N prints an integer"))
        .collect()
}

/// A repository of `n` small files, `FILES_PER_DIR` to a directory, one commit, checked out.
fn make_repo(env: &Env, dir: &Path, n: usize) {
    fs::create_dir_all(dir).expect("create repo dir");
    env.git(dir, &["init", "-q", "-b", "main"]);
    // fast-import writes one pack; `reset --hard` then checks the files out and fills the index.
    let mut stream = Vec::with_capacity(n * 64);
    for i in 0..n {
        let data = format!("file {i}\nsome small content line\n");
        write!(
            stream,
            "blob\nmark :{}\ndata {}\n{}\n",
            i + 1,
            data.len(),
            data
        )
        .expect("vec write");
    }
    let msg = "initial";
    write!(
        stream,
        "commit refs/heads/main\ncommitter Bench <bench@example.com> 1700000000 +0000\ndata {}\n{}\n",
        msg.len(),
        msg
    )
    .expect("vec write");
    for i in 0..n {
        writeln!(
            stream,
            "M 100644 :{} d{:04}/f{:03}.txt",
            i + 1,
            i / FILES_PER_DIR,
            i % FILES_PER_DIR
        )
        .expect("vec write");
    }
    stream.extend_from_slice(b"done\n");
    let mut child = env
        .cmd("git", dir)
        .args(["fast-import", "--quiet", "--done"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn git fast-import");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(&stream)
        .expect("feed fast-import");
    assert!(
        child.wait().expect("wait fast-import").success(),
        "fast-import failed"
    );
    env.git(dir, &["reset", "-q", "--hard", "main"]);
    env.git(dir, &["status", "--short"]); // warm the index stat data
}

fn step_cmd(stamps: &Path, i: usize) -> String {
    format!(
        "date +%s%N >> {}; echo {i} >> changed-{i}.txt",
        stamps.display()
    )
}

fn write_workflow(repo: &Path, name: &str, steps: &[String]) {
    let dir = repo.join(".codemachine/workflows");
    fs::create_dir_all(&dir).expect("create workflows dir");
    let mut toml = format!("version = 1\nname = \"{name}\"\n");
    for (i, sh) in steps.iter().enumerate() {
        let _ = write!(
            toml,
            "\n[[steps]]\nid = \"s{}\"\nengine = \"command\"\nrun = [\"sh\", \"-c\", {:?}]\n",
            i + 1,
            sh
        );
    }
    fs::write(dir.join(format!("{name}.toml")), toml).expect("write workflow");
}

fn machine_branches(env: &Env, repo: &Path) -> Vec<String> {
    env.git(
        repo,
        &[
            "for-each-ref",
            "--format=%(refname:strip=3)",
            "refs/heads/machine/",
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Run a workflow; returns (run id, wall time, spawn instant in ns since epoch).
fn machine_run(env: &Env, repo: &Path, workflow: &str) -> (String, Duration, i128) {
    let before = machine_branches(env, repo);
    settle(env);
    let mut c = env.cmd(BIN, repo);
    c.args(["run", workflow, "--trust"]);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    let t0 = now_ns();
    let start = Instant::now();
    let out = c.output().expect("spawn git-machine");
    let took = start.elapsed();
    if !out.status.success() {
        panic!(
            "git-machine run {workflow} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let id = machine_branches(env, repo)
        .into_iter()
        .find(|b| !before.contains(b))
        .expect("the run made a branch machine/<id>");
    (id, took, t0)
}

/// Flush dirty pages before a timed checkout: writing back the files the previous measurement
/// created or deleted would otherwise land on whichever checkout comes next.
fn settle(env: &Env) {
    let _ = env.cmd("sync", Path::new("/")).status();
}

/// The completed run's worktree: it went to the pool (`<worktrees>/pool/<stamp>-<bytes>`),
/// detached at the run's tip; the newest pooled worktree at that commit.
fn worktree_of(env: &Env, repo: &Path, id: &str) -> PathBuf {
    let tip = env.git(repo, &["rev-parse", &format!("machine/{id}")]);
    let list = env.git(repo, &["worktree", "list", "--porcelain"]);
    let mut found = None;
    for block in list.split("\n\n") {
        let path = block.lines().find_map(|l| l.strip_prefix("worktree "));
        let head = block.lines().find_map(|l| l.strip_prefix("HEAD "));
        if let (Some(path), Some(head)) = (path, head) {
            if head == tip.trim() && path.contains("/pool/") && block.contains("\ndetached") {
                found = found.max(Some(PathBuf::from(path)));
            }
        }
    }
    found.unwrap_or_else(|| panic!("no pooled worktree holds machine/{id}:\n{list}"))
}

/// A workflow of one group of four trivial members, each committing a file of its own.
fn write_group_workflow(repo: &Path, name: &str) {
    let dir = repo.join(".codemachine/workflows");
    fs::create_dir_all(&dir).expect("create workflows dir");
    let mut toml = format!("version = 1\nname = \"{name}\"\n");
    for i in 1..=4 {
        let _ = write!(
            toml,
            "\n[[steps]]\nid = \"m{i}\"\ngroup = \"g\"\nengine = \"command\"\nrun = [\"sh\", \"-c\", \"echo {i} >> member-{i}.txt\"]\n"
        );
    }
    fs::write(dir.join(format!("{name}.toml")), toml).expect("write workflow");
}

fn machine_rm(env: &Env, repo: &Path, id: &str) {
    let mut c = env.cmd(BIN, repo);
    c.args(["rm", "--branch", id]);
    env.timed(c, "git-machine rm");
}

/// `a / b` as "1.23×", or "–" when either side was not measured.
fn ratio(a: &Stats, b: &Stats) -> String {
    let r = a.median() / b.median();
    if r.is_finite() {
        format!("{r:.2}×")
    } else {
        "–".to_owned()
    }
}

fn ms(d: f64) -> String {
    format!("{d:.1}")
}

#[derive(Default)]
struct Stats(Vec<f64>);

impl Stats {
    fn push(&mut self, v: f64) {
        self.0.push(v);
    }
    fn push_d(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1e3);
    }
    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        if v.is_empty() {
            return f64::NAN;
        }
        let m = v.len() / 2;
        if v.len() % 2 == 1 {
            v[m]
        } else {
            (v[m - 1] + v[m]) / 2.0
        }
    }
    fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }
    fn show(&self) -> String {
        if self.0.is_empty() {
            return "–".to_owned();
        }
        format!("{} (min {})", ms(self.median()), ms(self.min()))
    }
}

struct SizeResult {
    files: usize,
    sh_interval: Stats,
    sh_latency: Stats,
    step_interval: Stats,
    per_step: Stats,
    git_commit: Stats,
    first_step: Stats,
    one_step_total: Stats,
    fixed: Stats,
    worktree_add: Stats,
    /// Wall time of a run of one group of four trivial members, the pool warm.
    group_total: Stats,
}

fn bench_size(env: &Env, root: &Path, files: usize, k: usize, reps: usize) -> SizeResult {
    let t = Instant::now();
    let repo = root.join(format!("repo-{files}"));
    make_repo(env, &repo, files);
    eprintln!(
        "  built {files}-file repo in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let stamps = root.join(format!("stamps-{files}"));
    // Step 0 waits out git's racy-timestamp window: entries checked out in the same second as
    // the index is written are re-hashed by every git command until an index write lands in a
    // later second. Real steps (agents) take seconds, so the timed steps 1..=K+1 come after it.
    let mut steps = vec![format!(
        "date +%s%N >> {}; sleep {RACY_WAIT}",
        stamps.display()
    )];
    steps.extend((1..=k + 1).map(|i| step_cmd(&stamps, i)));
    write_workflow(&repo, "bench", &steps);
    write_workflow(&repo, "one", &steps[1..2]);
    write_group_workflow(&repo, "group");

    let mut r = SizeResult {
        files,
        sh_interval: Stats::default(),
        sh_latency: Stats::default(),
        step_interval: Stats::default(),
        per_step: Stats::default(),
        git_commit: Stats::default(),
        first_step: Stats::default(),
        one_step_total: Stats::default(),
        fixed: Stats::default(),
        worktree_add: Stats::default(),
        group_total: Stats::default(),
    };

    // Warm-up, not counted: a group run, which fills the worktree pool (the run's worktree and
    // its four members'), one run, and one `git worktree add` (below 50k files: building the
    // repository has just read everything there).
    let wt = root.join(format!("wt-{files}"));
    let (id, _, _) = machine_run(env, &repo, "group");
    machine_rm(env, &repo, &id);
    eprintln!("  pool warmed ({:.0}s)", t.elapsed().as_secs_f64());
    if files < 50_000 {
        let (id, _, _) = machine_run(env, &repo, "bench");
        machine_rm(env, &repo, &id);
        env.git(
            &repo,
            &[
                "worktree",
                "add",
                "-q",
                wt.to_str().expect("utf-8 path"),
                "-b",
                "bench-wt",
                "HEAD",
            ],
        );
        env.git(
            &repo,
            &[
                "worktree",
                "remove",
                "--force",
                wt.to_str().expect("utf-8 path"),
            ],
        );
        env.git(&repo, &["branch", "-q", "-D", "bench-wt"]);
    }

    for rep in 0..reps {
        // The K+1-step run.
        let _ = fs::remove_file(&stamps);
        let (id, _total, t0) = machine_run(env, &repo, "bench");
        let ts = read_stamps(&stamps);
        assert_eq!(ts.len(), k + 2, "every step recorded its start");
        let first = (ts[0] - t0) as f64 / 1e6;
        let ts = &ts[1..];
        let mut intervals = Stats::default();
        for w in ts.windows(2) {
            intervals.push((w[1] - w[0]) as f64 / 1e6);
        }
        let run_interval = intervals.median();
        r.step_interval.push(run_interval);
        let worktree = worktree_of(env, &repo, &id);
        assert!(worktree.is_dir(), "run worktree at {}", worktree.display());

        // The same step commands on their own, back to back, in the run's worktree.
        let _ = fs::remove_file(&stamps);
        let mut lat = Stats::default();
        for i in 1..=k + 1 {
            let mut c = env.cmd("sh", &worktree);
            c.args(["-c", &step_cmd(&stamps, 100 + i)]);
            let t0 = now_ns();
            env.timed(c, "sh step");
            let ts = read_stamps(&stamps);
            lat.push((ts[ts.len() - 1] - t0) as f64 / 1e6);
        }
        let ts = read_stamps(&stamps);
        let mut sh = Stats::default();
        for w in ts.windows(2) {
            sh.push((w[1] - w[0]) as f64 / 1e6);
        }
        r.sh_interval.push(sh.median());
        r.sh_latency.push(lat.median());
        r.per_step.push(run_interval - sh.median());
        r.first_step.push(first - lat.median());

        // Baseline: the git CLI commits the same kind of change in the same worktree.
        env.git(&worktree, &["add", "-A"]);
        env.git(&worktree, &["commit", "-q", "-m", "sh probes"]);
        for i in 1..=k {
            let mut c = env.cmd("sh", &worktree);
            c.args(["-c", &format!("echo {i} >> changed-{}.txt", 200 + i)]);
            env.timed(c, "sh change");
            let start = Instant::now();
            let mut add = env.cmd("git", &worktree);
            add.args(["add", "-A"]);
            env.timed(add, "git add -A");
            let mut commit = env.cmd("git", &worktree);
            commit.args(["commit", "-q", "-m", "x"]);
            env.timed(commit, "git commit");
            r.git_commit.push_d(start.elapsed());
        }
        machine_rm(env, &repo, &id);

        // The 1-step run: start + one step + finish; then a group of four trivial members.
        // Both start from the pool.
        let _ = fs::remove_file(&stamps);
        let (id, total, _) = machine_run(env, &repo, "one");
        r.one_step_total.push_d(total);
        r.fixed.push(total.as_secs_f64() * 1e3 - run_interval);
        machine_rm(env, &repo, &id);
        let (id, total, _) = machine_run(env, &repo, "group");
        r.group_total.push_d(total);
        machine_rm(env, &repo, &id);

        // Baseline: `git worktree add` of HEAD on a new branch.
        settle(env);
        let mut c = env.cmd("git", &repo);
        c.args([
            "worktree",
            "add",
            "-q",
            wt.to_str().expect("utf-8 path"),
            "-b",
            "bench-wt",
            "HEAD",
        ]);
        r.worktree_add.push_d(env.timed(c, "git worktree add"));
        env.git(
            &repo,
            &[
                "worktree",
                "remove",
                "--force",
                wt.to_str().expect("utf-8 path"),
            ],
        );
        env.git(&repo, &["branch", "-q", "-D", "bench-wt"]);
        eprintln!(
            "  rep {}/{reps} done ({:.0}s)",
            rep + 1,
            t.elapsed().as_secs_f64()
        );
    }
    fs::remove_dir_all(&repo).expect("remove bench repo");
    r
}

struct StatusResult {
    runs: usize,
    create_s: f64,
    /// (label, timing) rows, in table order.
    rows: Vec<(String, Stats)>,
}

fn time_n(env: &Env, repo: &Path, program: &str, args: &[&str], n: usize) -> Stats {
    let mut stats = Stats::default();
    for i in 0..n + 2 {
        let mut c = env.cmd(program, repo);
        c.args(args);
        let d = env.timed(c, program);
        if i >= 2 {
            stats.push_d(d);
        }
    }
    stats
}

fn bench_status(env: &Env, root: &Path, runs: usize) -> StatusResult {
    let repo = root.join("repo-status");
    make_repo(env, &repo, 10);
    write_workflow(&repo, "one", &["true".to_owned()]);
    let mut rows = Vec::new();
    rows.push((
        "`git machine status`, no runs (process floor)".to_owned(),
        time_n(env, &repo, BIN, &["status"], 20),
    ));
    let t = Instant::now();
    for _ in 0..runs {
        machine_run(env, &repo, "one");
    }
    let create_s = t.elapsed().as_secs_f64();
    let loose = env.git(&repo, &["count-objects"]);
    let loose = loose.split_whitespace().next().unwrap_or("?").to_owned();
    rows.push((
        format!("**`git machine status`** ({loose} loose objects, as the runs left them)"),
        time_n(env, &repo, BIN, &["status"], 20),
    ));
    rows.push((
        "**`git machine status --json`** (same)".to_owned(),
        time_n(env, &repo, BIN, &["status", "--json"], 20),
    ));
    rows.push((
        "`git worktree list --porcelain` (reference)".to_owned(),
        time_n(env, &repo, "git", &["worktree", "list", "--porcelain"], 20),
    ));
    rows.push((
        "`git for-each-ref refs/heads/machine/` (reference)".to_owned(),
        time_n(
            env,
            &repo,
            "git",
            &["for-each-ref", "refs/heads/machine/"],
            20,
        ),
    ));
    env.git(&repo, &["gc", "-q"]);
    rows.push((
        "`git machine status` after `git gc` (objects and refs packed)".to_owned(),
        time_n(env, &repo, BIN, &["status"], 20),
    ));
    rows.push((
        "`git machine status --json` after `git gc`".to_owned(),
        time_n(env, &repo, BIN, &["status", "--json"], 20),
    ));
    StatusResult {
        runs,
        create_s,
        rows,
    }
}

/// What `watch_memory` saw of one git-machine process.
struct Peak {
    /// Highest `VmHWM` read from `/proc/<pid>/status` while the process lived, in KiB.
    hwm_kib: u64,
    /// `ru_maxrss` from `wait4`: the process or any child it reaped (steps, git), in KiB.
    maxrss_kib: u64,
    wall: Duration,
    /// How many times `/proc/<pid>/status` was read with `VmHWM` in it.
    samples: usize,
}

/// `VmHWM` (peak resident set) from a `/proc/<pid>/status`, in KiB; `None` once the process
/// has exited (a zombie has no memory left to report).
fn vm_hwm(status_path: &str) -> Option<u64> {
    let text = fs::read_to_string(status_path).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Spawn `c` and poll its peak RSS every `POLL` until it exits; panics on failure.
// The child is reaped by `libc::wait4` (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn watch_memory(mut c: Command, what: &str, stderr_file: &Path) -> Peak {
    const POLL: Duration = Duration::from_millis(5);
    let err = fs::File::create(stderr_file).expect("create stderr file");
    c.stdout(Stdio::null()).stderr(err);
    let start = Instant::now();
    let child = c.spawn().expect("spawn git-machine");
    let pid = child.id() as libc::pid_t;
    let status_path = format!("/proc/{pid}/status");
    let mut hwm_kib = 0;
    let mut samples = 0;
    loop {
        // Read before reaping: until `wait4` returns the pid, it cannot name another process.
        if let Some(kib) = vm_hwm(&status_path) {
            hwm_kib = hwm_kib.max(kib);
            samples += 1;
        }
        let mut status = 0;
        // SAFETY: rusage is plain integers; all zeroes is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 only writes into the two locals; `pid` is our own unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            let wall = start.elapsed();
            // The child is reaped here; dropping `child` neither waits nor signals.
            drop(child);
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                panic!(
                    "{what} failed (wait status {status:#x}): {}",
                    fs::read_to_string(stderr_file).unwrap_or_default()
                );
            }
            return Peak {
                hwm_kib,
                maxrss_kib: usage.ru_maxrss as u64,
                wall,
                samples,
            };
        }
        assert_eq!(r, 0, "wait4: {}", std::io::Error::last_os_error());
        std::thread::sleep(POLL);
    }
}

/// The time `sh -c script` takes with its stdout read (64 KiB at a time) and dropped: what the
/// step's program costs on its own, without git machine.
fn time_script(env: &Env, cwd: &Path, script: &str) -> Duration {
    let mut c = env.cmd("sh", cwd);
    c.args(["-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = c.spawn().expect("spawn sh");
    let mut out = child.stdout.take().expect("piped stdout");
    let mut buf = vec![0u8; 64 << 10];
    while out.read(&mut buf).expect("read the script's output") > 0 {}
    assert!(
        child.wait().expect("wait sh").success(),
        "sh -c {script} failed"
    );
    start.elapsed()
}

/// The run's record as committed on `machine/<id>`: "<bytes of all its files>; <the largest
/// file's name> <its bytes>".
fn committed_record(env: &Env, repo: &Path, id: &str) -> Option<String> {
    let branch = format!("machine/{id}");
    let list = env.git(
        repo,
        &["ls-tree", "-r", "-l", &branch, "--", ".codemachine/runs/"],
    );
    let mut total = 0u64;
    let mut largest: Option<(u64, String)> = None;
    for l in list.lines() {
        let Some((meta, path)) = l.split_once('\t') else {
            continue;
        };
        let Some(size) = meta.split_whitespace().nth(3).and_then(|s| s.parse().ok()) else {
            continue;
        };
        total += size;
        if !matches!(&largest, Some((max, _)) if *max >= size) {
            let name = path.rsplit('/').next().unwrap_or(path).to_owned();
            largest = Some((size, name));
        }
    }
    let (size, name) = largest?;
    Some(format!("{total}; `{name}` {size}"))
}

struct MemoryRow {
    label: String,
    /// Peak `VmHWM` of each repetition, KiB.
    hwm_kib: Vec<u64>,
    maxrss_kib: Vec<u64>,
    wall: Stats,
    /// The step's script on its own, its output read and dropped by the bench.
    alone: Stats,
    samples: usize,
    log: Option<String>,
}

/// Peak memory of git machine while one `command` step prints `bytes` bytes: as 1000-byte lines,
/// as one line with no newline, and (baseline) nothing at all.
fn bench_memory(env: &Env, root: &Path, bytes: usize, reps: usize) -> Vec<MemoryRow> {
    let repo = root.join("repo-memory");
    make_repo(env, &repo, 10);
    // (workflow name, what the table says of it, the step's `sh -c` script)
    let cases = [
        (
            "lines",
            "1000-byte lines",
            format!("yes \"$(head -c 1000 /dev/zero | tr '\\0' x)\" | head -c {bytes}"),
        ),
        (
            "oneline",
            "one line, no newline",
            format!("head -c {bytes} /dev/zero | tr '\\0' x"),
        ),
        (
            "longlines",
            "4 MiB lines, the longest kept whole",
            format!(
                "i=0; while [ $i -lt {} ]; do head -c {} /dev/zero | tr '\\0' x; echo; i=$((i+1)); done",
                bytes.div_ceil(MAX_LINE + 1),
                MAX_LINE
            ),
        ),
        ("silent", "nothing; baseline", "true".to_owned()),
    ];
    for (name, _, sh) in &cases {
        write_workflow(&repo, name, std::slice::from_ref(sh));
    }
    env.git(&repo, &["add", "-A"]);
    env.git(&repo, &["commit", "-q", "-m", "workflows"]);
    // Warm-up, not counted: the first run of the tool in this repository.
    let (id, _, _) = machine_run(env, &repo, "silent");
    machine_rm(env, &repo, &id);

    let mut rows: Vec<MemoryRow> = cases
        .iter()
        .map(|(_, what, sh)| MemoryRow {
            // A `|` inside a table cell, even in a code span, needs its backslash.
            label: format!("`{}` ({what})", sh.replace('|', "\\|")),
            hwm_kib: Vec::new(),
            maxrss_kib: Vec::new(),
            wall: Stats::default(),
            alone: Stats::default(),
            samples: 0,
            log: None,
        })
        .collect();
    let stderr_file = root.join("memory-stderr");
    for rep in 0..reps {
        // Interleaved, so a burst of other work on the machine lands on every case alike.
        for ((name, _, sh), row) in cases.iter().zip(rows.iter_mut()) {
            row.alone.push_d(time_script(env, &repo, sh));
            let before = machine_branches(env, &repo);
            settle(env);
            let mut c = env.cmd(BIN, &repo);
            c.args(["run", name, "--trust"]);
            let peak = watch_memory(c, &format!("git-machine run {name}"), &stderr_file);
            let id = machine_branches(env, &repo)
                .into_iter()
                .find(|b| !before.contains(b))
                .expect("the run made a branch machine/<id>");
            row.hwm_kib.push(peak.hwm_kib);
            row.maxrss_kib.push(peak.maxrss_kib);
            row.wall.push_d(peak.wall);
            row.samples += peak.samples;
            row.log = committed_record(env, &repo, &id);
            machine_rm(env, &repo, &id);
            eprintln!(
                "  {name} rep {}/{reps}: VmHWM {} KiB, ru_maxrss {} KiB, {:.1}s, {} samples",
                rep + 1,
                peak.hwm_kib,
                peak.maxrss_kib,
                peak.wall.as_secs_f64(),
                peak.samples
            );
        }
    }
    fs::remove_dir_all(&repo).expect("remove bench repo");
    rows
}

/// From spawn to exit of a process that does (almost) nothing: the floor under every command.
fn bench_startup(env: &Env, root: &Path, n: usize) -> Vec<(String, Stats)> {
    let repo = root.join("repo-startup");
    make_repo(env, &repo, 10);
    let rows = vec![
        (
            "**`git-machine --version`**".to_owned(),
            time_n(env, &repo, BIN, &["--version"], n),
        ),
        (
            "**`git-machine status`**, repository with no runs".to_owned(),
            time_n(env, &repo, BIN, &["status"], n),
        ),
        (
            "`git --version` (reference)".to_owned(),
            time_n(env, &repo, "git", &["--version"], n),
        ),
        (
            "`git status --short`, same 10-file repository (reference)".to_owned(),
            time_n(env, &repo, "git", &["status", "--short"], n),
        ),
        (
            "`true` (reference: the spawn floor of this machine)".to_owned(),
            time_n(env, &repo, "true", &[], n),
        ),
    ];
    fs::remove_dir_all(&repo).expect("remove bench repo");
    rows
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// "median (max)" of peak sizes in MiB: the max is the figure that matters for a bound.
fn show_peaks(kib: &[u64]) -> String {
    let mut v = kib.to_vec();
    v.sort_unstable();
    match (v.get(v.len() / 2), v.last()) {
        (Some(m), Some(max)) => format!("{} (max {})", mib(*m), mib(*max)),
        _ => "–".to_owned(),
    }
}

/// The 1-minute load average: other work on the machine shows in every figure.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().parse().expect("a number"))
        .unwrap_or(default)
}

/// The parts of the bench `OVERHEAD_PARTS` can name.
const PARTS: &[&str] = &["steps", "status", "memory", "startup"];

fn main() {
    // cargo passes `--bench`; this harness takes its settings from the environment only.
    let parts: Vec<String> = std::env::var("OVERHEAD_PARTS")
        .unwrap_or_else(|_| PARTS.join(","))
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    for p in &parts {
        assert!(
            PARTS.contains(&p.as_str()),
            "OVERHEAD_PARTS: unknown part {p:?} (known: {})",
            PARTS.join(", ")
        );
    }
    let part = |name: &str| parts.iter().any(|p| p == name);
    let sizes: Vec<usize> = std::env::var("OVERHEAD_SIZES")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("OVERHEAD_SIZES is a comma-separated list of numbers")
        })
        .collect();
    let reps = env_num("OVERHEAD_REPS", 5);
    // A 100k-file run checks out 100k files: fewer repetitions keep the bench near 10 minutes.
    let reps_big = env_num("OVERHEAD_REPS_BIG", 2);
    let k = env_num("OVERHEAD_STEPS", 15);
    let runs = env_num("OVERHEAD_RUNS", 200);
    let print_bytes = env_num("OVERHEAD_PRINT_BYTES", 1 << 30);
    let memory_reps = env_num("OVERHEAD_MEMORY_REPS", 3);
    let startup_n = env_num("OVERHEAD_STARTUP_N", 50);

    let tmp = tempfile::Builder::new()
        .prefix("git-machine-bench-")
        .tempdir()
        .expect("temp dir");
    let env = Env::new(tmp.path());
    let started = Instant::now();
    let load_before = loadavg();
    eprintln!(
        "git-machine overhead bench: binary {BIN}, parts {parts:?}, sizes {sizes:?}, {reps} reps, K = {k}"
    );

    let mut results = Vec::new();
    if part("steps") {
        for &n in &sizes {
            eprintln!("size {n}:");
            let reps = if n >= 50_000 { reps_big } else { reps };
            results.push(bench_size(&env, tmp.path(), n, k, reps));
        }
    }
    let status = part("status").then(|| {
        eprintln!("status with {runs} runs:");
        bench_status(&env, tmp.path(), runs)
    });
    let memory = part("memory").then(|| {
        eprintln!("memory while a step prints {print_bytes} bytes ({memory_reps} reps):");
        bench_memory(&env, tmp.path(), print_bytes, memory_reps)
    });
    let startup = part("startup").then(|| {
        eprintln!("start-up ({startup_n} calls each):");
        bench_startup(&env, tmp.path(), startup_n)
    });

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nLoad average (1 min) before: {load_before}, after: {}; {} CPUs.",
        loadavg(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if !results.is_empty() {
        let _ = writeln!(
            out,
            "\nAll times in ms: median (min) over repetitions ({reps} a size, {reps_big} from 50k files); K = {k} steps per run.\n"
        );
        let _ = writeln!(out, "### Per-step overhead\n");
        let _ = writeln!(
            out,
            "| files | reps | step interval in run | step process alone | **tool per step** | **git add -A + commit** | tool / git |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
        for r in &results {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | **{}** | **{}** | {} |",
                r.files,
                r.step_interval.0.len(),
                r.step_interval.show(),
                r.sh_interval.show(),
                r.per_step.show(),
                r.git_commit.show(),
                ratio(&r.per_step, &r.git_commit)
            );
        }
        let _ = writeln!(out, "\n### Run start\n");
        let _ = writeln!(
            out,
            "| files | **spawn → first step** | **git worktree add** | ratio | 1-step run total | start + finish (total − one step interval) | ratio |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
        for r in &results {
            let _ = writeln!(
                out,
                "| {} | **{}** | **{}** | {} | {} | {} | {} |",
                r.files,
                r.first_step.show(),
                r.worktree_add.show(),
                ratio(&r.first_step, &r.worktree_add),
                r.one_step_total.show(),
                r.fixed.show(),
                ratio(&r.fixed, &r.worktree_add)
            );
        }
        let _ = writeln!(
            out,
            "\n### A group of four trivial members against one trivial step\n"
        );
        let _ = writeln!(
            out,
            "| files | **group of 4, whole run** | **1-step run, whole run** | ratio |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|");
        for r in &results {
            let _ = writeln!(
                out,
                "| {} | **{}** | **{}** | {} |",
                r.files,
                r.group_total.show(),
                r.one_step_total.show(),
                ratio(&r.group_total, &r.one_step_total)
            );
        }
    }
    if let Some(status) = &status {
        let _ = writeln!(
            out,
            "\n### `git machine status` with {} runs (median (min) of 20)\n",
            status.runs
        );
        let _ = writeln!(out, "| command | time |");
        let _ = writeln!(out, "|---|---:|");
        for (label, stats) in &status.rows {
            let _ = writeln!(out, "| {label} | {} |", stats.show());
        }
        let _ = writeln!(
            out,
            "\n(creating the {} runs took {:.1}s)",
            status.runs, status.create_s
        );
    }
    if let Some(rows) = &memory {
        let _ = writeln!(
            out,
            "\n### Peak memory of `git-machine run` while a one-step `command` workflow prints {print_bytes} bytes ({memory_reps} reps)\n"
        );
        let _ = writeln!(
            out,
            "| step prints | **peak RSS, `VmHWM`** (MiB) | `ru_maxrss`, incl. reaped children (MiB) | wall time (s) | script alone (s) | run record committed (bytes): all; largest file |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for r in rows {
            let secs = |s: &Stats| {
                let s = Stats(s.0.iter().map(|ms| ms / 1e3).collect());
                format!("{:.2} (min {:.2})", s.median(), s.min())
            };
            let _ = writeln!(
                out,
                "| {} | **{}** | {} | {} | {} | {} |",
                r.label,
                show_peaks(&r.hwm_kib),
                show_peaks(&r.maxrss_kib),
                secs(&r.wall),
                secs(&r.alone),
                r.log.as_deref().unwrap_or("–")
            );
        }
        let samples: usize = rows.iter().map(|r| r.samples).sum();
        let _ = writeln!(
            out,
            "\n(peak: median (max) over repetitions; `VmHWM` polled every 5 ms until exit, {samples} reads in all)"
        );
    }
    if let Some(rows) = &startup {
        let _ = writeln!(
            out,
            "\n### Start-up: spawn to exit (median (min) of {startup_n}, after 2 warm-ups)\n"
        );
        let _ = writeln!(out, "| command | time (ms) |");
        let _ = writeln!(out, "|---|---:|");
        for (label, stats) in rows {
            let _ = writeln!(out, "| {label} | {} |", stats.show());
        }
    }
    let _ = writeln!(
        out,
        "\n(whole bench {:.0}s)",
        started.elapsed().as_secs_f64()
    );
    print!("{out}");
}
