//! The original design's three components, supervised with the library alone: a gRPC server
//! checked through the standard health service, a worker checked through its own output, and a
//! Docker container checked through the engine.
//!
//! - `grpc`: the `grpc_server` example binary (found next to this example's executable, so
//!   build both with `cargo build -p hale --examples`), on a free loopback port (or
//!   `HALE_EXAMPLE_GRPC_PORT`), with a `probe::Grpc` startup and liveness check; killed, it is
//!   restarted.
//! - `worker`: `sh -c` printing `polling for tasks` every second, with a `probe::Log` liveness
//!   check (a matching line within 3 s) fed by the worker's own output. With
//!   `HALE_EXAMPLE_WORKER_SILENT_AFTER=N` each instance goes silent after N lines, goes
//!   unhealthy and is restarted.
//! - `agent`: the existing container named by `HALE_EXAMPLE_CONTAINER`, started, stopped and
//!   restarted through the Engine API (`DOCKER_HOST`, default `/var/run/docker.sock`), with a
//!   `probe::Docker` startup and liveness check. Skipped, with a `NOTE` line, when the variable
//!   is unset or no engine answers.
//!
//! Every line is parseable: `EVENT <component> <from> -> <to>: <reason>` per transition,
//! `OUTPUT <component> <line>` per line a process component prints (each instance's first
//! line is `PID <pid> ...`), `NOTE ...`, and at the end one `HEALTH <component> <state>
//! restarts=<n>` per component and `DONE`. The example shuts the monitor down and exits after
//! `HALE_EXAMPLE_SECONDS` (default 20), or on SIGINT or SIGTERM. Run it with
//! `cargo run -p hale --example daemon`.

use std::sync::Arc;
use std::time::Duration;

use hale::docker::Engine;
use hale::probe::{self, FanOut};
use hale::{Check, Command, Component, Monitor, OutputSink, RestartConfig, Stream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::sleep;

/// Prints each line a component writes as `OUTPUT <component> <line>`.
struct Print;

impl OutputSink for Print {
    fn line(&self, component: &str, _stream: Stream, line: &[u8]) {
        println!("OUTPUT {component} {}", String::from_utf8_lossy(line));
    }
}

/// Quick restarts, so that the demonstration fits in a few seconds.
fn quick_restarts() -> RestartConfig {
    RestartConfig {
        initial_backoff: Duration::from_millis(300),
        max_backoff: Duration::from_secs(2),
        ..RestartConfig::default()
    }
}

/// An environment variable parsed as a number, or `default` when unset.
fn env_number(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(value) => value.trim().parse().map_err(|err| format!("{name}={value:?}: {err}")),
        Err(_) => Ok(default),
    }
}

/// The `grpc` component: the `grpc_server` example next to this executable.
fn grpc(port: u16) -> Result<Component, Box<dyn std::error::Error>> {
    let exe = std::env::current_exe()?;
    let server = exe.parent().ok_or("the executable has no directory")?.join("grpc_server");
    if !server.exists() {
        return Err(format!(
            "{} is missing: build it with `cargo build -p hale --examples`",
            server.display()
        )
        .into());
    }
    let address = format!("127.0.0.1:{port}");
    let health = probe::Grpc::new(address.as_str())?;
    Ok(Component::process(
        "grpc",
        Command::new(server).arg(port.to_string()).output(Arc::new(Print)),
    )
    .kind_label("grpc")
    .startup(
        Check::new(health.clone())
            .period(Duration::from_millis(200))
            .timeout(Duration::from_secs(1))
            .failure_threshold(50),
    )
    .liveness(
        Check::new(health.service("api"))
            .period(Duration::from_millis(500))
            .timeout(Duration::from_secs(1))
            .failure_threshold(2),
    )
    .stop_timeout(Duration::from_secs(3))
    .restart(quick_restarts()))
}

