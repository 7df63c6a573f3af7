//! The `hale.toml` configuration file: loading, validation and the typed result.
//!
//! [`load`] reads a file and [`parse`] takes its text; both walk the spanned TOML tree by
//! hand (not through serde's derive, which stops at the first problem) so that every error
//! in the file is found and reported at once, each with the file, line, column and key
//! path, a message, a hint, and the offending source line with a caret under it. The
//! result types here are the CLI's view of the file and are deliberately separate from
//! the core's types: durations are [`Duration`], relative paths are already resolved
//! against the directory that holds the config file, and defaults are filled in
//! (CONTRACT.md for the keys, SEMANTICS.md §2 for probe defaults, §5 for backoff).

mod error;
mod values;
mod walk;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

#[allow(unused_imports)]
pub use error::{ConfigError, ConfigErrors, Position};

/// Default `[hale] state_dir`, relative to the config file's directory.
pub const DEFAULT_STATE_DIR: &str = ".hale";
/// Default `[hale] log_max_size`: 10 MiB.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Default `[hale] log_keep`.
pub const DEFAULT_LOG_KEEP: u32 = 5;
/// Default `start_timeout`: how long `ready = "notify"` waits for `READY=1`.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(90);
/// Default `stop_timeout`: from the stop signal to SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `restart_timeout`: bound on an external component's start/restart action.
pub const DEFAULT_RESTART_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `stop_signal`: SIGTERM.
pub const DEFAULT_STOP_SIGNAL: i32 = 15;
/// Default `max_age` of a `file` check.
pub const DEFAULT_FILE_MAX_AGE: Duration = Duration::from_secs(30);
/// Default `within` of a `log` check.
pub const DEFAULT_LOG_WITHIN: Duration = Duration::from_secs(60);

/// A validated `hale.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file as named by the user (used in messages).
    pub path: PathBuf,
    /// The directory that relative paths in the file are resolved against (absolute when
    /// the current directory could be read).
    pub base_dir: PathBuf,
    /// The `[hale]` table.
    pub hale: DaemonSettings,
    /// The `[components.NAME]` tables, in file order.
    pub components: Vec<ComponentConfig>,
}

impl Config {
    /// The component called `name`, if any.
    pub fn component(&self, name: &str) -> Option<&ComponentConfig> {
        self.components.iter().find(|c| c.name == name)
    }
}

/// The `[hale]` table: daemon settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    /// Control socket, logs, events and pid records live here (resolved, default `.hale`).
    pub state_dir: PathBuf,
    /// `host:port` of the HTTP API; off when `None`.
    pub http: Option<String>,
    /// Bearer token for the HTTP API (required by `hale up` for a non-loopback `http`,
    /// unless `HALE_HTTP_TOKEN` is set: that rule is the daemon's, not the file's).
    pub http_token: Option<String>,
    /// `host:port` of the grpc.health.v1 server; off when `None`.
    pub grpc_health: Option<String>,
    /// Size in bytes of a component log file before rotation.
    pub log_max_size: u64,
    /// Rotated log files kept per component.
    pub log_keep: u32,
    /// Run or called on every transition of every component.
    pub on_state_change: Option<Hook>,
}

/// Default bound on one hook run.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// An `on_state_change` hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// What to run or call.
    pub action: HookAction,
    /// After this long the command is killed or the request abandoned.
    pub timeout: Duration,
}

/// What a hook does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAction {
    /// Run this argv with `HALE_COMPONENT`, `HALE_FROM`, `HALE_TO`, `HALE_REASON` set.
    Command(Vec<String>),
    /// POST the event's JSON here.
    Webhook(String),
}

impl DaemonSettings {
    /// The settings an absent `[hale]` table means, for a config file in `base_dir`.
    pub fn defaults(base_dir: &Path) -> Self {
        DaemonSettings {
            state_dir: base_dir.join(DEFAULT_STATE_DIR),
            http: None,
            http_token: None,
            grpc_health: None,
            log_max_size: DEFAULT_LOG_MAX_SIZE,
            log_keep: DEFAULT_LOG_KEEP,
            on_state_change: None,
        }
    }
}

