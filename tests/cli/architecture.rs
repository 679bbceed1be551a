//! The layering rules of docs/design.md, checked on the source: a rule broken by a new line of
//! code fails here, naming the file and the line.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of `src/` (outside tests modules' own files) containing `needle`, in files for which
/// `allowed` is false.
fn offenders(needle: &str, allowed: impl Fn(&str) -> bool) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut found = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&root)
            .expect("under src")
            .display()
            .to_string();
        if allowed(&rel) || rel.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("utf-8 source");
        // Unit tests at the end of a file may use whatever they need.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let trimmed = line.trim_start();
            if line.contains(needle) && !trimmed.starts_with("//") {
                found.push(format!("src/{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn nothing_below_the_command_line_names_it() {
    let bad = offenders("crate::cli", |f| f.starts_with("cli/") || f == "main.rs");
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn only_cli_knows_exit_codes() {
    let bad = offenders("EXIT_", |f| f.starts_with("cli/") || f == "signal.rs");
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn the_environment_is_read_once() {
    for needle in ["std::env::var", "env::vars()", "std::env::current_dir"] {
        let bad = offenders(needle, |f| f == "env.rs");
        assert!(bad.is_empty(), "{bad:#?}");
    }
}

#[test]
fn only_the_git_layer_spawns_git_or_builds_its_argv() {
    for needle in ["Command::new(\"git\")", "git_command()", ".git(&["] {
        let bad = offenders(needle, |f| f.starts_with("git/"));
        assert!(bad.is_empty(), "{bad:#?}");
    }
}

#[test]
fn only_the_store_spells_trailer_keys_and_record_file_names() {
    for needle in [
        "\"Machine-",
        "\"step.toml\"",
        "\"state.toml\"",
        "\"message.md\"",
        "\"prompt.md\"",
        "\"output.log\"",
    ] {
        let bad = offenders(needle, |f| f.starts_with("store/"));
        assert!(bad.is_empty(), "{needle}: {bad:#?}");
    }
}

#[test]
fn only_the_run_transaction_moves_refs() {
    let bad = offenders(".update_refs(", |f| {
        // `apply` moves the user's own branch, never a run's.
        f.starts_with("git/")
            || f == "store/txn.rs"
            || f == "cli/apply.rs"
            || f == "cli/apply_conflict.rs"
    });
    assert!(bad.is_empty(), "{bad:#?}");
}
