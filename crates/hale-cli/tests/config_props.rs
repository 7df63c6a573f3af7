//! Property tests of the config loader (`hale_cli::config::parse`): no input makes it panic,
//! and whatever it refuses, it refuses with at least one error that has a line and column in
//! the file, a fix, and a rendering that starts with `FILE:LINE:COLUMN: error:`.
//!
//! Two sources of input: arbitrary strings, and a valid config (every key of CONTRACT.md)
//! mutated the way people and editors break TOML: characters deleted, TOML tokens and odd
//! values inserted, lines repeated, swapped or dropped. The case counts are small (256) so the
//! file runs in seconds; the `config` fuzz target (fuzz/fuzz_targets/config.rs) goes further.

use std::path::Path;

use hale_cli::config::{self, ConfigErrors};
use proptest::prelude::*;

const FILE: &str = "/srv/app/hale.toml";

/// Every key CONTRACT.md documents, and a few more forms.
const VALID: &str = r#"[hale]
state_dir = ".hale"
http = "127.0.0.1:9464"
log_max_size = "10MiB"
log_keep = 5

[components.db]
command = ["postgres", "-D", "data"]
stop_signal = "SIGINT"

[components.db.readiness]
tcp = "127.0.0.1:5432"
period = "1s"

[components.api]
command = ["./api", "--port", "8080"]
cwd = "services/api"
env = { RUST_LOG = "info", PORT = 8080 }
depends_on = { db = "healthy" }
ready = "notify"
watchdog = "30s"
notify_access = "main"
start_timeout = "90s"
stop_timeout = "10s"
success_exit_status = [75]
restart_prevent_exit_status = [42]
restart_force_exit_status = [3]

[components.api.restart]
policy = "on-failure"
max_restarts = 10
window = "10m"
min_uptime = "10s"
initial_backoff = "1s"
max_backoff = "60s"
multiplier = 2.0

[components.api.startup]
http = { url = "http://127.0.0.1:8080/healthz", status = "200-299", body_contains = "ok" }
initial_delay = "0s"
period = "1s"
timeout = "1s"
failure_threshold = 30
success_threshold = 1
termination_grace = "5s"

[components.api.liveness]
grpc = { address = "127.0.0.1:50051", service = "api" }

[components.worker]
shell = "./worker --queue jobs"
depends_on = ["api"]

[components.worker.liveness]
log = { pattern = "polling", within = "60s" }

[components.worker.readiness]
file = { path = "/tmp/worker.ready", max_age = "30s" }

[components.agent]
docker = "agent-runner"

[components.agent.readiness]
process = { pidfile = "/run/agent.pid" }
"#;

/// Checks what every refusal must carry; returns a description of the first gap.
fn check_errors(text: &str, errors: &ConfigErrors) -> Result<(), String> {
    if errors.is_empty() {
        return Err("an empty error list".to_owned());
    }
    let lines = text.split('\n').count();
    for e in errors {
        let Some(pos) = e.position else {
            return Err(format!("no position:\n{e}"));
        };
        if pos.line == 0 || pos.line > lines || pos.column == 0 {
            return Err(format!("position {pos:?} outside {lines} lines:\n{e}"));
        }
        if e.help.as_deref().is_none_or(|h| h.trim().is_empty()) {
            return Err(format!("no fix:\n{e}"));
        }
        let head = format!("{FILE}:{}:{}: error: ", pos.line, pos.column);
        let rendered = e.to_string();
        if !rendered.starts_with(&head) {
            return Err(format!("rendered without {head:?}:\n{rendered}"));
        }
    }
    Ok(())
}

fn parse_checked(text: &str) -> Result<(), TestCaseError> {
    match config::parse(text, Path::new(FILE)) {
        Ok(_) => Ok(()),
        Err(errors) => check_errors(text, &errors)
            .map_err(|gap| TestCaseError::fail(format!("{gap}\n--- input:\n{text}"))),
    }
}

