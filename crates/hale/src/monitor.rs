//! The [`Monitor`] handle: what an embedder holds to register components, act on them and read
//! their health.
//!
//! The handle owns nothing but channels. Commands go to the driver task over an `mpsc` with a
//! `oneshot` reply; each component's [`Health`] is published on its own `watch` channel (so a
//! status read never waits for the driver); transitions go out on a `broadcast`. Dropping
//! every handle without `shutdown` still stops the driver, which then stops every component.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hale_core::{Exit, ProbeKind, State};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::component::Component;
use crate::driver::{self, Request};

/// What can go wrong when talking to a monitor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No component with that name is registered.
    #[error("no component named {0:?}")]
    UnknownComponent(String),
    /// A component with that name is already registered.
    #[error("a component named {0:?} is already registered")]
    DuplicateComponent(String),
    /// The component's settings break a rule; every violation is listed.
    #[error("invalid component {name:?}: {}", .errors.join("; "))]
    InvalidComponent {
        /// The component.
        name: String,
        /// Each violation, naming its field.
        errors: Vec<String>,
    },
    /// The component has no probe of that kind.
    #[error("component {name:?} has no {kind} probe")]
    NoSuchProbe {
        /// The component.
        name: String,
        /// The missing kind.
        kind: ProbeKind,
    },
    /// The component still runs (or is stopping): stop it and wait until it is settled first.
    #[error("component {0:?} still runs: stop it before removing it")]
    NotSettled(String),
    /// The monitor has shut down.
    #[error("the monitor has shut down")]
    Closed,
}

/// One stored probe result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// Wall-clock time the run finished.
    pub at: SystemTime,
    /// How long it ran.
    pub duration: Duration,
    /// Whether it passed.
    pub ok: bool,
    /// Its failure reason (first) and output, cut to 4096 bytes.
    pub output: String,
}

/// A probe's counters and last results.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeHealth {
    /// Consecutive successes of the current instance.
    pub consecutive_successes: u32,
    /// Consecutive failures of the current instance.
    pub consecutive_failures: u32,
    /// The last five results, oldest first.
    pub last: Vec<ProbeResult>,
    /// Every run since registration: counts and a duration histogram.
    pub stats: ProbeStats,
}

/// Upper bounds, in seconds, of [`ProbeStats::buckets`] (the last bucket is `+Inf`).
pub const PROBE_DURATION_BOUNDS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Cumulative counters of one probe since its component was registered; never reset by
/// restarts or operator actions, so they suit Prometheus counters and histograms.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProbeStats {
    /// Runs finished.
    pub runs: u64,
    /// Runs that failed.
    pub failures: u64,
    /// Sum of run durations, in seconds.
    pub duration_sum: f64,
    /// Runs per duration bucket (not cumulative): `buckets[i]` counts durations at most
    /// `PROBE_DURATION_BOUNDS[i]` and above the previous bound; the last counts the rest.
    pub buckets: [u64; 13],
}

impl Eq for ProbeStats {}

impl ProbeStats {
    /// Count one run.
    pub fn record(&mut self, duration: Duration, ok: bool) {
        self.runs += 1;
        self.failures += u64::from(!ok);
        let secs = duration.as_secs_f64();
        self.duration_sum += secs;
        let i = PROBE_DURATION_BOUNDS.iter().position(|b| secs <= *b).unwrap_or(12);
        self.buckets[i] += 1;
    }
}

/// A snapshot of one component's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The component's name.
    pub name: Arc<str>,
    /// Its kind label ("process", "external", or the embedder's own).
    pub kind: Arc<str>,
    /// The public state.
    pub state: State,
    /// Whether it takes work.
    pub ready: bool,
    /// `Running` and (ready or no readiness probe).
    pub healthy: bool,
    /// The main process, for a running process component.
    pub pid: Option<u32>,
    /// The current (or last) incarnation.
    pub incarnation: u64,
    /// When the current instance started (monotonic), if one is alive.
    pub started_at: Option<std::time::Instant>,
    /// Automatic restarts since the last operator start or reset.
    pub restart_count: u32,
    /// Automatic restarts since registration; never reset (a Prometheus counter).
    pub restarts_total: u64,
    /// Restarts inside the sliding window when this snapshot was taken.
    pub restarts_in_window: u32,
    /// The backoff counter: consecutive restarts without a stable instance.
    pub unstable: u32,
    /// When the scheduled restart happens (monotonic), while backing off.
    pub next_restart_at: Option<std::time::Instant>,
    /// Why it entered its current state (the last transition's reason).
    pub state_reason: Option<Arc<str>>,
    /// The last failure's reason.
    pub last_error: Option<String>,
    /// How the last instance ended.
    pub last_exit: Option<Exit>,
    /// The last `STATUS=` text.
    pub status_text: Option<String>,
    /// Whether a stop is in progress.
    pub stopping: bool,
    /// Per probe kind: counters and last results.
    pub probes: BTreeMap<ProbeKind, ProbeHealth>,
}

impl Health {
    /// Time since the current instance started.
    pub fn uptime(&self) -> Option<Duration> {
        self.started_at.map(|t| t.elapsed())
    }

    /// Time until the scheduled restart.
    pub fn next_restart_in(&self) -> Option<Duration> {
        self.next_restart_at.map(|t| t.saturating_duration_since(std::time::Instant::now()))
    }

    /// No instance and nothing scheduled (`Stopped` or `Failed`, nothing alive).
    pub fn is_settled(&self) -> bool {
        matches!(self.state, State::Stopped | State::Failed) && self.pid.is_none()
    }
}

