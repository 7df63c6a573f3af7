//! The daemon's API: one axum router, served on the control socket (`state_dir/hale.sock`,
//! mode 0600, peers checked by their credentials) and, later, on the HTTP address.
//!
//! Every response is JSON in CONTRACT.md's shapes. Handlers only read health snapshots and send
//! commands to the monitor; they never block the driver.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hale::{Exit, Health, Monitor, Op};
use serde::Serialize;
use serde_json::json;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::config::{Config, DependCondition};

/// What the API handlers share with the daemon.
pub struct Shared {
    /// The supervision task.
    pub monitor: Monitor,
    /// Components waiting for a dependency: name -> (dependency, condition).
    pub waiting: Mutex<HashMap<String, (String, DependCondition)>>,
    /// Set to true to ask for a graceful shutdown.
    pub shutdown: watch::Sender<bool>,
    /// Becomes true once every component has stopped.
    pub stopped: watch::Receiver<bool>,
    /// Dependency waiters, aborted when an operator acts on the component.
    pub waiters: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// The config the daemon runs now (replaced by each reload).
    pub config: Mutex<Arc<Config>>,
    /// Each component's env_file contents when its running definition was loaded.
    pub env_files: Mutex<HashMap<String, Option<Vec<u8>>>>,
    /// Serialises reloads.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// Copy component output to stdout, prefixed with its name.
    pub echo: bool,
    /// Color those prefixes.
    pub color: bool,
    /// Bumped after each reload that registered components.
    pub reloaded: watch::Sender<u64>,
    /// Set by every request: the daemon then pages the request-serving code out again once
    /// requests stop (see `footprint`).
    pub served: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Everything the daemon shares, for `config` just loaded.
    pub fn new(
        monitor: Monitor,
        config: Arc<Config>,
        shutdown: watch::Sender<bool>,
        stopped: watch::Receiver<bool>,
        echo: bool,
        color: bool,
    ) -> Shared {
        Shared {
            monitor,
            waiting: Mutex::new(HashMap::new()),
            shutdown,
            stopped,
            waiters: Mutex::new(HashMap::new()),
            env_files: Mutex::new(crate::reload::env_files(&config)),
            config: Mutex::new(config),
            reload_lock: tokio::sync::Mutex::new(()),
            echo,
            color,
            reloaded: watch::Sender::new(0),
            served: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The config the daemon runs now.
    pub fn config(&self) -> Arc<Config> {
        self.config.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replace the running config (a reload).
    pub fn set_config(&self, config: Config, env_files: HashMap<String, Option<Vec<u8>>>) {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        *self.env_files.lock().unwrap_or_else(|e| e.into_inner()) = env_files;
    }

    fn waiting_text(&self, name: &str) -> Option<String> {
        let waiting = self.waiting.lock().ok()?;
        let (dep, cond) = waiting.get(name)?;
        let mut text = format!("waiting for {dep} ({})", cond.as_str());
        if let Some(h) = self.monitor.health(dep)
            && h.state == hale::State::Failed
        {
            text.push_str(&format!(": {dep} has failed and needs `hale reset` or `hale start`"));
        }
        Some(text)
    }

    /// Forget a pending dependency wait (an operator took over).
    pub fn cancel_wait(&self, name: &str) {
        if let Ok(mut w) = self.waiters.lock()
            && let Some(handle) = w.remove(name)
        {
            handle.abort();
        }
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(name);
        }
    }
}

/// Whether `h` should be running now: it is not stopped, or it waits for a dependency.
/// (Stopped by an operator, or a job that completed, it need not be.)
pub fn should_run(shared: &Shared, h: &Health) -> bool {
    h.state != hale::State::Stopped
        || shared.waiting.lock().map(|w| w.contains_key(&*h.name)).unwrap_or(false)
}

/// Whether `h` lets hale as a whole count as serving: healthy, or not meant to run.
pub fn serving_ok(shared: &Shared, h: &Health) -> bool {
    h.healthy || !should_run(shared, h)
}

/// A component's status as CONTRACT.md's JSON object, with the explanation fields
/// (`why`, `waiting_for`, `restarts_left`, `max_restarts`, `backoff_step`, `state_reason`).
/// Serialised straight from borrowed fields: a status of 1,000 components builds no tree.
#[derive(Serialize)]
pub struct HealthJson<'a> {
    name: &'a str,
    kind: &'a str,
    state: &'static str,
    ready: bool,
    healthy: bool,
    pid: Option<u32>,
    incarnation: u64,
    uptime_ms: Option<u64>,
    restart_count: u32,
    restarts_in_window: u32,
    unstable: u32,
    next_restart_in_ms: Option<u64>,
    last_error: Option<&'a str>,
    last_exit: Option<ExitJson>,
    status_text: Option<&'a str>,
    waiting_for: Option<String>,
    stopping: bool,
    why: String,
    state_reason: Option<&'a str>,
    backoff_step: u32,
    max_restarts: Option<u32>,
    restarts_left: Option<u32>,
    restarts_total: u64,
    probes: BTreeMap<&'static str, ProbeJson<'a>>,
}

#[derive(Serialize)]
struct ExitJson {
    code: Option<i32>,
    signal: Option<i32>,
}

#[derive(Serialize)]
struct ProbeJson<'a> {
    consecutive_successes: u32,
    consecutive_failures: u32,
    runs_total: u64,
    failures_total: u64,
    last: Vec<ResultJson<'a>>,
}