/// One `[components.NAME]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentConfig {
    /// The table's name: non-empty, `[A-Za-z0-9_.-]`, starting with a letter, digit or `_`.
    pub name: String,
    /// 1-based line where the component's table starts.
    pub line: usize,
    /// What hale runs or acts through.
    pub run: Run,
    /// Working directory of the process and of actions (resolved).
    pub cwd: Option<PathBuf>,
    /// Extra environment, in file order.
    pub env: Vec<(String, String)>,
    /// A `KEY=VALUE` file read at start (resolved; not read or checked at load time).
    pub env_file: Option<PathBuf>,
    /// Dependencies and the condition each must reach first, in file order.
    pub depends_on: Vec<(String, DependCondition)>,
    /// What passes the startup gate besides the startup probe.
    pub ready: ReadyMode,
    /// sd_notify watchdog period.
    pub watchdog: Option<Duration>,
    /// Who may send notify messages.
    pub notify_access: NotifyAccess,
    /// Deadline for `READY=1` when `ready = "notify"`.
    pub start_timeout: Duration,
    /// Signal number sent to the process group on stop.
    pub stop_signal: i32,
    /// From the stop signal (or stop action) to SIGKILL.
    pub stop_timeout: Duration,
    /// Bound on a start/restart action of an external component.
    pub restart_timeout: Duration,
    /// Exit codes besides 0 that count as success.
    pub success_exit_status: Vec<i32>,
    /// Exit codes that never restart.
    pub restart_prevent_exit_status: Vec<i32>,
    /// Exit codes that always restart (unless also prevented).
    pub restart_force_exit_status: Vec<i32>,
    /// The `[components.NAME.restart]` table.
    pub restart: RestartSettings,
    /// `[components.NAME.startup]` (boxed, like the other two: a config of 1,000 components
    /// without probes then stays small, and the daemon keeps its config for its whole life).
    pub startup: Option<Box<ProbeConfig>>,
    /// `[components.NAME.liveness]`.
    pub liveness: Option<Box<ProbeConfig>>,
    /// `[components.NAME.readiness]`.
    pub readiness: Option<Box<ProbeConfig>>,
    /// Run or called on each of this component's transitions.
    pub on_state_change: Option<Hook>,
}

/// How a component runs: exactly one of these per component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// `command = [argv]`: a process hale spawns.
    Command(Vec<String>),
    /// `shell = "..."`: a process run by `/bin/sh -c`.
    Shell(String),
    /// `docker = "container"`: an external container, acted on through the Engine API.
    Docker(String),
    /// `start`/`stop`/`restart` argv lists: an external thing acted on by commands. At
    /// least one is present.
    Actions {
        /// Start action.
        start: Option<Vec<String>>,
        /// Stop action.
        stop: Option<Vec<String>>,
        /// Restart action.
        restart: Option<Vec<String>>,
    },
}

impl Run {
    /// Is this a process that hale spawns and owns (`command` or `shell`)?
    pub fn is_process(&self) -> bool {
        matches!(self, Run::Command(_) | Run::Shell(_))
    }
}

/// The condition in `depends_on = { NAME = "CONDITION" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DependCondition {
    /// `"started"`: the dependency passed its startup gate.
    Started,
    /// `"ready"`: the dependency is ready.
    Ready,
    /// `"healthy"`: running and ready (`is_healthy()`).
    Healthy,
    /// `"completed"`: the dependency ran and exited.
    Completed,
    /// `"completed_successfully"`: the dependency exited with a success status.
    CompletedSuccessfully,
}

impl DependCondition {
    /// The spelling used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            DependCondition::Started => "started",
            DependCondition::Ready => "ready",
            DependCondition::Healthy => "healthy",
            DependCondition::Completed => "completed",
            DependCondition::CompletedSuccessfully => "completed_successfully",
        }
    }
}

/// `ready = "probe" | "notify"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadyMode {
    /// Started when the startup probe passes (or at once without one).
    Probe,
    /// Also wait for `READY=1` on `NOTIFY_SOCKET`.
    Notify,
}

