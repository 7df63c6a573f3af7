//! The `daemon` example end to end: its three components are started, checked, broken from
//! outside and restarted, and nothing is left behind when it exits.
//!
//! The test runs the example binaries (`target/<profile>/examples/daemon` and `grpc_server`,
//! built by `cargo test` with the rest, or here with `cargo build -p hale --examples` when
//! missing or older than their sources) with a 20 s run and a worker that goes silent after two
//! lines, and reads the example's parseable stdout. It kills the gRPC server (SIGKILL) once
//! `grpc` runs and expects a new server and a new `running`; it expects the worker to go
//! unhealthy for its log check and come back. With a Docker engine (`DOCKER_HOST`, else
//! `/tmp/hale-docker/docker.sock`; required under CI, skipped otherwise) it creates a container
//! with a HEALTHCHECK, breaks the check with `docker exec` once `agent` runs, and expects
//! `agent` to go unhealthy and be restarted through the API. Every wait is bounded; the
//! example runs in its own process group, killed at the end, and no process of it may remain.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use hale::docker::Engine;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Upper bound for any one wait; reached only when something is broken.
const GUARD: Duration = Duration::from_secs(20);
/// How long the example runs before it shuts down by itself.
const RUN_SECONDS: u64 = 20;
const IMAGE: &str = "hale-busybox:latest";
const PRIVATE_SOCKET: &str = "/tmp/hale-docker/docker.sock";

/// The directory holding the example binaries: `target/<profile>/examples`, next to `deps`
/// where this test runs from (so `CARGO_TARGET_DIR` and the profile are respected).
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("the test's directory");
    deps.parent().expect("the profile directory").join("examples")
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The example binaries, built first when missing or older than their sources.
fn example_binaries() -> (PathBuf, PathBuf) {
    let dir = examples_dir();
    let (daemon, server) = (dir.join("daemon"), dir.join("grpc_server"));
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let fresh =
        |binary: &Path, source: &str| match (modified(binary), modified(&sources.join(source))) {
            (Some(built), Some(written)) => built >= written,
            (Some(_), None) => true,
            _ => false,
        };
    if !fresh(&daemon, "daemon.rs") || !fresh(&server, "grpc_server.rs") {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build
            .args(["build", "-p", "hale", "--examples"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null());
        // What cargo sets for this test only: build scripts that watch these (ring watches
        // CARGO_MANIFEST_DIR) would otherwise rebuild, and again in the next plain build.
        for (key, _) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            let for_this_test = key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_")
                || matches!(
                    key,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_MANIFEST_LINKS"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                        | "OUT_DIR"
                );
            if for_this_test {
                build.env_remove(key);
            }
        }
        let child = build.spawn().expect("cargo build -p hale --examples");
        let (status, _, _) = finish(child, Duration::from_secs(900), "cargo build --examples");
        assert!(status.success(), "cargo build -p hale --examples: {status}");
    }
    assert!(daemon.exists() && server.exists(), "no example binaries in {}", dir.display());
    (daemon, server)
}

/// Wait for `child` up to `limit` (killing it past that, and failing), then read its output.
fn finish(
    mut child: Child,
    limit: Duration,
    what: &str,
) -> (std::process::ExitStatus, String, String) {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} took over {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |pipe: Option<&mut dyn Read>| {
        let mut text = String::new();
        if let Some(pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    };
    let out = read(child.stdout.as_mut().map(|p| p as &mut dyn Read));
    let err = read(child.stderr.as_mut().map(|p| p as &mut dyn Read));
    (status, out, err)
}

/// The engine for the `agent` component, or `None` (after saying why) outside CI.
fn engine() -> Option<Engine> {
    let engine = match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => Engine::from_host(&host).expect("DOCKER_HOST"),
        _ => Engine::at(PRIVATE_SOCKET),
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let outcome =
        runtime.block_on(async { tokio::time::timeout(GUARD, engine.api_version()).await });
    match outcome {
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
            println!(
                "without agent: no Docker engine (run sh ../shared/docker-engine.sh up): {why}"
            );
            None
        }
    }
}

/// The test container; `docker rm -f` on drop.
struct Container {
    name: String,
    host: String,
}

