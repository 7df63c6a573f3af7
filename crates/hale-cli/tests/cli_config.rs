//! `hale check` and `hale up` on config files, through the real binary (CONTRACT.md "Config
//! file" and exit codes): a valid file exits 0; each class of config error exits 1 and names the
//! file, the line and the key (and, where it helps, the fix); every error of a file is printed,
//! not only the first; and `hale up` with an invalid file exits 2 having started nothing.
//!
//! The loader's own unit tests (src/config/tests.rs) check positions and messages in detail;
//! these check what a user sees on the terminal and the exit codes.

mod common;

use std::time::Duration;

use common::{Hale, hale_cmd, run_bounded};

/// Run `hale check -c FILE` on `text` written to `bad.toml`.
fn check(h: &Hale, file: &str, text: &[u8]) -> common::Out {
    let path = h.path(file);
    std::fs::write(&path, text).unwrap();
    let mut cmd = hale_cmd(&h.root);
    cmd.arg("check").arg("-c").arg(&path);
    run_bounded(cmd, Duration::from_secs(20)).expect("hale check hung")
}

/// `hale check` on `text` exits 1 and its output names `bad.toml:LINE:`, `key` and every
/// fragment of `also`.
fn assert_rejected(text: &str, line: usize, key: &str, also: &[&str]) {
    let h = Hale::new();
    let out = check(&h, "bad.toml", text.as_bytes());
    assert_eq!(out.code, Some(1), "`hale check` must exit 1 on an invalid config:\n{out}");
    let all = out.text();
    assert!(
        all.contains(&format!("bad.toml:{line}:")),
        "the error should point at line {line}:\n{out}"
    );
    assert!(all.contains(key), "the error should name the key {key:?}:\n{out}");
    for a in also {
        assert!(all.contains(a), "the error should say {a:?}:\n{out}");
    }
}

const WEB: &str = "[components.web]\ncommand = [\"sleep\", \"100\"]\n";

#[test]
fn check_accepts_a_valid_config_with_exit_0() {
    let h = Hale::new();
    let text = r#"[hale]
state_dir = "state"
log_max_size = "1MiB"
log_keep = 2

[components.db]
command = ["sleep", "100"]
stop_signal = "SIGINT"
stop_timeout = "2s"

[components.db.readiness]
tcp = "127.0.0.1:5432"
period = "1s"

[components.api]
shell = "sleep 100"
depends_on = { db = "healthy" }
success_exit_status = [75]

[components.api.restart]
policy = "on-failure"
max_restarts = 3
window = "1m30s"
min_uptime = "500ms"
initial_backoff = "100ms"
max_backoff = "2s"
multiplier = 1.5

[components.api.startup]
sh = "true"
failure_threshold = 5

[components.api.liveness]
http = "http://127.0.0.1:8080/healthz"
"#;
    let out = check(&h, "good.toml", text.as_bytes());
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("good.toml"), "{out}");
    assert!(out.stderr.trim().is_empty(), "a valid file prints no error:\n{out}");
}

#[test]
fn unknown_key_is_named_with_a_suggestion() {
    let text = format!("{WEB}comand = [\"oops\"]\n");
    assert_rejected(&text, 3, "components.web.comand", &["unknown key", "did you mean `command`"]);
}

#[test]
fn wrong_type_says_what_was_expected_and_found() {
    let text = format!("{WEB}\n[components.web.restart]\nmax_restarts = \"ten\"\n");
    assert_rejected(
        &text,
        5,
        "components.web.restart.max_restarts",
        &["expected an integer", "\"ten\""],
    );
}

#[test]
fn bad_duration_is_rejected() {
    let text = format!("{WEB}stop_timeout = \"10 parsecs\"\n");
    assert_rejected(&text, 3, "components.web.stop_timeout", &["invalid duration", "10 parsecs"]);
}

#[test]
fn bad_size_is_rejected() {
    let text = format!("[hale]\nlog_max_size = \"ten megs\"\n\n{WEB}");
    assert_rejected(&text, 2, "hale.log_max_size", &["invalid size"]);
}

