//! One component's state machine: the rules of SEMANTICS.md §1 to §8, as a pure function of
//! timestamped inputs.
//!
//! The driver calls [`Component::handle`] with every input and the current time, carries out the
//! [`Action`]s it gets back, and sends [`Input::Tick`] when [`Component::next_deadline`] passes.
//! Nothing here blocks, reads a clock or fails: input that does not apply (a result from an old
//! incarnation, a tick before its time, a command that changes nothing) yields no action.
//!
//! Structure: `phase` says what the component is doing (idle, backing off, launching, alive);
//! an alive `Instance` may be terminating; `state` is the public six-valued summary, changed
//! only through `set_state` so that every change produces exactly one `Transition` action.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::spec::{ComponentKind, ReadyMode, Spec, SpecError};
use crate::{Instant, ProbeKind, truncate_output};

/// The public state of a component (SEMANTICS.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No instance and nothing scheduled.
    Stopped,
    /// An instance exists and has not passed the startup gate.
    Starting,
    /// Started and not condemned.
    Running,
    /// Condemned by a verdict; being terminated.
    Unhealthy,
    /// No live instance: waiting out the backoff or running the start action.
    Restarting,
    /// No instance and nothing scheduled; an operator must act.
    Failed,
}

impl State {
    /// The lowercase name used in status and events.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Starting => "starting",
            State::Running => "running",
            State::Unhealthy => "unhealthy",
            State::Restarting => "restarting",
            State::Failed => "failed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited with code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Which signal the driver sends to the process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The component's configured stop signal (SIGTERM by default).
    Stop,
    /// SIGKILL.
    Kill,
}

/// A decision by hale that an instance must die.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The startup probe failed `failure_threshold` times in a row.
    StartupFailed,
    /// The liveness probe failed `failure_threshold` times in a row.
    LivenessFailed,
    /// No `WATCHDOG=1` within the watchdog period, or `WATCHDOG=trigger`.
    WatchdogTimeout,
    /// No `READY=1` within `start_timeout`.
    StartTimeout,
}

/// A parsed sd_notify message (SEMANTICS.md §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyMessage {
    /// `READY=1`.
    Ready,
    /// `STOPPING=1`.
    Stopping,
    /// `WATCHDOG=1`.
    Watchdog,
    /// `WATCHDOG=trigger`.
    WatchdogTrigger,
    /// `EXTEND_TIMEOUT_USEC=`.
    ExtendTimeout(Duration),
    /// `RESTART_RESET=1`.
    RestartReset,
    /// `STATUS=`.
    Status(String),
}

/// The result of one probe run, as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// Whether the check passed.
    pub ok: bool,
    /// How long it ran.
    pub duration: Duration,
    /// One line saying why it failed; `None` when it passed.
    pub reason: Option<String>,
    /// What the check printed or saw; cut to 4096 bytes by the core.
    pub output: String,
}

impl ProbeOutcome {
    /// A passing run.
    pub fn pass(duration: Duration, output: impl Into<String>) -> Self {
        ProbeOutcome { ok: true, duration, reason: None, output: output.into() }
    }

    /// A failing run with its reason.
    pub fn fail(duration: Duration, reason: impl Into<String>) -> Self {
        ProbeOutcome { ok: false, duration, reason: Some(reason.into()), output: String::new() }
    }
}

