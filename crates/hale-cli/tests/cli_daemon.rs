//! The `hale` daemon and its clients end to end, on real time: each test writes a small
//! `hale.toml` in a fresh directory under /tmp, runs the real binary (`hale up` in its own
//! process group), drives it only through the command line, the state directory and /proc,
//! and ends by taking it down and checking that no process it started is still alive.
//!
//! Durations are scaled down (backoff 100-400 ms, probe periods 100 ms); assertions are tight
//! only on what hale controls (a delay is never early, and late by at most 150 ms) and every
//! wait is a poll with a generous guard, so that a loaded 2-core machine does not fail them.
//! The children are `child.sh` from the shared harness (records `start`/`exit`/`term` lines
//! with epoch times) or one-line `/bin/sh` scripts.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    Hale, alive, hale_cmd, ms, now_epoch, recs_of, restart_gaps, run_bounded, wait_until,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const S: fn(u64) -> Duration = Duration::from_secs;

/// A `[components.NAME.restart]` table.
fn restart(
    name: &str,
    policy: &str,
    backoff: (&str, &str),
    limit: (u32, &str),
    min_uptime: &str,
) -> String {
    let ((initial, max), (max_restarts, window)) = (backoff, limit);
    format!(
        "[components.{name}.restart]\npolicy = \"{policy}\"\ninitial_backoff = \"{initial}\"\n\
         max_backoff = \"{max}\"\nmultiplier = 2.0\nmax_restarts = {max_restarts}\n\
         window = \"{window}\"\nmin_uptime = \"{min_uptime}\"\n"
    )
}

/// A delay hale controls: at most 30 ms early, at most 150 ms late.
fn within(actual: f64, expected: f64) -> bool {
    actual >= expected - 0.030 && actual <= expected + 0.150
}

fn pid_of(c: &Value) -> Option<u32> {
    c["pid"].as_u64().map(|p| p as u32)
}

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(pid as i32), sig).expect("signalling the daemon");
}

/// Wait until `pid` is gone (exited, or a zombie nobody reaps yet).
fn wait_gone(pid: u32, guard: Duration, what: &str) {
    wait_until(guard, &format!("{what} (pid {pid}) to be gone"), || {
        (!alive(pid, None)).then_some(())
    });
}

// ------------------------------------------------------------------------ crashes and backoff

#[test]
fn crash_is_detected_and_restarted_within_milliseconds() {
    let mut h = Hale::new();
    h.write_config(&format!(
        "[components.crashy]\ncommand = {}\n\n{}",
        h.child_cmd("crashy.log", "0.2", 1, ""),
        restart("crashy", "always", ("0s", "0s"), (100, "1m"), "10s")
    ));
    h.up();
    let first = h.wait_comp("crashy", S(10), "running with a pid", |c| pid_of(c).is_some());
    let pid1 = pid_of(&first).unwrap();
    let second = h.wait_comp("crashy", S(5), "running a new instance", |c| {
        pid_of(c).is_some_and(|p| p != pid1)
    });
    assert!(second["incarnation"].as_u64() > first["incarnation"].as_u64(), "{second}");
    let log = h.path("crashy.log");
    wait_until(S(10), "four starts", || (recs_of(&log, "start").len() >= 4).then_some(()));
    let gaps = restart_gaps(&log);
    assert!(gaps.len() >= 3, "gaps {}", ms(&gaps));
    assert!(
        gaps.iter().all(|&g| g < 0.200),
        "with initial_backoff 0 a crash must be restarted at once (exit to next start < 200 ms): {}",
        ms(&gaps)
    );
    let c = h.comp("crashy");
    assert!(c["restart_count"].as_u64().unwrap() >= 3, "{c}");
    assert!(c["unstable"].as_u64().unwrap() >= 3, "no instance was stable: {c}");
}

#[test]
fn backoff_doubles_and_the_restart_limit_ends_in_failed() {
    let mut h = Hale::new();
    h.write_config(&format!(
        "[components.crashy]\ncommand = {}\n\n{}",
        h.child_cmd("crashy.log", "0", 1, ""),
        restart("crashy", "always", ("100ms", "1s"), (3, "10s"), "10s")
    ));
    h.up();
    let c = h.wait_state("crashy", "failed", S(10));
    let log = h.path("crashy.log");
    let gaps = restart_gaps(&log);
    let expected = [0.1, 0.2, 0.4];
    assert_eq!(gaps.len(), 3, "1 start + 3 restarts expected, gaps {}", ms(&gaps));
    for (g, e) in gaps.iter().zip(expected) {
        assert!(within(*g, e), "gaps {} expected {} (-30/+150 ms)", ms(&gaps), ms(&expected));
    }
    assert_eq!(c["restart_count"], 3, "{c}");
    assert_eq!(c["restarts_in_window"], 3, "{c}");
    assert!(c["pid"].is_null() && c["next_restart_in_ms"].is_null(), "{c}");
    assert_eq!(c["last_exit"], serde_json::json!({"code": 1, "signal": null}), "{c}");
    // Failed is sticky: no timer brings it back.
    common::hold_for(Duration::from_millis(600), "failed being sticky", || {
        let n = recs_of(&log, "start").len();
        let state = h.comp("crashy")["state"].clone();
        if n == 4 && state == "failed" { Ok(()) } else { Err(format!("{n} starts, state {state}")) }
    });
    let events: Vec<Value> =
        h.events().into_iter().filter(|e| e["component"] == "crashy").collect();
    let last = events.last().expect("events for crashy");
    assert_eq!(last["to"], "failed", "{events:?}");
    let reason = last["reason"].as_str().unwrap().to_lowercase();
    assert!(
        reason.contains("limit") || reason.contains("max_restarts"),
        "the reason for failed should name the restart limit: {reason:?}"
    );
}

#[test]
fn min_uptime_resets_the_backoff() {
    let mut h = Hale::new();
    // Each instance lives 500 ms, past min_uptime 300 ms: every restart is the first again.
    h.write_config(&format!(
        "[components.flaky]\ncommand = {}\n\n{}",
        h.child_cmd("flaky.log", "0.5", 1, ""),
        restart("flaky", "always", ("100ms", "2s"), (100, "1m"), "300ms")
    ));
    h.up();
    let log = h.path("flaky.log");
    // While an instance runs past min_uptime the backoff counter reads 0.
    let c = h.wait_comp("flaky", S(10), "stable after a restart", |c| {
        c["restart_count"].as_u64() >= Some(1) && c["unstable"] == 0 && !c["pid"].is_null()
    });
    assert!(c["uptime_ms"].as_u64().unwrap() >= 290, "stable before min_uptime: {c}");
    wait_until(S(12), "five starts", || (recs_of(&log, "start").len() >= 5).then_some(()));
    let gaps = restart_gaps(&log);
    assert!(gaps.len() >= 4, "gaps {}", ms(&gaps));
    assert!(
        gaps.iter().all(|&g| within(g, 0.1)),
        "every instance was stable, so every delay is initial_backoff (100 ms): {}",
        ms(&gaps)
    );
}

// ------------------------------------------------------------------------ dependencies and probes

#[test]
fn a_dependent_waits_for_its_dependency_to_be_healthy() {
    let mut h = Hale::new();
    let flag = h.path("db.ready");
    h.write_config(&format!(
        "[components.db]\ncommand = [\"sleep\", \"100\"]\n\n\
         [components.db.readiness]\nsh = \"test -f {}\"\nperiod = \"100ms\"\nfailure_threshold = 1\n\n\
         [components.api]\ncommand = {}\ndepends_on = {{ db = \"healthy\" }}\n",
        flag.display(),
        h.child_cmd("api.log", "100", 0, "")
    ));
    h.up();
    h.wait_comp("db", S(10), "running", |c| c["state"] == "running");
    common::hold_for(Duration::from_millis(700), "api waiting for db", || {
        let api = h.comp("api");
        let waiting = api["waiting_for"].as_str().unwrap_or("");
        if !api["pid"].is_null() {
            return Err(format!("api has a pid while db is not healthy: {api}"));
        }
        if !waiting.contains("db (healthy)") {
            return Err(format!("waiting_for should name db (healthy): {api}"));
        }
        Ok(())
    });
    assert!(recs_of(&h.path("api.log"), "start").is_empty(), "api was spawned");
    let table = h.ok(&["status"]);
    let row = table.stdout.lines().find(|l| l.starts_with("api")).unwrap_or_default().to_owned();
    assert!(row.contains("db (healthy)"), "the table should say what api waits for:\n{table}");
    let made = now_epoch();
    fs::write(&flag, "").unwrap();
    let api =
        h.wait_comp("api", S(10), "running", |c| c["state"] == "running" && !c["pid"].is_null());
    assert!(api["waiting_for"].is_null(), "{api}");
    let start = recs_of(&h.path("api.log"), "start")[0].t;
    assert!(start >= made, "api started {:.3}s before db became healthy", made - start);
}

