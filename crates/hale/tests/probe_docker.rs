//! The `docker` check and the docker component's actions against a real Docker engine.
//!
//! The engine is the one `DOCKER_HOST` names, else the private one of
//! `sh ../shared/docker-engine.sh up` at `/tmp/hale-docker/docker.sock`. Without a reachable
//! engine these tests print why and pass, except under CI (`CI` set), where they fail.
//! Containers are made with the docker CLI (the code under test only speaks the Engine API),
//! from `hale-busybox:latest` with `--network none`, named `hale-test-PID-...` and removed by a
//! guard even when a test fails. Covers: a plain running container, HEALTHCHECK starting,
//! healthy and unhealthy, created and exited containers, an unknown one, an unreachable engine,
//! and start/stop/restart through the API, alone and as a Monitor component's actions.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hale::docker::{Engine, Error};
use hale::probe::{Docker, Probe, ProbeContext, ProbeError, ProbeKind};
use hale::{Check, Component, Monitor, State};

const GUARD: Duration = Duration::from_secs(30);
const IMAGE: &str = "hale-busybox:latest";
const PRIVATE_SOCKET: &str = "/tmp/hale-docker/docker.sock";

fn ctx() -> ProbeContext {
    ProbeContext {
        component: Arc::from("test"),
        kind: ProbeKind::Liveness,
        incarnation: 1,
        pid: None,
        timeout: GUARD,
    }
}

/// The engine under test, or `None` (after saying why) when there is none outside CI.
async fn engine() -> Option<Engine> {
    let engine = match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => Engine::from_host(&host).expect("DOCKER_HOST"),
        _ => Engine::at(PRIVATE_SOCKET),
    };
    match tokio::time::timeout(GUARD, engine.api_version()).await {
        Ok(Ok(_)) => Some(engine),
        outcome => {
            let why = match outcome {
                Ok(Err(err)) => err.to_string(),
                _ => "no answer to GET /_ping".to_owned(),
            };
            if std::env::var_os("CI").is_some() {
                panic!(
                    "no Docker engine under CI ({why}): start one with `sh ../shared/docker-engine.sh up` and export DOCKER_HOST"
                );
            }
            println!("skipping: no Docker engine (run sh ../shared/docker-engine.sh up): {why}");
            None
        }
    }
}

/// The docker CLI: the Debian client the engine script installs, else whichever is on PATH.
fn cli_program() -> &'static str {
    if Path::new("/usr/bin/docker").exists() { "/usr/bin/docker" } else { "docker" }
}

