//! Tests of config loading: the documented configs parse into the expected values, and every
//! class of error is reported with the file, the key path and the right line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const FILE: &str = "/srv/app/bad-config.toml";

fn ok(text: &str) -> Config {
    match parse(text, Path::new("/srv/app/hale.toml")) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn errs(text: &str) -> ConfigErrors {
    match parse(text, Path::new(FILE)) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(e) => {
            assert!(!e.is_empty());
            e
        }
    }
}

/// The error about `key` (exact key path), asserting there is exactly one.
fn the<'a>(e: &'a ConfigErrors, key: &str) -> &'a ConfigError {
    let found: Vec<&ConfigError> = e.iter().filter(|x| x.key == key).collect();
    assert_eq!(found.len(), 1, "one error for {key} expected in:\n{e}");
    found[0]
}

/// Assert one error names `key` at `line`, and that the rendering shows file, line and key.
fn assert_error(e: &ConfigErrors, key: &str, line: usize) -> ConfigError {
    let err = the(e, key).clone();
    let pos = err.position.expect("a position");
    assert_eq!(pos.line, line, "wrong line for {key}:\n{e}");
    let text = e.to_string();
    assert!(text.contains(&format!("bad-config.toml:{line}:")), "{text}");
    assert!(text.contains(key), "{text}");
    err
}

const CONTRACT: &str = r#"
[hale]                                  # daemon settings, all optional
state_dir = ".hale"                     # control socket hale.sock, logs/, events, pid records
http = "127.0.0.1:9464"                 # HTTP API, /metrics, /livez, /readyz; off when absent
grpc_health = "127.0.0.1:9465"          # grpc.health.v1 server for hale itself and each component; off when absent
log_max_size = "10MiB"                  # per component log file before rotation
log_keep = 5                            # rotated files kept

[components.db]
command = ["postgres", "-D", "data"]

[components.api]                        # a process component: hale spawns and owns it
command = ["./api", "--port", "8080"]   # argv; or  shell = "./api --port 8080"  (run by /bin/sh -c)
cwd = "services/api"
env = { RUST_LOG = "info" }
env_file = ".env"
depends_on = { db = "healthy" }         # started | ready | healthy | completed | completed_successfully
ready = "probe"                         # "probe" (default) or "notify": wait for READY=1 on NOTIFY_SOCKET
watchdog = "30s"                        # optional sd_notify watchdog
notify_access = "main"                  # main | all
start_timeout = "90s"
stop_signal = "SIGTERM"
stop_timeout = "10s"
success_exit_status = [75]
restart_prevent_exit_status = [42]
restart_force_exit_status = [3]

[components.api.restart]
policy = "always"                       # always | on-failure | never
max_restarts = 10
window = "10m"
min_uptime = "10s"
initial_backoff = "1s"
max_backoff = "60s"
multiplier = 2.0

[components.api.startup]                # also [components.X.liveness] and [components.X.readiness]
http = "http://127.0.0.1:8080/healthz"  # exactly one check key, see below
initial_delay = "0s"
period = "1s"
timeout = "1s"
failure_threshold = 30
success_threshold = 1
termination_grace = "5s"                # startup and liveness only

[components.agent]                      # an external component: hale checks it and acts on it
docker = "stigmer-agent-runner"         # a container, started/stopped/restarted through the Docker Engine API
"#;

const GOOD: &str = r#"[hale]
state_dir = ".hale"

[components.db]
command = ["sleep", "1000"]
stop_timeout = "2s"

[components.db.readiness]
tcp = "127.0.0.1:5432"
period = "1s"

[components.api]
shell = "sleep 1000"
env = { RUST_LOG = "info" }
depends_on = { db = "healthy" }

[components.api.restart]
policy = "on-failure"
max_restarts = 3
window = "1m30s"
min_uptime = "500ms"
initial_backoff = "100ms"
max_backoff = "2s"
multiplier = 2.0

[components.api.liveness]
http = "http://127.0.0.1:8080/healthz"
period = "10s"
timeout = "3s"
failure_threshold = 3
"#;

// ---------------------------------------------------------------------- valid configs

