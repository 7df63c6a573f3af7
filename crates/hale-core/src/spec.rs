//! What a component is told to be: probe settings, restart policy, exit rules, timeouts.
//!
//! These are the core's own types, with defaults from SEMANTICS.md. They carry no serde and
//! know nothing of files: the binary maps its config file onto them and the library exposes
//! them to embedders. [`Spec::validate`] enforces the rules that make a spec meaningful; the
//! state machine relies on them and refuses an invalid spec at construction.

use std::time::Duration;

use crate::ProbeKind;

/// How one probe kind is scheduled and judged.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    /// Delay before the first run, counted from the instance start (startup) or from startup
    /// success (liveness and readiness).
    pub initial_delay: Duration,
    /// Time between the starts of two runs (fixed rate).
    pub period: Duration,
    /// How long one run may take before it counts as a failure.
    pub timeout: Duration,
    /// Consecutive successes needed to count as passing; must be 1 for startup and liveness.
    pub success_threshold: u32,
    /// Consecutive failures that condemn the instance (startup, liveness) or mark it unready.
    pub failure_threshold: u32,
    /// Grace between the stop signal and SIGKILL when this probe condemns the instance;
    /// `None` uses the component's `stop_timeout`.
    pub termination_grace: Option<Duration>,
}

impl ProbeSpec {
    /// The Kubernetes-like defaults of SEMANTICS.md §2 for `kind`.
    pub fn defaults(kind: ProbeKind) -> Self {
        let (period, timeout, failure_threshold) = match kind {
            ProbeKind::Startup => (Duration::from_secs(1), Duration::from_secs(1), 30),
            ProbeKind::Liveness => (Duration::from_secs(10), Duration::from_secs(3), 3),
            ProbeKind::Readiness => (Duration::from_secs(5), Duration::from_secs(3), 3),
        };
        ProbeSpec {
            initial_delay: Duration::ZERO,
            period,
            timeout,
            success_threshold: 1,
            failure_threshold,
            termination_grace: None,
        }
    }
}

/// When a terminated instance is started again (systemd's `Restart=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Restart after every termination that is not prevented.
    #[default]
    Always,
    /// Restart only after failures.
    OnFailure,
    /// Never restart automatically.
    Never,
}

/// Restart policy, backoff and the restart limit.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartConfig {
    /// Which terminations are restarted.
    pub policy: RestartPolicy,
    /// Restarts allowed within `window` before the component enters `Failed`.
    pub max_restarts: u32,
    /// The sliding window over which restarts are counted.
    pub window: Duration,
    /// A started instance that lives this long is stable and resets the backoff.
    pub min_uptime: Duration,
    /// Delay before the first restart of a crash loop.
    pub initial_backoff: Duration,
    /// The cap on the delay.
    pub max_backoff: Duration,
    /// Growth factor of the delay from one restart to the next.
    pub multiplier: f64,
}

impl Default for RestartConfig {
    /// The seed's defaults: always, 10 restarts in 10 minutes, 10 s minimum uptime, backoff
    /// 1 s doubling up to 60 s.
    fn default() -> Self {
        RestartConfig {
            policy: RestartPolicy::Always,
            max_restarts: 10,
            window: Duration::from_secs(600),
            min_uptime: Duration::from_secs(10),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            multiplier: 2.0,
        }
    }
}

impl RestartConfig {
    /// The delay before the restart that makes `unstable` consecutive unstable restarts:
    /// `min(initial * multiplier^(unstable-1), max)`, without overflow for any count.
    pub fn delay(&self, unstable: u32) -> Duration {
        if unstable <= 1 || self.initial_backoff.is_zero() {
            return self.initial_backoff.min(self.max_backoff);
        }
        // Powers beyond 2^63 saturate anyway; clamping the exponent keeps powi exact and finite.
        let exp = i32::try_from(unstable - 1).unwrap_or(i32::MAX).min(1024);
        let secs = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exp);
        match Duration::try_from_secs_f64(secs) {
            Ok(d) => d.min(self.max_backoff),
            Err(_) => self.max_backoff,
        }
    }
}

/// Whether hale spawns the component or acts on something that exists on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComponentKind {
    /// hale spawns and owns a process; it is stopped by signals to its process group.
    #[default]
    Process,
    /// Started, stopped and restarted through actions the embedder or config provides.
    External,
}

/// What passes the startup gate besides the startup probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadyMode {
    /// The startup probe alone (or nothing, when there is none).
    #[default]
    Probe,
    /// `READY=1` on the notify socket is also required.
    Notify,
}