impl Container {
    /// A stopped container whose HEALTHCHECK fails once `/run/broken` exists; `/run` is a
    /// tmpfs, so every start begins healthy.
    fn create(engine: &Engine) -> Container {
        let name = format!("hale-test-agent-{}", std::process::id());
        let host = format!("unix://{}", engine.socket().display());
        let container = Container { name, host };
        let _ = container.docker(&["rm", "-f", &container.name]);
        let (ok, out) = container.docker(&[
            "create",
            "--init",
            "--network",
            "none",
            "--tmpfs",
            "/run",
            "--health-cmd",
            "test ! -e /run/broken || { echo broken; exit 1; }",
            "--health-interval",
            "500ms",
            "--health-timeout",
            "5s",
            "--health-retries",
            "1",
            "--name",
            &container.name,
            IMAGE,
            "sleep",
            "100000",
        ]);
        assert!(ok, "docker create: {out}");
        container
    }

    /// Run the docker CLI against the engine: whether it succeeded, and its output.
    fn docker(&self, args: &[&str]) -> (bool, String) {
        let program =
            if Path::new("/usr/bin/docker").exists() { "/usr/bin/docker" } else { "docker" };
        let child = Command::new(program)
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("{program}: {err}"));
        let (status, out, err) = finish(child, GUARD, &format!("docker {args:?}"));
        (status.success(), format!("{}{}", out.trim(), err.trim()))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.docker(&["rm", "-f", &self.name]);
    }
}

/// The running example until it is reaped; its process group is killed on drop.
struct Example(Option<Child>);

impl Drop for Example {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// The process group of a live process, `None` when it is gone or a zombie.
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(2)?.parse().ok()
}

/// Every live process in one of `groups`.
fn members_of(groups: &BTreeSet<i32>) -> Vec<(i32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| process_group(pid).map(|group| (pid, group)))
        .filter(|(_, group)| groups.contains(group))
        .collect()
}

