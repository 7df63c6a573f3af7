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

// ------------------------------------------------------------------------------ HTTP helpers

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request over a fresh connection: (status, headers+body text).
fn http(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connecting to hale");
    s.set_read_timeout(Some(S(10))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("reading the answer");
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

fn body(text: &str) -> &str {
    text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn json_body(text: &str) -> Value {
    serde_json::from_str(body(text)).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Wait until the daemon answers HTTP on `port`.
fn wait_http(port: u16) {
    wait_until(S(10), "the HTTP API to answer", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    });
}

// ------------------------------------------------------------------------------------ HTTP API

#[test]
fn the_http_api_serves_the_socket_json_and_404s_unknown_names() {
    let mut h = Hale::new();
    let port = free_port();
    h.write_config(&format!("[hale]\nhttp = \"127.0.0.1:{port}\"\n\n{}", sleeper("svc", 1000)));
    h.up();
    wait_http(port);
    h.wait_state("svc", "running", S(10));
    let (code, text) = http(port, "GET", "/v1/status", None);
    assert_eq!(code, 200, "{text}");
    let over_http = json_body(&text);
    let socket = h.status();
    assert_eq!(over_http["components"][0]["name"], "svc");
    assert_eq!(over_http["components"][0]["pid"], socket["components"][0]["pid"]);
    let (code, text) = http(port, "GET", "/v1/components/svc", None);
    assert_eq!((code, json_body(&text)["state"].as_str()), (200, Some("running")), "{text}");
    let (code, text) = http(port, "GET", "/v1/components/nope", None);
    assert_eq!(code, 404, "{text}");
    assert!(json_body(&text)["error"].as_str().unwrap().contains("nope"), "{text}");
    let (code, _) = http(port, "GET", "/livez", None);
    assert_eq!(code, 200);
    let (code, text) = http(port, "GET", "/readyz", None);
    assert_eq!(code, 200, "{text}");

    let (code, text) = http(port, "POST", "/v1/components/svc/stop", None);
    assert_eq!(code, 200, "{text}");
    h.wait_state("svc", "stopped", S(10));
    let (code, text) = http(port, "POST", "/v1/components/svc/start", None);
    assert_eq!(code, 200, "{text}");
    h.wait_state("svc", "running", S(10));
}

#[test]
fn readyz_is_503_with_the_reason_while_a_component_is_not_healthy() {
    let mut h = Hale::new();
    let port = free_port();
    h.write_config(&format!(
        "[hale]\nhttp = \"127.0.0.1:{port}\"\n\n{}\n[components.svc.readiness]\n\
         exec = [\"test\", \"-e\", \"ready.flag\"]\nperiod = \"100ms\"\n",
        sleeper("svc", 1000)
    ));
    h.up();
    wait_http(port);
    let (code, text) = http(port, "GET", "/readyz", None);
    assert_eq!(code, 503, "{text}");
    assert!(body(&text).contains("svc"), "names the component: {text}");
    std::fs::write(h.path("ready.flag"), "").unwrap();
    wait_until(S(10), "readyz to turn 200", || {
        (http(port, "GET", "/readyz", None).0 == 200).then_some(())
    });
}

#[test]
fn a_non_loopback_address_without_a_token_refuses_to_start() {
    let h = Hale::new();
    let port = free_port();
    h.write_config(&format!(
        "[hale]\nhttp = \"0.0.0.0:{port}\"\n\n[components.svc]\nshell = \"touch started; sleep 1000\"\n"
    ));
    let out = h.cli(&["up"]);
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("http_token") && out.stderr.contains("HALE_HTTP_TOKEN"), "{out}");
    assert!(!h.path("started").exists(), "nothing was started");
}

#[test]
fn with_a_token_every_endpoint_but_the_health_checks_needs_it() {
    let mut h = Hale::new();
    let port = free_port();
    h.write_config(&format!(
        "[hale]\nhttp = \"0.0.0.0:{port}\"\nhttp_token = \"s3cret\"\n\n{}",
        sleeper("svc", 1000)
    ));
    h.up();
    wait_http(port);
    for (method, path) in [
        ("GET", "/v1/status"),
        ("GET", "/v1/components/svc"),
        ("POST", "/v1/components/svc/restart"),
        ("GET", "/metrics"),
        ("GET", "/v1/events"),
        ("POST", "/v1/reload"),
        ("POST", "/v1/down"),
    ] {
        let (code, text) = http(port, method, path, None);
        assert_eq!(code, 401, "{method} {path} without a token: {text}");
        assert!(text.contains("www-authenticate: Bearer"), "{text}");
        let (code, _) = http(port, method, path, Some("wrong"));
        assert_eq!(code, 401, "{method} {path} with a wrong token");
    }
    assert_eq!(h.comp("svc")["incarnation"], 1, "the refused restart did nothing");
    assert_eq!(http(port, "GET", "/livez", None).0, 200);
    let (code, text) = http(port, "GET", "/v1/status", Some("s3cret"));
    assert_eq!(code, 200, "{text}");
    let (code, text) = http(port, "GET", "/v1/components/nope", Some("s3cret"));
    assert_eq!(code, 404, "{text}");
}

// ------------------------------------------------------------------------------------ metrics

/// Python's prometheus_client parser, on whichever interpreter has it.
fn python_with_prometheus() -> Option<String> {
    ["python3", "/usr/bin/python3"].into_iter().map(str::to_owned).find(|py| {
        std::process::Command::new(py)
            .args(["-c", "import prometheus_client.openmetrics.parser"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn metrics_parse_with_a_real_openmetrics_parser_and_carry_the_contract_names() {
    let Some(python) = python_with_prometheus() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install prometheus_client (pip install prometheus-client)"
        );
        eprintln!("skipped: no python3 with prometheus_client here");
        return;
    };
    let mut h = Hale::new();
    let port = free_port();
    h.write_config(&format!(
        "[hale]\nhttp = \"127.0.0.1:{port}\"\n\n{}\n[components.svc.liveness]\nexec = [\"true\"]\n\
         period = \"100ms\"\n\n[components.crashy]\nshell = \"sleep 0.1; exit 1\"\n\
         [components.crashy.restart]\ninitial_backoff = \"0s\"\nmin_uptime = \"1h\"\nmax_restarts = 1000\n",
        sleeper("svc", 1000)
    ));
    h.up();
    wait_http(port);
    h.wait_comp("crashy", S(10), "restarted twice", |c| c["restart_count"].as_u64() >= Some(2));
    h.wait_comp("svc", S(10), "checked 3 times", |c| {
        c["probes"]["liveness"]["consecutive_successes"].as_u64() >= Some(3)
    });
    let (code, text) = http(port, "GET", "/metrics", None);
    assert_eq!(code, 200, "{text}");
    let metrics = h.path("metrics.txt");
    std::fs::write(&metrics, body(&text)).unwrap();
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in fam.samples:
        out.setdefault(s.name, []).append([s.labels, s.value])
print(json.dumps(out))
"#;
    let parsed =
        std::process::Command::new(&python).args(["-c", script]).arg(&metrics).output().unwrap();
    assert!(
        parsed.status.success(),
        "the parser refused the text:\n{}\n{}",
        String::from_utf8_lossy(&parsed.stderr),
        body(&text)
    );
    let m: Value = serde_json::from_slice(&parsed.stdout).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        m[name]
            .as_array()
            .unwrap_or_else(|| panic!("no {name} in {m}"))
            .iter()
            .find(|s| labels.iter().all(|(k, v)| s[0][*k] == *v))
            .unwrap_or_else(|| panic!("no {name}{labels:?} in {m}"))[1]
            .as_f64()
            .unwrap()
    };
    assert_eq!(value("hale_component_up", &[("component", "svc")]), 1.0);
    assert_eq!(value("hale_component_ready", &[("component", "svc")]), 1.0);
    assert_eq!(value("hale_component_state", &[("component", "svc"), ("state", "running")]), 1.0);
    assert_eq!(value("hale_component_state", &[("component", "svc"), ("state", "failed")]), 0.0);
    assert!(value("hale_component_restarts_total", &[("component", "crashy")]) >= 2.0);
    assert_eq!(value("hale_component_restarts_total", &[("component", "svc")]), 0.0);
    let runs =
        value("hale_probe_duration_seconds_count", &[("component", "svc"), ("probe", "liveness")]);
    assert!(runs >= 3.0, "{runs}");
    let inf = value("hale_probe_duration_seconds_bucket", &[("component", "svc"), ("le", "+Inf")]);
    assert_eq!(inf, runs, "the +Inf bucket holds every run");
    assert!(value("hale_probe_duration_seconds_sum", &[("component", "svc")]) > 0.0);
    assert_eq!(
        value("hale_probe_failures_total", &[("component", "svc"), ("probe", "liveness")]),
        0.0
    );
}

// ------------------------------------------------------------------------- server-sent events

#[test]
fn the_event_stream_delivers_transitions_in_order() {
    use std::io::{BufRead, BufReader, Write};
    let mut h = Hale::new();
    let port = free_port();
    h.write_config(&format!(
        "[hale]\nhttp = \"127.0.0.1:{port}\"\n\n{}[components.svc.restart]\ninitial_backoff = \"0s\"\n",
        sleeper("svc", 1000)
    ));
    h.up();
    wait_http(port);
    let pid = pid_of(&h.wait_state("svc", "running", S(10))).unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(S(10))).unwrap();
    // HTTP/1.0: the body is the raw stream, without chunk framing.
    write!(s, "GET /v1/events HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut lines = BufReader::new(s).lines();
    let head = lines.next().unwrap().unwrap();
    assert!(head.contains("200"), "{head}");
    // Headers, then the stream: subscribe happened when the response started.
    for line in lines.by_ref() {
        if line.unwrap().is_empty() {
            break;
        }
    }
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let line = lines.next().expect("the stream ended").expect("no event within 10 s");
        if let Some(data) = line.strip_prefix("data: ") {
            let e: Value = serde_json::from_str(data).unwrap();
            assert_eq!(e["component"], "svc");
            got.push((
                e["from"].as_str().unwrap().to_owned(),
                e["to"].as_str().unwrap().to_owned(),
            ));
        } else {
            assert!(
                line.is_empty() || line.starts_with("event: transition") || line.starts_with(':'),
                "{line}"
            );
        }
    }
    let want = [("running", "restarting"), ("restarting", "starting"), ("starting", "running")];
    let want: Vec<(String, String)> =
        want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------- gRPC health

#[test]
fn the_grpc_health_server_follows_each_component_and_hale_as_a_whole() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let mut h = Hale::new();
    let port = free_port();
    h.write_config(&format!(
        "[hale]\ngrpc_health = \"127.0.0.1:{port}\"\n\n{}\n[components.svc.readiness]\n\
         exec = [\"test\", \"-e\", \"ready.flag\"]\nperiod = \"100ms\"\n\n{}",
        sleeper("svc", 1000),
        sleeper("other", 1000)
    ));
    std::fs::write(h.path("ready.flag"), "").unwrap();
    h.up();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let flag = h.path("ready.flag");
    rt.block_on(async {
        let guard = S(10);
        let channel = tokio::time::timeout(guard, async {
            loop {
                if let Ok(ch) =
                    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                        .unwrap()
                        .connect()
                        .await
                {
                    return ch;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the gRPC health server never answered");
        let mut client = HealthClient::new(channel);
        let check = |service: &str| HealthCheckRequest { service: service.to_owned() };
        let mut watch = client.watch(check("svc")).await.unwrap().into_inner();
        let mut overall = client.watch(check("")).await.unwrap().into_inner();
        let next = async |s: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>| {
            tokio::time::timeout(guard, s.message())
                .await
                .expect("no status within 10 s")
                .unwrap()
                .unwrap()
                .status()
        };
        // Both become SERVING once svc is ready; the first message may still be the start.
        let mut st = next(&mut watch).await;
        while st != ServingStatus::Serving {
            st = next(&mut watch).await;
        }
        let mut all = next(&mut overall).await;
        while all != ServingStatus::Serving {
            all = next(&mut overall).await;
        }
        let other = client.check(check("other")).await.unwrap().into_inner().status();
        assert_eq!(other, ServingStatus::Serving);
        let missing = client.check(check("nope")).await.unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);

        std::fs::remove_file(&flag).unwrap();
        assert_eq!(next(&mut watch).await, ServingStatus::NotServing, "svc went unready");
        assert_eq!(next(&mut overall).await, ServingStatus::NotServing, "so hale as a whole");
        let other = client.check(check("other")).await.unwrap().into_inner().status();
        assert_eq!(other, ServingStatus::Serving, "the others are unaffected");
        std::fs::write(&flag, "").unwrap();
        assert_eq!(next(&mut watch).await, ServingStatus::Serving, "and back");
        assert_eq!(next(&mut overall).await, ServingStatus::Serving);
    });
}

// ------------------------------------------------------------------------------------- hooks

#[test]
fn command_hooks_get_the_transition_in_their_environment() {
    let mut h = Hale::new();
    let record = "echo \"$HALE_COMPONENT|$HALE_FROM|$HALE_TO|$HALE_INCARNATION|$HALE_REASON\" >> ";
    h.write_config(&format!(
        "[hale]\non_state_change = [\"/bin/sh\", \"-c\", '{record}global.log']\n\n{}\
         on_state_change = {{ command = [\"/bin/sh\", \"-c\", '{record}own.log'], timeout = \"5s\" }}\n\
         [components.svc.restart]\ninitial_backoff = \"0s\"\n\n{}",
        sleeper("svc", 1000),
        sleeper("quiet", 1000)
    ));
    h.up();
    let pid = pid_of(&h.wait_state("svc", "running", S(10))).unwrap();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    h.wait_comp("svc", S(10), "restarted", |c| c["incarnation"] == 2 && c["state"] == "running");
    let own = wait_until(S(10), "the component's hook to see the restart", || {
        let text = std::fs::read_to_string(h.path("own.log")).unwrap_or_default();
        text.contains("svc|starting|running|2|").then_some(text)
    });
    let line = own
        .lines()
        .find(|l| l.starts_with("svc|running|restarting|1|"))
        .unwrap_or_else(|| panic!("{own}"));
    assert!(line.contains("signal 9"), "HALE_REASON says why: {line}");
    assert!(!own.contains("quiet|"), "a component's own hook sees only its transitions: {own}");
    let global = wait_until(S(10), "the global hook to see both components", || {
        let text = std::fs::read_to_string(h.path("global.log")).unwrap_or_default();
        (text.contains("svc|starting|running|2|") && text.contains("quiet|starting|running|1|"))
            .then_some(text)
    });
    assert!(global.contains("svc|running|restarting|1|"), "{global}");
}

#[test]
fn a_hook_that_hangs_delays_no_restart_and_is_killed_at_its_timeout() {
    let mut h = Hale::new();
    h.write_config(
        "[hale]\non_state_change = { command = [\"/bin/sh\", \"-c\", \"echo $$ >> hung.pids; exec sleep 1000\"], timeout = \"1s\" }\n\n\
         [components.crashy]\nshell = \"sleep 0.05; exit 1\"\n[components.crashy.restart]\n\
         initial_backoff = \"0s\"\nmin_uptime = \"1h\"\nmax_restarts = 100000\n",
    );
    h.up();
    // Each crash is 2-3 transitions, each a hook that hangs: 16 run, the rest queue; restarts
    // go on at the child's own pace (50 ms) regardless.
    let started = std::time::Instant::now();
    h.wait_comp("crashy", S(10), "restarted 15 times", |c| c["restart_count"].as_u64() >= Some(15));
    let took = started.elapsed();
    assert!(took < S(4), "15 restarts of a 50 ms child took {took:?}: hooks held them up");
    // The first hooks are killed once their second is up: their processes are gone.
    let first: Vec<i32> = wait_until(S(10), "hook pids", || {
        let text = std::fs::read_to_string(h.path("hung.pids")).unwrap_or_default();
        let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        (pids.len() >= 16).then_some(pids[..16].to_vec())
    });
    for pid in first {
        wait_until(S(5), "a hung hook to be killed", || {
            (!common::alive(pid as u32, None)).then_some(())
        });
    }
}

#[test]
fn a_webhook_receives_the_event_json_by_post() {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel::<(String, Value)>();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if tx.send((request_line, v)).is_err() {
                return;
            }
        }
    });
    let mut h = Hale::new();
    h.write_config(&format!(
        "{}on_state_change = \"http://127.0.0.1:{port}/hook\"\n",
        sleeper("svc", 1000)
    ));
    h.up();
    let (line, event) = rx.recv_timeout(S(10)).expect("no webhook call within 10 s");
    assert!(line.starts_with("POST /hook HTTP/1.1"), "{line}");
    assert_eq!(event["component"], "svc");
    assert_eq!((event["from"].as_str(), event["to"].as_str()), (Some("stopped"), Some("starting")));
    assert!(event["at"].as_str().is_some_and(|a| a.ends_with('Z')), "{event}");
    assert!(event["reason"].is_string(), "{event}");
    let (_, event) = rx.recv_timeout(S(10)).expect("no second webhook call");
    assert_eq!((event["from"].as_str(), event["to"].as_str()), (Some("starting"), Some("running")));
}

// ------------------------------------------------------------------------------- explanations

#[test]
fn status_explains_backoff_failure_and_waiting() {
    let mut h = Hale::new();
    h.write_config(
        "[components.crashy]\nshell = \"exit 3\"\n[components.crashy.restart]\n\
         initial_backoff = \"30s\"\nmax_restarts = 5\nwindow = \"1h\"\n\n\
         [components.doomed]\nshell = \"exit 1\"\n[components.doomed.restart]\n\
         initial_backoff = \"0s\"\nmax_restarts = 2\n\n\
         [components.dependent]\ncommand = [\"sleep\", \"1000\"]\ndepends_on = { doomed = \"completed_successfully\" }\n",
    );
    h.up();
    let c = h.wait_state("crashy", "restarting", S(10));
    let why = c["why"].as_str().unwrap();
    assert!(why.starts_with("restarting in 30s") || why.starts_with("restarting in 29s"), "{why}");
    assert!(why.contains("backoff step 1, 4 restarts left in the 1h window"), "{why}");
    assert!(why.contains("exited with code 3"), "{why}");
    assert_eq!(
        (c["restarts_left"].as_u64(), c["max_restarts"].as_u64(), c["backoff_step"].as_u64()),
        (Some(4), Some(5), Some(1))
    );

    let d = h.wait_state("doomed", "failed", S(10));
    let why = d["why"].as_str().unwrap();
    assert!(why.contains("restart limit reached") && why.contains("`hale reset doomed`"), "{why}");
    let dep = h.comp("dependent");
    let why = dep["why"].as_str().unwrap();
    assert!(
        why.contains("waiting for doomed (completed_successfully)") && why.contains("has failed"),
        "{why}"
    );

    let detail = h.ok(&["status", "crashy"]).stdout;
    for want in [
        "crashy: restarting",
        "why:",
        "backoff step 1",
        "4 left",
        "last exit:      code 3",
        "next restart:",
    ] {
        assert!(detail.contains(want), "`hale status crashy` lacks {want:?}:\n{detail}");
    }
    let table = h.ok(&["status"]).stdout;
    assert!(table.contains("waiting for doomed (completed_successfully)"), "{table}");
}

// ------------------------------------------------------------------------------- quickstart

#[test]
fn the_quickstart_serves_http_metrics_grpc_and_runs_its_hook() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/debug/examples/demo");
    if !std::path::Path::new(demo).exists() {
        // `cargo test` builds the workspace's examples before it runs tests.
        panic!("{demo} is missing: build it with `cargo build -p hale-cli --examples`");
    }
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/quickstart/hale.toml"
    ))
    .unwrap()
    .replace("../../target/debug/examples/demo", demo);
    let mut h = Hale::new();
    h.write_config(&text);
    assert!(h.ok(&["check"]).stdout.contains("ok (3 components)"));
    h.up();
    wait_http(9464);
    h.wait_comp("client", S(20), "healthy", |c| c["healthy"] == true);
    h.wait_state("worker", "failed", S(20));
    let (code, text) = http(9464, "GET", "/v1/status", None);
    assert_eq!(code, 200, "{text}");
    assert_eq!(json_body(&text)["components"].as_array().unwrap().len(), 3);
    let (code, text) = http(9464, "GET", "/readyz", None);
    assert_eq!(code, 503, "the failed worker makes hale unready: {text}");
    assert!(body(&text).contains("worker: failed"), "{text}");
    let (code, text) = http(9464, "GET", "/metrics", None);
    assert_eq!(code, 200);
    assert!(
        body(&text).contains("hale_component_state{component=\"worker\",state=\"failed\"} 1"),
        "{text}"
    );
    let out = h.ok(&["reload"]);
    assert!(out.stdout.contains("unchanged: web, worker, client"), "{out}");
    let log = wait_until(S(10), "the hook's file", || {
        std::fs::read_to_string(h.path(".hale/transitions.log"))
            .ok()
            .filter(|t| t.contains("worker: running -> failed"))
    });
    assert!(log.contains("client: starting -> running"), "{log}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use tonic_health::pb::health_check_response::ServingStatus;
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9465")
            .connect()
            .await
            .unwrap();
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let ask = |s: &str| tonic_health::pb::HealthCheckRequest { service: s.to_owned() };
        assert_eq!(
            client.check(ask("web")).await.unwrap().into_inner().status(),
            ServingStatus::Serving
        );
        assert_eq!(
            client.check(ask("worker")).await.unwrap().into_inner().status(),
            ServingStatus::NotServing
        );
        assert_eq!(
            client.check(ask("")).await.unwrap().into_inner().status(),
            ServingStatus::NotServing
        );
    });
}