/// Exit statuses with a special meaning (systemd's three lists).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExitRules {
    /// Exit codes besides 0 that count as success.
    pub success_exit_status: Vec<i32>,
    /// Exit codes that are never restarted (checked first).
    pub restart_prevent_exit_status: Vec<i32>,
    /// Exit codes that are restarted under every policy.
    pub restart_force_exit_status: Vec<i32>,
}

/// Everything the state machine needs to know about one component.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Process or external.
    pub kind: ComponentKind,
    /// Gates liveness and readiness.
    pub startup: Option<ProbeSpec>,
    /// Condemns a running instance that stops answering.
    pub liveness: Option<ProbeSpec>,
    /// Decides whether the instance takes work.
    pub readiness: Option<ProbeSpec>,
    /// Policy, backoff and limit.
    pub restart: RestartConfig,
    /// Exit statuses with a special meaning.
    pub exit: ExitRules,
    /// Whether `READY=1` is needed to pass the startup gate.
    pub ready: ReadyMode,
    /// sd_notify watchdog period; `None` disables it.
    pub watchdog: Option<Duration>,
    /// With `ReadyMode::Notify`, how long `READY=1` may take (`StartTimeout` after it).
    pub start_timeout: Duration,
    /// Grace between the stop signal and SIGKILL, and the bound on an external stop action.
    pub stop_timeout: Duration,
    /// The bound on an external start or restart action (a `StartError` after it).
    pub restart_timeout: Duration,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            kind: ComponentKind::Process,
            startup: None,
            liveness: None,
            readiness: None,
            restart: RestartConfig::default(),
            exit: ExitRules::default(),
            ready: ReadyMode::Probe,
            watchdog: None,
            start_timeout: Duration::from_secs(90),
            stop_timeout: Duration::from_secs(10),
            restart_timeout: Duration::from_secs(30),
        }
    }
}

/// A spec that breaks a rule of SEMANTICS.md; names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The field at fault, as in the config file: `liveness.success_threshold`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for SpecError {}

impl Spec {
    /// The probe spec for `kind`, if configured.
    pub fn probe(&self, kind: ProbeKind) -> Option<&ProbeSpec> {
        match kind {
            ProbeKind::Startup => self.startup.as_ref(),
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
        }
    }

    /// Check every rule; returns all violations, not only the first.
    pub fn validate(&self) -> Result<(), Vec<SpecError>> {
        let mut errors = Vec::new();
        let mut err = |field: String, message: &str| {
            errors.push(SpecError { field, message: message.to_owned() })
        };
        for kind in ProbeKind::ALL {
            let Some(p) = self.probe(kind) else { continue };
            let name = kind.as_str();
            if p.period.is_zero() {
                err(format!("{name}.period"), "must be greater than 0, for example \"1s\"");
            }
            if p.timeout.is_zero() {
                err(format!("{name}.timeout"), "must be greater than 0, for example \"1s\"");
            }
            if p.failure_threshold == 0 {
                err(format!("{name}.failure_threshold"), "must be at least 1");
            }
            if p.success_threshold == 0 {
                err(format!("{name}.success_threshold"), "must be at least 1");
            } else if p.success_threshold != 1 && kind != ProbeKind::Readiness {
                err(
                    format!("{name}.success_threshold"),
                    "must be 1 for startup and liveness probes (as in Kubernetes); remove it",
                );
            }
            if p.termination_grace.is_some() && kind == ProbeKind::Readiness {
                err(
                    format!("{name}.termination_grace"),
                    "readiness never terminates anything; remove it",
                );
            }
        }
        let r = &self.restart;
        if !(r.multiplier.is_finite() && r.multiplier >= 1.0) {
            err("restart.multiplier".into(), "must be a number >= 1.0, for example 2.0");
        }
        if r.max_backoff < r.initial_backoff {
            err(
                "restart.max_backoff".into(),
                "must be at least restart.initial_backoff; raise it or lower initial_backoff",
            );
        }
        if r.window.is_zero() {
            err("restart.window".into(), "must be greater than 0, for example \"10m\"");
        }
        if self.watchdog.is_some_and(|w| w.is_zero()) {
            err("watchdog".into(), "must be greater than 0, or left out to disable it");
        }
        if self.start_timeout.is_zero() {
            err("start_timeout".into(), "must be greater than 0, for example \"90s\"");
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}