/// One input to the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Operator start: a new instance, counters cleared (also leaves `Failed`).
    Start,
    /// Operator stop: terminate, never restart; wins every race.
    Stop,
    /// Operator restart: terminate if alive, then start at once with counters cleared.
    Restart,
    /// Operator reset: leave `Failed` for `Stopped`; clears the window, backoff and count.
    Reset,
    /// A deadline from [`Component::next_deadline`] may have passed.
    Tick,
    /// The `Start` action of this incarnation succeeded: the instance exists.
    Spawned {
        /// The incarnation from the action.
        incarnation: u64,
    },
    /// The `Start` action of this incarnation failed or timed out.
    SpawnFailed {
        /// The incarnation from the action.
        incarnation: u64,
        /// Why, in one line.
        error: String,
    },
    /// The instance's process ended (or an external one was seen to end).
    Exited {
        /// Whose exit.
        incarnation: u64,
        /// How it ended.
        exit: Exit,
    },
    /// The `StopExternal` action of this incarnation finished (successfully or not).
    Stopped {
        /// Whose stop.
        incarnation: u64,
    },
    /// A probe run finished.
    ProbeDone {
        /// The instance it checked.
        incarnation: u64,
        /// Which probe.
        kind: ProbeKind,
        /// What it found.
        outcome: ProbeOutcome,
    },
    /// The instance sent an sd_notify message.
    Notify {
        /// The sender's instance.
        incarnation: u64,
        /// What it said.
        message: NotifyMessage,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Spawn the process (or run the external start action; the restart action when `restart`
    /// is set and one exists), then answer `Spawned` or `SpawnFailed`.
    Start {
        /// The new instance's incarnation.
        incarnation: u64,
        /// True for an automatic restart, false for an operator start.
        restart: bool,
    },
    /// Send a signal to the process group of this incarnation's process.
    Signal {
        /// Whose group.
        incarnation: u64,
        /// Which signal.
        signal: Signal,
    },
    /// Run the external stop action, then answer `Stopped`.
    StopExternal {
        /// Whose instance.
        incarnation: u64,
    },
    /// Run a probe against this incarnation, then answer `ProbeDone`.
    RunProbe {
        /// Whose instance.
        incarnation: u64,
        /// Which probe.
        kind: ProbeKind,
    },
    /// The public state changed; for events, hooks and logs.
    Transition {
        /// The old state.
        from: State,
        /// The new state.
        to: State,
        /// Why, in one readable line.
        reason: String,
        /// The instance the transition is about (the one that ended, for a restart).
        incarnation: u64,
    },
}

/// A source of probe-start jitter, injectable so that tests are deterministic.
pub trait JitterSource: Send {
    /// A delay uniformly drawn from `[0, period)`.
    fn jitter(&mut self, period: Duration) -> Duration;
}

/// No jitter at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJitter;

impl JitterSource for NoJitter {
    fn jitter(&mut self, _period: Duration) -> Duration {
        Duration::ZERO
    }
}

/// One stored probe result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRecord {
    /// When the run finished.
    pub at: Instant,
    /// How long it ran.
    pub duration: Duration,
    /// Whether it passed.
    pub ok: bool,
    /// Its reason when it failed, then its output; cut to 4096 bytes plus `...`.
    pub output: String,
}

/// A probe's counters and recent results, for status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeStatus {
    /// Consecutive successes of the current instance.
    pub consecutive_successes: u32,
    /// Consecutive failures of the current instance.
    pub consecutive_failures: u32,
    /// The last five results, oldest first.
    pub last: Vec<ProbeRecord>,
}

/// A snapshot of a component for status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The public state.
    pub state: State,
    /// Whether the instance takes work.
    pub ready: bool,
    /// `Running` and ready (see [`Component::is_healthy`]).
    pub healthy: bool,
    /// The current (or last) incarnation; 0 before the first start.
    pub incarnation: u64,
    /// Time since the current instance started.
    pub uptime: Option<Duration>,
    /// Automatic restarts since the last operator start or reset.
    pub restart_count: u32,
    /// Restarts inside the sliding window now.
    pub restarts_in_window: u32,
    /// Consecutive restarts without a stable instance (the backoff counter).
    pub unstable: u32,
    /// Time until the scheduled restart, while backing off.
    pub next_restart_in: Option<Duration>,
    /// The last failure's reason.
    pub last_error: Option<String>,
    /// How the last instance ended.
    pub last_exit: Option<Exit>,
    /// The last `STATUS=` text of the current instance.
    pub status_text: Option<String>,
    /// Whether a stop of the live instance is in progress.
    pub stopping: bool,
    /// Per probe kind (startup, liveness, readiness): counters and last results.
    pub probes: [Option<ProbeStatus>; 3],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Backoff,
    Kill,
    Stable,
    StartDeadline,
    Watchdog,
    Probe(ProbeKind),
}

const TIMERS: usize = 8;

impl Timer {
    fn index(self) -> usize {
        match self {
            Timer::Backoff => 0,
            Timer::Kill => 1,
            Timer::Stable => 2,
            Timer::StartDeadline => 3,
            Timer::Watchdog => 4,
            Timer::Probe(k) => 5 + k.index(),
        }
    }

    fn from_index(i: usize) -> Timer {
        match i {
            0 => Timer::Backoff,
            1 => Timer::Kill,
            2 => Timer::Stable,
            3 => Timer::StartDeadline,
            4 => Timer::Watchdog,
            5 => Timer::Probe(ProbeKind::Startup),
            6 => Timer::Probe(ProbeKind::Liveness),
            _ => Timer::Probe(ProbeKind::Readiness),
        }
    }
}

/// Why an instance ended (or never began), for the restart decision.
#[derive(Debug, Clone)]
enum Cause {
    /// The process ended on its own (or was seen to end).
    Exit(Exit),
    /// hale condemned it (the reason names the verdict).
    Verdict(String),
    /// The start action failed.
    StartError(String),
    /// The operator stopped or restarted it.
    Operator,
}

