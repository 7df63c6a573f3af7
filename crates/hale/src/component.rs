//! What an embedder registers: a [`Component`] with its [`Check`]s, its restart settings, and
//! either a process [`Command`] that hale spawns or [`External`] actions that hale calls.
//!
//! These are builders only; nothing runs until the component is registered with a
//! [`crate::Monitor`]. The decisions themselves live in `hale-core`, whose [`Spec`] each
//! component carries.

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hale_core::{ComponentKind, ProbeKind, ProbeSpec, ReadyMode, RestartConfig, Spec};

use crate::probe::{BoxFuture, Probe};

/// A probe plus its schedule and thresholds.
#[derive(Clone)]
pub struct Check {
    pub(crate) probe: Arc<dyn Probe>,
    pub(crate) spec: Option<ProbeSpec>,
    pub(crate) settings: Settings,
}

#[derive(Clone, Default)]
pub(crate) struct Settings {
    pub(crate) initial_delay: Option<Duration>,
    pub(crate) period: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) success_threshold: Option<u32>,
    pub(crate) failure_threshold: Option<u32>,
    pub(crate) termination_grace: Option<Duration>,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check").field("probe", &self.probe.describe()).finish_non_exhaustive()
    }
}

impl Check {
    /// A check running `probe` with the defaults of the kind it is registered as.
    pub fn new(probe: impl Probe) -> Self {
        Check { probe: Arc::new(probe), spec: None, settings: Settings::default() }
    }

    /// A check from an already shared probe.
    pub fn from_arc(probe: Arc<dyn Probe>) -> Self {
        Check { probe, spec: None, settings: Settings::default() }
    }

    /// Use exactly this spec instead of the kind's defaults plus the settings below.
    pub fn with_spec(mut self, spec: ProbeSpec) -> Self {
        self.spec = Some(spec);
        self
    }

    /// Delay before the first run (from the instance start for startup, from startup success
    /// for liveness and readiness).
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.settings.initial_delay = Some(d);
        self
    }

    /// Time between two runs.
    pub fn period(mut self, d: Duration) -> Self {
        self.settings.period = Some(d);
        self
    }

    /// How long one run may take.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.settings.timeout = Some(d);
        self
    }

    /// Consecutive successes needed (readiness only; must be 1 otherwise).
    pub fn success_threshold(mut self, n: u32) -> Self {
        self.settings.success_threshold = Some(n);
        self
    }

    /// Consecutive failures that count.
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.settings.failure_threshold = Some(n);
        self
    }

    /// Grace between the stop signal and SIGKILL when this check condemns the instance.
    pub fn termination_grace(mut self, d: Duration) -> Self {
        self.settings.termination_grace = Some(d);
        self
    }

    /// The resulting spec for a probe of `kind`.
    pub(crate) fn spec_for(&self, kind: ProbeKind) -> ProbeSpec {
        let mut spec = self.spec.clone().unwrap_or_else(|| ProbeSpec::defaults(kind));
        let s = &self.settings;
        if let Some(v) = s.initial_delay {
            spec.initial_delay = v;
        }
        if let Some(v) = s.period {
            spec.period = v;
        }
        if let Some(v) = s.timeout {
            spec.timeout = v;
        }
        if let Some(v) = s.success_threshold {
            spec.success_threshold = v;
        }
        if let Some(v) = s.failure_threshold {
            spec.failure_threshold = v;
        }
        if let Some(v) = s.termination_grace {
            spec.termination_grace = Some(v);
        }
        spec
    }
}

/// Where a child's stdout or stderr goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Receives a process component's output, one line at a time (without the newline; a line
/// longer than 64 KiB arrives in pieces). Called from the driver's reader tasks: keep it quick.
pub trait OutputSink: Send + Sync + 'static {
    /// One line of output from `component`.
    fn line(&self, component: &str, stream: Stream, line: &[u8]);
}

/// How hale spawns a process component.
#[derive(Clone)]
pub struct Command {
    pub(crate) argv: Vec<OsString>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) stop_signal: i32,
    pub(crate) output: Option<Arc<dyn OutputSink>>,
    pub(crate) die_with_parent: bool,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("argv", &self.argv)
            .field("cwd", &self.cwd)
            .field("stop_signal", &self.stop_signal)
            .finish_non_exhaustive()
    }
}