/// `notify_access = "main" | "all"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyAccess {
    /// Only the main PID may send notify messages.
    Main,
    /// Any process of the component may.
    All,
}

/// `policy = "always" | "on-failure" | "never"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestartPolicy {
    /// Restart unless prevented.
    Always,
    /// Restart failures.
    OnFailure,
    /// Never restart (except forced exit codes).
    Never,
}

/// The `[components.NAME.restart]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartSettings {
    /// When to restart.
    pub policy: RestartPolicy,
    /// Restarts allowed within `window` before `Failed`. 0 means every restart-triggering
    /// termination goes straight to `Failed` (restart limit).
    pub max_restarts: u32,
    /// The restart-limit window (> 0).
    pub window: Duration,
    /// How long an instance must run to be stable.
    pub min_uptime: Duration,
    /// First backoff delay.
    pub initial_backoff: Duration,
    /// Backoff cap (>= `initial_backoff`).
    pub max_backoff: Duration,
    /// Backoff growth factor (>= 1, finite).
    pub multiplier: f64,
}

impl Default for RestartSettings {
    fn default() -> Self {
        RestartSettings {
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

/// The three probe kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `[components.NAME.startup]` (boxed, like the other two: a config of 1,000 components
    /// without probes then stays small, and the daemon keeps its config for its whole life).
    Startup,
    /// `[components.NAME.liveness]`.
    Liveness,
    /// `[components.NAME.readiness]`.
    Readiness,
}

impl ProbeKind {
    /// The table name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }
}

/// One probe table.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    /// The check it runs.
    pub check: CheckConfig,
    /// Delay before the first run (from instance start for startup, from the startup gate
    /// for liveness and readiness).
    pub initial_delay: Duration,
    /// Time between runs (> 0).
    pub period: Duration,
    /// Time a run may take (> 0).
    pub timeout: Duration,
    /// Consecutive failures that count (> 0).
    pub failure_threshold: u32,
    /// Consecutive successes that count (> 0; 1 for startup and liveness).
    pub success_threshold: u32,
    /// Stop timeout used when this probe condemns the instance (startup and liveness only).
    pub termination_grace: Option<Duration>,
}

impl ProbeConfig {
    /// A probe of `kind` running `check` with the SEMANTICS §2 defaults.
    pub fn with_defaults(kind: ProbeKind, check: CheckConfig) -> Self {
        let (period, timeout, failure_threshold) = match kind {
            ProbeKind::Startup => (1, 1, 30),
            ProbeKind::Liveness => (10, 3, 3),
            ProbeKind::Readiness => (5, 3, 3),
        };
        ProbeConfig {
            check,
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(period),
            timeout: Duration::from_secs(timeout),
            failure_threshold,
            success_threshold: 1,
            termination_grace: None,
        }
    }
}

/// The one check key of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckConfig {
    /// `exec = [argv]`: exits 0 within the timeout.
    Exec(Vec<String>),
    /// `sh = "..."`: `/bin/sh -c` exits 0.
    Sh(String),
    /// `tcp = "host:port"`: a connection is accepted.
    Tcp(String),
    /// `http = "url"` or `http = { url, ... }`.
    Http {
        /// `http://` or `https://` URL.
        url: String,
        /// Upper-case method, default `GET`.
        method: String,
        /// Request headers, in file order.
        headers: Vec<(String, String)>,
        /// Inclusive range of healthy status codes, default 200-399.
        status: (u16, u16),
        /// Text the body must contain.
        body_contains: Option<String>,
        /// Extra CA certificate file for `https://` (resolved).
        ca_file: Option<PathBuf>,
        /// Skip TLS certificate verification.
        insecure: bool,
    },
    /// `grpc = "host:port"` or `grpc = { address, service, tls }`.
    Grpc {
        /// `host:port`.
        address: String,
        /// Service name asked about; `""` is the server as a whole.
        service: String,
        /// Use TLS.
        tls: bool,
    },
    /// `process = true` or `process = { pidfile }`.
    Process {
        /// Pid file to read (resolved); `None` is the component's own main process.
        pidfile: Option<PathBuf>,
    },
    /// `docker = "container"`.
    Docker(String),
    /// `file = { path, max_age }`.
    File {
        /// The file (resolved).
        path: PathBuf,
        /// How recently it must have been modified (default 30 s).
        max_age: Duration,
    },
    /// `log = { pattern, within }`.
    Log {
        /// Regular expression matched against each output line (non-empty; not compiled here).
        pattern: String,
        /// How recently a line must have matched (default 60 s).
        within: Duration,
    },
}