#[test]
fn the_startup_probe_gates_running() {
    let mut h = Hale::new();
    let flag = h.path("started.flag");
    h.write_config(&format!(
        "[components.slow]\ncommand = {}\n\n\
         [components.slow.startup]\nsh = \"test -f {}\"\nperiod = \"100ms\"\nfailure_threshold = 100\n",
        h.child_cmd("slow.log", "100", 0, ""),
        flag.display()
    ));
    h.up();
    let c = h.wait_comp("slow", S(10), "starting with a pid", |c| !c["pid"].is_null());
    let pid = c["pid"].clone();
    common::hold_for(Duration::from_millis(700), "starting until the flag exists", || {
        let c = h.comp("slow");
        if c["state"] == "starting"
            && c["ready"] == false
            && c["healthy"] == false
            && c["pid"] == pid
        {
            Ok(())
        } else {
            Err(c.to_string())
        }
    });
    fs::write(&flag, "").unwrap();
    let c = h.wait_comp("slow", S(5), "running and ready", |c| {
        c["state"] == "running" && c["ready"] == true
    });
    assert_eq!(c["pid"], pid, "the same instance passes the gate");
    assert_eq!(recs_of(&h.path("slow.log"), "start").len(), 1);
    let out = h.ok(&["wait", "slow", "--for", "started", "--timeout", "5s"]);
    assert!(out.elapsed < S(3), "{out}");
}

#[test]
fn readiness_flaps_without_restarting_anything() {
    let mut h = Hale::new();
    let flag = h.path("ready.flag");
    h.write_config(&format!(
        "[components.web]\ncommand = {}\n\n\
         [components.web.readiness]\nsh = \"test -f {}\"\nperiod = \"100ms\"\nfailure_threshold = 1\n",
        h.child_cmd("web.log", "100", 0, ""),
        flag.display()
    ));
    h.up();
    let c = h.wait_comp("web", S(10), "running", |c| c["state"] == "running");
    let pid = c["pid"].clone();
    assert_eq!(c["ready"], false, "{c}");
    for round in 0..3 {
        fs::write(&flag, "").unwrap();
        let c = h.wait_comp("web", S(5), "ready", |c| c["ready"] == true);
        assert_eq!(c["healthy"], true, "round {round}: {c}");
        fs::remove_file(&flag).unwrap();
        let c = h.wait_comp("web", S(5), "not ready", |c| c["ready"] == false);
        assert_eq!(c["healthy"], false, "round {round}: {c}");
        assert_eq!(c["state"], "running", "round {round}: {c}");
        assert_eq!(c["pid"], pid, "round {round}: readiness must never restart: {c}");
        assert_eq!(c["restart_count"], 0, "round {round}: {c}");
    }
    assert_eq!(recs_of(&h.path("web.log"), "start").len(), 1);
    assert!(recs_of(&h.path("web.log"), "term").is_empty(), "readiness sent a signal");
}

// ------------------------------------------------------------------------ shutdown

#[test]
fn down_stops_in_reverse_dependency_order_and_kills_what_ignores_sigterm() {
    let mut h = Hale::new();
    h.write_config(&format!(
        "[components.a]\ncommand = {}\n\n\
         [components.b]\ncommand = {}\ndepends_on = {{ a = \"started\" }}\nstop_timeout = \"500ms\"\n\n\
         [components.c]\ncommand = {}\ndepends_on = {{ b = \"started\" }}\n",
        h.child_cmd("a.log", "100", 0, ""),
        h.child_cmd("b.log", "100", 0, "ignore-term"),
        h.child_cmd("c.log", "100", 0, "")
    ));
    let d = h.up();
    for n in ["a", "b", "c"] {
        h.wait_comp(n, S(10), "running", |c| c["state"] == "running" && !c["pid"].is_null());
    }
    let b_pid = pid_of(&h.comp("b")).unwrap();
    let out = h.ok(&["down"]);
    let term = |n: &str| {
        recs_of(&h.path(&format!("{n}.log")), "term")
            .first()
            .unwrap_or_else(|| panic!("{n} got no SIGTERM"))
            .t
    };
    let (ta, tb, tc) = (term("a"), term("b"), term("c"));
    assert!(tb >= tc, "b was signalled {:.3}s before c, which depends on it", tc - tb);
    assert!(
        ta - tb >= 0.45,
        "a was signalled {:.3}s after b; b ignores SIGTERM, so a must wait for its 500 ms stop_timeout",
        ta - tb
    );
    assert!(
        out.elapsed >= Duration::from_millis(450),
        "`hale down` returned before b's stop_timeout:\n{out}"
    );
    assert!(out.elapsed < S(5), "`hale down` took too long:\n{out}");
    assert!(!alive(b_pid, None), "the SIGTERM-ignoring child survived `hale down`");
    let status = h.wait_daemon_exit(0, S(5));
    assert_eq!(status.code(), Some(0), "the daemon exits 0 after `hale down`");
    assert!(!h.socket().exists(), "the socket outlived the daemon (pid {d})");
}

#[test]
fn sigterm_to_the_daemon_stops_everything_and_exits_0() {
    let mut h = Hale::new();
    h.write_config(&format!(
        "[components.plain]\ncommand = {}\n\n\
         [components.forky]\nshell = \"sleep 100 & echo $! > {}; wait\"\n",
        h.child_cmd("plain.log", "100", 0, ""),
        h.path("gc.pid").display()
    ));
    let d = h.up();
    let mut pids = Vec::new();
    for n in ["plain", "forky"] {
        let c = h.wait_comp(n, S(10), "running", |c| !c["pid"].is_null());
        pids.push(pid_of(&c).unwrap());
    }
    let gc: u32 = wait_until(S(5), "the grandchild's pid", || {
        fs::read_to_string(h.path("gc.pid")).ok()?.trim().parse().ok()
    });
    h.track(gc, "forky's grandchild");
    pids.push(gc);
    signal(d, Signal::SIGTERM);
    let status = h.wait_daemon_exit(0, S(10));
    assert_eq!(status.code(), Some(0), "a graceful SIGTERM exits 0:\n{}", h.daemon_output(0));
    for p in pids {
        wait_gone(p, S(2), "a child of the daemon");
    }
    assert_eq!(recs_of(&h.path("plain.log"), "term").len(), 1, "plain got its SIGTERM");
}

#[test]
fn a_second_sigterm_during_a_slow_shutdown_kills_everything_at_once() {
    let mut h = Hale::new();
    h.write_config(&format!(
        "[components.stubborn]\ncommand = {}\nstop_timeout = \"30s\"\n",
        h.child_cmd("stubborn.log", "100", 0, "ignore-term")
    ));
    let d = h.up();
    let c = h.wait_comp("stubborn", S(10), "running", |c| !c["pid"].is_null());
    let pid = pid_of(&c).unwrap();
    signal(d, Signal::SIGTERM);
    let log = h.path("stubborn.log");
    wait_until(S(5), "stubborn to get its SIGTERM", || {
        (!recs_of(&log, "term").is_empty()).then_some(())
    });
    assert!(
        h.daemon_exited(0).is_none(),
        "the daemon must wait for stop_timeout after one SIGTERM"
    );
    let t0 = Instant::now();
    signal(d, Signal::SIGTERM);
    h.wait_daemon_exit(0, S(5));
    assert!(t0.elapsed() < S(3), "a second SIGTERM took {:?} to end the daemon", t0.elapsed());
    wait_gone(pid, S(2), "the SIGTERM-ignoring child");
}

#[test]
fn sigkill_of_the_daemon_leaves_no_child_alive() {
    let mut h = Hale::new();
    h.write_config(
        "[components.one]\ncommand = [\"sleep\", \"100\"]\n\n[components.two]\nshell = \"exec sleep 100\"\n",
    );
    let d = h.up();
    let mut pids = Vec::new();
    for n in ["one", "two"] {
        let c = h.wait_comp(n, S(10), "running", |c| !c["pid"].is_null());
        pids.push(pid_of(&c).unwrap());
    }
    signal(d, Signal::SIGKILL);
    h.wait_daemon_exit(0, S(5));
    for p in pids {
        wait_gone(p, S(5), "a child of the SIGKILLed daemon (PR_SET_PDEATHSIG)");
    }
}