#[test]
fn contract_config_parses() {
    let c = ok(CONTRACT);
    assert_eq!(c.path, PathBuf::from("/srv/app/hale.toml"));
    assert_eq!(c.base_dir, PathBuf::from("/srv/app"));
    assert_eq!(c.hale.state_dir, PathBuf::from("/srv/app/.hale"));
    assert_eq!(c.hale.http.as_deref(), Some("127.0.0.1:9464"));
    assert_eq!(c.hale.grpc_health.as_deref(), Some("127.0.0.1:9465"));
    assert_eq!(c.hale.log_max_size, 10 * 1024 * 1024);
    assert_eq!(c.hale.log_keep, 5);
    let names: Vec<&str> = c.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["db", "api", "agent"]);

    let api = c.component("api").expect("api");
    assert_eq!(api.line, 12, "CONTRACT starts with a blank line");
    assert_eq!(api.run, Run::Command(vec!["./api".into(), "--port".into(), "8080".into()]));
    assert_eq!(api.cwd, Some(PathBuf::from("/srv/app/services/api")));
    assert_eq!(api.env, vec![("RUST_LOG".to_string(), "info".to_string())]);
    assert_eq!(api.env_file, Some(PathBuf::from("/srv/app/.env")));
    assert_eq!(api.depends_on, vec![("db".to_string(), DependCondition::Healthy)]);
    assert_eq!(api.ready, ReadyMode::Probe);
    assert_eq!(api.watchdog, Some(Duration::from_secs(30)));
    assert_eq!(api.notify_access, NotifyAccess::Main);
    assert_eq!(api.start_timeout, Duration::from_secs(90));
    assert_eq!(api.stop_signal, 15);
    assert_eq!(api.stop_timeout, Duration::from_secs(10));
    assert_eq!(api.restart_timeout, Duration::from_secs(30));
    assert_eq!(api.success_exit_status, [75]);
    assert_eq!(api.restart_prevent_exit_status, [42]);
    assert_eq!(api.restart_force_exit_status, [3]);
    assert_eq!(api.restart, RestartSettings::default());
    let startup = api.startup.as_ref().expect("startup probe");
    assert_eq!(
        startup.check,
        CheckConfig::Http {
            url: "http://127.0.0.1:8080/healthz".into(),
            method: "GET".into(),
            headers: vec![],
            status: (200, 399),
            body_contains: None,
            ca_file: None,
            insecure: false,
        }
    );
    assert_eq!(startup.initial_delay, Duration::ZERO);
    assert_eq!(startup.period, Duration::from_secs(1));
    assert_eq!(startup.timeout, Duration::from_secs(1));
    assert_eq!(startup.failure_threshold, 30);
    assert_eq!(startup.success_threshold, 1);
    assert_eq!(startup.termination_grace, Some(Duration::from_secs(5)));
    assert!(api.liveness.is_none() && api.readiness.is_none());

    let agent = c.component("agent").expect("agent");
    assert_eq!(agent.run, Run::Docker("stigmer-agent-runner".into()));
    assert!(!agent.run.is_process());
    assert_eq!(dependency_order(&c), [0, 1, 2]);
}

#[test]
fn conformance_good_config_parses() {
    let c = ok(GOOD);
    let db = &c.components[0];
    assert_eq!(db.name, "db");
    assert_eq!(db.stop_timeout, Duration::from_secs(2));
    let r = db.readiness.as_ref().expect("readiness");
    assert_eq!(r.check, CheckConfig::Tcp("127.0.0.1:5432".into()));
    assert_eq!(r.period, Duration::from_secs(1));
    assert_eq!(r.timeout, Duration::from_secs(3), "readiness default timeout");
    assert_eq!(r.failure_threshold, 3);
    let api = &c.components[1];
    assert_eq!(api.run, Run::Shell("sleep 1000".into()));
    assert_eq!(
        api.restart,
        RestartSettings {
            policy: RestartPolicy::OnFailure,
            max_restarts: 3,
            window: Duration::from_secs(90),
            min_uptime: Duration::from_millis(500),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            multiplier: 2.0,
        }
    );
    let l = api.liveness.as_ref().expect("liveness");
    assert_eq!(l.period, Duration::from_secs(10));
    assert_eq!(l.timeout, Duration::from_secs(3));
}

#[test]
fn defaults_without_hale_table() {
    let c = ok("[components.a]\ncommand = [\"x\"]\n");
    assert_eq!(c.hale, DaemonSettings::defaults(Path::new("/srv/app")));
    let a = &c.components[0];
    assert_eq!(a.restart, RestartSettings::default());
    assert_eq!(a.ready, ReadyMode::Probe);
    assert_eq!(a.stop_signal, DEFAULT_STOP_SIGNAL);
}

/// A file with no component supervises nothing: said at the end of the file, where one goes.
#[test]
fn a_file_without_components_is_an_error() {
    for (text, line) in [("", 1), ("# nothing yet\n", 2), ("[hale]\nlog_keep = 3\n", 3)] {
        let e = errs(text);
        let err = assert_error(&e, "components", line);
        assert!(err.message.starts_with("no components"), "{err}");
        assert!(err.help.as_deref().is_some_and(|h| h.contains("[components.")), "{err}");
    }
    let e = errs("[components]\n");
    assert!(assert_error(&e, "components", 1).message.contains("no [components.NAME]"));
}

#[test]
fn probe_defaults_per_kind() {
    let c = ok(concat!(
        "[components.a]\ncommand = [\"x\"]\n",
        "[components.a.startup]\nsh = \"true\"\n",
        "[components.a.liveness]\nsh = \"true\"\n",
        "[components.a.readiness]\nsh = \"true\"\nsuccess_threshold = 2\n",
    ));
    let a = &c.components[0];
    let s = a.startup.as_ref().expect("startup");
    let l = a.liveness.as_ref().expect("liveness");
    let r = a.readiness.as_ref().expect("readiness");
    let secs = Duration::from_secs;
    assert_eq!((s.period, s.timeout, s.failure_threshold), (secs(1), secs(1), 30));
    assert_eq!((l.period, l.timeout, l.failure_threshold), (secs(10), secs(3), 3));
    assert_eq!((r.period, r.timeout, r.failure_threshold), (secs(5), secs(3), 3));
    assert_eq!(r.success_threshold, 2);
}