/// The largest config file read. A real one is a few KiB; anything near this is the wrong file
/// (`-c` naming a log or a binary), and a device or pipe that never ends must not be read forever.
pub const MAX_CONFIG_SIZE: u64 = 10 * 1024 * 1024;

/// Read and validate the config file at `path`.
///
/// A file that cannot be read, is larger than [`MAX_CONFIG_SIZE`] or is not UTF-8 gives one
/// error; otherwise see [`parse`]. Unlike [`parse`], this also reads the files the config names
/// and hale would read at start: each `env_file` (it must exist and be `KEY=VALUE` lines) and
/// each http check's `ca_file` (it must hold PEM certificates).
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let bytes = match read_bounded(path, MAX_CONFIG_SIZE) {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(size)) => {
            return Err(ConfigErrors::single(ConfigError::too_large(path, size, MAX_CONFIG_SIZE)));
        }
        Err(err) => return Err(ConfigErrors::single(ConfigError::unreadable(path, &err))),
    };
    from_bytes(bytes, path, walk::Files::Read)
}

/// Validate the bytes of a config file as [`load`] does once it has read them, except that no
/// other file is read (as with [`parse`]): bytes that are not UTF-8 give one error at the
/// first bad byte.
pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Config, ConfigErrors> {
    from_bytes(bytes.to_vec(), path, walk::Files::Skip)
}

fn from_bytes(bytes: Vec<u8>, path: &Path, files: walk::Files) -> Result<Config, ConfigErrors> {
    match String::from_utf8(bytes) {
        Ok(text) => walk::parse(&text, path, &base_dir_of(path), files),
        Err(err) => {
            let valid = err.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(err.as_bytes()).into_owned();
            // The lossy text is longer where bytes were replaced, but not before `valid`.
            let key = walk::context_key(&lossy, valid);
            Err(ConfigErrors::single(ConfigError::not_utf8(
                path,
                key,
                &lossy,
                err.as_bytes(),
                valid,
            )))
        }
    }
}

/// The file's bytes, or `Ok(Err(size))` when it is larger than `limit` (`size` is `None` when
/// only reading found out, as with a device or a pipe).
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Result<Vec<u8>, Option<u64>>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() && meta.len() > limit {
        return Ok(Err(Some(meta.len())));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Ok(Err(meta.is_file().then_some(meta.len())));
    }
    Ok(Ok(bytes))
}

/// Validate config `text` as if read from `path` (which names the file in messages and
/// whose directory relative paths are resolved against). Every error is reported.
///
/// This reads no file: the `env_file` and `ca_file` that [`load`] checks are taken as given.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    walk::parse(text, path, &base_dir_of(path), walk::Files::Skip)
}

/// The directory holding the config file at `path`, made absolute when possible.
fn base_dir_of(path: &Path) -> PathBuf {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf())
}

/// Indices into `config.components` in start order: every component after the ones it
/// depends on, otherwise in file order. (A valid `Config` has no cycles; were there one,
/// the components on it would follow the rest in file order.)
pub fn dependency_order(config: &Config) -> Vec<usize> {
    let n = config.components.len();
    let deps: Vec<Vec<usize>> = config
        .components
        .iter()
        .map(|c| {
            c.depends_on
                .iter()
                .filter_map(|(name, _)| config.components.iter().position(|d| &d.name == name))
                .collect()
        })
        .collect();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n).find(|&i| !placed[i] && deps[i].iter().all(|&d| placed[d] || d == i));
        match next {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => {
                // A cycle: cannot happen for a validated config; keep the output total.
                for (i, done) in placed.iter_mut().enumerate() {
                    if !*done {
                        *done = true;
                        order.push(i);
                    }
                }
            }
        }
    }
    order
}
