//! Control and observability end to end, on real time against the real binary: `hale reload`
//! and SIGHUP, the HTTP API (token, 401, non-loopback refusal, server-sent events), the
//! Prometheus metrics (parsed by a real parser), the gRPC health server (watched by tonic's
//! client) and `on_state_change` hooks.
//!
//! Same rules as `cli_daemon.rs`: each test has its own directory and daemon, waits are polls
//! with guards, and the harness fails the test if any process it started outlives it.

mod common;

use std::time::Duration;

use common::{Hale, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const S: fn(u64) -> Duration = Duration::from_secs;

fn pid_of(c: &Value) -> Option<u32> {
    c["pid"].as_u64().map(|p| p as u32)
}

fn names(h: &Hale) -> Vec<String> {
    h.status()["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

fn sleeper(name: &str, secs: u32) -> String {
    format!("[components.{name}]\ncommand = [\"sleep\", \"{secs}\"]\n")
}

// ------------------------------------------------------------------------------------ reload

#[test]
fn reload_starts_added_stops_removed_restarts_changed_and_keeps_the_rest() {
    let mut h = Hale::new();
    let keep = format!(
        "{}[components.keep.restart]\ninitial_backoff = \"0s\"\nmin_uptime = \"1h\"\n",
        sleeper("keep", 1000)
    );
    h.write_config(&format!("{keep}\n{}\n{}", sleeper("edit", 1000), sleeper("drop", 1000)));
    h.up();
    let running = |h: &Hale, name: &str| {
        h.wait_comp(name, S(10), "running with a pid", |c| {
            c["state"] == "running" && pid_of(c).is_some()
        })
    };
    // Give `keep` a restart, so that keeping its counters is visible.
    let first = pid_of(&running(&h, "keep")).unwrap();
    kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    let keep_before = h.wait_comp("keep", S(10), "restarted", |c| {
        c["restart_count"] == 1 && pid_of(c).is_some_and(|p| p != first)
    });
    let edit_before = pid_of(&running(&h, "edit")).unwrap();
    let drop_pid = pid_of(&running(&h, "drop")).unwrap();

    h.write_config(&format!(
        "# a comment moves every table down: not a change\n{keep}\n{}\n{}",
        sleeper("edit", 2000),
        sleeper("added", 1000)
    ));
    let out = h.ok(&["reload"]);
    let text = out.stdout.clone();
    assert!(text.contains("added:     added"), "{out}");
    assert!(text.contains("removed:   drop"), "{out}");
    assert!(text.contains("changed:   edit (restarted)"), "{out}");
    assert!(text.contains("unchanged: keep"), "{out}");

    let keep_after = h.comp("keep");
    assert_eq!(keep_after["pid"], keep_before["pid"], "an unchanged component keeps running");
    assert_eq!(keep_after["incarnation"], keep_before["incarnation"]);
    assert_eq!(keep_after["restart_count"], 1, "and keeps its counters: {keep_after}");
    let edit_after = running(&h, "edit");
    assert_ne!(pid_of(&edit_after), Some(edit_before), "a changed component is restarted");
    assert!(
        std::fs::read_to_string(format!("/proc/{}/cmdline", pid_of(&edit_after).unwrap()))
            .unwrap()
            .contains("2000"),
        "with its new definition"
    );
    assert!(!common::alive(edit_before, None), "the old instance of `edit` is gone");
    assert!(!common::alive(drop_pid, None), "a removed component's process is gone");
    running(&h, "added");
    let mut listed = names(&h);
    listed.sort();
    assert_eq!(listed, ["added", "edit", "keep"]);
    let events = h.events();
    assert!(
        events.iter().any(|e| e["component"] == "drop" && e["to"] == "stopped"),
        "the removed component's stop is an event: {events:?}"
    );
}

#[test]
fn sighup_reloads_like_hale_reload() {
    let mut h = Hale::new();
    h.write_config(&sleeper("one", 1000));
    let daemon = h.up();
    h.wait_state("one", "running", S(10));
    h.write_config(&format!("{}\n{}", sleeper("one", 1000), sleeper("two", 1000)));
    kill(Pid::from_raw(daemon as i32), Signal::SIGHUP).unwrap();
    wait_until(S(10), "two to be added by SIGHUP", || {
        h.status()["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "two" && c["state"] == "running")
            .then_some(())
    });
    assert_eq!(h.comp("one")["incarnation"], 1, "one was left alone");
}

#[test]
fn an_invalid_config_is_refused_with_its_errors_and_nothing_changes() {
    let mut h = Hale::new();
    h.write_config(&sleeper("svc", 1000));
    h.up();
    let before = h.wait_state("svc", "running", S(10));
    h.write_config(&format!(
        "{}\n[components.new]\ncommand = [\"sleep\", \"1\"]\nstop_timeout = \"soon\"\n",
        sleeper("svc", 2000)
    ));
    let out = h.cli(&["reload"]);
    assert_eq!(out.code, Some(1), "{out}");
    let err = out.stderr.clone();
    assert!(err.contains("invalid") && err.contains("nothing changed"), "{out}");
    assert!(err.contains("hale.toml:6:"), "the error names file and line: {out}");
    assert!(err.contains("components.new.stop_timeout"), "and the key: {out}");
    let after = h.comp("svc");
    assert_eq!(after["pid"], before["pid"], "nothing was restarted");
    assert_eq!(names(&h), ["svc"], "nothing was added");
}