#[test]
fn a_new_daemon_ends_the_grandchildren_a_killed_one_left_behind() {
    let mut h = Hale::new();
    h.write_config(&format!(
        "[components.forky]\nshell = \"sleep 100 & echo $! >> {}; wait\"\n",
        h.path("gc.pids").display()
    ));
    let d = h.up();
    h.wait_comp("forky", S(10), "running", |c| !c["pid"].is_null());
    let gc: u32 = wait_until(S(5), "the grandchild's pid", || {
        fs::read_to_string(h.path("gc.pids")).ok()?.lines().next()?.trim().parse().ok()
    });
    h.track(gc, "forky's grandchild");
    signal(d, Signal::SIGKILL);
    h.wait_daemon_exit(0, S(5));
    // The shell died with the daemon; its grandchild, outside PR_SET_PDEATHSIG's reach, lives.
    assert!(alive(gc, None), "the grandchild is expected to survive the daemon's SIGKILL");
    h.up();
    wait_gone(gc, S(5), "the grandchild left by the killed daemon");
    let output = h.daemon_output(1);
    assert!(output.contains("ended forky"), "the new daemon should say what it ended:\n{output}");
}

// ------------------------------------------------------------------------ client verbs

#[test]
fn wait_exits_0_when_reached_and_1_on_timeout_or_failed() {
    let mut h = Hale::new();
    h.write_config(&format!(
        "[components.good]\ncommand = [\"sleep\", \"100\"]\n\n\
         [components.never]\ncommand = [\"sleep\", \"100\"]\n\n\
         [components.never.readiness]\nsh = \"false\"\nperiod = \"100ms\"\n\n\
         [components.doomed]\ncommand = {}\n\n\
         [components.doomed.readiness]\nsh = \"false\"\nperiod = \"100ms\"\n\n{}",
        h.child_cmd("doomed.log", "0.5", 1, ""),
        restart("doomed", "never", ("100ms", "1s"), (10, "1m"), "10s")
    ));
    h.up();
    let out = h.cli(&["wait", "doomed", "--timeout", "20s"]);
    assert_eq!(out.code, Some(1), "waiting on a component that fails must exit 1:\n{out}");
    assert!(out.elapsed < S(5), "`hale wait` must return when the component fails:\n{out}");
    assert!(out.stderr.contains("doomed"), "{out}");
    assert_eq!(h.comp("doomed")["state"], "failed");
    let t0 = Instant::now();
    let out = h.cli(&["wait", "doomed", "--for", "healthy", "--timeout", "20s"]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(t0.elapsed() < S(2), "a component already failed must end `hale wait` at once:\n{out}");
    assert_eq!(h.cli(&["wait", "good", "--for", "started", "--timeout", "10s"]).code, Some(0));
    assert_eq!(h.cli(&["wait", "good", "--for", "healthy", "--timeout", "10s"]).code, Some(0));
    let out = h.cli(&["wait", "never", "--for", "ready", "--timeout", "1s"]);
    assert_eq!(out.code, Some(1), "a wait that times out exits 1:\n{out}");
    assert!(out.elapsed >= Duration::from_millis(950) && out.elapsed < S(5), "{out}");
    let out = h.cli(&["wait", "good", "never", "--timeout", "500ms"]);
    assert_eq!(out.code, Some(1), "every named component must reach the condition:\n{out}");
    h.ok(&["stop", "good"]);
    assert_eq!(h.cli(&["wait", "good", "--for", "stopped", "--timeout", "5s"]).code, Some(0));
}

/// Assert `c` has every field of CONTRACT.md's status object, with its type.
fn assert_contract_fields(c: &Value) {
    let states = ["stopped", "starting", "running", "unhealthy", "restarting", "failed"];
    assert!(c["name"].is_string(), "{c}");
    assert!(states.contains(&c["state"].as_str().unwrap_or("")), "{c}");
    for k in ["ready", "healthy"] {
        assert!(c[k].is_boolean(), "{k}: {c}");
    }
    for k in ["incarnation", "restart_count", "restarts_in_window", "unstable"] {
        assert!(c[k].is_u64(), "{k}: {c}");
    }
    for k in ["pid", "uptime_ms", "next_restart_in_ms"] {
        assert!(c.get(k).is_some_and(|v| v.is_null() || v.is_u64()), "{k}: {c}");
    }
    for k in ["last_error", "status_text"] {
        assert!(c.get(k).is_some_and(|v| v.is_null() || v.is_string()), "{k}: {c}");
    }
    let last_exit = c.get("last_exit").expect("last_exit");
    assert!(
        last_exit.is_null()
            || (last_exit.get("code").is_some() && last_exit.get("signal").is_some()),
        "{c}"
    );
    assert!(c["probes"].is_object(), "{c}");
}

#[test]
fn every_client_verb_works_against_a_real_daemon() {
    let mut h = Hale::new();
    h.write_config(&format!(
        "[components.svc]\ncommand = {}\n\n\
         [components.talker]\nshell = \"for i in 1 2 3 4 5 6 7 8 9 10; do echo msg $i; done; exec sleep 100\"\n\n\
         [components.talker.liveness]\nsh = \"true\"\nperiod = \"100ms\"\n\n\
         [components.doomed]\nshell = \"exit 3\"\n\n{}",
        h.child_cmd("svc.log", "100", 0, ""),
        restart("doomed", "never", ("100ms", "1s"), (10, "1m"), "10s")
    ));
    h.up();
    let svc = h.wait_comp("svc", S(10), "running", |c| c["state"] == "running");
    h.wait_comp("talker", S(10), "running with liveness results", |c| {
        c["state"] == "running"
            && c["probes"]["liveness"]["last"].as_array().is_some_and(|a| !a.is_empty())
    });
    h.wait_state("doomed", "failed", S(10));

    // status --json: CONTRACT's fields and types.
    let all = h.status();
    let comps = all["components"].as_array().unwrap();
    let names: Vec<&str> = comps.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 3, "{all}");
    for c in comps {
        assert_contract_fields(c);
    }
    let talker = comps.iter().find(|c| c["name"] == "talker").unwrap();
    let live = &talker["probes"]["liveness"];
    assert!(live["consecutive_successes"].as_u64() >= Some(1), "{talker}");
    let r = &live["last"][0];
    assert!(r["ok"] == true && r["duration_ms"].is_number() && r["output"].is_string(), "{r}");
    assert!(humantime::parse_rfc3339(r["at"].as_str().unwrap()).is_ok(), "{r}");
    let doomed = comps.iter().find(|c| c["name"] == "doomed").unwrap();
    assert_eq!(doomed["last_exit"], serde_json::json!({"code": 3, "signal": null}), "{doomed}");
    assert!(doomed["pid"].is_null() && doomed["uptime_ms"].is_null(), "{doomed}");
    assert!(svc["last_exit"].is_null() && svc["uptime_ms"].is_u64(), "{svc}");

    // status NAME filters; the table has a row per component.
    let one = h.ok(&["status", "svc", "--json"]).json();
    assert_eq!(one["components"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["components"][0]["name"], "svc");
    let table = h.ok(&["status"]);
    let header = table.stdout.lines().next().unwrap_or_default();
    for col in ["NAME", "STATE", "READY", "PID"] {
        assert!(header.contains(col), "{table}");
    }
    for (n, state) in [("svc", "running"), ("talker", "running"), ("doomed", "failed")] {
        let row = table.stdout.lines().find(|l| l.split_whitespace().next() == Some(n));
        assert!(row.is_some_and(|r| r.contains(state)), "no {state} row for {n}:\n{table}");
    }

    // stop, start, restart.
    let pid1 = svc["pid"].clone();
    h.ok(&["stop", "svc"]);
    let c = h.wait_comp("svc", S(5), "stopped", |c| c["state"] == "stopped" && c["pid"].is_null());
    assert_eq!(c["ready"], false);
    assert_eq!(recs_of(&h.path("svc.log"), "term").len(), 1, "stop sends SIGTERM");
    common::hold_for(Duration::from_millis(300), "a stopped component staying stopped", || {
        let c = h.comp("svc");
        if c["state"] == "stopped" { Ok(()) } else { Err(c.to_string()) }
    });
    h.ok(&["start", "svc"]);
    let c = h.wait_comp("svc", S(5), "running again", |c| {
        c["state"] == "running" && !c["pid"].is_null()
    });
    assert_ne!(c["pid"], pid1);
    let (pid2, inc2) = (c["pid"].clone(), c["incarnation"].as_u64().unwrap());
    h.ok(&["restart", "svc"]);
    let c = h.wait_comp("svc", S(5), "restarted", |c| {
        c["state"] == "running" && !c["pid"].is_null() && c["pid"] != pid2
    });
    assert!(c["incarnation"].as_u64().unwrap() > inc2, "{c}");
    assert_eq!(c["restart_count"], 0, "an operator restart is not an automatic restart: {c}");
    let svc_log = h.path("svc.log");
    wait_until(S(5), "svc's third start record", || {
        (recs_of(&svc_log, "start").len() == 3).then_some(())
    });

    // reset leaves failed.
    h.ok(&["reset", "doomed"]);
    let c = h.wait_state("doomed", "stopped", S(5));
    assert_eq!(c["restart_count"], 0, "{c}");

    // --all.
    h.ok(&["stop", "--all"]);
    for n in ["svc", "talker", "doomed"] {
        h.wait_comp(n, S(5), "stopped", |c| c["state"] == "stopped" && c["pid"].is_null());
    }
    h.ok(&["start", "svc", "talker"]);
    for n in ["svc", "talker"] {
        h.wait_comp(n, S(5), "running", |c| c["state"] == "running");
    }

    // logs -n.
    let out = h.ok(&["logs", "talker", "-n", "3"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["msg 8", "msg 9", "msg 10"], "{out}");
    let out = h.ok(&["logs", "talker"]);
    assert_eq!(
        out.stdout.lines().filter(|l| l.starts_with("msg ")).count(),
        20,
        "two runs of 10:\n{out}"
    );

    // events --json: fields, newest last, each component's transitions chain.
    let events = h.events();
    assert!(!events.is_empty());
    let mut last_at = std::time::SystemTime::UNIX_EPOCH;
    let mut current: std::collections::HashMap<String, String> = Default::default();
    for e in &events {
        for k in ["at", "component", "from", "to", "reason"] {
            assert!(e[k].is_string(), "event without {k}: {e}");
        }
        let at = humantime::parse_rfc3339(e["at"].as_str().unwrap()).expect("RFC 3339 `at`");
        assert!(at >= last_at, "events out of order at {e}");
        last_at = at;
        let name = e["component"].as_str().unwrap().to_owned();
        let from = current.get(&name).map(String::as_str).unwrap_or("stopped");
        assert_eq!(e["from"], from, "{name}'s transitions do not chain: {e}");
        current.insert(name, e["to"].as_str().unwrap().to_owned());
    }
    assert_eq!(current.get("svc").map(String::as_str), Some("running"));
    assert_eq!(current.get("doomed").map(String::as_str), Some("stopped"));
    assert!(events.iter().any(|e| e["component"] == "doomed" && e["to"] == "failed"), "{events:?}");
    let human = h.ok(&["events"]);
    assert!(human.stdout.lines().count() == events.len(), "{human}");

    // down.
    let out = h.ok(&["down"]);
    assert!(out.elapsed < S(5), "{out}");
    assert_eq!(h.wait_daemon_exit(0, S(5)).code(), Some(0));
    assert!(!h.socket().exists());
}

#[test]
fn an_unknown_component_is_an_error_naming_it() {
    let mut h = Hale::new();
    h.write_config("[components.svc]\ncommand = [\"sleep\", \"100\"]\n");
    h.up();
    for verb in [
        &["status", "nope"][..],
        &["status", "nope", "--json"],
        &["start", "nope"],
        &["stop", "nope"],
        &["restart", "nope"],
        &["reset", "nope"],
        &["wait", "nope", "--timeout", "1s"],
        &["logs", "nope"],
    ] {
        let out = h.cli(verb);
        assert_eq!(out.code, Some(1), "{out}");
        assert!(out.stderr.contains("nope"), "the error should name the component:\n{out}");
    }
    // A known and an unknown name: the known one is still acted on, and the exit is 1.
    let out = h.cli(&["stop", "svc", "nope"]);
    assert_eq!(out.code, Some(1), "{out}");
    h.wait_state("svc", "stopped", S(5));
}

#[test]
fn a_client_without_a_daemon_says_how_to_start_one() {
    let h = Hale::new();
    h.write_config("[components.svc]\ncommand = [\"sleep\", \"100\"]\n");
    for verb in [
        &["status"][..],
        &["status", "--json"],
        &["stop", "svc"],
        &["wait", "svc", "--timeout", "1s"],
        &["down"],
    ] {
        let out = h.cli(verb);
        assert!(out.code.is_some_and(|c| c != 0), "no daemon must be an error:\n{out}");
        assert!(out.stderr.contains("hale up"), "the error should say how to start one:\n{out}");
        assert!(out.elapsed < S(5), "{out}");
    }
    let mut cmd = hale_cmd(&h.root);
    cmd.args(["status", "--socket"]).arg(h.path("nowhere.sock"));
    let out = run_bounded(cmd, S(10)).unwrap();
    assert!(out.code.is_some_and(|c| c != 0), "{out}");
    assert!(out.stderr.contains("nowhere.sock") && out.stderr.contains("hale up"), "{out}");
}

#[test]
fn up_detached_returns_once_every_component_runs_and_the_daemon_stays() {
    let h = Hale::new();
    let flag = h.path("slow.flag");
    h.write_config(&format!(
        "[components.slow]\nshell = \"sleep 0.4; touch {f}; exec sleep 100\"\n\n\
         [components.slow.startup]\nsh = \"test -f {f}\"\nperiod = \"100ms\"\n\n\
         [components.after]\ncommand = [\"sleep\", \"100\"]\ndepends_on = {{ slow = \"healthy\" }}\n",
        f = flag.display()
    ));
    let out = h.cli_tagged(&["up", "-d"], S(20));
    assert_eq!(out.code, Some(0), "{out}");
    // No polling here: `up -d` returned, so every component has started.
    let all = h.status();
    for c in all["components"].as_array().unwrap() {
        assert_eq!(c["state"], "running", "`up -d` returned before {} started: {all}", c["name"]);
    }
    assert!(flag.exists());
    common::hold_for(Duration::from_millis(400), "the detached daemon answering", || {
        let out = h.cli(&["status", "--json"]);
        if out.code == Some(0) { Ok(()) } else { Err(out.to_string()) }
    });
    assert!(!h.tagged_alive().is_empty(), "the detached daemon should run with our tag");
    h.ok(&["down"]);
    wait_until(S(5), "every process of the detached daemon to be gone", || {
        h.tagged_alive().is_empty().then_some(())
    });
    assert!(!h.socket().exists());
}

#[test]
fn up_detached_exits_1_naming_a_component_that_fails() {
    let h = Hale::new();
    h.write_config(&format!(
        "[components.fine]\ncommand = [\"sleep\", \"100\"]\n\n\
         [components.broken]\nshell = \"sleep 0.2; exit 7\"\n\n\
         [components.broken.startup]\nsh = \"false\"\nperiod = \"50ms\"\nfailure_threshold = 100\n\n{}",
        restart("broken", "never", ("100ms", "1s"), (10, "1m"), "10s")
    ));
    let out = h.cli_tagged(&["up", "-d"], S(20));
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("broken"), "the failure should name the component:\n{out}");
    assert!(!out.stderr.contains("fine:"), "{out}");
}

// ------------------------------------------------------------------------ output capture

fn log_records(state_dir: &Path, file: &str) -> Vec<(String, String)> {
    let bytes = fs::read(state_dir.join("logs").join(file)).unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(|l| {
            let mut it = l.splitn(3, ' ');
            let _at = it.next();
            let stream = it.next().unwrap_or_default().to_owned();
            (stream, it.next().unwrap_or_default().to_owned())
        })
        .collect()
}

#[test]
fn twenty_thousand_lines_arrive_in_order_without_loss() {
    let mut h = Hale::new();
    h.write_config("[components.bulk]\nshell = \"seq -f 'line %.0f' 1 20000; exec sleep 100\"\n");
    h.up();
    let sd = h.state_dir();
    let recs = wait_until(S(10), "20000 lines in logs/bulk.log", || {
        let r = log_records(&sd, "bulk.log");
        (r.len() >= 20000).then_some(r)
    });
    assert_eq!(recs.len(), 20000);
    for (i, (stream, text)) in recs.iter().enumerate() {
        assert_eq!(stream, "stdout");
        assert_eq!(text, &format!("line {}", i + 1), "record {i} out of order or mangled");
    }
    let out = h.ok(&["logs", "bulk"]);
    assert_eq!(out.stdout.lines().count(), 20000);
    assert_eq!(out.stdout.lines().last(), Some("line 20000"));
    let out = h.ok(&["logs", "bulk", "-n", "2"]);
    assert_eq!(out.stdout, "line 19999\nline 20000\n", "{out}");
}

#[test]
fn stderr_partial_lines_long_lines_and_binary_are_captured() {
    let mut h = Hale::new();
    h.write_config(&format!(
        "[components.mixed]\nshell = '''\n\
         echo out-1; echo err-1 >&2; printf 'bin\\001\\377end\\n'; echo after-binary\n\
         head -c 200000 /dev/zero | tr '\\0' x; echo; echo after-long\n\
         printf partial-tail'''\n\n{}",
        restart("mixed", "never", ("100ms", "1s"), (10, "1m"), "10s")
    ));
    h.up();
    h.wait_comp("mixed", S(10), "stopped after its run", |c| {
        c["state"] == "stopped" && !c["last_exit"].is_null()
    });
    let sd = h.state_dir();
    let recs = wait_until(S(5), "the partial last line", || {
        let r = log_records(&sd, "mixed.log");
        r.iter().any(|(_, t)| t == "partial-tail").then_some(r)
    });
    let stdout: Vec<&str> =
        recs.iter().filter(|(s, _)| s == "stdout").map(|(_, t)| t.as_str()).collect();
    let stderr: Vec<&str> =
        recs.iter().filter(|(s, _)| s == "stderr").map(|(_, t)| t.as_str()).collect();
    assert_eq!(stderr, ["err-1"], "stderr is captured with its stream");
    assert_eq!(stdout.first(), Some(&"out-1"), "{:?}", &stdout[..stdout.len().min(4)]);
    let bin = stdout.get(1).copied().unwrap_or_default();
    assert!(
        bin.starts_with("bin") && bin.ends_with("end"),
        "a binary line stays one record: {bin:?}"
    );
    assert_eq!(stdout.get(2), Some(&"after-binary"));
    let xs: usize = stdout.iter().filter(|t| t.starts_with('x')).map(|t| t.len()).sum();
    assert_eq!(xs, 200000, "a 200 kB line arrives whole, possibly in pieces");
    assert!(stdout.iter().filter(|t| t.starts_with('x')).all(|t| t.chars().all(|c| c == 'x')));
    let n = stdout.len();
    assert_eq!(
        &stdout[n - 2..],
        ["after-long", "partial-tail"],
        "{:?}",
        &stdout[n.saturating_sub(4)..]
    );
    let out = h.ok(&["logs", "-t", "mixed"]);
    assert!(out.stdout.lines().any(|l| l.ends_with("stderr err-1")), "{out}");
}

#[test]
fn log_rotation_loses_no_line() {
    let mut h = Hale::new();
    h.write_config(
        "[hale]\nlog_max_size = \"64KiB\"\nlog_keep = 3\n\n\
         [components.rot]\nshell = \"seq -f 'line %06.0f ..................................................' 1 1500; exec sleep 100\"\n",
    );
    h.up();
    let out = wait_until(S(10), "1500 lines from `hale logs rot`", || {
        let out = h.cli(&["logs", "rot"]);
        (out.code == Some(0) && out.stdout.lines().count() >= 1500).then_some(out)
    });
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1500);
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("line {:06} ", i + 1)), "line {} is {l:?}", i + 1);
    }
    let logs = h.state_dir().join("logs");
    let mut files: Vec<String> = fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["rot.log", "rot.log.1", "rot.log.2"], "rotated files");
    for f in &files {
        let size = fs::metadata(logs.join(f)).unwrap().len();
        assert!(size <= 64 * 1024, "{f} is {size} bytes, over log_max_size");
    }
    let out = h.ok(&["logs", "rot", "-n", "1"]);
    assert!(out.stdout.starts_with("line 001500 "), "{out}");
}