impl Command {
    /// Run `program` (looked up in `PATH`) with no arguments yet.
    pub fn new(program: impl Into<OsString>) -> Self {
        Command {
            argv: vec![program.into()],
            cwd: None,
            env: Vec::new(),
            stop_signal: libc_sigterm(),
            output: None,
            die_with_parent: true,
        }
    }

    /// Run `script` with `/bin/sh -c`.
    pub fn shell(script: impl Into<OsString>) -> Self {
        Command::new("/bin/sh").arg("-c").arg(script)
    }

    /// Add one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.argv.push(arg.into());
        self
    }

    /// Add arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Run in this directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Set an environment variable (on top of hale's own environment).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The signal that starts a graceful stop (SIGTERM by default), as a number.
    pub fn stop_signal(mut self, signal: i32) -> Self {
        self.stop_signal = signal;
        self
    }

    /// Capture stdout and stderr line by line into `sink` instead of inheriting hale's.
    pub fn output(mut self, sink: Arc<dyn OutputSink>) -> Self {
        self.output = Some(sink);
        self
    }

    /// Whether the child gets SIGKILL when hale dies (`PR_SET_PDEATHSIG`); on by default.
    pub fn die_with_parent(mut self, yes: bool) -> Self {
        self.die_with_parent = yes;
        self
    }

    /// The argument vector.
    pub fn argv(&self) -> &[OsString] {
        &self.argv
    }
}

fn libc_sigterm() -> i32 {
    nix::sys::signal::Signal::SIGTERM as i32
}

/// What an external action is told.
#[derive(Debug, Clone)]
pub struct ActionContext {
    /// The component's name.
    pub component: Arc<str>,
    /// The instance being started or stopped.
    pub incarnation: u64,
}

/// An async start, stop or restart action of an external component (the seed's `RestartFunc`).
pub type ActionFn = Arc<dyn Fn(ActionContext) -> BoxFuture<Result<(), String>> + Send + Sync>;

/// Make an [`ActionFn`] from an async closure.
pub fn action<F, Fut>(f: F) -> ActionFn
where
    F: Fn(ActionContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move |ctx| Box::pin(f(ctx)))
}

/// The actions of an external component. A missing start action means "it is already
/// running: just watch it"; a missing stop action means stopping does nothing; a restart
/// action, when given, is used for automatic restarts instead of start.
#[derive(Clone, Default)]
pub struct External {
    pub(crate) start: Option<ActionFn>,
    pub(crate) stop: Option<ActionFn>,
    pub(crate) restart: Option<ActionFn>,
}

impl fmt::Debug for External {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("External")
            .field("start", &self.start.is_some())
            .field("stop", &self.stop.is_some())
            .field("restart", &self.restart.is_some())
            .finish()
    }
}

impl External {
    /// No actions yet.
    pub fn new() -> Self {
        External::default()
    }

    /// The start action.
    pub fn start(mut self, f: ActionFn) -> Self {
        self.start = Some(f);
        self
    }

    /// The stop action.
    pub fn stop(mut self, f: ActionFn) -> Self {
        self.stop = Some(f);
        self
    }

    /// The restart action, used for automatic restarts.
    pub fn restart(mut self, f: ActionFn) -> Self {
        self.restart = Some(f);
        self
    }
}

/// Who may send sd_notify messages for a component (`notify_access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyAccess {
    /// Only the main process (the one hale spawned).
    #[default]
    Main,
    /// Any process in the component's process group.
    All,
}

#[derive(Clone, Debug)]
pub(crate) enum Run {
    Process(Command),
    External(External),
}

/// One supervised thing, ready to be registered with a [`crate::Monitor`].
#[derive(Clone, Debug)]
pub struct Component {
    pub(crate) name: String,
    pub(crate) kind_label: String,
    pub(crate) run: Run,
    pub(crate) checks: [Option<Check>; 3],
    pub(crate) spec: Spec,
    pub(crate) autostart: bool,
    pub(crate) notify: Option<NotifyAccess>,
}

