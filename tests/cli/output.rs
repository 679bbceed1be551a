//! What a step prints cannot make git machine grow: peak memory stays bounded while a step
//! prints 1 GiB, as lines or as one line without a newline, and the log keeps its head and tail.

use std::process::Stdio;
use std::time::Duration;

use crate::common::TestEnv;

/// Peak resident memory (VmHWM) of a running process, in KiB.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Run the workflow's one step and return git machine's peak memory in MiB, read from /proc
/// until it exits (a high-water mark: the last reading holds the maximum so far).
fn run_and_measure(env: &TestEnv) -> u64 {
    let mut child = env
        .machine_cmd(&["run", "loud"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut peak = 0;
    loop {
        if let Some(kib) = peak_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "the run failed: {status}");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    peak / 1024
}

#[test]
fn a_step_printing_a_gibibyte_of_lines_or_one_endless_line_keeps_memory_bounded() {
    for (what, script) in [
        (
            "lines",
            "yes \"$(head -c 1000 /dev/zero | tr '\\0' x)\" | head -c 1073741824",
        ),
        ("one line", "head -c 1073741824 /dev/zero | tr '\\0' x"),
        (
            "4 MiB lines, the longest kept whole",
            "i=0; while [ $i -lt 256 ]; do head -c 4194303 /dev/zero | tr '\\0' x; echo; i=$((i+1)); done",
        ),
    ] {
        let env = TestEnv::new();
        env.workflow(
            "loud",
            &format!(
                "version = 1\nname = \"loud\"\n[[steps]]\nid = \"loud\"\nengine = \"command\"\nrun = [\"sh\", \"-c\", '''{script}''']\n"
            ),
        );
        let peak = run_and_measure(&env);
        assert!(peak < 64, "{what}: git machine peaked at {peak} MiB");
        let run = env.last_run();
        let message = env.git_output(&[
            "cat-file",
            "-s",
            &format!("machine/{run}:.codemachine/runs/{run}/steps/01-loud/message.md"),
        ]);
        let size: u64 = String::from_utf8_lossy(&message.stdout).trim().parse().unwrap_or(0);
        assert!(size < 256 << 10, "{what}: the committed message is {size} bytes");
        let log = env.git(&[
            "show",
            &format!("machine/{run}:.codemachine/runs/{run}/steps/01-loud/output.log.gz"),
        ]);
        assert!(!log.is_empty(), "{what}: the log is kept, compressed");
    }
}