// ------------------------------------------------------------------------ state and access

#[test]
fn events_persist_across_a_daemon_restart() {
    let mut h = Hale::new();
    h.write_config("[components.svc]\ncommand = [\"sleep\", \"100\"]\n");
    h.up();
    h.wait_state("svc", "running", S(10));
    h.ok(&["down"]);
    assert_eq!(h.wait_daemon_exit(0, S(5)).code(), Some(0));
    let before = h.events();
    assert!(before.iter().any(|e| e["to"] == "running"), "{before:?}");
    assert!(before.iter().any(|e| e["to"] == "stopped"), "down is recorded: {before:?}");
    h.up();
    h.wait_state("svc", "running", S(10));
    let after = wait_until(S(5), "the new daemon's events", || {
        let e = h.events();
        (e.len() > before.len() + 1).then_some(e)
    });
    assert_eq!(&after[..before.len()], &before[..], "old events are kept, in order, first");
    let starts = after.iter().filter(|e| e["from"] == "stopped" && e["to"] == "starting").count();
    assert_eq!(starts, 2, "one start per daemon: {after:?}");
}

#[test]
fn the_control_socket_has_mode_0600() {
    let mut h = Hale::new();
    h.write_config("[components.svc]\ncommand = [\"sleep\", \"100\"]\n");
    h.up();
    let mode = fs::metadata(h.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {:o}", mode & 0o777);
}

/// The argv prefix that runs a command as `nobody`, or why it cannot.
fn as_nobody() -> Result<Vec<&'static str>, &'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Err("switching to nobody needs root");
    }
    if which("setpriv") {
        Ok(vec!["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"])
    } else if which("runuser") {
        Ok(vec!["runuser", "-u", "nobody", "--"])
    } else {
        Err("neither setpriv nor runuser exists")
    }
}

