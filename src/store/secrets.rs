//! Which files are never committed even when no ignore rule covers them: common secret files
//! (`.env`, private keys, cloud and registry credentials). This list is the only place they are
//! named; docs/workflow-format.md (`commit_secrets`) repeats it for users.
//!
//! Invariants: a path is judged by its name (and, for `.npmrc`, by whether it holds a token),
//! case-insensitively; a file already in the commit a step starts from is not judged here (the
//! staging code keeps it: someone committed it on purpose); a workflow's `commit_secrets` lets
//! named paths through, exactly as written.

use serde::{Deserialize, Serialize};

/// A file a commit left out, and why; listed in the step's record (`left_out`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    /// The path, relative to the repository's root.
    pub path: String,
    /// The rule it matched, e.g. `secret file (*.pem)`.
    pub reason: String,
}

/// How a secret file is recognised by its path.
enum Rule {
    /// The file's name is exactly this.
    Name(&'static str),
    /// The file's name ends with this (an extension, with its dot).
    Suffix(&'static str),
    /// The file's name starts with this, unless it is one of `except`.
    Prefix(&'static str, &'static [&'static str]),
    /// The path ends with these components (`.aws/credentials`).
    Tail(&'static str),
    /// A file of this name holding one of these strings (a token in a config file).
    Holding(&'static str, &'static [&'static str]),
}

/// The secret files: (rule, how it is shown in the reason).
const RULES: &[(Rule, &str)] = &[
    (Rule::Name(".env"), ".env"),
    (
        Rule::Prefix(
            ".env.",
            &[".env.example", ".env.sample", ".env.template", ".env.dist"],
        ),
        ".env.*",
    ),
    (Rule::Suffix(".pem"), "*.pem"),
    (Rule::Suffix(".key"), "*.key"),
    (Rule::Suffix(".p12"), "*.p12"),
    (Rule::Suffix(".pfx"), "*.pfx"),
    (Rule::Suffix(".keystore"), "*.keystore"),
    (Rule::Suffix(".jks"), "*.jks"),
    (Rule::Name("id_rsa"), "id_rsa"),
    (Rule::Name("id_dsa"), "id_dsa"),
    (Rule::Name("id_ecdsa"), "id_ecdsa"),
    (Rule::Name("id_ed25519"), "id_ed25519"),
    (Rule::Name(".netrc"), ".netrc"),
    (Rule::Name("_netrc"), "_netrc"),
    (Rule::Name(".git-credentials"), ".git-credentials"),
    (Rule::Name(".pgpass"), ".pgpass"),
    (Rule::Name(".pypirc"), ".pypirc"),
    (
        Rule::Holding(".npmrc", &["_authtoken", "_auth", "_password"]),
        ".npmrc with a token",
    ),
    (Rule::Tail(".aws/credentials"), ".aws/credentials"),
    (Rule::Tail(".kube/config"), ".kube/config"),
    (Rule::Tail(".docker/config.json"), ".docker/config.json"),
    (
        Rule::Name("application_default_credentials.json"),
        "application_default_credentials.json",
    ),
];

/// What a run leaves out of its commits: the secret files, except those its workflow allows.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    allowed: Vec<String>,
}

impl Secrets {
    /// `allowed`: the workflow's `commit_secrets`, paths relative to the repository's root.
    pub fn new(allowed: &[String]) -> Secrets {
        Secrets {
            allowed: allowed.to_vec(),
        }
    }

    /// Why `path` is left out of a commit, or `None` when it may be committed. `content`
    /// reads the file, for the rules that look inside (called only for those).
    pub fn reason(&self, path: &str, content: impl FnOnce() -> Vec<u8>) -> Option<String> {
        if self.allowed.iter().any(|a| a == path) {
            return None;
        }
        let shown = matching_rule(path, content)?;
        Some(format!("secret file ({shown})"))
    }
}

/// The shown form of the rule `path` matches, if any.
fn matching_rule(path: &str, content: impl FnOnce() -> Vec<u8>) -> Option<&'static str> {
    // Every rule looks at the last two components at most: lower-case only those.
    let tail = match path.rmatch_indices('/').nth(1) {
        Some((i, _)) => &path[i + 1..],
        None => path,
    };
    let lower = tail.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let mut content = Some(content);
    for (rule, shown) in RULES {
        let hit = match rule {
            Rule::Name(n) => name == *n,
            Rule::Suffix(s) => name.len() > s.len() && name.ends_with(s),
            Rule::Prefix(p, except) => name.starts_with(p) && !except.contains(&name),
            Rule::Tail(t) => {
                lower.ends_with(t)
                    && (lower.len() == t.len()
                        || lower.as_bytes()[lower.len() - t.len() - 1] == b'/')
            }
            Rule::Holding(n, needles) => {
                name == *n
                    && content.take().is_some_and(|read| {
                        let text = String::from_utf8_lossy(&read()).to_ascii_lowercase();
                        needles.iter().any(|needle| text.contains(needle))
                    })
            }
        };
        if hit {
            return Some(shown);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(path: &str) -> Option<String> {
        Secrets::default().reason(path, Vec::new)
    }

    #[test]
    fn common_secret_files_are_recognised_anywhere() {
        for path in [
            ".env",
            "app/.env",
            ".env.local",
            "config/.ENV.production",
            "server.pem",
            "certs/tls.key",
            "a/b.p12",
            "c.pfx",
            "release.keystore",
            "store.jks",
            "id_rsa",
            "home/.ssh/id_ed25519",
            "id_dsa",
            "id_ecdsa",
            ".netrc",
            ".git-credentials",
            ".pgpass",
            ".pypirc",
            ".aws/credentials",
            "home/.aws/credentials",
            ".kube/config",
            "x/.docker/config.json",
            "gcloud/application_default_credentials.json",
        ] {
            assert!(judged(path).is_some(), "{path} should be left out");
        }
    }

    #[test]
    fn look_alikes_are_committed() {
        for path in [
            ".env.example",
            ".env.sample",
            "app/.env.template",
            ".env.dist",
            "id_rsa.pub",
            "id_ed25519.pub",
            "environment",
            "src/key.rs",
            ".pem",
            "credentials",
            "aws/credentials",
            "config",
            ".kube/config.bak",
            "README.md",
        ] {
            assert_eq!(judged(path), None, "{path} should be committed");
        }
    }

    #[test]
    fn npmrc_is_left_out_only_with_a_token() {
        let s = Secrets::default();
        let plain = s.reason(".npmrc", || b"registry=https://npm.example.com/\n".to_vec());
        assert_eq!(plain, None);
        let token = s.reason(".npmrc", || {
            b"//registry.npmjs.org/:_authToken=npm_abc\n".to_vec()
        });
        assert_eq!(token.as_deref(), Some("secret file (.npmrc with a token)"));
    }

    #[test]
    fn a_workflow_allows_exactly_the_paths_it_names() {
        let s = Secrets::new(&["config/dev.pem".to_string()]);
        assert_eq!(s.reason("config/dev.pem", Vec::new), None);
        assert_eq!(
            s.reason("config/prod.pem", Vec::new).as_deref(),
            Some("secret file (*.pem)")
        );
        assert!(s.reason("dev.pem", Vec::new).is_some());
    }

    #[test]
    fn content_is_read_only_for_rules_that_look_inside() {
        let s = Secrets::default();
        let read = || -> Vec<u8> { panic!("a name rule does not read the file") };
        assert!(s.reason("server.pem", read).is_some());
        assert_eq!(s.reason("src/main.rs", read), None);
    }
}
