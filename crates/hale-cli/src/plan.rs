//! From a validated config to the library's components: one [`hale::Component`] per
//! `[components.NAME]`, with its probes built from the check keys.
//!
//! This is the only place that knows both the config types and the library's: the config stays
//! a description of the file, the library stays free of serde and TOML.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hale::probe::{self, Probe};
use hale::{Check, Command, Component, OutputSink, RestartConfig, RestartPolicy};
use hale_core::ProbeSpec;

use crate::config::{self, CheckConfig, ComponentConfig, ProbeConfig, Run};

/// Builds the sink that receives a process component's output lines, given the log checks
/// that must see them too; `None` leaves the output on hale's own stdout and stderr.
pub type OutputFactory<'a> =
    &'a mut dyn FnMut(Vec<Arc<dyn OutputSink>>) -> Option<Arc<dyn OutputSink>>;

/// Build the library component for `c`. Its checks are built first, so that the log checks
/// can be handed to `output` with the lines they read.
///
/// Children run in `cwd` when set, else in the config file's directory (`base_dir`), as with
/// docker compose: relative paths in a config then mean the same wherever `hale up` runs.
pub fn component(
    c: &ComponentConfig,
    base_dir: &Path,
    output: OutputFactory<'_>,
) -> Result<Component> {
    let cwd = c.cwd.clone().unwrap_or_else(|| base_dir.to_path_buf());
    let mut log_sinks: Vec<Arc<dyn OutputSink>> = Vec::new();
    let mut checks = Vec::new();
    for p in [&c.startup, &c.liveness, &c.readiness] {
        checks.push(match p {
            Some(p) => Some(check(c, p, &mut log_sinks)?),
            None => None,
        });
    }
    if !log_sinks.is_empty() && !c.run.is_process() {
        bail!(
            "component {:?}: a log check reads the output of a process hale runs; this component has none",
            c.name
        );
    }
    let output = if c.run.is_process() { output(log_sinks) } else { None };
    let env_file = match &c.env_file {
        Some(path) => read_env_file(path)
            .with_context(|| format!("component {:?}: env_file {}", c.name, path.display()))?,
        None => Vec::new(),
    };
    let mut component = match &c.run {
        Run::Command(argv) => {
            let Some((program, args)) = argv.split_first() else {
                bail!("component {:?}: command is empty", c.name)
            };
            // A relative program path with a slash means relative to the child's directory.
            let program = if program.contains('/') && Path::new(program).is_relative() {
                cwd.join(program).into_os_string()
            } else {
                program.into()
            };
            Component::process(
                &c.name,
                command(c, env_file.clone(), &cwd, Command::new(program).args(args), output),
            )
        }
        Run::Shell(script) => Component::process(
            &c.name,
            command(c, env_file.clone(), &cwd, Command::shell(script), output),
        ),
        Run::Docker(container) => {
            let engine = docker_engine(c)?;
            Component::external(&c.name, engine.actions(container.clone(), c.stop_timeout))
                .kind_label("docker")
        }
        Run::Actions { start, stop, restart } => {
            let mut ext = hale::External::new();
            if let Some(argv) = start {
                ext = ext.start(argv_action(argv.clone(), c, &cwd));
            }
            if let Some(argv) = stop {
                ext = ext.stop(argv_action(argv.clone(), c, &cwd));
            }
            if let Some(argv) = restart {
                ext = ext.restart(argv_action(argv.clone(), c, &cwd));
            }
            Component::external(&c.name, ext)
        }
    };
    let r = &c.restart;
    component = component
        .restart(RestartConfig {
            policy: match r.policy {
                config::RestartPolicy::Always => RestartPolicy::Always,
                config::RestartPolicy::OnFailure => RestartPolicy::OnFailure,
                config::RestartPolicy::Never => RestartPolicy::Never,
            },
            max_restarts: r.max_restarts,
            window: r.window,
            min_uptime: r.min_uptime,
            initial_backoff: r.initial_backoff,
            max_backoff: r.max_backoff,
            multiplier: r.multiplier,
        })
        .stop_timeout(c.stop_timeout)
        .restart_timeout(c.restart_timeout)
        .success_exit_status(c.success_exit_status.iter().copied())
        .restart_prevent_exit_status(c.restart_prevent_exit_status.iter().copied())
        .restart_force_exit_status(c.restart_force_exit_status.iter().copied());
    if let Run::Docker(container) = &c.run {
        // The engine's SIGKILL comes `stop_timeout` after its stop signal; the driver gives the
        // whole stop action only the component's stop_timeout, so allow the engine its margin.
        component = component.stop_timeout(c.stop_timeout + DOCKER_STOP_MARGIN);
        // A process component's death is seen at once; a container's only by checking it. So a
        // docker component without a liveness check of its own gets one on its container.
        if c.liveness.is_none() {
            let probe = probe::Docker::with_engine(container.clone(), docker_engine(c)?)?;
            component = component.liveness(
                Check::new(probe).with_spec(ProbeSpec::defaults(hale::ProbeKind::Liveness)),
            );
        }
    }
    if c.ready == config::ReadyMode::Notify {
        component = component.ready_on_notify(c.start_timeout);
    }
    if let Some(w) = c.watchdog {
        component = component.watchdog(w);
    }
    if c.run.is_process() {
        // Every process component gets a NOTIFY_SOCKET: STATUS= and RESTART_RESET=1 are useful
        // without `ready = "notify"`.
        component = component.notify_access(match c.notify_access {
            config::NotifyAccess::Main => hale::NotifyAccess::Main,
            config::NotifyAccess::All => hale::NotifyAccess::All,
        });
    }
    let [startup, liveness, readiness]: [Option<Check>; 3] =
        checks.try_into().unwrap_or_else(|_| [None, None, None]);
    if let Some(check) = startup {
        component = component.startup(check);
    }
    if let Some(check) = liveness {
        component = component.liveness(check);
    }
    if let Some(check) = readiness {
        component = component.readiness(check);
    }
    Ok(component)
}