/// What follows a termination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Apply the restart policy.
    Decide,
    /// Go to `Stopped`.
    Stop,
    /// Start a new instance at once with counters cleared.
    Start,
}

#[derive(Debug)]
struct Termination {
    cause: Cause,
    then: Then,
    killed: bool,
}

#[derive(Debug, Default)]
struct ProbeRun {
    /// Tick k runs at `base + k * period`.
    base: Instant,
    in_flight: bool,
    successes: u32,
    failures: u32,
    /// Whether this probe is scheduled for the current instance.
    active: bool,
}

#[derive(Debug)]
struct Instance {
    incarnation: u64,
    started: Instant,
    gate: Option<Instant>,
    startup_passed: bool,
    ready_notified: bool,
    stopping_notified: bool,
    terminating: Option<Termination>,
}

#[derive(Debug)]
enum Phase {
    /// `Stopped` or `Failed`.
    Idle,
    /// Waiting out the backoff.
    Backoff { until: Instant },
    /// The start action is running.
    Launching { incarnation: u64, stop_requested: bool },
    /// An instance exists.
    Alive(Instance),
}

/// One supervised component's state machine. See the module docs.
pub struct Component {
    spec: Spec,
    phase: Phase,
    state: State,
    ready: bool,
    incarnation: u64,
    restart_count: u32,
    unstable: u32,
    /// Times of automatic restarts still inside the window, oldest first.
    window: VecDeque<Instant>,
    timers: [Option<Instant>; TIMERS],
    probes: [ProbeRun; 3],
    history: [VecDeque<ProbeRecord>; 3],
    last_error: Option<String>,
    last_exit: Option<Exit>,
    status_text: Option<String>,
    jitter: Box<dyn JitterSource>,
    /// Instances started before `jitter_until(period)` get jitter; see SEMANTICS.md §2.
    monitor_start: Instant,
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Component")
            .field("state", &self.state)
            .field("phase", &self.phase)
            .field("ready", &self.ready)
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

const HISTORY: usize = 5;

impl Component {
    /// A stopped component with no jitter. Fails with every rule the spec breaks.
    pub fn new(spec: Spec) -> Result<Self, Vec<SpecError>> {
        spec.validate()?;
        Ok(Component {
            spec,
            phase: Phase::Idle,
            state: State::Stopped,
            ready: false,
            incarnation: 0,
            restart_count: 0,
            unstable: 0,
            window: VecDeque::new(),
            timers: [None; TIMERS],
            probes: Default::default(),
            history: Default::default(),
            last_error: None,
            last_exit: None,
            status_text: None,
            jitter: Box::new(NoJitter),
            monitor_start: Instant::ZERO,
        })
    }

    /// Draw probe jitter from `source` for instances that start within one probe period of
    /// `monitor_start` (so that components started together do not probe in lockstep).
    pub fn with_jitter(mut self, source: Box<dyn JitterSource>, monitor_start: Instant) -> Self {
        self.jitter = source;
        self.monitor_start = monitor_start;
        self
    }

    /// The spec this component was built with.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The public state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the instance takes work.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// The current (or last) incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Whether an instance is alive (spawned and not yet seen to end).
    pub fn has_instance(&self) -> bool {
        matches!(self.phase, Phase::Alive(_))
    }

    /// `Running` and ready. SEMANTICS.md §3 says "`Running` and (ready or no readiness probe)";
    /// without a readiness probe `ready` is true from the startup gate until a stop, a verdict
    /// or `STOPPING=1`, so the two agree except while an instance is going away, when a
    /// component must not count as healthy (a dependent would start against it).
    pub fn is_healthy(&self) -> bool {
        self.state == State::Running && self.ready
    }

    /// The earliest time at which a `Tick` would do something.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    /// A snapshot for status displays.
    pub fn status(&self, now: Instant) -> Status {
        let uptime = match &self.phase {
            Phase::Alive(i) => Some(now.saturating_since(i.started)),
            _ => None,
        };
        let next_restart_in = match self.phase {
            Phase::Backoff { until } => Some(until.saturating_since(now)),
            _ => None,
        };
        let stopping = matches!(&self.phase, Phase::Alive(i) if i.terminating.is_some());
        let probes = ProbeKind::ALL.map(|k| {
            self.spec.probe(k)?;
            let run = &self.probes[k.index()];
            Some(ProbeStatus {
                consecutive_successes: run.successes,
                consecutive_failures: run.failures,
                last: self.history[k.index()].iter().cloned().collect(),
            })
        });
        Status {
            state: self.state,
            ready: self.ready,
            healthy: self.is_healthy(),
            incarnation: self.incarnation,
            uptime,
            restart_count: self.restart_count,
            restarts_in_window: self.restarts_in_window(now),
            unstable: self.unstable,
            next_restart_in,
            last_error: self.last_error.clone(),
            last_exit: self.last_exit,
            status_text: self.status_text.clone(),
            stopping,
            probes,
        }
    }