impl Component {
    /// A process component: hale spawns `command`, owns it and restarts it.
    pub fn process(name: impl Into<String>, command: Command) -> Self {
        Component::with(name, Run::Process(command), ComponentKind::Process, "process")
    }

    /// An external component: hale checks it and calls `actions` to start, stop or restart it.
    pub fn external(name: impl Into<String>, actions: External) -> Self {
        Component::with(name, Run::External(actions), ComponentKind::External, "external")
    }

    fn with(name: impl Into<String>, run: Run, kind: ComponentKind, label: &str) -> Self {
        Component {
            name: name.into(),
            kind_label: label.to_owned(),
            run,
            checks: [None, None, None],
            spec: Spec { kind, ..Spec::default() },
            autostart: true,
            notify: None,
        }
    }

    /// A free-form label shown in status (the seed's component type: "grpc", "worker", ...).
    pub fn kind_label(mut self, label: impl Into<String>) -> Self {
        self.kind_label = label.into();
        self
    }

    /// The startup check.
    pub fn startup(mut self, check: Check) -> Self {
        self.checks[0] = Some(check);
        self
    }

    /// The liveness check.
    pub fn liveness(mut self, check: Check) -> Self {
        self.checks[1] = Some(check);
        self
    }

    /// The readiness check.
    pub fn readiness(mut self, check: Check) -> Self {
        self.checks[2] = Some(check);
        self
    }

    /// Restart policy, backoff and limit.
    pub fn restart(mut self, config: RestartConfig) -> Self {
        self.spec.restart = config;
        self
    }

    /// Grace between the stop signal and SIGKILL (default 10 s).
    pub fn stop_timeout(mut self, d: Duration) -> Self {
        self.spec.stop_timeout = d;
        self
    }

    /// Bound on external start and restart actions (default 30 s).
    pub fn restart_timeout(mut self, d: Duration) -> Self {
        self.spec.restart_timeout = d;
        self
    }

    /// Exit codes besides 0 that count as success.
    pub fn success_exit_status(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.spec.exit.success_exit_status = codes.into_iter().collect();
        self
    }

    /// Exit codes never restarted.
    pub fn restart_prevent_exit_status(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.spec.exit.restart_prevent_exit_status = codes.into_iter().collect();
        self
    }

    /// Exit codes restarted under every policy.
    pub fn restart_force_exit_status(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.spec.exit.restart_force_exit_status = codes.into_iter().collect();
        self
    }

    /// Require `READY=1` on the notify socket to pass the startup gate (gives the process a
    /// `NOTIFY_SOCKET`).
    pub fn ready_on_notify(mut self, start_timeout: Duration) -> Self {
        self.spec.ready = ReadyMode::Notify;
        self.spec.start_timeout = start_timeout;
        self.notify.get_or_insert_default();
        self
    }

    /// sd_notify watchdog period: exported as `WATCHDOG_USEC` (and `WATCHDOG_PID`); no
    /// `WATCHDOG=1` within it after startup condemns the instance.
    pub fn watchdog(mut self, period: Duration) -> Self {
        self.spec.watchdog = Some(period);
        self.notify.get_or_insert_default();
        self
    }

    /// Give a process component a `NOTIFY_SOCKET` and say who may use it.
    pub fn notify_access(mut self, access: NotifyAccess) -> Self {
        self.notify = Some(access);
        self
    }

    /// Whether `register` starts it at once (default true).
    pub fn autostart(mut self, yes: bool) -> Self {
        self.autostart = yes;
        self
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full core spec, with each check's spec filled in.
    pub fn spec(&self) -> Spec {
        let mut spec = self.spec.clone();
        spec.startup = self.checks[0].as_ref().map(|c| c.spec_for(ProbeKind::Startup));
        spec.liveness = self.checks[1].as_ref().map(|c| c.spec_for(ProbeKind::Liveness));
        spec.readiness = self.checks[2].as_ref().map(|c| c.spec_for(ProbeKind::Readiness));
        spec
    }

    /// Replace the core spec wholesale (for the config file loader); checks' specs still come
    /// from the checks.
    pub fn with_core_spec(mut self, spec: Spec) -> Self {
        let kind = self.spec.kind;
        self.spec = Spec { kind, ..spec };
        self
    }
}