fn command(
    c: &ComponentConfig,
    env_file: Vec<(String, String)>,
    cwd: &Path,
    mut cmd: Command,
    output: Option<Arc<dyn OutputSink>>,
) -> Command {
    cmd = cmd.cwd(cwd);
    for (k, v) in env_file {
        cmd = cmd.env(k, v);
    }
    for (k, v) in &c.env {
        cmd = cmd.env(k, v);
    }
    cmd = cmd.stop_signal(c.stop_signal);
    if let Some(sink) = output {
        cmd = cmd.output(sink);
    }
    cmd
}

/// How much longer than its `stop_timeout` a docker component's stop action may take: the
/// engine's SIGKILL and the container's exit come after the grace.
const DOCKER_STOP_MARGIN: Duration = Duration::from_secs(5);

/// The engine named by `DOCKER_HOST` (default `/var/run/docker.sock`), for `c`'s container or
/// docker check.
fn docker_engine(c: &ComponentConfig) -> Result<hale::docker::Engine> {
    hale::docker::Engine::from_env().map_err(|e| anyhow::anyhow!("component {:?}: {e}", c.name))
}

/// An external action that runs an argv and succeeds when it exits 0.
fn argv_action(argv: Vec<String>, c: &ComponentConfig, cwd: &Path) -> hale::ActionFn {
    let cwd = cwd.to_path_buf();
    let env = c.env.clone();
    hale::action(move |_ctx| {
        let argv = argv.clone();
        let cwd = cwd.clone();
        let env = env.clone();
        async move {
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..]).kill_on_drop(true).stdin(std::process::Stdio::null());
            cmd.current_dir(cwd);
            cmd.envs(env);
            let status = cmd.status().await.map_err(|e| format!("{}: {e}", argv[0]))?;
            if status.success() { Ok(()) } else { Err(format!("{:?} {status}", argv)) }
        }
    })
}