/// The `worker` component: a heartbeat on stdout, checked through its own output.
fn worker(silent_after: u64) -> Result<Component, Box<dyn std::error::Error>> {
    let heartbeat = probe::Log::new("polling for tasks", Duration::from_secs(3))?;
    let output = FanOut::new().with(Arc::new(heartbeat.clone())).with(Arc::new(Print));
    let script = r#"echo "PID $$ working"
n=${SILENT_AFTER:-0}; i=0
while :; do
    if [ "$n" -eq 0 ] || [ "$i" -lt "$n" ]; then echo "polling for tasks"; fi
    i=$((i + 1)); sleep 1
done"#;
    Ok(Component::process(
        "worker",
        Command::shell(script)
            .env("SILENT_AFTER", silent_after.to_string())
            .output(Arc::new(output)),
    )
    .kind_label("worker")
    .liveness(
        // The new instance's first line comes at once; the delay keeps the check from reading
        // the previous instance's stale match before it arrives.
        Check::new(heartbeat)
            .initial_delay(Duration::from_secs(1))
            .period(Duration::from_millis(500))
            .failure_threshold(2),
    )
    .stop_timeout(Duration::from_secs(3))
    .restart(quick_restarts()))
}

/// The `agent` component, or why there is none.
async fn agent() -> Result<Component, String> {
    let container = match std::env::var("HALE_EXAMPLE_CONTAINER") {
        Ok(name) if !name.is_empty() => name,
        _ => return Err("HALE_EXAMPLE_CONTAINER is not set".to_owned()),
    };
    let engine = Engine::from_env().map_err(|err| err.to_string())?;
    match tokio::time::timeout(Duration::from_secs(5), engine.api_version()).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => return Err(err.to_string()),
        Err(_) => return Err(format!("no answer from {}", engine.socket().display())),
    }
    let health = probe::Docker::with_engine(container.as_str(), engine.clone())
        .map_err(|err| err.to_string())?;
    Ok(Component::external("agent", engine.actions(container, Duration::from_secs(2)))
        .kind_label("docker")
        // A fresh run's HEALTHCHECK says `starting` until its first verdict.
        .startup(
            Check::new(health.clone()).period(Duration::from_millis(300)).failure_threshold(100),
        )
        .liveness(Check::new(health).period(Duration::from_millis(500)).failure_threshold(2))
        .restart_timeout(Duration::from_secs(15))
        .restart(quick_restarts()))
}

/// A free loopback port, or `HALE_EXAMPLE_GRPC_PORT`.
fn grpc_port() -> Result<u16, Box<dyn std::error::Error>> {
    if let Ok(port) = std::env::var("HALE_EXAMPLE_GRPC_PORT") {
        return Ok(port.parse()?);
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds = env_number("HALE_EXAMPLE_SECONDS", 20)?;
    let silent_after = env_number("HALE_EXAMPLE_WORKER_SILENT_AFTER", 0)?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;

    let monitor = Monitor::new();
    let mut events = monitor.subscribe();
    let print =
        |e: hale::Event| println!("EVENT {} {} -> {}: {}", e.component, e.from, e.to, e.reason);

    monitor.register(grpc(grpc_port()?)?).await?;
    monitor.register(worker(silent_after)?).await?;
    match agent().await {
        Ok(component) => monitor.register(component).await?,
        Err(why) => println!("NOTE agent skipped: {why}"),
    }

    let end = sleep(Duration::from_secs(seconds));
    tokio::pin!(end);
    loop {
        tokio::select! {
            () = &mut end => break,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            event = events.recv() => match event {
                Ok(e) => print(e),
                Err(e) => println!("NOTE events: {e}"),
            },
        }
    }

    monitor.shutdown().await?;
    while let Ok(e) = events.try_recv() {
        print(e);
    }
    for h in monitor.health_summary() {
        println!("HEALTH {} {} restarts={}", h.name, h.state, h.restart_count);
    }
    println!("DONE");
    Ok(())
}