#[derive(Serialize)]
struct ResultJson<'a> {
    at: String,
    ok: bool,
    duration_ms: f64,
    output: &'a str,
}

/// `h` as CONTRACT.md's object; `c` is its config, when the daemon has one for it.
pub fn health_json<'a>(
    h: &'a Health,
    waiting: Option<String>,
    c: Option<&crate::config::ComponentConfig>,
) -> HealthJson<'a> {
    let why = crate::explain::why(h, waiting.as_deref(), c);
    let probes = h
        .probes
        .iter()
        .map(|(kind, p)| {
            let last = p
                .last
                .iter()
                .map(|r| ResultJson {
                    at: humantime::format_rfc3339_millis(r.at).to_string(),
                    ok: r.ok,
                    duration_ms: r.duration.as_secs_f64() * 1000.0,
                    output: &r.output,
                })
                .collect();
            let probe = ProbeJson {
                consecutive_successes: p.consecutive_successes,
                consecutive_failures: p.consecutive_failures,
                runs_total: p.stats.runs,
                failures_total: p.stats.failures,
                last,
            };
            (kind.as_str(), probe)
        })
        .collect();
    HealthJson {
        name: &h.name,
        kind: &h.kind,
        state: h.state.as_str(),
        ready: h.ready,
        healthy: h.healthy,
        pid: h.pid,
        incarnation: h.incarnation,
        uptime_ms: h.uptime().map(|d| d.as_millis() as u64),
        restart_count: h.restart_count,
        restarts_in_window: h.restarts_in_window,
        unstable: h.unstable,
        next_restart_in_ms: h.next_restart_in().map(|d| d.as_millis() as u64),
        last_error: h.last_error.as_deref(),
        last_exit: h.last_exit.map(|e| match e {
            Exit::Code(c) => ExitJson { code: Some(c), signal: None },
            Exit::Signal(s) => ExitJson { code: None, signal: Some(s) },
        }),
        status_text: h.status_text.as_deref(),
        waiting_for: waiting,
        stopping: h.stopping,
        why,
        state_reason: h.state_reason.as_deref(),
        backoff_step: h.unstable,
        max_restarts: c.map(|c| c.restart.max_restarts),
        restarts_left: crate::explain::restarts_left(h, c),
        restarts_total: h.restarts_total,
        probes,
    }
}

type App = Arc<Shared>;

/// The router: CONTRACT.md's endpoints.
pub fn router(shared: App) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/components/{name}", get(component))
        .route("/v1/components/{name}/{action}", post(act))
        .route("/v1/down", post(down))
        .route("/v1/reload", post(reload))
        .route("/v1/events", get(events_sse))
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), mark_served))
        .with_state(shared)
}

async fn mark_served(
    State(app): State<App>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    app.served.store(true, std::sync::atomic::Ordering::Relaxed);
    next.run(req).await
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({"error": message.into()}))).into_response()
}

async fn status(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    let wanted: Vec<String> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.strip_prefix("name="))
        .map(percent_decode)
        .collect();
    let all = app.monitor.health_summary();
    for name in &wanted {
        if !all.iter().any(|h| &*h.name == name) {
            return error(StatusCode::NOT_FOUND, format!("no component named {name:?}"));
        }
    }
    let config = app.config();
    let by_name: HashMap<&str, &crate::config::ComponentConfig> =
        config.components.iter().map(|c| (c.name.as_str(), c)).collect();
    let components: Vec<HealthJson<'_>> = all
        .iter()
        .filter(|h| wanted.is_empty() || wanted.iter().any(|w| **w == *h.name))
        .map(|h| {
            let waiting = app.waiting_text(&h.name);
            health_json(h, waiting, by_name.get(&*h.name).copied())
        })
        .collect();
    #[derive(Serialize)]
    struct Status<'a> {
        components: Vec<HealthJson<'a>>,
    }
    Json(Status { components }).into_response()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn component(State(app): State<App>, Path(name): Path<String>) -> Response {
    match app.monitor.health(&name) {
        Some(h) => {
            let config = app.config();
            Json(health_json(&h, app.waiting_text(&name), config.component(&name))).into_response()
        }
        None => error(StatusCode::NOT_FOUND, format!("no component named {name:?}")),
    }
}