/// Run the docker CLI against `engine`; panics (naming the command) unless it succeeds in time.
async fn cli(engine: &Engine, args: &[&str]) -> String {
    let mut command = tokio::process::Command::new(cli_program());
    command
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", engine.socket().display()))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("docker {args:?} took over 60 s"))
        .unwrap_or_else(|err| panic!("docker {args:?}: {err}"));
    assert!(
        output.status.success(),
        "docker {args:?}: {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A test container's name; `docker rm -f` on drop, so a failing test leaves nothing behind.
struct Container {
    name: String,
    socket: String,
}

impl Container {
    fn new(engine: &Engine, what: &str) -> Container {
        let name = format!("hale-test-{}-{what}", std::process::id());
        let socket = format!("unix://{}", engine.socket().display());
        let container = Container { name, socket };
        container.remove();
        container
    }

    fn remove(&self) {
        let child = std::process::Command::new(cli_program())
            .args(["rm", "-f", &self.name])
            .env("DOCKER_HOST", &self.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else { return };
        let deadline = Instant::now() + GUARD;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// `docker run -d --init --network none [extra...] IMAGE command...`.
    async fn run(&self, engine: &Engine, extra: &[&str], command: &[&str]) {
        let mut args = vec!["run", "-d", "--init", "--network", "none", "--name", &self.name];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(command);
        cli(engine, &args).await;
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.remove();
    }
}

async fn check(probe: &Docker) -> Result<String, ProbeError> {
    tokio::time::timeout(GUARD, probe.check(ctx())).await.expect("the check hung")
}

/// Check until `done` accepts the result; panics with the last result after `GUARD`.
async fn check_until(
    probe: &Docker,
    what: &str,
    mut done: impl FnMut(&Result<String, ProbeError>) -> bool,
) -> Result<String, ProbeError> {
    let deadline = Instant::now() + GUARD;
    loop {
        let result = check(probe).await;
        if done(&result) {
            return result;
        }
        assert!(
            Instant::now() < deadline,
            "{} never became {what}: last {result:?}",
            probe.describe()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, future).await.unwrap_or_else(|_| panic!("{what} hung"))
}

async fn inspect(engine: &Engine, name: &str) -> hale::docker::ContainerState {
    tokio::time::timeout(GUARD, engine.inspect(name)).await.expect("inspect hung").expect("inspect")
}

#[tokio::test]
async fn a_running_container_without_healthcheck_is_healthy() {
    let Some(engine) = engine().await else { return };
    let c = Container::new(&engine, "plain");
    c.run(&engine, &[], &["sleep", "100000"]).await;
    let probe = Docker::with_engine(c.name.clone(), engine.clone()).unwrap();
    assert_eq!(probe.describe(), format!("docker {}", c.name));
    assert_eq!(check(&probe).await, Ok("running".to_owned()));
    let state = inspect(&engine, &c.name).await;
    assert_eq!((state.status.as_str(), state.running, state.health), ("running", true, None));
}

#[tokio::test]
async fn a_healthcheck_without_a_verdict_yet_is_health_starting() {
    let Some(engine) = engine().await else { return };
    let c = Container::new(&engine, "starting");
    // The first health check runs one interval after the start: an hour away.
    c.run(&engine, &["--health-cmd", "true", "--health-interval", "1h"], &["sleep", "100000"])
        .await;
    let probe = Docker::with_engine(c.name.clone(), engine.clone()).unwrap();
    let err = check(&probe).await.unwrap_err();
    assert_eq!(err.reason, format!("docker {}: health starting", c.name));
}

#[tokio::test]
async fn a_healthcheck_walks_unhealthy_healthy_unhealthy() {
    let Some(engine) = engine().await else { return };
    let c = Container::new(&engine, "health");
    c.run(
        &engine,
        &[
            "--health-cmd",
            "test -f /tmp/ok || { echo no /tmp/ok; exit 1; }",
            "--health-interval",
            "200ms",
            "--health-timeout",
            "5s",
            "--health-retries",
            "1",
        ],
        &["sleep", "100000"],
    )
    .await;
    let probe = Docker::with_engine(c.name.clone(), engine.clone()).unwrap();
    let unhealthy = format!("docker {}: unhealthy", c.name);

    let err =
        check_until(&probe, "unhealthy", |r| r.as_ref().is_err_and(|e| e.reason == unhealthy))
            .await
            .unwrap_err();
    assert_eq!(err.output, "no /tmp/ok", "the HEALTHCHECK's last output");

    cli(&engine, &["exec", &c.name, "touch", "/tmp/ok"]).await;
    let ok = check_until(&probe, "healthy", Result::is_ok).await.unwrap();
    assert!(ok.starts_with("running, healthy"), "{ok:?}");

    cli(&engine, &["exec", &c.name, "rm", "/tmp/ok"]).await;
    check_until(&probe, "unhealthy again", |r| r.as_ref().is_err_and(|e| e.reason == unhealthy))
        .await
        .unwrap_err();
}

#[tokio::test]
async fn created_and_exited_containers_are_not_running() {
    let Some(engine) = engine().await else { return };
    let c = Container::new(&engine, "stopped");
    cli(&engine, &["create", "--network", "none", "--name", &c.name, IMAGE, "sh", "-c", "exit 3"])
        .await;
    let probe = Docker::with_engine(c.name.clone(), engine.clone()).unwrap();
    assert_eq!(
        check(&probe).await.unwrap_err().reason,
        format!("docker {}: not running (created)", c.name)
    );

    // `start -a` returns when the container has exited.
    let _ = tokio::time::timeout(
        GUARD,
        tokio::process::Command::new(cli_program())
            .args(["start", "-a", &c.name])
            .env("DOCKER_HOST", &c.socket)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await
    .expect("docker start -a hung");
    let err = check_until(&probe, "exited", |r| {
        r.as_ref().is_err_and(|e| e.reason.ends_with("(exited)"))
    })
    .await
    .unwrap_err();
    assert_eq!(
        err,
        ProbeError::with_output(format!("docker {}: not running (exited)", c.name), "exit code 3")
    );
}

#[tokio::test]
async fn an_unknown_container_is_no_such_container() {
    let Some(engine) = engine().await else { return };
    let name = format!("hale-test-{}-never-created", std::process::id());
    let probe = Docker::with_engine(name.clone(), engine.clone()).unwrap();
    assert_eq!(
        check(&probe).await,
        Err(ProbeError::new(format!("docker {name}: no such container")))
    );
    // A name that cannot name a container never reaches the engine: its router would clean
    // `..` segments into another path.
    let odd = "../../_ping?x=1 y";
    assert_eq!(within("inspect", engine.inspect(odd)).await, Err(Error::InvalidName(odd.into())));
    let start = tokio::time::timeout(GUARD, engine.start(&name)).await.expect("start hung");
    assert_eq!(start, Err(Error::NoSuchContainer));
}

#[tokio::test]
async fn an_unreachable_engine_says_where_and_why() {
    // No engine needed: these sockets never had one.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let probe = Docker::with_engine("db", Engine::at(&missing)).unwrap();
    assert_eq!(
        check(&probe).await,
        Err(ProbeError::new(format!(
            "docker db: engine unreachable at {}: no such file or directory",
            missing.display()
        )))
    );

    // A socket file nobody listens on any more.
    let dead = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let probe = Docker::with_engine("db", Engine::at(&dead)).unwrap();
    assert_eq!(
        check(&probe).await.unwrap_err().reason,
        format!("docker db: engine unreachable at {}: connection refused", dead.display())
    );
}

#[test]
fn construction_errors() {
    let rule =
        "is not a container name or id (letters, digits, _ . -, starting with a letter or digit)";
    for bad in ["", "a b", "../x"] {
        assert_eq!(
            Docker::with_engine(bad, Engine::at(PRIVATE_SOCKET)).unwrap_err().message(),
            format!("docker: {bad:?} {rule}")
        );
    }
    assert!(Docker::with_engine("/agent", Engine::at(PRIVATE_SOCKET)).is_ok());
    assert_eq!(
        Engine::from_host("tcp://127.0.0.1:2375").unwrap_err().to_string(),
        "DOCKER_HOST=\"tcp://127.0.0.1:2375\" is not supported: hale talks to the engine over a Unix socket (unix:///path)"
    );
}

#[tokio::test]
async fn start_stop_and_restart_through_the_api() {
    let Some(engine) = engine().await else { return };
    let version = engine.api_version().await.unwrap();
    assert!(version.starts_with("1."), "{version}");
    let c = Container::new(&engine, "actions");
    cli(
        &engine,
        &["create", "--init", "--network", "none", "--name", &c.name, IMAGE, "sleep", "100000"],
    )
    .await;
    let name = c.name.as_str();
    assert_eq!(inspect(&engine, name).await.status, "created");

    within("start", engine.start(name)).await.unwrap();
    let first = inspect(&engine, name).await;
    assert!(first.running, "{first:?}");
    // Starting a running container is not an error (304).
    within("start", engine.start(name)).await.unwrap();
    assert_eq!(inspect(&engine, name).await.started_at, first.started_at);

    within("restart", engine.restart(name, Duration::from_secs(5))).await.unwrap();
    let restarted = inspect(&engine, name).await;
    assert!(restarted.running, "{restarted:?}");
    assert_ne!(restarted.started_at, first.started_at, "a restart starts a new run");

    within("stop", engine.stop(name, Duration::from_secs(5))).await.unwrap();
    let stopped = inspect(&engine, name).await;
    assert_eq!((stopped.status.as_str(), stopped.running), ("exited", false));
    // Stopping a stopped container is not an error (304).
    within("stop", engine.stop(name, Duration::from_secs(5))).await.unwrap();
}

#[tokio::test]
async fn a_docker_component_is_started_watched_restarted_and_stopped_by_a_monitor() {
    let Some(engine) = engine().await else { return };
    let c = Container::new(&engine, "component");
    cli(
        &engine,
        &["create", "--init", "--network", "none", "--name", &c.name, IMAGE, "sleep", "100000"],
    )
    .await;
    let name = c.name.clone();
    let probe = Docker::with_engine(name.clone(), engine.clone()).unwrap();
    let monitor = Monitor::new();
    let component =
        Component::external("agent", engine.actions(name.clone(), Duration::from_secs(2)))
            .kind_label("docker")
            .stop_timeout(Duration::from_secs(7))
            .restart(hale::RestartConfig {
                initial_backoff: Duration::from_millis(50),
                ..Default::default()
            })
            .liveness(Check::new(probe).period(Duration::from_millis(100)).failure_threshold(1));
    tokio::time::timeout(GUARD, monitor.register(component)).await.unwrap().unwrap();

    // Registering starts it: the start action started the container.
    let healthy = |h: &hale::Health| {
        h.state == State::Running && h.probes.values().any(|p| p.consecutive_successes > 0)
    };
    let h = tokio::time::timeout(GUARD, monitor.wait_for("agent", healthy)).await.unwrap().unwrap();
    assert_eq!(&*h.kind, "docker");
    let first = inspect(&engine, &name).await;
    assert!(first.running, "{first:?}");

    // Killed behind hale's back: the liveness check sees it and hale starts it again.
    cli(&engine, &["kill", &name]).await;
    let h = tokio::time::timeout(
        GUARD,
        monitor.wait_for("agent", |h| h.restart_count >= 1 && healthy(h)),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(h.last_error.as_deref().unwrap_or("").contains("not running (exited)"), "{h:?}");
    let again = inspect(&engine, &name).await;
    assert!(again.running && again.started_at != first.started_at, "{again:?}");

    // Shutting down stops the container.
    tokio::time::timeout(GUARD, monitor.shutdown()).await.unwrap().unwrap();
    let stopped = inspect(&engine, &name).await;
    assert!(!stopped.running, "{stopped:?}");
}