/// Run `hale ARGS` as nobody, from /.
fn hale_as_nobody(prefix: &[&str], args: &[&str]) -> common::Out {
    let mut cmd = std::process::Command::new(prefix[0]);
    cmd.args(&prefix[1..])
        .arg(common::hale_bin())
        .args(args)
        .current_dir("/")
        .env_remove("HALE_SOCKET");
    run_bounded(cmd, S(10)).expect("a client run as nobody hung")
}

/// A daemon whose socket nobody can reach (directories 0755), the socket mode as given.
fn daemon_nobody_can_reach(socket_mode: u32) -> Hale {
    let mut h = Hale::new();
    h.write_config("[components.svc]\ncommand = [\"sleep\", \"100\"]\n");
    h.up();
    for d in [h.root.clone(), h.state_dir()] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(h.socket(), fs::Permissions::from_mode(socket_mode)).unwrap();
    h
}

#[test]
fn a_client_of_another_uid_is_refused() {
    let prefix = match as_nobody() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    // Sanity: nobody can run the binary at all, so a refusal below is about the socket.
    let out = hale_as_nobody(&prefix, &["--version"]);
    assert_eq!(out.code, Some(0), "nobody cannot run hale at all:\n{out}");
    let h = daemon_nobody_can_reach(0o600);
    let sock = h.socket().display().to_string();
    let refused = |what: &str| {
        let out = hale_as_nobody(&prefix, &["status", "--json", "--socket", &sock]);
        // Refused: an error exit, or (see a_refused_client_says_why) death by SIGPIPE.
        assert_ne!(out.code, Some(0), "{what}: another uid must be refused:\n{out}");
        assert!(!out.stdout.contains("\"components\""), "{what}: it got an answer:\n{out}");
    };
    // The socket's mode 0600 refuses the connection.
    refused("socket mode 0600");
    // With the mode opened up, the daemon's own credential check refuses the peer.
    fs::set_permissions(h.socket(), fs::Permissions::from_mode(0o666)).unwrap();
    refused("peer credentials");
    let out = hale_as_nobody(&prefix, &["stop", "svc", "--socket", &sock]);
    assert_ne!(out.code, Some(0), "{out}");
    // The daemon keeps working for its own user, and nobody's stop did nothing.
    assert_eq!(h.comp("svc")["state"], "running");
    h.ok(&["stop", "svc"]);
    h.wait_state("svc", "stopped", S(5));
}

