//! The `docker` check: healthy when a container exists, runs, and, if it has a HEALTHCHECK, the
//! engine reports it healthy.
//!
//! Each check is one `GET /containers/{name}/json` through [`crate::docker::Engine`], on a fresh
//! connection to the engine's Unix socket. The engine's own HEALTHCHECK runs on its schedule;
//! this check only reads its latest verdict, so `starting` (no verdict yet) is a failure, as is
//! a paused container. What this module does not do: run anything in the container, follow the
//! events stream, or apply a timeout of its own (the driver drops the future).

use std::fmt;
use std::sync::Arc;

use super::{BoxFuture, CheckResult, InvalidProbe, Probe, ProbeContext, ProbeError};
use crate::docker::{ContainerState, Engine};

/// Inspects a container; healthy when it exists, runs, and its HEALTHCHECK (if it has one)
/// says `healthy`. `Ok` says `running` or `running, healthy`.
///
/// Failures read `docker NAME: no such container`, `docker NAME: not running (exited)`,
/// `docker NAME: health starting`, `docker NAME: unhealthy` (with the health check's last
/// output) or `docker NAME: engine unreachable at /var/run/docker.sock: connection refused`.
///
/// ```
/// use hale::docker::Engine;
/// use hale::probe::Docker;
/// let check = Docker::with_engine("db", Engine::at("/run/docker.sock")).unwrap();
/// assert!(Docker::with_engine("", Engine::at("/run/docker.sock")).is_err());
/// ```
#[derive(Clone)]
pub struct Docker {
    container: Arc<str>,
    engine: Engine,
}

impl Docker {
    /// A check of `container` (a name or id) on the engine named by `DOCKER_HOST`
    /// (`unix:///path`, default `/var/run/docker.sock`). Fails when the name cannot name a
    /// container or `DOCKER_HOST` is not a Unix socket.
    pub fn new(container: impl Into<String>) -> Result<Self, InvalidProbe> {
        let container = container.into();
        let engine = Engine::from_env()
            .map_err(|err| InvalidProbe::new(format!("docker {container}: {err}")))?;
        Docker::with_engine(container, engine)
    }

    /// A check of `container` on `engine`. Fails when the name cannot name a container (see
    /// [`crate::docker::container_name`]).
    pub fn with_engine(container: impl Into<String>, engine: Engine) -> Result<Self, InvalidProbe> {
        let container = container.into();
        crate::docker::container_name(&container)
            .map_err(|err| InvalidProbe::new(format!("docker: {err}")))?;
        Ok(Self { container: Arc::from(container), engine })
    }

    /// The container's name or id, as given.
    pub fn container(&self) -> &str {
        &self.container
    }

    /// The engine it asks.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl fmt::Debug for Docker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Probe for Docker {
    fn check(&self, _ctx: ProbeContext) -> BoxFuture<CheckResult> {
        let this = self.clone();
        Box::pin(async move { this.run().await })
    }

    /// `docker NAME`.
    fn describe(&self) -> String {
        format!("docker {}", self.container)
    }
}

impl Docker {
    async fn run(&self) -> CheckResult {
        let fail = |what: String| ProbeError::new(format!("docker {}: {what}", self.container));
        // Every engine error reads well after the name: `no such container`,
        // `engine unreachable at /path: connection refused`, `engine answered 500: ...`.
        let state =
            self.engine.inspect(&self.container).await.map_err(|err| fail(err.to_string()))?;
        verdict(&self.container, &state)
    }
}

/// Healthy or not, from what the engine said.
fn verdict(container: &str, state: &ContainerState) -> CheckResult {
    let reason = |what: &str| format!("docker {container}: {what}");
    if !state.running || state.status != "running" {
        let output = match state.exit_code {
            Some(code) if state.status == "exited" || state.status == "dead" => {
                format!("exit code {code}")
            }
            _ => String::new(),
        };
        return Err(ProbeError::with_output(
            reason(&format!("not running ({})", state.status)),
            output,
        ));
    }
    // The HEALTHCHECK's last output, which says why it failed.
    let output = || super::truncate_output(state.health_output.as_deref().unwrap_or("").trim_end());
    match state.health.as_deref() {
        None => Ok("running".to_owned()),
        Some("healthy") => Ok(match output() {
            text if text.is_empty() => "running, healthy".to_owned(),
            text => super::truncate_output(&format!("running, healthy\n{text}")),
        }),
        Some("unhealthy") => Err(ProbeError::with_output(reason("unhealthy"), output())),
        Some("starting") => Err(ProbeError::with_output(reason("health starting"), output())),
        Some(other) => Err(ProbeError::with_output(reason(&format!("health {other}")), output())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: &str, health: Option<&str>) -> ContainerState {
        ContainerState {
            status: status.to_owned(),
            running: matches!(status, "running" | "paused" | "restarting"),
            health: health.map(str::to_owned),
            health_output: Some("probe said\n".to_owned()),
            exit_code: Some(3),
            started_at: String::new(),
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict("c", &state("running", None)), Ok("running".to_owned()));
        assert_eq!(
            verdict("c", &state("running", Some("healthy"))),
            Ok("running, healthy\nprobe said".to_owned())
        );
        assert_eq!(
            verdict("c", &state("running", Some("unhealthy"))),
            Err(ProbeError::with_output("docker c: unhealthy", "probe said"))
        );
        assert_eq!(
            verdict("c", &state("running", Some("starting"))).unwrap_err().reason,
            "docker c: health starting"
        );
        assert_eq!(
            verdict("c", &state("exited", Some("unhealthy"))),
            Err(ProbeError::with_output("docker c: not running (exited)", "exit code 3"))
        );
        assert_eq!(
            verdict("c", &state("paused", None)).unwrap_err().reason,
            "docker c: not running (paused)"
        );
        assert_eq!(
            verdict("c", &state("created", None)),
            Err(ProbeError::new("docker c: not running (created)"))
        );
    }
}