async fn act(State(app): State<App>, Path((name, action)): Path<(String, String)>) -> Response {
    let op = match action.as_str() {
        "start" => Op::Start,
        "stop" => Op::Stop,
        "restart" => Op::Restart,
        "reset" => Op::Reset,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("unknown action {other:?}: use start, stop, restart or reset"),
            );
        }
    };
    if app.monitor.health(&name).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no component named {name:?}"));
    }
    if matches!(op, Op::Start | Op::Stop | Op::Restart) {
        app.cancel_wait(&name);
    }
    match app.monitor.act(&name, op).await {
        Ok(()) => Json(json!({"ok": true, "component": name, "action": action})).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

async fn down(State(app): State<App>) -> Response {
    let _ = app.shutdown.send(true);
    let mut stopped = app.stopped.clone();
    let _ = stopped.wait_for(|s| *s).await;
    Json(json!({"ok": true})).into_response()
}

async fn reload(State(app): State<App>) -> Response {
    let result = crate::reload::apply(&app).await;
    crate::daemon::report_reload(&result);
    match result {
        Ok(diff) => Json(diff.to_json()).into_response(),
        Err(crate::reload::Refused::Invalid(errors)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "the new config is invalid; nothing changed", "errors": errors})),
        )
            .into_response(),
        Err(crate::reload::Refused::ShuttingDown) => {
            error(StatusCode::CONFLICT, "the daemon is shutting down")
        }
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let text = crate::metrics::render(&app.monitor);
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
        .into_response()
}

/// `GET /v1/events`: every transition from now on as a server-sent event `transition` whose
/// data is the same JSON object as a line of `hale events --json`; a reader too slow to keep
/// up gets a `lagged` event with the number of transitions it missed. The stream ends when the
/// daemon stops.
async fn events_sse(State(app): State<App>) -> Response {
    use axum::response::sse::{Event as Sse, KeepAlive};
    use tokio::sync::broadcast::error::RecvError;
    let rx = app.monitor.subscribe();
    let stopped = app.stopped.clone();
    let stream = futures_util::stream::unfold((rx, stopped), |(mut rx, mut stopped)| async move {
        let event = tokio::select! {
            r = rx.recv() => match r {
                Ok(e) => Sse::default().event("transition").data(crate::events::to_json(&e).to_string()),
                Err(RecvError::Lagged(n)) => Sse::default().event("lagged").data(n.to_string()),
                Err(RecvError::Closed) => return None,
            },
            _ = stopped.wait_for(|s| *s) => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(event), (rx, stopped)))
    });
    axum::response::Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

async fn readyz(State(app): State<App>) -> Response {
    let not_ready: Vec<String> = app
        .monitor
        .health_summary()
        .iter()
        .filter(|h| !serving_ok(&app, h))
        .map(|h| {
            let config = app.config();
            let waiting = app.waiting_text(&h.name);
            let why = crate::explain::why(h, waiting.as_deref(), config.component(&h.name));
            format!("{}: {why}", h.name)
        })
        .collect();
    if not_ready.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", not_ready.join("\n"))).into_response()
    }
}

/// A Unix listener that admits only peers running as our user or as root, and logs the rest.
pub struct CheckedUnixListener(pub UnixListener);

impl axum::serve::Listener for CheckedUnixListener {
    type Io = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let me = nix::unistd::geteuid().as_raw();
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => match stream.peer_cred() {
                    Ok(cred) if cred.uid() == me || cred.uid() == 0 => return (stream, addr),
                    Ok(cred) => tracing::warn!(
                        "refused a control connection from uid {} (pid {:?}): only uid {me} and root may control this daemon",
                        cred.uid(),
                        cred.pid()
                    ),
                    Err(e) => {
                        tracing::warn!("refused a control connection: no peer credentials: {e}")
                    }
                },
                Err(e) => {
                    tracing::warn!("accept on the control socket: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}