#[test]
fn a_refused_client_says_why() {
    let prefix = match as_nobody() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    for mode in [0o600, 0o666] {
        let h = daemon_nobody_can_reach(mode);
        let sock = h.socket().display().to_string();
        for _ in 0..3 {
            let out = hale_as_nobody(&prefix, &["status", "--socket", &sock]);
            assert_eq!(out.code, Some(1), "mode {mode:o}: an error exit with a message:\n{out}");
            assert!(!out.stderr.contains("no hale daemon is running"), "a daemon runs:\n{out}");
            assert!(!out.stderr.contains("start one"), "starting another would not help:\n{out}");
            let err = out.stderr.to_lowercase();
            assert!(err.contains("permission") || err.contains("refused"), "{out}");
        }
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

// ------------------------------------------------------------------------ more rules

#[test]
fn an_operator_stop_during_backoff_cancels_the_restart() {
    let mut h = Hale::new();
    h.write_config(&format!(
        "[components.crashy]\ncommand = {}\n\n{}",
        h.child_cmd("crashy.log", "0", 1, ""),
        restart("crashy", "always", ("1s", "1s"), (10, "1m"), "10s")
    ));
    h.up();
    let c = h.wait_state("crashy", "restarting", S(10));
    assert!(c["next_restart_in_ms"].as_u64().is_some_and(|ms| ms <= 1000), "{c}");
    h.ok(&["stop", "crashy"]);
    let c = h.wait_state("crashy", "stopped", S(5));
    assert!(c["next_restart_in_ms"].is_null(), "{c}");
    let log = h.path("crashy.log");
    common::hold_for(Duration::from_millis(1500), "a stopped component staying stopped", || {
        let n = recs_of(&log, "start").len();
        let state = h.comp("crashy")["state"].clone();
        if n == 1 && state == "stopped" { Ok(()) } else { Err(format!("{n} starts, {state}")) }
    });
}

#[test]
fn stop_signal_is_the_one_sent_on_stop() {
    let mut h = Hale::new();
    let log = h.path("sig.log");
    h.write_config(&format!(
        "[components.intonly]\nshell = \"trap 'echo int 0 $$ >> {l}; exit 0' INT; trap 'echo term 0 $$ >> {l}; exit 0' TERM; \
         while :; do sleep 0.05; done\"\nstop_signal = \"SIGINT\"\nstop_timeout = \"5s\"\n",
        l = log.display()
    ));
    h.up();
    h.wait_comp("intonly", S(10), "running", |c| !c["pid"].is_null());
    let out = h.ok(&["stop", "intonly"]);
    h.wait_state("intonly", "stopped", S(5));
    let got: Vec<String> = common::recs(&log).into_iter().map(|r| r.ev).collect();
    assert_eq!(got.first().map(String::as_str), Some("int"), "SIGINT expected, got {got:?}");
    assert!(out.elapsed < S(3), "the child exits on SIGINT at once:\n{out}");
}

#[test]
fn a_command_that_cannot_start_ends_in_failed_with_its_error() {
    let mut h = Hale::new();
    h.write_config(&format!(
        "[components.ghost]\ncommand = [\"{}\"]\n\n{}",
        h.path("no-such-program").display(),
        restart("ghost", "always", ("50ms", "100ms"), (2, "1m"), "10s")
    ));
    h.up();
    let c = h.wait_state("ghost", "failed", S(10));
    let err = c["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("no-such-program"), "the error should name the program: {c}");
    assert_eq!(c["restart_count"], 2, "{c}");
}

#[test]
fn a_dependent_on_completed_successfully_starts_after_the_job_exits_0() {
    let mut h = Hale::new();
    let done = h.path("migrated");
    h.write_config(&format!(
        "[components.migrate]\nshell = \"sleep 0.3; touch {}; exit 0\"\n\n{}\n\
         [components.app]\ncommand = {}\ndepends_on = {{ migrate = \"completed_successfully\" }}\n",
        done.display(),
        restart("migrate", "on-failure", ("100ms", "1s"), (10, "1m"), "10s"),
        h.child_cmd("app.log", "100", 0, "")
    ));
    h.up();
    let app = h.wait_comp("app", S(10), "running", |c| c["state"] == "running");
    assert!(done.exists(), "app started before migrate completed");
    let start = recs_of(&h.path("app.log"), "start")[0].t;
    let migrated = fs::metadata(&done).unwrap().modified().unwrap();
    let migrated = migrated.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(
        start >= migrated - 0.01,
        "app started {:.3}s before migrate finished",
        migrated - start
    );
    assert!(app["waiting_for"].is_null(), "{app}");
    let m = h.comp("migrate");
    assert_eq!(m["state"], "stopped", "{m}");
    assert_eq!(m["last_exit"], serde_json::json!({"code": 0, "signal": null}), "{m}");
}

#[test]
fn a_dependent_of_a_failed_component_says_so_and_never_starts() {
    let mut h = Hale::new();
    h.write_config(&format!(
        "[components.db]\nshell = \"sleep 0.3; exit 1\"\n\n\
         [components.db.readiness]\nsh = \"false\"\nperiod = \"100ms\"\n\n{}\n\
         [components.api]\ncommand = {}\ndepends_on = {{ db = \"healthy\" }}\n",
        restart("db", "never", ("100ms", "1s"), (10, "1m"), "10s"),
        h.child_cmd("api.log", "100", 0, "")
    ));
    h.up();
    h.wait_state("db", "failed", S(10));
    let api = h.wait_comp("api", S(5), "waiting on a failed db", |c| {
        c["waiting_for"].as_str().is_some_and(|w| w.contains("failed"))
    });
    assert!(api["pid"].is_null(), "{api}");
    assert!(api["waiting_for"].as_str().unwrap().contains("hale reset"), "{api}");
    assert!(recs_of(&h.path("api.log"), "start").is_empty());
}

#[test]
fn foreground_output_is_prefixed_by_the_component_name() {
    let mut h = Hale::new();
    h.write_config(
        "[components.talker]\nshell = \"echo hello-out; echo hello-err >&2; exec sleep 100\"\n",
    );
    h.up();
    let out = wait_until(S(10), "the daemon to print the child's output", || {
        let out = h.daemon_output(0);
        (out.contains("hello-out") && out.contains("hello-err")).then_some(out)
    });
    assert!(out.lines().any(|l| l == "talker | hello-out"), "{out}");
    assert!(out.lines().any(|l| l == "talker | hello-err"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("talker") && l.contains("starting") && l.contains("running")),
        "state changes are printed as they happen:\n{out}"
    );
}

#[test]
fn a_second_up_on_the_same_state_dir_refuses_and_leaves_the_first_alone() {
    let mut h = Hale::new();
    h.write_config("[components.svc]\ncommand = [\"sleep\", \"100\"]\n");
    h.up();
    let pid = h.wait_comp("svc", S(10), "running", |c| !c["pid"].is_null())["pid"].clone();
    let i = h.spawn_up(&[]);
    let status = h.wait_daemon_exit(i, S(10));
    let output = h.daemon_output(i);
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("already running"), "{output}");
    assert!(h.daemon_exited(0).is_none(), "the first daemon must keep running");
    let c = h.comp("svc");
    assert_eq!(c["pid"], pid, "the first daemon's child must be left alone: {c}");
}

#[test]
fn up_detached_refuses_when_a_daemon_already_runs() {
    let h = Hale::new();
    h.write_config("[components.svc]\ncommand = [\"sleep\", \"100\"]\n");
    let out = h.cli_tagged(&["up", "-d"], S(20));
    assert_eq!(out.code, Some(0), "{out}");
    let pid = h.comp("svc")["pid"].clone();
    let out = h.cli_tagged(&["up", "-d"], S(20));
    assert_ne!(
        out.code,
        Some(0),
        "a second `up -d` must not claim to have started a daemon:\n{out}"
    );
    assert!(out.text().contains("already running"), "{out}");
    assert_eq!(h.comp("svc")["pid"], pid);
}

#[test]
fn env_file_variables_reach_the_child() {
    let mut h = Hale::new();
    fs::write(h.path("app.env"), "FROM_FILE=file-value\n# a comment\nBOTH=from-file\n").unwrap();
    h.write_config(
        "[components.envy]\nshell = \"echo FROM_FILE=$FROM_FILE BOTH=$BOTH; exec sleep 100\"\n\
         env_file = \"app.env\"\nenv = { BOTH = \"from-env\" }\n",
    );
    h.up();
    let out = wait_until(S(10), "envy's output", || {
        let out = h.cli(&["logs", "envy"]);
        out.stdout.contains("FROM_FILE=").then_some(out)
    });
    assert!(out.stdout.contains("FROM_FILE=file-value"), "{out}");
}

#[test]
fn env_and_cwd_reach_the_child() {
    let mut h = Hale::new();
    fs::create_dir(h.path("work")).unwrap();
    h.write_config(
        "[components.envy]\nshell = \"echo GREETING=$GREETING PWD=$(pwd); exec sleep 100\"\n\
         cwd = \"work\"\nenv = { GREETING = \"hi there\" }\n",
    );
    h.up();
    let out = wait_until(S(10), "envy's output", || {
        let out = h.cli(&["logs", "envy"]);
        out.stdout.contains("GREETING=").then_some(out)
    });
    let want = format!("GREETING=hi there PWD={}", h.path("work").display());
    assert_eq!(out.stdout.trim(), want, "{out}");
}

/// Spawn `hale ARGS -c hale.toml` in the background with stdout to `out`.
fn spawn_client(h: &Hale, args: &[&str], out: &Path) -> std::process::Child {
    let f = fs::File::create(out).unwrap();
    let mut cmd = hale_cmd(&h.root);
    cmd.args(args).arg("-c").arg(&h.config).stdout(f).stderr(std::process::Stdio::null());
    cmd.spawn().unwrap()
}

/// Wait until process `pid` has `file` open.
fn wait_open(pid: u32, file: &Path) {
    wait_until(S(10), &format!("pid {pid} to open {}", file.display()), || {
        let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l == file)).then_some(())
    });
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn logs_follow_prints_new_lines_as_they_come() {
    let mut h = Hale::new();
    let go = h.path("go");
    h.write_config(&format!(
        "[components.ticker]\nshell = \"while [ ! -f {} ]; do sleep 0.02; done; \
         for i in 1 2 3 4 5; do echo tick $i; sleep 0.1; done; exec sleep 100\"\n",
        go.display()
    ));
    h.up();
    let out = h.path("follow.out");
    let follower = KillOnDrop(spawn_client(&h, &["logs", "-f", "ticker"], &out));
    wait_open(follower.0.id(), &h.state_dir().join("logs/ticker.log"));
    fs::write(&go, "").unwrap();
    let text = wait_until(S(10), "five ticks from `hale logs -f`", || {
        let t = fs::read_to_string(&out).ok()?;
        (t.lines().count() >= 5).then_some(t)
    });
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, ["tick 1", "tick 2", "tick 3", "tick 4", "tick 5"]);
}