#[test]
fn check_forms() {
    let c = ok(r#"
[components.a]
command = ["x"]
[components.a.startup]
http = { url = "https://h/ready", method = "head", headers = { Host = "x" }, status = "204", body_contains = "ok", ca_file = "ca.pem", insecure = true }
[components.a.liveness]
grpc = { address = "127.0.0.1:50051", service = "svc", tls = true }
[components.a.readiness]
process = { pidfile = "run/a.pid" }

[components.b]
shell = "x"
[components.b.startup]
grpc = "[::1]:50051"
[components.b.liveness]
file = { path = "hb", max_age = "5s" }
[components.b.readiness]
log = { pattern = "listening", within = "2m" }

[components.c]
start = ["systemctl", "start", "c"]
stop = ["systemctl", "stop", "c"]
restart = ["systemctl", "restart", "c"]
[components.c.liveness]
docker = "c1"
[components.c.readiness]
exec = ["check", "c"]

[components.d]
shell = "x"
[components.d.liveness]
process = true
[components.d.readiness]
file = { path = "/abs/hb" }
"#);
    let get = |n: &str| c.component(n).expect("component");
    assert_eq!(
        get("a").startup.as_ref().map(|p| &p.check),
        Some(&CheckConfig::Http {
            url: "https://h/ready".into(),
            method: "HEAD".into(),
            headers: vec![("Host".into(), "x".into())],
            status: (204, 204),
            body_contains: Some("ok".into()),
            ca_file: Some(PathBuf::from("/srv/app/ca.pem")),
            insecure: true,
        })
    );
    assert_eq!(
        get("a").liveness.as_ref().map(|p| &p.check),
        Some(&CheckConfig::Grpc {
            address: "127.0.0.1:50051".into(),
            service: "svc".into(),
            tls: true
        })
    );
    assert_eq!(
        get("a").readiness.as_ref().map(|p| &p.check),
        Some(&CheckConfig::Process { pidfile: Some(PathBuf::from("/srv/app/run/a.pid")) })
    );
    assert_eq!(
        get("b").startup.as_ref().map(|p| &p.check),
        Some(&CheckConfig::Grpc {
            address: "[::1]:50051".into(),
            service: String::new(),
            tls: false
        })
    );
    assert_eq!(
        get("b").liveness.as_ref().map(|p| &p.check),
        Some(&CheckConfig::File {
            path: PathBuf::from("/srv/app/hb"),
            max_age: Duration::from_secs(5)
        })
    );
    assert_eq!(
        get("b").readiness.as_ref().map(|p| &p.check),
        Some(&CheckConfig::Log { pattern: "listening".into(), within: Duration::from_secs(120) })
    );
    let argv = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    assert_eq!(
        get("c").run,
        Run::Actions {
            start: argv(&["systemctl", "start", "c"]),
            stop: argv(&["systemctl", "stop", "c"]),
            restart: argv(&["systemctl", "restart", "c"]),
        }
    );
    assert_eq!(
        get("c").liveness.as_ref().map(|p| &p.check),
        Some(&CheckConfig::Docker("c1".into()))
    );
    assert_eq!(
        get("c").readiness.as_ref().map(|p| &p.check),
        Some(&CheckConfig::Exec(vec!["check".into(), "c".into()]))
    );
    assert_eq!(
        get("d").liveness.as_ref().map(|p| &p.check),
        Some(&CheckConfig::Process { pidfile: None })
    );
    assert_eq!(
        get("d").readiness.as_ref().map(|p| &p.check),
        Some(&CheckConfig::File { path: PathBuf::from("/abs/hb"), max_age: DEFAULT_FILE_MAX_AGE })
    );
}

#[test]
fn restart_action_in_restart_table() {
    let c = ok(concat!(
        "[components.x]\nstop = [\"stop-x\"]\n",
        "[components.x.restart]\npolicy = \"on-failure\"\naction = [\"restart-x\"]\n",
    ));
    let x = &c.components[0];
    assert_eq!(
        x.run,
        Run::Actions {
            start: None,
            stop: Some(vec!["stop-x".into()]),
            restart: Some(vec!["restart-x".into()]),
        }
    );
    assert_eq!(x.restart.policy, RestartPolicy::OnFailure);
}

#[test]
fn values_sizes_signals_env_and_deps() {
    let c = ok(r#"
[hale]
log_max_size = "512KiB"
log_keep = 0
http_token = "s3cret"
[components.b]
shell = "x"
stop_signal = "INT"
env = { Z = "1", A = 2, M = true }
depends_on = ["a"]
[components.a]
shell = "y"
stop_signal = 9
restart = { max_restarts = 0, multiplier = 1 }
"#);
    assert_eq!(c.hale.log_max_size, 512 * 1024);
    assert_eq!(c.hale.log_keep, 0);
    assert_eq!(c.hale.http_token.as_deref(), Some("s3cret"));
    let b = &c.components[0];
    assert_eq!(b.stop_signal, 2);
    let env: Vec<(&str, &str)> = b.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(env, [("Z", "1"), ("A", "2"), ("M", "true")], "file order");
    assert_eq!(b.depends_on, [("a".to_string(), DependCondition::Started)]);
    let a = &c.components[1];
    assert_eq!(a.stop_signal, 9);
    assert_eq!(a.restart.max_restarts, 0);
    assert_eq!(a.restart.multiplier, 1.0);
    assert_eq!(dependency_order(&c), [1, 0]);
    let one = "[components.a]\nshell = \"x\"\n";
    assert_eq!(ok(&format!("[hale]\nlog_max_size = 1000\n{one}")).hale.log_max_size, 1000);
    assert_eq!(ok(&format!("[hale]\nlog_max_size = \"1MB\"\n{one}")).hale.log_max_size, 1_000_000);
}

#[test]
fn dependency_order_is_topological_and_stable() {
    let c = ok(concat!(
        "[components.web]\nshell = \"x\"\ndepends_on = { api = \"healthy\", cache = \"started\" }\n",
        "[components.worker]\nshell = \"x\"\n",
        "[components.api]\nshell = \"x\"\ndepends_on = { db = \"ready\" }\n",
        "[components.db]\nshell = \"x\"\n",
        "[components.cache]\nshell = \"x\"\n",
        "[components.migrate]\nshell = \"x\"\ndepends_on = { db = \"completed_successfully\" }\n",
    ));
    let names: Vec<&str> =
        dependency_order(&c).into_iter().map(|i| c.components[i].name.as_str()).collect();
    assert_eq!(names, ["worker", "db", "api", "cache", "web", "migrate"]);
}

// ---------------------------------------------------------------------- conformance BAD cases

#[test]
fn bad_unknown_key() {
    let e = errs("[components.web]\ncommand = [\"sleep\", \"100\"]\ncomand = [\"oops\"]\n");
    let err = assert_error(&e, "components.web.comand", 3);
    assert_eq!(err.position.map(|p| p.column), Some(1));
    assert!(err.help.as_deref().unwrap_or("").contains("did you mean `command`?"));
    assert!(e.to_string().starts_with(
        "/srv/app/bad-config.toml:3:1: error: components.web.comand: unknown key\n  |\n3 | comand = [\"oops\"]\n  | ^^^^^^\n  help: did you mean `command`? valid keys: command, shell,"
    ), "{e}");
}

#[test]
fn bad_duration() {
    let e = errs(concat!(
        "[components.web]\ncommand = [\"sleep\", \"100\"]\n\n[components.web.liveness]\n",
        "exec = [\"true\"]\nperiod = \"10 parsecs\"\n",
    ));
    let err = assert_error(&e, "components.web.liveness.period", 6);
    assert!(err.message.contains("10 parsecs"), "{err}");
    assert!(err.help.as_deref().unwrap_or("").contains("\"1m30s\""), "{err}");
}

#[test]
fn bad_wrong_type() {
    let e = errs(concat!(
        "[components.web]\ncommand = [\"sleep\", \"100\"]\n\n[components.web.restart]\n",
        "max_restarts = \"ten\"\n",
    ));
    let err = assert_error(&e, "components.web.restart.max_restarts", 5);
    assert!(err.message.contains("expected an integer, found a string"), "{err}");
}

#[test]
fn bad_liveness_success_threshold() {
    let e = errs(concat!(
        "[components.web]\ncommand = [\"sleep\", \"100\"]\n\n",
        "[components.web.liveness]\nexec = [\"true\"]\nsuccess_threshold = 2\n",
    ));
    let err = assert_error(&e, "components.web.liveness.success_threshold", 6);
    assert!(err.message.contains("must be 1"), "{err}");
}

#[test]
fn bad_startup_success_threshold() {
    let e = errs(
        "[components.w]\nshell = \"x\"\n[components.w.startup]\nsh = \"true\"\nsuccess_threshold = 3\n",
    );
    assert_error(&e, "components.w.startup.success_threshold", 5);
}

#[test]
fn bad_policy() {
    let e = errs(concat!(
        "[components.web]\ncommand = [\"sleep\", \"100\"]\n\n[components.web.restart]\n",
        "policy = \"sometimes\"\n",
    ));
    let err = assert_error(&e, "components.web.restart.policy", 5);
    assert!(err.help.as_deref().unwrap_or("").contains("on-failure"), "{err}");
    let e = errs("[components.web]\nshell = \"x\"\nrestart = { policy = \"on_failure\" }\n");
    let err = assert_error(&e, "components.web.restart.policy", 3);
    assert!(err.help.as_deref().unwrap_or("").contains("did you mean `on-failure`?"));
}

#[test]
fn reports_every_error() {
    let e = errs(concat!(
        "[components.a]\ncommand = [\"sleep\", \"100\"]\nfrobnicate = true\n\n",
        "[components.b]\ncommand = [\"sleep\", \"100\"]\n\n[components.b.restart]\n",
        "policy = \"sometimes\"\n",
    ));
    assert_eq!(e.len(), 2, "{e}");
    assert_error(&e, "components.a.frobnicate", 3);
    assert_error(&e, "components.b.restart.policy", 9);
    assert_eq!(e.summary(), "/srv/app/bad-config.toml: 2 errors");
}

#[test]
fn many_errors_in_file_order() {
    let e = errs(concat!(
        "[hale]\nlog_keep = -1\nhttp = \"localhost\"\n", // 1-3
        "[components.a]\nshell = \"x\"\nstop_timeout = 10\n", // 4-6
        "[components.a.liveness]\ntcp = 8080\n",         // 7-8
        "[components.b]\nshell = \"x\"\nwatchdog = \"soon\"\n", // 9-11
    ));
    let lines: Vec<usize> = e.iter().filter_map(|x| x.position.map(|p| p.line)).collect();
    assert_eq!(lines, [2, 3, 6, 8, 11], "{e}");
}

// ---------------------------------------------------------------------- error classes

#[test]
fn unknown_keys_everywhere_with_hints() {
    let e = errs(concat!(
        "[hale]\nstate_dri = \"x\"\n", // 1-2
        "[web]\ncommand = [\"x\"]\n",  // 3-4
        "[components.a]\nshell = \"x\"\npolicy = \"never\"\nperiod = \"1s\"\n", // 5-8
        "[components.a.restart]\nmax_restart = 3\n", // 9-10
        "[components.a.livenes]\nsh = \"x\"\n", // 11
        "[components.a.readiness]\nsh = \"x\"\nperiode = \"1s\"\n", // 13-15
        "[components.a.startup]\nhttp = { url = \"http://x\", metod = \"GET\" }\n", // 16-17
    ));
    let help = |key: &str, line: usize| assert_error(&e, key, line).help.unwrap_or_default();
    assert!(help("hale.state_dri", 2).contains("did you mean `state_dir`?"));
    assert!(help("web", 3).contains("[components.web]"));
    assert!(help("components.a.policy", 7).contains("[components.a.restart]"));
    assert!(help("components.a.period", 8).contains("probe table"));
    assert!(help("components.a.restart.max_restart", 10).contains("`max_restarts`"));
    assert!(help("components.a.livenes", 11).contains("`liveness`"));
    assert!(help("components.a.readiness.periode", 15).contains("`period`"));
    assert!(help("components.a.startup.http.metod", 17).contains("`method`"));
}

#[test]
fn wrong_types_name_expected_and_found() {
    let e = errs(concat!(
        "[components.a]\ncommand = \"./api --port 8080\"\n", // 2
        "env = [\"A=1\"]\n",                                 // 3
        "success_exit_status = [\"75\"]\n",                  // 4
        "[components.a.liveness]\nexec = [\"x\", 1]\n",      // 6
        "[components.b]\nshell = [\"x\"]\n",                 // 8
        "components.c = 5\n",                                // 9
    ));
    let err = assert_error(&e, "components.a.command", 2);
    assert!(err.message.contains("expected an array of strings, found a string"));
    let help = err.help.unwrap_or_default();
    assert!(help.contains(r#"["./api", "--port", "8080"]"#) && help.contains("shell ="), "{help}");
    assert!(assert_error(&e, "components.a.env", 3).message.contains("found an array"));
    assert_error(&e, "components.a.success_exit_status[0]", 4);
    assert!(
        assert_error(&e, "components.a.liveness.exec[1]", 6).message.contains("found an integer 1")
    );
    assert!(assert_error(&e, "components.b.shell", 8).message.contains("expected a string"));
    // `components.c = 5` inside [components.b] is the key components.b.components.
    assert_error(&e, "components.b.components", 9);
}

#[test]
fn bad_durations() {
    let e = errs(concat!(
        "[components.a]\nshell = \"x\"\nstop_timeout = 10\n", // 3
        "start_timeout = \"0s\"\n",                           // 4
        "[components.a.restart]\nmin_uptime = \"ten seconds\"\n", // 6
        "window = \"0s\"\n",                                  // 7
    ));
    let err = assert_error(&e, "components.a.stop_timeout", 3);
    assert!(err.message.contains("expected a duration string, found an integer 10"));
    assert!(err.help.unwrap_or_default().contains("stop_timeout = \"10s\""));
    assert!(assert_error(&e, "components.a.start_timeout", 4).message.contains("greater than 0"));
    assert_error(&e, "components.a.restart.min_uptime", 6);
    assert_error(&e, "components.a.restart.window", 7);
}

#[test]
fn bad_sizes() {
    for (text, msg) in [
        ("\"10 parsecs\"", "unknown unit"),
        ("\"0MiB\"", "greater than 0"),
        ("0", "greater than 0"),
        ("true", "expected a size"),
    ] {
        let e = errs(&format!("[hale]\nlog_max_size = {text}\n"));
        let err = assert_error(&e, "hale.log_max_size", 2);
        assert!(err.message.contains(msg), "{text}: {err}");
    }
}

#[test]
fn bad_signals() {
    for text in ["\"SIGFOO\"", "0", "\"SIG\"", "1.5"] {
        let e = errs(&format!("[components.a]\nshell = \"x\"\nstop_signal = {text}\n"));
        let err = assert_error(&e, "components.a.stop_signal", 3);
        assert!(err.help.unwrap_or_default().contains("SIGTERM"), "{text}");
    }
}

#[test]
fn run_keys_exactly_one() {
    let e = errs(concat!(
        "[components.a]\ncommand = [\"x\"]\nshell = \"x\"\n", // 3
        "[components.b]\ndocker = \"c\"\nstart = [\"s\"]\n",  // 6
        "[components.c]\ncwd = \"x\"\n",                      // 7
        "[components.d]\nshell = \"\"\n",                     // 10
        "[components.e]\ncommand = []\n",                     // 12
        "[components.f]\nshell = \"x\"\nrestart = \"always\"\n", // 15
    ));
    let err = assert_error(&e, "components.a.shell", 3);
    assert!(err.message.contains("conflicts with `command` on line 2"), "{err}");
    assert!(assert_error(&e, "components.b.start", 6).message.contains("`docker`"));
    assert!(assert_error(&e, "components.c", 7).message.contains("no run key"));
    assert!(assert_error(&e, "components.d.shell", 10).message.contains("empty"));
    assert!(assert_error(&e, "components.e.command", 12).message.contains("program"));
    let err = assert_error(&e, "components.f.restart", 15);
    assert!(err.help.as_deref().unwrap_or("").contains("[components.f.restart]"), "{err}");
    assert_eq!(e.len(), 6, "{e}");
}

#[test]
fn run_conflict_still_checks_each_key() {
    let e = errs("[components.a]\ncommand = \"x y\"\nshell = \"x\"\n");
    assert_error(&e, "components.a.command", 2);
    assert_error(&e, "components.a.shell", 3);
}

#[test]
fn probe_needs_exactly_one_check() {
    let e = errs(concat!(
        "[components.a]\nshell = \"x\"\n",
        "[components.a.liveness]\nexec = [\"true\"]\ntcp = \"h:1\"\nhttp = \"http://h\"\n", // 3-6
        "[components.a.readiness]\nperiod = \"1s\"\n",                                      // 7
    ));
    let err = assert_error(&e, "components.a.liveness.tcp", 5);
    assert!(err.message.contains("conflicts with `exec` on line 4"), "{err}");
    assert_error(&e, "components.a.liveness.http", 6);
    let err = assert_error(&e, "components.a.readiness", 7);
    assert!(err.message.contains("no check"), "{err}");
    assert!(err.help.unwrap_or_default().contains("exec, sh, tcp"));
}

#[test]
fn probe_numbers_must_be_positive() {
    let e = errs(concat!(
        "[components.a]\nshell = \"x\"\n[components.a.readiness]\nsh = \"true\"\n",
        "period = \"0s\"\ntimeout = \"0ms\"\nfailure_threshold = 0\nsuccess_threshold = 0\n", // 5-8
        "termination_grace = \"1s\"\n",                                                       // 9
    ));
    assert_error(&e, "components.a.readiness.period", 5);
    assert_error(&e, "components.a.readiness.timeout", 6);
    assert_error(&e, "components.a.readiness.failure_threshold", 7);
    assert_error(&e, "components.a.readiness.success_threshold", 8);
    assert_error(&e, "components.a.readiness.termination_grace", 9);
}

#[test]
fn bad_check_values() {
    let e = errs(concat!(
        "[components.a]\nshell = \"x\"\n",
        "[components.a.startup]\ntcp = \"localhost\"\n", // 4
        "[components.a.liveness]\nhttp = { url = \"ftp://x\", status = \"500-200\" }\n", // 6
        "[components.a.readiness]\nfile = { max_age = \"1s\" }\n", // 8
        "[components.b]\ndocker = \"c\"\n[components.b.liveness]\nprocess = true\n", // 12
        "[components.b.readiness]\nlog = { pattern = \"\" }\n", // 14
        "[components.c]\nshell = \"x\"\n[components.c.liveness]\nhttp = { url = \"http://x\", insecure = true }\n", // 18
        "[components.c.readiness]\nprocess = false\n", // 20
    ));
    assert_error(&e, "components.a.startup.tcp", 4);
    assert_eq!(e.iter().filter(|x| x.position.map(|p| p.line) == Some(6)).count(), 2, "{e}");
    assert!(
        assert_error(&e, "components.a.readiness.file", 8).message.contains("missing key `path`")
    );
    assert_error(&e, "components.b.liveness.process", 12);
    assert_error(&e, "components.b.readiness.log.pattern", 14);
    assert!(assert_error(&e, "components.c.liveness.http.insecure", 18).message.contains("https"));
    assert_error(&e, "components.c.readiness.process", 20);
}

#[test]
fn notify_needs_a_process() {
    let e = errs("[components.a]\ndocker = \"c\"\nready = \"notify\"\nwatchdog = \"5s\"\n");
    assert_error(&e, "components.a.ready", 3);
    assert_error(&e, "components.a.watchdog", 4);
    let c = ok(
        "[components.a]\nshell = \"x\"\nready = \"notify\"\nwatchdog = \"5s\"\nnotify_access = \"all\"\n",
    );
    assert_eq!(c.components[0].ready, ReadyMode::Notify);
    assert_eq!(c.components[0].notify_access, NotifyAccess::All);
}

#[test]
fn backoff_rules() {
    let e = errs(concat!(
        "[components.a]\nshell = \"x\"\n[components.a.restart]\nmultiplier = 0.5\n", // 4
        "initial_backoff = \"10s\"\nmax_backoff = \"5s\"\n",                         // 5-6
        "[components.b]\nshell = \"x\"\n[components.b.restart]\ninitial_backoff = \"2m\"\n", // 10
        "[components.c]\nshell = \"x\"\n[components.c.restart]\nmultiplier = nan\nmax_restarts = -1\n", // 14-15
    ));
    let err = assert_error(&e, "components.a.restart.multiplier", 4);
    assert!(err.message.contains("at least 1"), "{err}");
    let err = assert_error(&e, "components.a.restart.max_backoff", 6);
    assert!(err.message.contains("less than initial_backoff"), "{err}");
    let err = assert_error(&e, "components.b.restart.initial_backoff", 10);
    assert!(err.message.contains("the default"), "{err}");
    assert_error(&e, "components.c.restart.multiplier", 14);
    assert_error(&e, "components.c.restart.max_restarts", 15);
}

#[test]
fn dependency_errors() {
    let e = errs(concat!(
        "[components.api]\nshell = \"x\"\ndepends_on = { dbb = \"healthy\", web = \"sometime\" }\n", // 3
        "[components.db]\nshell = \"x\"\ndepends_on = { db = \"started\" }\n", // 6
        "[components.web]\nshell = \"x\"\ndepends_on = { worker = \"ready\" }\n", // 9
        "[components.worker]\nshell = \"x\"\ndepends_on = [\"web\"]\n",        // 12
    ));
    let err = assert_error(&e, "components.api.depends_on.dbb", 3);
    assert!(err.message.contains("unknown component `dbb`"));
    assert!(err.help.unwrap_or_default().contains("did you mean `db`?"));
    let err = assert_error(&e, "components.api.depends_on.web", 3);
    assert!(err.help.unwrap_or_default().contains("healthy"));
    let err = assert_error(&e, "components.db.depends_on.db", 6);
    assert!(err.message.contains("db -> db"), "{err}");
    let err = assert_error(&e, "components.worker.depends_on[0]", 12);
    assert!(err.message.contains("web -> worker -> web"), "{err}");
    assert_eq!(e.len(), 4, "{e}");
}

#[test]
fn invalid_component_names() {
    let e = errs(concat!(
        "[components.\"a/b\"]\nshell = \"x\"\n",    // 1
        "[components.\"\"]\nshell = \"x\"\n",       // 3
        "[components.\"..\"]\nshell = \"x\"\n",     // 5
        "[components.\"sp ace\"]\nshell = \"x\"\n", // 7
    ));
    assert_error(&e, "components.\"a/b\"", 1);
    assert_error(&e, "components.\"\"", 3);
    assert_error(&e, "components.\"..\"", 5);
    assert_error(&e, "components.\"sp ace\"", 7);
    assert!(
        ok("[components.\"api-v2.internal_1\"]\nshell = \"x\"\n")
            .component("api-v2.internal_1")
            .is_some()
    );
}

#[test]
fn broken_toml_is_one_error() {
    let e = errs("[components.a]\ncommand = [\"x\"\nshell = \"y\"\n");
    assert_eq!(e.len(), 1);
    let err = &e.errors[0];
    assert_eq!(err.position.map(|p| p.line), Some(3));
    assert!(err.message.starts_with("invalid TOML"), "{err}");
    let e = errs("[components.a\n");
    assert_eq!(e.errors[0].position.map(|p| p.line), Some(1), "{e}");
}

#[test]
fn duplicate_component_is_named() {
    let e = errs("[components.a]\nshell = \"x\"\n\n[components.a]\nshell = \"y\"\n");
    let err = assert_error(&e, "components.a", 4);
    assert!(err.message.contains("already defined"), "{err}");
}

#[test]
fn duplicate_key_is_named() {
    let e = errs("[components.a]\nshell = \"x\"\nshell = \"y\"\n");
    let err = assert_error(&e, "components.a.shell", 3);
    assert!(err.message.contains("already set"), "{err}");
}

#[test]
fn secrets_are_not_echoed() {
    let e = errs("[hale]\nhttp_token = 12345678\n");
    let err = assert_error(&e, "hale.http_token", 2);
    assert!(!e.to_string().contains("12345678"), "{err}");
}

#[test]
fn load_reports_unreadable_and_non_utf8_files() {
    let dir = std::env::temp_dir().join(format!("halecfg-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let missing = dir.join("missing.toml");
    let e = load(&missing).expect_err("missing file");
    assert_eq!(e.len(), 1);
    assert!(e.to_string().contains("missing.toml: error: cannot read"), "{e}");

    let bad = dir.join("latin1.toml");
    std::fs::write(&bad, b"[components.a]\nshell = \"caf\xe9\"\n").expect("write");
    let e = load(&bad).expect_err("not utf-8");
    assert_eq!(e.len(), 1);
    assert_eq!(e.errors[0].position, Some(Position { line: 2, column: 13 }));
    assert!(e.to_string().contains("latin1.toml:2:13: error:"), "{e}");

    let good = dir.join("hale.toml");
    std::fs::write(&good, GOOD).expect("write");
    let c = load(&good).expect("valid");
    assert_eq!(c.base_dir, dir);
    assert_eq!(c.hale.state_dir, dir.join(".hale"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn caret_under_non_ascii_and_tabs() {
    let e = errs("[components.a]\nshell = \"x\"\n\tenv = { \"é\" = [1] }\n");
    let text = e.to_string();
    assert!(text.contains("3:16: error: components.a.env.\"é\""), "{text}");
    assert!(text.contains("3 | \tenv = { \"é\" = [1] }\n  | \t              ^^^"), "{text}");
}

/// No input makes the parser panic: every prefix of a full config, and some oddities.
#[test]
fn never_panics() {
    let mut cuts = 0;
    for text in [CONTRACT, GOOD] {
        for (i, _) in text.char_indices() {
            let _ = parse(&text[..i], Path::new("x.toml"));
            cuts += 1;
        }
    }
    assert!(cuts > 1000);
    // Every character of GOOD replaced by a few troublemakers.
    for (i, ch) in GOOD.char_indices() {
        for with in ["\"", "[", "=", "\n", "0", ""] {
            let mut text = String::with_capacity(GOOD.len() + 1);
            text.push_str(&GOOD[..i]);
            text.push_str(with);
            text.push_str(&GOOD[i + ch.len_utf8()..]);
            let _ = parse(&text, Path::new("x.toml")).map_err(|e| e.to_string());
        }
    }
    for text in [
        "\r\n\r\n[components.a]\r\nshell = 1\r\n",
        "[[components]]\nshell = \"x\"\n",
        "[[components.a]]\nshell = \"x\"\n",
        "components = []\n",
        "hale = 1\n",
        "[components.a]\nshell = \"x\"\ndepends_on = 3\nstartup = 1\nrestart = []\n",
        "[components.a]\ncommand = [[]]\nenv = { A = { B = 1 } }\n",
        "[components.a]\nshell = \"x\"\nstop_signal = 99999999999999999999\n",
        "[components.a]\nshell = \"x\"\nsuccess_exit_status = [-1, 256, 9223372036854775807]\n",
        "[components.a]\nshell = \"x\"\n[components.a.restart]\nmax_restarts = 0x7fffffffffffffff\nmultiplier = inf\n",
        "[components.a]\nshell = \"x\"\n[components.a.liveness]\nhttp = { status = 99999 }\n",
        "[components.a]\nshell = \"x\"\nwatchdog = \"99999999999999999999999 years\"\n",
    ] {
        let r = parse(text, Path::new("x.toml"));
        if let Err(e) = r {
            assert!(!e.is_empty());
            let _ = e.to_string();
        }
    }
}

/// `parse` reads no file (the fuzz target and the property tests rely on it); `load` reads the
/// env file and the CA file the config names, and reports what is wrong with them at the key.
#[test]
fn only_load_reads_the_files_the_config_names() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let text = concat!(
        "[components.a]\nshell = \"x\"\nenv_file = \"missing.env\"\n",
        "[components.a.liveness]\nhttp = { url = \"https://h/\", ca_file = \"missing.pem\" }\n",
    );
    let path = dir.path().join("hale.toml");
    let c = parse(text, &path).expect("parse takes the paths as given");
    assert_eq!(c.components[0].env_file, Some(dir.path().join("missing.env")));
    std::fs::write(&path, text).expect("write");
    let e = load(&path).expect_err("load reads them");
    assert_error_at(&e, "components.a.env_file", 3, "cannot read the env file \"missing.env\"");
    assert_error_at(&e, "components.a.liveness.http.ca_file", 5, "ca_file missing.pem:");

    std::fs::write(dir.path().join("missing.env"), "A=1\nexport B='2'\n").expect("write");
    std::fs::write(dir.path().join("missing.pem"), "not a certificate\n").expect("write");
    let e = load(&path).expect_err("a CA file without a certificate");
    assert_eq!(e.len(), 1, "{e}");
    assert_error_at(&e, "components.a.liveness.http.ca_file", 5, "no certificate");
}

fn assert_error_at(e: &ConfigErrors, key: &str, line: usize, text: &str) {
    let err = the(e, key);
    assert_eq!(err.position.map(|p| p.line), Some(line), "{e}");
    assert!(err.message.contains(text), "{err}");
    assert!(!err.message.contains("/tmp"), "a resolved path in: {err}");
}

/// `parse_bytes` (the fuzz target's entry) is `parse` for UTF-8 and `load`'s error otherwise.
#[test]
fn parse_bytes_is_parse_for_utf8() {
    let path = Path::new("/srv/app/hale.toml");
    assert_eq!(parse_bytes(GOOD.as_bytes(), path), parse(GOOD, path));
    let e = parse_bytes(b"[components.a]\nshell = \"caf\xe9\"\n", path).expect_err("latin-1");
    assert_eq!(e.errors[0].key, "components.a.shell", "{e}");
    assert_eq!(e.errors[0].position, Some(Position { line: 2, column: 13 }), "{e}");
}