/// One way to break a file.
#[derive(Debug, Clone)]
enum Mutation {
    /// Remove `len` bytes at `at` (both taken modulo the text, moved to char boundaries).
    Delete { at: usize, len: usize },
    /// Insert a TOML-ish token at `at`.
    Insert { at: usize, token: String },
    /// Repeat line `line`.
    DuplicateLine { line: usize },
    /// Remove line `line`.
    DropLine { line: usize },
    /// Swap two lines.
    SwapLines { a: usize, b: usize },
    /// Replace the value of line `line` (after its `=`) with `value`.
    ReplaceValue { line: usize, value: String },
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "\"",
            "'",
            "\"\"\"",
            "[",
            "]",
            "[[",
            "]]",
            "{",
            "}",
            "=",
            ",",
            ".",
            "#",
            "\n",
            "\r\n",
            "\t",
            " ",
            "\\",
            "\0",
            "\u{7f}",
            "\u{feff}",
            "é",
            "😀",
            "0",
            "-1",
            "1e400",
            "inf",
            "nan",
            "true",
            "1979-05-27",
            "\"10s\"",
            "\"0s\"",
            "\"\"",
            "[]",
            "{}",
            "[components.x]\n",
            "[components.api]\n",
            "[components.api.liveness]\n",
            "[hale]\n",
            "depends_on = { api = \"healthy\" }\n",
            "restart = [\"x\"]\n",
            "tcp = \"h:1\"\n",
            "command = [\"y\"]\n",
            "components = 1\n",
            "a.b.c = 1\n",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "1",
            "-1",
            "0",
            "4294967296",
            "99999999999999999999",
            "1.5",
            "inf",
            "-inf",
            "nan",
            "true",
            "\"\"",
            "\"x\"",
            "\"10\"",
            "\"-5s\"",
            "\"0s\"",
            "\"1 parsec\"",
            "\"99999999999999999999 years\"",
            "[]",
            "[\"\"]",
            "[1, \"a\"]",
            "{}",
            "{ a = 1 }",
            "\"http://\"",
            "\"ftp://x\"",
            "\"host\"",
            "\":0\"",
            "\"SIGFOO\"",
            "\"(\"",
            "1979-05-27T07:32:00Z",
            "\"\\u0000\"",
            "\"a\\nb\"",
        ])
        .prop_map(str::to_owned),
        "\"[ -~&&[^\"\\\\]]{0,16}\"",
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), token()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        any::<usize>().prop_map(|line| Mutation::DropLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        (any::<usize>(), value()).prop_map(|(line, value)| Mutation::ReplaceValue { line, value }),
    ]
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let n = lines.len();
    match m {
        Mutation::Delete { at, len } => {
            let start = floor_boundary(text, at % (text.len() + 1));
            let end = floor_boundary(text, start + len);
            format!("{}{}", &text[..start], &text[end..])
        }
        Mutation::Insert { at, token } => {
            let at = floor_boundary(text, at % (text.len() + 1));
            format!("{}{token}{}", &text[..at], &text[at..])
        }
        Mutation::DuplicateLine { line } => {
            let l = lines[line % n].clone();
            lines.insert(line % n, l);
            lines.join("\n")
        }
        Mutation::DropLine { line } => {
            lines.remove(line % n);
            lines.join("\n")
        }
        Mutation::SwapLines { a, b } => {
            lines.swap(a % n, b % n);
            lines.join("\n")
        }
        Mutation::ReplaceValue { line, value } => {
            let l = &mut lines[line % n];
            if let Some(eq) = l.find('=') {
                l.truncate(eq + 1);
                l.push(' ');
                l.push_str(value);
            }
            lines.join("\n")
        }
    }
}

/// The base of the mutations is valid, so that what the mutations break is what is tested.
#[test]
fn the_unmutated_config_is_valid() {
    if let Err(e) = config::parse(VALID, Path::new(FILE)) {
        panic!("{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any text at all: loaded, or refused with positioned errors that say how to fix them.
    #[test]
    fn arbitrary_text_never_panics(text in prop_oneof![any::<String>(), "[ -~\n\t\"'\\[\\]{}=#.,]{0,200}"]) {
        parse_checked(&text)?;
    }

    /// A valid config broken in one to four places: loaded, or refused the same way.
    #[test]
    fn mutated_configs_never_panic(mutations in proptest::collection::vec(mutation(), 1..5)) {
        let text = mutations.iter().fold(VALID.to_owned(), |text, m| apply(&text, m));
        parse_checked(&text)?;
    }
}