    /// Restarts inside `(now - window, now]`.
    pub fn restarts_in_window(&self, now: Instant) -> u32 {
        let n = self.window.iter().filter(|&&t| self.in_window(t, now)).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn in_window(&self, t: Instant, now: Instant) -> bool {
        t <= now && now.saturating_since(t) < self.spec.restart.window
    }

    /// Feed one input at time `now` (which never goes backwards) and append the resulting
    /// actions to `out`.
    pub fn handle(&mut self, now: Instant, input: Input, out: &mut Vec<Action>) {
        match input {
            Input::Start => self.on_start(now, out),
            Input::Stop => self.on_stop(now, out),
            Input::Restart => self.on_restart(now, out),
            Input::Reset => self.on_reset(now, out),
            Input::Tick => self.on_tick(now, out),
            Input::Spawned { incarnation } => self.on_spawned(now, incarnation, out),
            Input::SpawnFailed { incarnation, error } => {
                self.on_spawn_failed(now, incarnation, error, out)
            }
            Input::Exited { incarnation, exit } => self.on_exited(now, incarnation, exit, out),
            Input::Stopped { incarnation } => self.on_external_stopped(now, incarnation, out),
            Input::ProbeDone { incarnation, kind, outcome } => {
                self.on_probe_done(now, incarnation, kind, outcome, out)
            }
            Input::Notify { incarnation, message } => {
                self.on_notify(now, incarnation, message, out)
            }
        }
    }

    // ---------------------------------------------------------------- operator commands

    fn on_start(&mut self, now: Instant, out: &mut Vec<Action>) {
        match &mut self.phase {
            Phase::Idle | Phase::Backoff { .. } => {
                self.clear_counters();
                self.launch(now, false, "started by operator", out);
            }
            Phase::Launching { stop_requested, .. } => *stop_requested = false,
            Phase::Alive(i) => {
                if let Some(t) = &mut i.terminating {
                    t.then = Then::Start;
                }
            }
        }
    }

    fn on_stop(&mut self, now: Instant, out: &mut Vec<Action>) {
        match &mut self.phase {
            Phase::Idle => {
                if self.state == State::Failed {
                    self.set_state(State::Stopped, "stopped by operator".into(), out);
                }
            }
            Phase::Backoff { .. } => {
                self.phase = Phase::Idle;
                self.timers = [None; TIMERS];
                self.set_state(State::Stopped, "stopped by operator during backoff".into(), out);
            }
            Phase::Launching { stop_requested, .. } => *stop_requested = true,
            Phase::Alive(i) => match &mut i.terminating {
                Some(t) => t.then = Then::Stop,
                None => {
                    let grace = self.spec.stop_timeout;
                    self.terminate(now, Cause::Operator, Then::Stop, grace, out);
                }
            },
        }
    }

    fn on_restart(&mut self, now: Instant, out: &mut Vec<Action>) {
        match &mut self.phase {
            Phase::Idle | Phase::Backoff { .. } => {
                self.clear_counters();
                self.launch(now, false, "restarted by operator", out);
            }
            Phase::Launching { stop_requested, .. } => *stop_requested = false,
            Phase::Alive(i) => match &mut i.terminating {
                Some(t) => t.then = Then::Start,
                None => {
                    let grace = self.spec.stop_timeout;
                    self.terminate(now, Cause::Operator, Then::Start, grace, out);
                }
            },
        }
    }

    fn on_reset(&mut self, _now: Instant, out: &mut Vec<Action>) {
        self.clear_counters();
        if self.state == State::Failed {
            self.set_state(State::Stopped, "reset by operator".into(), out);
        }
    }

    fn clear_counters(&mut self) {
        self.restart_count = 0;
        self.unstable = 0;
        self.window.clear();
    }

    // ---------------------------------------------------------------- instance lifecycle

    fn launch(&mut self, _now: Instant, restart: bool, reason: &str, out: &mut Vec<Action>) {
        debug_assert!(!self.has_instance(), "at most one instance");
        self.timers = [None; TIMERS];
        self.incarnation += 1;
        self.ready = false;
        self.status_text = None;
        self.phase = Phase::Launching { incarnation: self.incarnation, stop_requested: false };
        if !restart {
            self.set_state(State::Starting, reason.to_owned(), out);
        }
        out.push(Action::Start { incarnation: self.incarnation, restart });
    }

    fn on_spawned(&mut self, now: Instant, incarnation: u64, out: &mut Vec<Action>) {
        let Phase::Launching { incarnation: inc, stop_requested } = self.phase else { return };
        if inc != incarnation {
            return;
        }
        self.phase = Phase::Alive(Instance {
            incarnation,
            started: now,
            gate: None,
            startup_passed: false,
            ready_notified: false,
            stopping_notified: false,
            terminating: None,
        });
        self.probes = Default::default();
        self.set_state(State::Starting, format!("instance {incarnation} started"), out);
        if stop_requested {
            let grace = self.spec.stop_timeout;
            self.terminate(now, Cause::Operator, Then::Stop, grace, out);
            return;
        }
        if self.spec.startup.is_some() {
            self.schedule_probe(now, ProbeKind::Startup, now);
        } else {
            self.startup_passed(now, out);
            if self.has_gate() {
                return;
            }
        }
        if self.spec.ready == ReadyMode::Notify {
            self.timers[Timer::StartDeadline.index()] = Some(now + self.spec.start_timeout);
        }
    }

    fn on_spawn_failed(
        &mut self,
        now: Instant,
        incarnation: u64,
        error: String,
        out: &mut Vec<Action>,
    ) {
        let Phase::Launching { incarnation: inc, stop_requested } = self.phase else { return };
        if inc != incarnation {
            return;
        }
        self.phase = Phase::Idle;
        let reason = format!("start failed: {error}");
        self.last_error = Some(reason.clone());
        if stop_requested {
            self.set_state(State::Stopped, reason, out);
            return;
        }
        self.decide(now, Cause::StartError(error), out);
    }

    fn on_exited(&mut self, now: Instant, incarnation: u64, exit: Exit, out: &mut Vec<Action>) {
        let Phase::Alive(i) = &mut self.phase else { return };
        if i.incarnation != incarnation {
            return;
        }
        self.last_exit = Some(exit);
        let (cause, then) = match i.terminating.take() {
            Some(t) => (t.cause, t.then),
            None => (Cause::Exit(exit), Then::Decide),
        };
        self.finish(now, cause, then, out);
    }

    fn on_external_stopped(&mut self, now: Instant, incarnation: u64, out: &mut Vec<Action>) {
        let Phase::Alive(i) = &mut self.phase else { return };
        if i.incarnation != incarnation {
            return;
        }
        let Some(t) = i.terminating.take() else { return };
        self.finish(now, t.cause, t.then, out);
    }

    /// Condemn the live instance: readiness drops, probes stop, the stop sequence begins.
    fn condemn(&mut self, now: Instant, verdict: Verdict, reason: String, out: &mut Vec<Action>) {
        let grace = match verdict {
            Verdict::StartupFailed => self.spec.startup.as_ref().and_then(|p| p.termination_grace),
            Verdict::LivenessFailed => {
                self.spec.liveness.as_ref().and_then(|p| p.termination_grace)
            }
            Verdict::WatchdogTimeout | Verdict::StartTimeout => None,
        }
        .unwrap_or(self.spec.stop_timeout);
        self.last_error = Some(reason.clone());
        self.ready = false;
        self.set_state(State::Unhealthy, reason.clone(), out);
        self.terminate(now, Cause::Verdict(reason), Then::Decide, grace, out);
    }

    /// Begin the stop sequence of the live instance (SEMANTICS.md §7).
    fn terminate(
        &mut self,
        now: Instant,
        cause: Cause,
        then: Then,
        grace: Duration,
        out: &mut Vec<Action>,
    ) {
        let Phase::Alive(i) = &mut self.phase else { return };
        let incarnation = i.incarnation;
        i.terminating = Some(Termination { cause, then, killed: false });
        self.ready = false;
        self.timers = [None; TIMERS];
        for run in &mut self.probes {
            run.active = false;
        }
        self.timers[Timer::Kill.index()] = Some(now + grace);
        match self.spec.kind {
            ComponentKind::Process => {
                out.push(Action::Signal { incarnation, signal: Signal::Stop })
            }
            ComponentKind::External => out.push(Action::StopExternal { incarnation }),
        }
    }

    /// The instance is gone: account for stability, then do what follows.
    fn finish(&mut self, now: Instant, cause: Cause, then: Then, out: &mut Vec<Action>) {
        if let Phase::Alive(i) = &self.phase {
            // Exactly min_uptime counts as stable, even when the exit and the stability timer
            // fall on the same instant.
            if i.gate.is_some() && now.saturating_since(i.started) >= self.spec.restart.min_uptime {
                self.unstable = 0;
            }
        }
        self.phase = Phase::Idle;
        self.timers = [None; TIMERS];
        self.ready = false;
        match then {
            Then::Stop => {
                self.set_state(State::Stopped, "stopped by operator".into(), out);
            }
            Then::Start => {
                self.clear_counters();
                self.launch(now, false, "restarted by operator", out);
            }
            Then::Decide => self.decide(now, cause, out),
        }
    }

    /// Apply the policy, backoff and restart limit to a termination (SEMANTICS.md §4 to §6).
    fn decide(&mut self, now: Instant, cause: Cause, out: &mut Vec<Action>) {
        let exits = &self.spec.exit;
        let (success, hale_caused, what) = match &cause {
            Cause::Exit(Exit::Code(c)) => (
                *c == 0 || exits.success_exit_status.contains(c),
                false,
                Exit::Code(*c).to_string(),
            ),
            Cause::Exit(e @ Exit::Signal(_)) => (false, false, e.to_string()),
            Cause::Verdict(reason) => (false, true, reason.clone()),
            Cause::StartError(e) => (false, true, format!("start failed: {e}")),
            Cause::Operator => (true, true, "stopped by operator".to_owned()),
        };
        let code = match cause {
            Cause::Exit(Exit::Code(c)) if !hale_caused => Some(c),
            _ => None,
        };
        let policy = self.spec.restart.policy;
        let restart = if code.is_some_and(|c| exits.restart_prevent_exit_status.contains(&c)) {
            false
        } else if code.is_some_and(|c| exits.restart_force_exit_status.contains(&c)) {
            true
        } else {
            match policy {
                crate::RestartPolicy::Always => true,
                crate::RestartPolicy::OnFailure => !success,
                crate::RestartPolicy::Never => false,
            }
        };
        if !success {
            self.last_error = Some(what.clone());
        }
        if !restart {
            let policy_name = match policy {
                crate::RestartPolicy::Always => "always",
                crate::RestartPolicy::OnFailure => "on-failure",
                crate::RestartPolicy::Never => "never",
            };
            let why = format!("{what}; not restarted (policy {policy_name})");
            let to = if success { State::Stopped } else { State::Failed };
            self.set_state(to, why, out);
            return;
        }
        let unstable = self.unstable.saturating_add(1);
        let delay = self.spec.restart.delay(unstable);
        let at = now + delay;
        while self.window.front().is_some_and(|&t| !self.in_window(t, at)) {
            self.window.pop_front();
        }
        let limit = self.spec.restart.max_restarts;
        if self.window.len() >= limit as usize {
            let why = format!(
                "{what}; restart limit reached: {} restarts within {} (max_restarts {limit})",
                self.window.len(),
                fmt_duration(self.spec.restart.window),
            );
            self.set_state(State::Failed, why, out);
            return;
        }
        self.unstable = unstable;
        self.window.push_back(at);
        self.restart_count = self.restart_count.saturating_add(1);
        let why = format!("{what}; restart {} in {}", self.restart_count, fmt_duration(delay));
        self.set_state(State::Restarting, why, out);
        if delay.is_zero() {
            self.launch(now, true, "", out);
        } else {
            self.phase = Phase::Backoff { until: at };
            self.timers[Timer::Backoff.index()] = Some(at);
        }
    }

    // ---------------------------------------------------------------- the startup gate

    fn has_gate(&self) -> bool {
        matches!(&self.phase, Phase::Alive(i) if i.gate.is_some())
    }

    /// The startup probe passed (or there is none): pass the gate unless READY=1 is awaited.
    fn startup_passed(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Alive(i) = &mut self.phase else { return };
        i.startup_passed = true;
        self.timers[Timer::Probe(ProbeKind::Startup).index()] = None;
        self.probes[ProbeKind::Startup.index()].active = false;
        if self.spec.ready == ReadyMode::Probe || i.ready_notified {
            self.pass_gate(now, out);
        }
    }

    fn pass_gate(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Alive(i) = &mut self.phase else { return };
        if i.gate.is_some() || i.terminating.is_some() {
            return;
        }
        i.gate = Some(now);
        let stable_at = (i.started + self.spec.restart.min_uptime).max(now);
        let stopping = i.stopping_notified;
        self.timers[Timer::StartDeadline.index()] = None;
        if stable_at <= now {
            self.unstable = 0;
        } else {
            self.timers[Timer::Stable.index()] = Some(stable_at);
        }
        if let Some(w) = self.spec.watchdog {
            self.timers[Timer::Watchdog.index()] = Some(now + w);
        }
        if self.spec.readiness.is_none() && !stopping {
            self.ready = true;
        }
        self.set_state(State::Running, "startup succeeded".into(), out);
        for kind in [ProbeKind::Liveness, ProbeKind::Readiness] {
            if self.spec.probe(kind).is_some() {
                self.schedule_probe(now, kind, now);
            }
        }
        // A probe due at G (delay 0, no jitter) runs at once rather than on the next tick.
        self.fire_due(now, out);
    }

    // ---------------------------------------------------------------- probes

    /// Schedule probe `kind`, counting its delay from `from` (S for startup, G otherwise).
    fn schedule_probe(&mut self, _now: Instant, kind: ProbeKind, from: Instant) {
        let Some(spec) = self.spec.probe(kind) else { return };
        let Phase::Alive(i) = &self.phase else { return };
        let jitter = if i.started < self.monitor_start + spec.period {
            self.jitter.jitter(spec.period).min(spec.period.saturating_sub(Duration::from_nanos(1)))
        } else {
            Duration::ZERO
        };
        let base = from + spec.initial_delay + jitter;
        self.probes[kind.index()] =
            ProbeRun { base, in_flight: false, successes: 0, failures: 0, active: true };
        self.timers[Timer::Probe(kind).index()] = Some(base);
    }

    fn probe_tick(&mut self, now: Instant, kind: ProbeKind, out: &mut Vec<Action>) {
        let Some(spec) = self.spec.probe(kind) else { return };
        let period = spec.period;
        let Phase::Alive(i) = &self.phase else { return };
        let incarnation = i.incarnation;
        let run = &mut self.probes[kind.index()];
        if !run.active {
            return;
        }
        // Fixed rate from `base`; ticks that passed while the driver was late are skipped.
        let elapsed = now.saturating_since(run.base);
        let k = elapsed.as_nanos() / period.as_nanos().max(1) + 1;
        let next = u32::try_from(k)
            .ok()
            .and_then(|k| period.checked_mul(k))
            .map_or(Instant::MAX, |d| run.base + d);
        self.timers[Timer::Probe(kind).index()] = Some(next);
        if !run.in_flight {
            run.in_flight = true;
            out.push(Action::RunProbe { incarnation, kind });
        }
    }

    fn on_probe_done(
        &mut self,
        now: Instant,
        incarnation: u64,
        kind: ProbeKind,
        outcome: ProbeOutcome,
        out: &mut Vec<Action>,
    ) {
        let Phase::Alive(i) = &self.phase else { return };
        if i.incarnation != incarnation || self.spec.probe(kind).is_none() {
            return;
        }
        let terminating = i.terminating.is_some();
        let run = &mut self.probes[kind.index()];
        let counts = run.active && run.in_flight && !terminating;
        run.in_flight = false;
        let mut text = match &outcome.reason {
            Some(r) if outcome.output.is_empty() => r.clone(),
            Some(r) => format!("{r}\n{}", outcome.output),
            None => outcome.output,
        };
        if text.len() > crate::OUTPUT_LIMIT {
            text = truncate_output(&text);
        }
        let history = &mut self.history[kind.index()];
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(ProbeRecord {
            at: now,
            duration: outcome.duration,
            ok: outcome.ok,
            output: text,
        });
        if !counts {
            return;
        }
        let Some(spec) = self.spec.probe(kind) else { return };
        let (success_threshold, failure_threshold) =
            (spec.success_threshold, spec.failure_threshold);
        let run = &mut self.probes[kind.index()];
        if outcome.ok {
            run.successes = run.successes.saturating_add(1);
            run.failures = 0;
        } else {
            run.failures = run.failures.saturating_add(1);
            run.successes = 0;
        }
        let (successes, failures) = (run.successes, run.failures);
        let reason = outcome.reason.unwrap_or_else(|| "failed".to_owned());
        if !outcome.ok {
            self.last_error = Some(format!("{kind}: {reason}"));
        }
        match kind {
            ProbeKind::Startup => {
                if successes >= success_threshold {
                    self.startup_passed(now, out);
                } else if failures >= failure_threshold {
                    let why = format!("startup: {failures} consecutive failures: {reason}");
                    self.condemn(now, Verdict::StartupFailed, why, out);
                }
            }
            ProbeKind::Liveness => {
                if failures >= failure_threshold {
                    let why = format!("liveness: {failures} consecutive failures: {reason}");
                    self.condemn(now, Verdict::LivenessFailed, why, out);
                }
            }
            ProbeKind::Readiness => {
                let stopping = matches!(&self.phase, Phase::Alive(i) if i.stopping_notified);
                if successes >= success_threshold && !stopping {
                    self.ready = true;
                } else if failures >= failure_threshold {
                    self.ready = false;
                }
            }
        }
    }

    // ---------------------------------------------------------------- notify

    fn on_notify(
        &mut self,
        now: Instant,
        incarnation: u64,
        message: NotifyMessage,
        out: &mut Vec<Action>,
    ) {
        let Phase::Alive(i) = &mut self.phase else { return };
        if i.incarnation != incarnation || i.terminating.is_some() {
            return;
        }
        match message {
            NotifyMessage::Ready => {
                i.ready_notified = true;
                if self.spec.ready == ReadyMode::Notify && i.startup_passed {
                    self.pass_gate(now, out);
                }
            }
            NotifyMessage::Stopping => {
                i.stopping_notified = true;
                self.ready = false;
            }
            NotifyMessage::Watchdog => {
                if let (Some(w), Some(_)) = (self.spec.watchdog, i.gate) {
                    self.timers[Timer::Watchdog.index()] = Some(now + w);
                }
            }
            NotifyMessage::WatchdogTrigger => {
                let why = "watchdog: WATCHDOG=trigger received".to_owned();
                self.condemn(now, Verdict::WatchdogTimeout, why, out);
            }
            NotifyMessage::ExtendTimeout(d) => {
                let slot = &mut self.timers[Timer::StartDeadline.index()];
                if let Some(deadline) = slot {
                    *deadline = (*deadline).max(now + d);
                }
            }
            NotifyMessage::RestartReset => self.unstable = 0,
            NotifyMessage::Status(text) => self.status_text = Some(text),
        }
    }

    // ---------------------------------------------------------------- timers

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.fire_due(now, out);
    }