#[test]
fn logs_follow_loses_no_line_across_rotation() {
    let mut h = Hale::new();
    let go = h.path("go");
    h.write_config(&format!(
        "[hale]\nlog_max_size = \"64KiB\"\nlog_keep = 5\n\n\
         [components.rot]\nshell = \"while [ ! -f {} ]; do sleep 0.02; done; for b in 1 2 3 4 5; do \
         seq -f \\\"line $b %04.0f ..................................................\\\" 1 300; \
         sleep 0.05; done; exec sleep 100\"\n",
        go.display()
    ));
    h.up();
    let out = h.path("follow.out");
    let follower = KillOnDrop(spawn_client(&h, &["logs", "-f", "rot"], &out));
    wait_open(follower.0.id(), &h.state_dir().join("logs/rot.log"));
    fs::write(&go, "").unwrap();
    wait_until(S(10), "1500 lines in the log files", || {
        (h.cli(&["logs", "rot"]).stdout.lines().count() >= 1500).then_some(())
    });
    let count = || fs::read_to_string(&out).unwrap_or_default().lines().count();
    let got = wait_until(S(3), "`hale logs -f` to print 1500 lines", || {
        let n = count();
        (n >= 1500).then_some(n)
    });
    assert_eq!(got, 1500);
}

#[test]
fn an_external_component_is_driven_by_its_actions() {
    let mut h = Hale::new();
    let log = h.path("ext.log");
    let alive_flag = h.path("alive");
    let act = |what: &str, then: &str| {
        format!("[\"/bin/sh\", \"-c\", \"echo {what} 0 $$ >> {}; {then}\"]", log.display())
    };
    h.write_config(&format!(
        "[components.ext]\nstart = {}\nstop = {}\n\n\
         [components.ext.liveness]\nsh = \"test -f {f}\"\nperiod = \"100ms\"\nfailure_threshold = 2\n\n\
         [components.ext.restart]\ninitial_backoff = \"100ms\"\naction = {}\n\n\
         [components.proc]\ncommand = [\"sleep\", \"100\"]\n",
        act("start", &format!("touch {}", alive_flag.display())),
        act("stop", &format!("rm -f {}", alive_flag.display())),
        act("restart", &format!("touch {}", alive_flag.display())),
        f = alive_flag.display()
    ));
    h.up();
    let c = h.wait_state("ext", "running", S(10));
    assert_eq!(c["kind"], "external", "{c}");
    assert!(c["pid"].is_null(), "an external component has no pid: {c}");
    let evs = || -> Vec<String> { common::recs(&log).into_iter().map(|r| r.ev).collect() };
    assert_eq!(evs(), ["start"]);
    // A failing liveness probe condemns it: stop action, then the restart action.
    fs::remove_file(&alive_flag).unwrap();
    let c = h.wait_comp("ext", S(10), "restarted", |c| {
        c["restart_count"] == 1 && c["state"] == "running"
    });
    assert!(c["last_error"].as_str().unwrap_or("").contains("liveness"), "{c}");
    assert_eq!(evs(), ["start", "stop", "restart"]);
    // Operator stop runs the stop action; `hale logs` (all) skips what has no output.
    h.ok(&["stop", "ext"]);
    h.wait_state("ext", "stopped", S(5));
    assert_eq!(evs(), ["start", "stop", "restart", "stop"]);
    h.ok(&["start", "ext"]);
    h.wait_state("ext", "running", S(5));
    h.ok(&["down"]);
    assert_eq!(
        evs(),
        ["start", "stop", "restart", "stop", "start", "stop"],
        "down runs the stop action"
    );
}

#[test]
fn a_crashed_instance_leaves_no_grandchild_behind() {
    let mut h = Hale::new();
    let pids = h.path("gc.pids");
    h.write_config(&format!(
        "[components.leaky]\nshell = \"sleep 100 & echo $! >> {}; sleep 0.2; exit 1\"\n\n{}",
        pids.display(),
        restart("leaky", "always", ("100ms", "100ms"), (3, "1m"), "10s")
    ));
    h.up();
    h.wait_state("leaky", "failed", S(10));
    let gcs: Vec<u32> =
        fs::read_to_string(&pids).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(gcs.len(), 4, "one grandchild per instance");
    for gc in gcs {
        h.track(gc, "leaky's grandchild");
        wait_gone(gc, S(2), "the grandchild of an instance that exited");
    }
}

#[test]
fn a_stop_ends_a_grandchild_that_ignores_sigterm_after_its_parent_exits() {
    let mut h = Hale::new();
    let gc_file = h.path("gc.pid");
    h.write_config(&format!(
        "[components.parent]\nshell = \"(trap '' TERM; exec sleep 100) & echo $! > {}; wait\"\nstop_timeout = \"1s\"\n",
        gc_file.display()
    ));
    h.up();
    h.wait_comp("parent", S(10), "running", |c| !c["pid"].is_null());
    let gc: u32 = wait_until(S(5), "the grandchild's pid", || {
        fs::read_to_string(&gc_file).ok()?.trim().parse().ok()
    });
    h.track(gc, "parent's grandchild");
    h.ok(&["stop", "parent"]);
    h.wait_state("parent", "stopped", S(5));
    wait_gone(gc, S(3), "the SIGTERM-ignoring grandchild");
}

#[test]
fn events_follow_prints_new_transitions() {
    let mut h = Hale::new();
    h.write_config("[components.svc]\ncommand = [\"sleep\", \"100\"]\n");
    h.up();
    h.wait_state("svc", "running", S(10));
    let out = h.path("events.out");
    let follower = KillOnDrop(spawn_client(&h, &["events", "-f", "--json"], &out));
    let text = wait_until(S(10), "the past events", || {
        let t = fs::read_to_string(&out).ok()?;
        t.contains("\"running\"").then_some(t)
    });
    let before = text.lines().count();
    wait_open(follower.0.id(), &h.state_dir().join("events.jsonl"));
    h.ok(&["stop", "svc"]);
    let text = wait_until(S(10), "the stop to be followed", || {
        let t = fs::read_to_string(&out).ok()?;
        (t.lines().count() > before).then_some(t)
    });
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["component"], "svc");
    assert_eq!(last["to"], "stopped", "{last}");
}