#[test]
fn bad_signal_is_rejected() {
    let text = format!("{WEB}stop_signal = \"SIGFOO\"\n");
    assert_rejected(&text, 3, "components.web.stop_signal", &["SIGFOO", "SIGTERM"]);
}

#[test]
fn two_run_keys_conflict() {
    let text = format!("{WEB}shell = \"sleep 100\"\n");
    assert_rejected(&text, 3, "components.web.shell", &["conflicts with `command`"]);
}

#[test]
fn a_component_without_a_run_key_is_rejected() {
    let text = "[components.web]\nstop_timeout = \"1s\"\n";
    assert_rejected(text, 1, "components.web", &["no run key", "command"]);
}

#[test]
fn two_check_keys_in_one_probe_conflict() {
    let text = format!("{WEB}\n[components.web.liveness]\nsh = \"true\"\nexec = [\"true\"]\n");
    assert_rejected(&text, 6, "components.web.liveness.exec", &["conflicts with `sh`"]);
}

#[test]
fn success_threshold_must_be_1_for_liveness() {
    let text = format!("{WEB}\n[components.web.liveness]\nsh = \"true\"\nsuccess_threshold = 2\n");
    assert_rejected(&text, 6, "components.web.liveness.success_threshold", &["must be 1"]);
}

#[test]
fn zero_period_is_rejected() {
    let text = format!("{WEB}\n[components.web.readiness]\nsh = \"true\"\nperiod = \"0s\"\n");
    assert_rejected(&text, 6, "components.web.readiness.period", &["greater than 0"]);
}

#[test]
fn multiplier_below_1_is_rejected() {
    let text = format!("{WEB}\n[components.web.restart]\nmultiplier = 0.5\n");
    assert_rejected(&text, 5, "components.web.restart.multiplier", &["at least 1"]);
}

#[test]
fn max_backoff_below_initial_backoff_is_rejected() {
    let text = format!(
        "{WEB}\n[components.web.restart]\ninitial_backoff = \"10s\"\nmax_backoff = \"1s\"\n"
    );
    assert_rejected(&text, 6, "components.web.restart.max_backoff", &["initial_backoff"]);
}

#[test]
fn unknown_dependency_is_named() {
    let text = format!(
        "{WEB}depends_on = {{ dbb = \"healthy\" }}\n\n[components.db]\ncommand = [\"sleep\", \"1\"]\n"
    );
    assert_rejected(
        &text,
        3,
        "components.web.depends_on.dbb",
        &["unknown component `dbb`", "did you mean `db`"],
    );
}

#[test]
fn dependency_cycle_is_printed() {
    let text = "[components.a]\ncommand = [\"true\"]\ndepends_on = { c = \"started\" }\n\n\
                [components.b]\ncommand = [\"true\"]\ndepends_on = { a = \"started\" }\n\n\
                [components.c]\ncommand = [\"true\"]\ndepends_on = { b = \"started\" }\n";
    let h = Hale::new();
    let out = check(&h, "bad.toml", text.as_bytes());
    assert_eq!(out.code, Some(1), "{out}");
    let all = out.text();
    assert!(all.contains("dependency cycle"), "{out}");
    // The whole cycle, closed, whichever member it starts from.
    let closed = ["a -> c -> b -> a", "b -> a -> c -> b", "c -> b -> a -> c"];
    assert!(closed.iter().any(|c| all.contains(c)), "the cycle should be printed:\n{out}");
    assert!(all.contains("depends_on"), "{out}");
}

#[test]
fn bad_depends_on_condition_lists_the_valid_ones() {
    let text = format!(
        "{WEB}depends_on = {{ db = \"hot\" }}\n\n[components.db]\ncommand = [\"sleep\", \"1\"]\n"
    );
    assert_rejected(
        &text,
        3,
        "components.web.depends_on.db",
        &["\"hot\"", "started", "ready", "healthy", "completed_successfully"],
    );
}

#[test]
fn broken_toml_is_one_error_at_its_line() {
    let text = format!("{WEB}stop_timeout = = \"1s\"\n");
    assert_rejected(&text, 3, "invalid TOML", &[]);
}