fn check(
    c: &ComponentConfig,
    p: &ProbeConfig,
    log_sinks: &mut Vec<Arc<dyn OutputSink>>,
) -> Result<Check> {
    let probe: Arc<dyn Probe> = match &p.check {
        CheckConfig::Exec(argv) => Arc::new(probe::Exec::new(argv.clone())?),
        CheckConfig::Sh(script) => Arc::new(probe::Exec::sh(script.clone())?),
        CheckConfig::Tcp(addr) => Arc::new(probe::Tcp::new(addr.clone())?),
        CheckConfig::Http { url, method, headers, status, body_contains, ca_file, insecure } => {
            let mut h = probe::Http::get(url)?.method(method)?.status_range(status.0, status.1)?;
            for (k, v) in headers {
                h = h.header(k, v)?;
            }
            if let Some(text) = body_contains {
                h = h.body_contains(text.clone());
            }
            if let Some(ca) = ca_file {
                h = h.ca_file(ca)?;
            }
            if *insecure {
                h = h.insecure();
            }
            Arc::new(h)
        }
        CheckConfig::Grpc { address, service, tls } => {
            Arc::new(probe::Grpc::new(address.clone())?.service(service.clone()).tls(*tls))
        }
        CheckConfig::Process { pidfile: None } => Arc::new(probe::Process::own()),
        CheckConfig::Process { pidfile: Some(path) } => {
            Arc::new(probe::Process::pidfile(path.clone())?)
        }
        CheckConfig::File { path, max_age } => Arc::new(probe::File::new(path.clone(), *max_age)?),
        CheckConfig::Log { pattern, within } => {
            let log = probe::Log::new(pattern, *within)?;
            log_sinks.push(Arc::new(log.clone()));
            Arc::new(log)
        }
        CheckConfig::Docker(container) => {
            Arc::new(probe::Docker::with_engine(container.clone(), docker_engine(c)?)?)
        }
    };
    let spec = ProbeSpec {
        initial_delay: p.initial_delay,
        period: p.period,
        timeout: p.timeout,
        success_threshold: p.success_threshold,
        failure_threshold: p.failure_threshold,
        termination_grace: p.termination_grace,
    };
    Ok(Check::from_arc(probe).with_spec(spec))
}

/// Read `KEY=VALUE` lines (docker compose's `.env` format): blank lines and `#` comments are
/// skipped, an `export ` prefix is allowed, and a value in matching single or double quotes
/// loses them. Variables from `env` override these.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>> {
    // Bounded: `/dev/zero` or a FIFO as env_file must not hang or exhaust the daemon.
    const MAX_ENV_FILE: u64 = 1 << 20;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(path)?, MAX_ENV_FILE + 1),
        &mut bytes,
    )?;
    if bytes.len() as u64 > MAX_ENV_FILE {
        bail!("larger than 1 MiB: an env_file holds KEY=VALUE lines");
    }
    let text = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("not UTF-8 text"))?;
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            bail!("line {}: expected KEY=VALUE, found {line:?}", n + 1);
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
            bail!("line {}: {key:?} is not a variable name", n + 1);
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.push((key.to_owned(), value.to_owned()));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_are_read_like_compose_dot_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# comment\n\nA=1\nexport B = two words \nC=\"quoted\"\nD='x=y'\nE=\n",
        )
        .unwrap();
        let vars = read_env_file(&path).unwrap();
        let want: Vec<(String, String)> =
            [("A", "1"), ("B", "two words"), ("C", "quoted"), ("D", "x=y"), ("E", "")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(vars, want);
        std::fs::write(&path, "A=1\nnot a pair\n").unwrap();
        let err = read_env_file(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(read_env_file(&dir.path().join("missing")).is_err());
    }
}