#[test]
fn sigterm_during_startup_is_still_a_graceful_shutdown() {
    let mut h = Hale::new();
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&format!("[components.c{i}]\nshell = \"sleep 100 & wait\"\n\n"));
    }
    h.write_config(&text);
    let i = h.spawn_up(&[]);
    let d = h.daemon_pid(i);
    // As soon as the first child runs, the daemon is supervising: a SIGTERM must stop it cleanly.
    wait_until(S(10), "the first child", || h.tagged_alive().iter().any(|&p| p != d).then_some(()));
    signal(d, Signal::SIGTERM);
    let status = h.wait_daemon_exit(i, S(10));
    assert_eq!(status.code(), Some(0), "SIGTERM while starting up: {status}");
    wait_until(S(3), "every process of the daemon to be gone", || {
        h.tagged_alive().is_empty().then_some(())
    });
}

#[test]
fn a_component_being_stopped_is_not_healthy() {
    let mut h = Hale::new();
    h.write_config(&format!(
        "[components.stub]\ncommand = {}\nstop_timeout = \"3s\"\n",
        h.child_cmd("stub.log", "100", 0, "ignore-term")
    ));
    h.up();
    h.wait_comp("stub", S(10), "healthy", |c| c["healthy"] == true);
    h.ok(&["stop", "stub"]);
    let c = h.wait_comp("stub", S(5), "stopping", |c| c["stopping"] == true || c["pid"].is_null());
    assert_eq!(c["ready"], false, "{c}");
    assert_eq!(c["healthy"], false, "a component being stopped must not be healthy: {c}");
    let out = h.cli(&["wait", "stub", "--for", "healthy", "--timeout", "500ms"]);
    assert_eq!(out.code, Some(1), "{out}");
}

#[test]
#[ignore = "design question: `hale start --all` starts dependents at once, ignoring depends_on"]
fn start_all_honours_depends_on() {
    let mut h = Hale::new();
    let flag = h.path("db.ready");
    h.write_config(&format!(
        "[components.db]\ncommand = [\"sleep\", \"100\"]\n\n\
         [components.db.readiness]\nsh = \"test -f {}\"\nperiod = \"100ms\"\nfailure_threshold = 1\n\n\
         [components.api]\ncommand = [\"sleep\", \"100\"]\ndepends_on = {{ db = \"healthy\" }}\n",
        flag.display()
    ));
    h.up();
    fs::write(&flag, "").unwrap();
    h.wait_state("api", "running", S(10));
    h.ok(&["stop", "--all"]);
    for n in ["db", "api"] {
        h.wait_state(n, "stopped", S(5));
    }
    fs::remove_file(&flag).unwrap();
    h.ok(&["start", "--all"]);
    common::hold_for(Duration::from_millis(500), "api waiting for db", || {
        let api = h.comp("api");
        if api["pid"].is_null() {
            Ok(())
        } else {
            Err(format!("api started before db is healthy: {api}"))
        }
    });
}

#[test]
fn logs_of_every_component_skips_those_without_output() {
    let mut h = Hale::new();
    h.write_config(
        "[components.ext]\nstart = [\"true\"]\n\n\
         [components.talk]\nshell = \"echo said-it; exec sleep 100\"\n",
    );
    h.up();
    wait_until(S(10), "talk's output", || {
        h.cli(&["logs", "talk"]).stdout.contains("said-it").then_some(())
    });
    let out = h.cli(&["logs"]);
    assert_eq!(out.code, Some(0), "an external component has no output to miss:\n{out}");
    assert!(out.stdout.contains("said-it"), "{out}");
}

#[test]
fn up_that_cannot_bind_its_socket_starts_nothing() {
    let mut h = Hale::new();
    let rec = h.path("started.rec");
    // The socket path is longer than sun_path's 108 bytes.
    h.write_config(&format!(
        "[hale]\nstate_dir = \"{}\"\n\n[components.a]\nshell = \"echo start 0 $$ >> {}; sleep 100 & wait\"\n",
        "d".repeat(100),
        rec.display()
    ));
    let i = h.spawn_up(&[]);
    let status = h.wait_daemon_exit(i, S(10));
    let output = h.daemon_output(i);
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("hale.sock"), "the error should name the socket:\n{output}");
    wait_until(S(3), "every process of the failed daemon to be gone", || {
        h.tagged_alive().is_empty().then_some(())
    });
    assert!(!rec.exists(), "a component was started by a daemon that could not serve:\n{output}");
}

/// A notify child: READY=1 and a STATUS= once `go` exists, then WATCHDOG=1 every 100 ms until
/// `hang` exists.
const NOTIFY_PY: &str = r#"
import os, socket, sys, time
go, hang = sys.argv[1], sys.argv[2]
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
while not os.path.exists(go):
    time.sleep(0.02)
s.sendto(b"READY=1\nSTATUS=serving 42 requests", addr)
while True:
    if not os.path.exists(hang):
        s.sendto(b"WATCHDOG=1", addr)
    time.sleep(0.1)
"#;

#[test]
fn notify_readiness_status_and_watchdog_through_the_daemon() {
    if !which("python3") {
        eprintln!("skipped: no python3");
        return;
    }
    let mut h = Hale::new();
    fs::write(h.path("notify.py"), NOTIFY_PY).unwrap();
    let (go, hang) = (h.path("go"), h.path("hang"));
    h.write_config(&format!(
        "[components.n]\ncommand = [\"python3\", \"notify.py\", \"{}\", \"{}\"]\n\
         ready = \"notify\"\nwatchdog = \"600ms\"\nstart_timeout = \"20s\"\n\n{}",
        go.display(),
        hang.display(),
        restart("n", "always", ("100ms", "100ms"), (10, "1m"), "10s")
    ));
    h.up();
    let c = h.wait_comp("n", S(10), "starting with a pid", |c| !c["pid"].is_null());
    let pid = c["pid"].clone();
    common::hold_for(Duration::from_millis(500), "starting until READY=1", || {
        let c = h.comp("n");
        if c["state"] == "starting" && c["ready"] == false { Ok(()) } else { Err(c.to_string()) }
    });
    fs::write(&go, "").unwrap();
    let c = h.wait_comp("n", S(5), "running", |c| c["state"] == "running" && c["ready"] == true);
    assert_eq!(c["pid"], pid, "{c}");
    let c = h.wait_comp("n", S(5), "showing its STATUS=", |c| !c["status_text"].is_null());
    assert_eq!(c["status_text"], "serving 42 requests", "{c}");
    // Pings keep it running well past the watchdog period.
    common::hold_for(Duration::from_millis(900), "a pinging child staying up", || {
        let c = h.comp("n");
        if c["pid"] == pid && c["restart_count"] == 0 { Ok(()) } else { Err(c.to_string()) }
    });
    fs::write(&hang, "").unwrap();
    let c = h.wait_comp("n", S(5), "restarted by the watchdog", |c| c["restart_count"] == 1);
    assert!(c["last_error"].as_str().unwrap_or("").to_lowercase().contains("watchdog"), "{c}");
    let events = h.events();
    assert!(
        events.iter().any(|e| e["to"] == "unhealthy"
            && e["reason"].as_str().unwrap_or("").to_lowercase().contains("watchdog")),
        "{events:?}"
    );
}

#[test]
fn a_detached_daemon_keeps_component_output_within_the_log_limits() {
    let h = Hale::new();
    h.write_config(
        "[hale]\nlog_max_size = \"64KiB\"\nlog_keep = 1\n\n\
         [components.chatty]\nshell = \"seq -f 'line %06.0f ..................................................' 1 20000; exec sleep 100\"\n",
    );
    let out = h.cli_tagged(&["up", "-d"], S(20));
    assert_eq!(out.code, Some(0), "{out}");
    wait_until(S(10), "the last line", || {
        h.cli(&["logs", "chatty", "-n", "1"]).stdout.contains("line 020000").then_some(())
    });
    let mut total = 0;
    let mut sizes = Vec::new();
    for dir in [h.state_dir(), h.state_dir().join("logs")] {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let md = e.metadata().unwrap();
            if md.is_file() {
                total += md.len();
                sizes.push(format!("{}: {}", e.file_name().to_string_lossy(), md.len()));
            }
        }
    }
    // 2 MB of output; the log files may hold (log_keep + 1) * 64 KiB, plus a little bookkeeping.
    assert!(total <= 2 * 64 * 1024 + 16 * 1024, "{total} bytes in the state directory: {sizes:?}");
}