#[test]
fn non_utf8_file_is_rejected_at_the_bad_byte() {
    let h = Hale::new();
    let out = check(&h, "bad.toml", b"[components.web]\ncommand = [\"sle\xffep\", \"1\"]\n");
    assert_eq!(out.code, Some(1), "{out}");
    let all = out.text();
    assert!(all.contains("bad.toml:2:"), "{out}");
    assert!(all.contains("UTF-8"), "{out}");
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let h = Hale::new();
    let mut cmd = hale_cmd(&h.root);
    let missing = h.path("nowhere.toml");
    cmd.arg("check").arg("-c").arg(&missing);
    let out = run_bounded(cmd, Duration::from_secs(20)).unwrap();
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.text().contains(&missing.display().to_string()), "{out}");
    assert!(out.text().contains("cannot read"), "{out}");
}

#[test]
fn check_prints_every_error_in_file_order() {
    let text = "[hale]\nlog_keep = \"five\"\n\n\
                [components.a]\ncommand = [\"sleep\", \"100\"]\nfrobnicate = true\n\n\
                [components.b]\ncommand = [\"sleep\", \"100\"]\nstop_signal = \"SIGNOPE\"\n\n\
                [components.b.restart]\npolicy = \"sometimes\"\n";
    let h = Hale::new();
    let out = check(&h, "bad.toml", text.as_bytes());
    assert_eq!(out.code, Some(1), "{out}");
    let all = out.text();
    let expected = [
        ("bad.toml:2:", "hale.log_keep"),
        ("bad.toml:6:", "components.a.frobnicate"),
        ("bad.toml:10:", "components.b.stop_signal"),
        ("bad.toml:13:", "components.b.restart.policy"),
    ];
    let mut at = 0;
    for (pos, key) in expected {
        let found = all[at..]
            .find(pos)
            .unwrap_or_else(|| panic!("missing (or out of order) error at {pos}:\n{out}"));
        at += found;
        assert!(all[at..].contains(key), "the error at {pos} should name {key}:\n{out}");
    }
    assert_eq!(all.matches(": error: ").count(), 4, "exactly four errors:\n{out}");
    assert!(all.contains("4 errors"), "a summary with the count:\n{out}");
}

#[test]
fn up_with_an_invalid_config_exits_2_and_starts_nothing() {
    let mut h = Hale::new();
    let marker = h.path("started");
    h.write_config(&format!(
        "[components.good]\nshell = \"touch {}; sleep 100\"\n\n[components.bad]\ncommand = [\"sleep\", \"1\"]\ncomand = [\"x\"]\n",
        marker.display()
    ));
    let i = h.spawn_up(&[]);
    let status = h.wait_daemon_exit(i, Duration::from_secs(10));
    let output = h.daemon_output(i);
    assert_eq!(status.code(), Some(2), "`hale up` with an invalid config must exit 2:\n{output}");
    assert!(output.contains("comand"), "the error should name the key:\n{output}");
    assert!(output.contains("hale.toml:6:"), "the error should name file and line:\n{output}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!marker.exists(), "a component was started from an invalid config");
    assert!(!h.socket().exists(), "a control socket was created for an invalid config");
}

#[test]
fn up_with_a_missing_config_exits_2() {
    let mut h = Hale::new();
    let i = h.spawn_up(&[]);
    let status = h.wait_daemon_exit(i, Duration::from_secs(10));
    let output = h.daemon_output(i);
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("hale.toml"), "{output}");
}

#[test]
fn restart_action_clashing_with_the_restart_table_is_explained() {
    let text = "[components.ext]\nstart = [\"true\"]\nrestart = [\"true\"]\n\n\
                [components.ext.restart]\npolicy = \"always\"\n";
    let h = Hale::new();
    let out = check(&h, "bad.toml", text.as_bytes());
    assert_eq!(out.code, Some(1), "{out}");
    let all = out.text();
    assert!(!all.contains("component names must be unique"), "`ext` is defined once:\n{out}");
    assert!(
        all.contains("action"),
        "the fix (`action = [...]` in the restart table) should be named:\n{out}"
    );
}