    /// Fire every timer due at or before `now`, earliest first. Each firing clears its timer or
    /// moves it past `now`, so the loop ends.
    fn fire_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        for _ in 0..64 {
            let due = (0..TIMERS)
                .filter_map(|i| self.timers[i].filter(|&t| t <= now).map(|t| (t, i)))
                .min();
            let Some((_, index)) = due else { return };
            let timer = Timer::from_index(index);
            self.timers[index] = None;
            self.fire(now, timer, out);
        }
    }

    fn fire(&mut self, now: Instant, timer: Timer, out: &mut Vec<Action>) {
        match timer {
            Timer::Backoff => {
                if matches!(self.phase, Phase::Backoff { .. }) {
                    self.launch(now, true, "", out);
                }
            }
            Timer::Kill => {
                let Phase::Alive(i) = &mut self.phase else { return };
                let incarnation = i.incarnation;
                let Some(t) = &mut i.terminating else { return };
                match self.spec.kind {
                    ComponentKind::Process => {
                        if !t.killed {
                            t.killed = true;
                            out.push(Action::Signal { incarnation, signal: Signal::Kill });
                        }
                    }
                    // The stop action ran out of time: the instance counts as gone.
                    ComponentKind::External => {
                        if let Some(t) = i.terminating.take() {
                            self.finish(now, t.cause, t.then, out);
                        }
                    }
                }
            }
            Timer::Stable => {
                if matches!(&self.phase, Phase::Alive(i) if i.terminating.is_none()) {
                    self.unstable = 0;
                }
            }
            Timer::StartDeadline => {
                let why = format!(
                    "start: no READY=1 within start_timeout {}",
                    fmt_duration(self.spec.start_timeout)
                );
                self.condemn(now, Verdict::StartTimeout, why, out);
            }
            Timer::Watchdog => {
                let period = self.spec.watchdog.unwrap_or_default();
                let why = format!("watchdog: no WATCHDOG=1 within {}", fmt_duration(period));
                self.condemn(now, Verdict::WatchdogTimeout, why, out);
            }
            Timer::Probe(kind) => self.probe_tick(now, kind, out),
        }
    }

    fn set_state(&mut self, to: State, reason: String, out: &mut Vec<Action>) {
        if self.state != to {
            let from = std::mem::replace(&mut self.state, to);
            out.push(Action::Transition { from, to, reason, incarnation: self.incarnation });
        }
    }
}

/// A duration as people write it in config files: `100ms`, `2s`, `1m30s`. Used in reasons
/// here and by the checks in `hale`, so that every message spells durations the same way.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        return format!("{}us", d.as_micros());
    }
    if !ms.is_multiple_of(1000) || ms == 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}