/// A state transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Wall-clock time.
    pub at: SystemTime,
    /// The component.
    pub component: Arc<str>,
    /// The old state.
    pub from: State,
    /// The new state.
    pub to: State,
    /// Why.
    pub reason: String,
    /// The incarnation current at the time.
    pub incarnation: u64,
}

/// An operator action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Start (also leaves Failed; clears counters).
    Start,
    /// Stop; never restarted.
    Stop,
    /// Stop if running, then start at once.
    Restart,
    /// Leave Failed for Stopped; clears counters.
    Reset,
}

/// Options for a [`Monitor`].
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Spread first probe runs over one period (SEMANTICS.md §2). On by default.
    pub jitter: bool,
    /// Capacity of the event broadcast.
    pub event_capacity: usize,
    /// The most a timer may be late so that timers close together share one wake-up (as
    /// Linux's timer slack and systemd's `AccuracySec=` do). A deadline is rounded up to a grid
    /// whose step is at most 1/16 of the time left until it, capped by this: a check due in 1 s
    /// runs on a 50 ms grid, a restart due in 100 ms is late by at most 5 ms, nothing is ever
    /// early. Zero (the default) wakes at each deadline exactly.
    pub timer_slack: std::time::Duration,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        MonitorOptions { jitter: true, event_capacity: 4096, timer_slack: Duration::ZERO }
    }
}

/// A cheap-to-clone handle on the supervision task.
#[derive(Clone)]
pub struct Monitor {
    requests: mpsc::Sender<Request>,
    registry: watch::Receiver<Arc<Vec<watch::Receiver<Health>>>>,
    events: broadcast::Sender<Event>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

impl Monitor {
    /// Start a monitor on the current tokio runtime, with default options.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new() -> Monitor {
        Monitor::with_options(MonitorOptions::default())
    }

    /// Start a monitor with `options`.
    pub fn with_options(options: MonitorOptions) -> Monitor {
        let (requests, rx) = mpsc::channel(256);
        let (events, _) = broadcast::channel(options.event_capacity.max(16));
        let (registry_tx, registry) = watch::channel(Arc::new(Vec::new()));
        driver::spawn(rx, registry_tx, events.clone(), options);
        Monitor { requests, registry, events }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(make(tx)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Register a component; it starts at once unless `autostart(false)` was set.
    pub async fn register(&self, component: Component) -> Result<(), Error> {
        self.ask(|reply| Request::Register { component: Box::new(component), reply }).await?
    }

    /// Apply an operator action.
    pub async fn act(&self, name: &str, op: Op) -> Result<(), Error> {
        self.ask(|reply| Request::Act { name: name.to_owned(), op, reply }).await?
    }

    /// Start `name` (also leaves Failed).
    pub async fn start(&self, name: &str) -> Result<(), Error> {
        self.act(name, Op::Start).await
    }

    /// Stop `name`; it is not restarted.
    pub async fn stop(&self, name: &str) -> Result<(), Error> {
        self.act(name, Op::Stop).await
    }

    /// Restart `name` now.
    pub async fn restart(&self, name: &str) -> Result<(), Error> {
        self.act(name, Op::Restart).await
    }

    /// Reset `name`: leave Failed, clear counters.
    pub async fn reset(&self, name: &str) -> Result<(), Error> {
        self.act(name, Op::Reset).await
    }

    /// Run one check of `name` now, outside its schedule, and return the result. The result
    /// is only returned: it neither enters the probe's history nor moves its counters, and a
    /// scheduled run may be in flight at the same time (the seed's `RunHealthCheck`, for tests
    /// and diagnostics).
    pub async fn run_health_check(
        &self,
        name: &str,
        kind: ProbeKind,
    ) -> Result<ProbeResult, Error> {
        self.ask(|reply| Request::Check { name: name.to_owned(), kind, reply }).await?
    }

    /// Hand an sd_notify message from the component's current instance to its state machine.
    pub async fn notify(
        &self,
        name: &str,
        incarnation: u64,
        message: hale_core::NotifyMessage,
    ) -> Result<(), Error> {
        self.ask(|reply| Request::Notify { name: name.to_owned(), incarnation, message, reply })
            .await?
    }

    /// Remove `name`, which must be settled (stopped or failed, nothing alive): stop it and
    /// [`Monitor::wait_for`] [`Health::is_settled`] first. Its name becomes free again; its
    /// watch channels see their sender closed.
    pub async fn remove(&self, name: &str) -> Result<(), Error> {
        self.ask(|reply| Request::Remove { name: name.to_owned(), reply }).await?
    }

    /// The current health of `name`.
    pub fn health(&self, name: &str) -> Option<Health> {
        self.watch(name).map(|rx| rx.borrow().clone())
    }

    /// The health of every component, in registration order.
    pub fn health_summary(&self) -> Vec<Health> {
        self.registry.borrow().iter().map(|rx| rx.borrow().clone()).collect()
    }

    /// A `watch` on `name`'s health, to wait for a condition without polling.
    pub fn watch(&self, name: &str) -> Option<watch::Receiver<Health>> {
        self.registry.borrow().iter().find(|rx| &*rx.borrow().name == name).cloned()
    }

    /// Wait until `name`'s health satisfies `pred`.
    pub async fn wait_for(
        &self,
        name: &str,
        mut pred: impl FnMut(&Health) -> bool,
    ) -> Result<Health, Error> {
        let mut rx = self.watch(name).ok_or_else(|| Error::UnknownComponent(name.to_owned()))?;
        let h = rx.wait_for(|h| pred(h)).await.map_err(|_| Error::Closed)?;
        Ok(h.clone())
    }

    /// Receive every transition from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Stop every component (each with its stop sequence, all at once), wait until none is
    /// alive, and end the driver.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.ask(|reply| Request::Shutdown { reply }).await
    }
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor::new()
    }
}