/// The PID in an `OUTPUT <component> PID <pid> ...` line.
fn pid_line(line: &str, component: &str) -> Option<i32> {
    let rest = line.strip_prefix(&format!("OUTPUT {component} PID "))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The first line at or after `from` that starts with `prefix` and satisfies `also`.
fn find(lines: &[String], from: usize, prefix: &str, also: impl Fn(&str) -> bool) -> Option<usize> {
    (from..lines.len()).find(|&i| lines[i].starts_with(prefix) && also(&lines[i]))
}

#[test]
fn the_daemon_example_supervises_its_three_components() {
    let (daemon, _) = example_binaries();
    let engine = engine();
    let container = engine.as_ref().map(Container::create);

    let mut command = Command::new(&daemon);
    command
        .env("HALE_EXAMPLE_SECONDS", RUN_SECONDS.to_string())
        .env("HALE_EXAMPLE_WORKER_SILENT_AFTER", "2")
        .env_remove("HALE_EXAMPLE_CONTAINER")
        .env_remove("HALE_EXAMPLE_GRPC_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0);
    if let Some(c) = &container {
        command.env("HALE_EXAMPLE_CONTAINER", &c.name).env("DOCKER_HOST", &c.host);
    }
    let child = command.spawn().expect("spawn the daemon example");
    let example_pid = child.id() as i32;
    let mut example = Example(Some(child));

    let stdout = example.0.as_mut().and_then(|c| c.stdout.take()).expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // Read until the example ends, breaking things from outside as it goes.
    let mut lines: Vec<String> = Vec::new();
    let mut grpc_pids: Vec<i32> = Vec::new();
    let mut worker_pids: Vec<i32> = Vec::new();
    let mut killed: Option<(usize, i32)> = None;
    let mut broken_at: Option<usize> = None;
    let deadline = Instant::now() + Duration::from_secs(RUN_SECONDS) + GUARD;
    let transcript = |lines: &[String]| lines.join("\n");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the example did not finish in time:\n{}", transcript(&lines))
            }
        };
        println!("{line}");
        if let Some(pid) = pid_line(&line, "grpc") {
            grpc_pids.push(pid);
        }
        if let Some(pid) = pid_line(&line, "worker") {
            worker_pids.push(pid);
        }
        lines.push(line);
        let last = lines.last().map(String::as_str).unwrap_or_default();

        // Once grpc runs, kill its server behind hale's back.
        let grpc_runs = find(&lines, 0, "EVENT grpc starting -> running", |_| true).is_some();
        if killed.is_none()
            && grpc_runs
            && let Some(&pid) = grpc_pids.last()
        {
            kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill the gRPC server");
            println!("TEST killed the gRPC server {pid}");
            killed = Some((lines.len(), pid));
        }
        // Once agent runs, break its HEALTHCHECK.
        if let Some(c) = &container
            && broken_at.is_none()
            && last.starts_with("EVENT agent starting -> running")
        {
            let (ok, out) = c.docker(&["exec", &c.name, "touch", "/run/broken"]);
            assert!(ok, "docker exec: {out}");
            println!("TEST broke the agent's HEALTHCHECK");
            broken_at = Some(lines.len());
        }
    }

    // The example ends by itself and says so.
    let exit_deadline = Instant::now() + GUARD;
    let status = loop {
        let child = example.0.as_mut().expect("the example");
        if let Some(status) = child.try_wait().expect("try_wait") {
            example.0 = None;
            break status;
        }
        assert!(Instant::now() < exit_deadline, "the example did not exit after its output ended");
        std::thread::sleep(Duration::from_millis(20));
    };
    let all = transcript(&lines);
    assert!(status.success(), "the example failed ({status}):\n{all}");
    assert_eq!(lines.last().map(String::as_str), Some("DONE"), "{all}");

    // grpc: running, killed, a new server, running again.
    let (killed_at, killed_pid) = killed.unwrap_or_else(|| panic!("grpc never ran:\n{all}"));
    let after_kill = find(&lines, killed_at, "EVENT grpc ", |l| l.contains(" -> restarting: "))
        .unwrap_or_else(|| panic!("grpc was not restarted after the kill:\n{all}"));
    find(&lines, after_kill, "EVENT grpc starting -> running", |_| true)
        .unwrap_or_else(|| panic!("grpc did not run again after the kill:\n{all}"));
    assert!(
        grpc_pids.iter().any(|&pid| pid != killed_pid),
        "no new gRPC server after {killed_pid}: {grpc_pids:?}\n{all}"
    );

    // worker: silent, unhealthy for its log check, restarted, running again.
    let unhealthy = find(&lines, 0, "EVENT worker running -> unhealthy: ", |l| l.contains("log /"))
        .unwrap_or_else(|| panic!("worker never went unhealthy for its log check:\n{all}"));
    let restarting = find(&lines, unhealthy, "EVENT worker unhealthy -> restarting: ", |_| true)
        .unwrap_or_else(|| panic!("worker was not restarted:\n{all}"));
    find(&lines, restarting, "EVENT worker starting -> running", |_| true)
        .unwrap_or_else(|| panic!("worker did not run again:\n{all}"));
    assert!(worker_pids.len() >= 2, "one worker instance only: {worker_pids:?}\n{all}");

    // agent: running, unhealthy once broken, restarted through the API, running again.
    if let Some(c) = &container {
        let broken_at = broken_at.unwrap_or_else(|| panic!("agent never ran:\n{all}"));
        let unhealthy = find(&lines, broken_at, "EVENT agent running -> unhealthy: ", |l| {
            l.contains(&format!("docker {}: unhealthy", c.name))
        })
        .unwrap_or_else(|| panic!("agent never went unhealthy:\n{all}"));
        let restarting = find(&lines, unhealthy, "EVENT agent unhealthy -> restarting: ", |_| true)
            .unwrap_or_else(|| panic!("agent was not restarted:\n{all}"));
        find(&lines, restarting, "EVENT agent starting -> running", |_| true)
            .unwrap_or_else(|| panic!("agent did not run again:\n{all}"));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("HEALTH agent stopped restarts=")
                    && !l.ends_with("restarts=0")),
            "{all}"
        );
        // Shutting down stopped the container.
        let (ok, state) = c.docker(&["inspect", "-f", "{{.State.Running}}", &c.name]);
        assert!(ok && state == "false", "the container still runs after shutdown: {state}");
    } else {
        assert!(lines.iter().any(|l| l.starts_with("NOTE agent skipped: ")), "{all}");
    }

    // Nothing of the example is left: not in its own group, nor in any component's.
    let _ = killpg(Pid::from_raw(example_pid), Signal::SIGKILL);
    let groups: BTreeSet<i32> =
        [example_pid].into_iter().chain(grpc_pids.iter().copied()).chain(worker_pids).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = members_of(&groups);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes left behind (pid, group): {left:?}\n{all}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
