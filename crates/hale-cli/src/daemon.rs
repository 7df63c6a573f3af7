//! `hale up`: the long-lived daemon that supervises what a `hale.toml` describes.
//!
//! It registers every component with a [`hale::Monitor`] (those with `depends_on` once their
//! dependencies meet their conditions), captures output to `state_dir/logs`, appends
//! transitions to `state_dir/events.jsonl`, serves the control socket, and on SIGTERM, SIGINT or
//! `hale down` stops components in reverse dependency order before it exits 0. A second signal
//! kills every process group at once.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hale::{Health, Monitor, MonitorOptions, OutputSink, State};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::api::{self, CheckedUnixListener, Shared};
use crate::config::{self, Config, DependCondition};
use crate::events::EventLog;
use crate::hooks::Hooks;
use crate::leftovers;
use crate::logs::{ComponentLog, Foreground};
use crate::plan;
use crate::reload;
use crate::{grpc_health, http_api};

/// `println!` that never panics: the daemon keeps running when nobody reads its stdout.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// The most the daemon lets a timer be late (about 5% of its distance, up to this) so that
/// timers close together share a wake-up: with 1 s checks, one wake-up serves many.
pub const DEFAULT_TIMER_SLACK: Duration = Duration::from_millis(50);

const COLORS: [&str; 6] = ["\x1b[36m", "\x1b[33m", "\x1b[32m", "\x1b[35m", "\x1b[34m", "\x1b[31m"];

/// Whether a dependency's health meets a `depends_on` condition.
pub fn condition_met(h: &Health, cond: DependCondition) -> bool {
    match cond {
        DependCondition::Started => {
            matches!(h.state, State::Running) || (h.incarnation > 0 && h.ready)
        }
        DependCondition::Ready => h.ready,
        DependCondition::Healthy => h.healthy,
        DependCondition::Completed => h.incarnation > 0 && h.is_settled() && h.last_exit.is_some(),
        DependCondition::CompletedSuccessfully => {
            h.incarnation > 0
                && h.state == State::Stopped
                && h.pid.is_none()
                && h.last_exit.is_some()
        }
    }
}

/// Run the daemon in the foreground until it is told to stop; returns the exit code. The caller
/// has built every component of `config` once already (`hale up` does, before anything
/// starts), so a component that cannot be built never gets this far.
/// `echo`: copy each component's output to stdout with its name (off for a detached daemon,
/// whose stdout is a file that nothing rotates).
pub async fn run(config: Config, echo: bool) -> Result<i32> {
    // One copy for the daemon's whole life, shared with the API (until a reload replaces it).
    let config = Arc::new(config);
    let state_dir = config.hale.state_dir.clone();
    std::fs::create_dir_all(state_dir.join("logs"))
        .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    let socket = state_dir.join("hale.sock");
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            bail!(
                "a hale daemon is already running for {} (socket {}); stop it with `hale down -c {}`",
                config.path.display(),
                socket.display(),
                config.path.display()
            );
        }
        std::fs::remove_file(&socket)
            .with_context(|| format!("removing the stale socket {}", socket.display()))?;
    }

    // Signals are ours before the first child exists: a SIGTERM during start-up is a graceful
    // shutdown like any other, never a daemon killed with its children half started.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    // Orphaned grandchildren are re-parented to hale (or hale is PID 1 and gets every orphan):
    // reap them, without ever taking an exit status that tokio is about to collect.
    if std::process::id() == 1 {
        say!("[hale] running as PID 1: SIGTERM/SIGINT stop everything, and every orphan is reaped");
    } else if let Err(e) = hale::OrphanReaper::become_subreaper() {
        tracing::warn!("cannot become a child subreaper ({e}); orphans go to init");
    }
    let mut chld = signal(SignalKind::child())?;
    let mut reaper = hale::OrphanReaper::default();
    let mut reap_pending = false;
    let mut reap_tick = tokio::time::interval(Duration::from_millis(500));
    reap_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    for r in leftovers::end(&state_dir) {
        say!(
            "[hale] ended {} (pid {}), left running by a daemon that did not stop cleanly",
            r.name,
            r.pid
        );
    }

    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // The network listeners come before the children too: a port in use, or a non-loopback
    // HTTP address without a token, stops `hale up` before anything has started.
    let http = http_api::bind(&config.hale).await?;
    let grpc = match &config.hale.grpc_health {
        Some(addr) => Some(grpc_health::bind(addr).await?),
        None => None,
    };

    // Timer slack lets checks that fall due within a few milliseconds of each other share a
    // wake-up (HALE_TIMER_SLACK_MS overrides it, for side-by-side benchmarks).
    let timer_slack = std::env::var("HALE_TIMER_SLACK_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(DEFAULT_TIMER_SLACK, Duration::from_millis);
    let monitor =
        Monitor::with_options(MonitorOptions { timer_slack, ..MonitorOptions::default() });
    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    let (stopped_tx, stopped_rx) = watch::channel(false);
    let shared = Arc::new(Shared::new(
        monitor.clone(),
        Arc::clone(&config),
        shutdown_tx,
        stopped_rx,
        echo,
        color,
    ));

    let mut events = EventLog::open(&state_dir)
        .with_context(|| format!("opening {}", crate::events::events_path(&state_dir).display()))?;
    let mut rx = monitor.subscribe();
    let (records_monitor, records_dir) = (monitor.clone(), state_dir.clone());
    let hooks = Arc::new(Hooks::default());
    let (hook_shared, hook_runner) = (shared.clone(), hooks.clone());
    let mut recorder = leftovers::Recorder::new(&records_dir)
        .with_context(|| format!("writing {}", leftovers::path(&records_dir).display()))?;
    let event_task = tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if let Err(err) = events.append(&e) {
                        tracing::warn!("writing the events file: {err}");
                    }
                    // Keep `children` current, so that a killed daemon's successor can end them.
                    let pid = records_monitor.health(&e.component).and_then(|h| h.pid);
                    if let Err(err) = recorder.update(&e.component, pid) {
                        tracing::warn!("writing the children record: {err}");
                    }
                    say!("[hale] {}: {} -> {}: {}", e.component, e.from, e.to, e.reason);
                    let config = hook_shared.config();
                    let own =
                        config.component(&e.component).and_then(|c| c.on_state_change.as_ref());
                    let hooks: Vec<_> =
                        config.hale.on_state_change.iter().chain(own).cloned().collect();
                    if !hooks.is_empty() {
                        hook_runner.fire(&hooks, &e, &config.base_dir);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        "{n} transitions were not written to the events file (too many at once)"
                    );
                }
                Err(_) => break,
            }
        }
    });

    // The socket comes before the children: if it cannot be bound, nothing has been started.
    let listener = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("binding the control socket {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", socket.display()))?;
    let app = api::router(shared.clone());
    let mut serve_stop = stopped_rx_clone(&shared);
    let server = tokio::spawn(async move {
        axum::serve(CheckedUnixListener(listener), app)
            .with_graceful_shutdown(async move {
                let _ = serve_stop.wait_for(|s| *s).await;
                // Let the `down` reply reach its client before the connection closes.
                tokio::time::sleep(Duration::from_millis(20)).await;
            })
            .await
    });
    let mut http_server = None;
    if let Some(api) = http {
        let router = http_api::guard(api::router(shared.clone()), api.token.clone());
        let mut stop = stopped_rx_clone(&shared);
        say!(
            "[hale] HTTP API on http://{}{}",
            api.addr,
            if api.token.is_some() { " (bearer token required)" } else { "" }
        );
        http_server = Some(tokio::spawn(async move {
            axum::serve(api.listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        }));
    }
    // Register in dependency order; dependents wait for their conditions before they start.
    for i in config::dependency_order(&config) {
        launch(&shared, &config, i).await?;
    }

    // (gRPC after registration: a configured component is never NOT_FOUND.)
    let grpc_server = grpc.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            say!("[hale] gRPC health service on {addr}");
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            grpc_health::serve(listener, shared).await;
            Ok(())
        })
    });
    say!(
        "[hale] supervising {} components from {}; control socket {}",
        config.components.len(),
        config.path.display(),
        socket.display()
    );

    // Under systemd (Type=notify): READY=1 with a status line, then watchdog pings at half the
    // period for as long as the loop below runs. Without NOTIFY_SOCKET these do nothing.
    let summary = |m: &Monitor| {
        let all = m.health_summary();
        let healthy = all.iter().filter(|h| h.healthy).count();
        format!("{healthy} of {} components healthy", all.len())
    };
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&summary(&monitor)),
    ]);
    let ping = sd_notify::watchdog_enabled().map(|d| d / 2).unwrap_or(Duration::from_secs(3600));
    let mut ping = tokio::time::interval(ping);
    // Code that served requests (status, metrics) is paged out again once they stop: a daemon
    // asked for its status now and then keeps the footprint of one that is not.
    let mut trim = tokio::time::interval(Duration::from_secs(20));
    trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut quiet_ticks = 0u32;

    crate::footprint::release_startup_code();
    crate::footprint::release_free_heap();

    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                say!("[hale] SIGHUP: reloading {}", config.path.display());
                let shared = shared.clone();
                tokio::spawn(async move { report_reload(&reload::apply(&shared).await) });
            }
            _ = chld.recv() => reap_pending = true,
            _ = reap_tick.tick(), if reap_pending => {
                let (_, pending) = reaper.reap(std::time::Instant::now(), Duration::from_secs(1));
                reap_pending = pending;
            }
            r = shutdown_rx.changed() => if r.is_err() || *shutdown_rx.borrow() { break },
            _ = trim.tick() => {
                if shared.served.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    quiet_ticks = 0;
                } else {
                    quiet_ticks = quiet_ticks.saturating_add(1u32);
                    if quiet_ticks == 1 {
                        crate::footprint::release_startup_code();
                        crate::footprint::release_free_heap();
                    }
                }
            }
            _ = ping.tick() => {
                let status = summary(&monitor);
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog, sd_notify::NotifyState::Status(&status)]);
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    say!("[hale] stopping every component in reverse dependency order");
    for (_, waiter) in shared.waiters.lock().unwrap_or_else(|e| e.into_inner()).drain() {
        waiter.abort();
    }
    let current = shared.config();
    let everything: HashSet<&str> = current.components.iter().map(|c| c.name.as_str()).collect();
    let stop = reload::stop_set(&shared, &current, &everything);
    tokio::pin!(stop);
    let forced = tokio::select! {
        () = &mut stop => false,
        _ = term.recv() => true,
        _ = int.recv() => true,
    };
    if forced {
        say!("[hale] second signal: killing every process group now");
        kill_everything(&monitor);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), monitor.shutdown()).await;
    let _ = stopped_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    for task in http_server.into_iter().chain(grpc_server) {
        let handle = task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), task).await.is_err() {
            handle.abort(); // a client holding a stream open does not keep hale alive
        }
    }
    // Hooks of the last transitions get a moment to finish; whatever still runs is killed.
    hooks.settle(Duration::from_secs(2)).await;
    hooks.kill_all();
    let _ = std::fs::remove_file(&socket);
    event_task.abort();
    let _ = std::fs::remove_file(leftovers::path(&state_dir));
    say!("[hale] stopped");
    Ok(if forced { 1 } else { 0 })
}

fn stopped_rx_clone(shared: &Shared) -> watch::Receiver<bool> {
    shared.stopped.clone()
}

/// Print what a reload did (the foreground log; `hale reload` gets the same as JSON).
pub fn report_reload(result: &Result<reload::Diff, reload::Refused>) {
    match result {
        Ok(d) => {
            say!(
                "[hale] reload: added [{}], removed [{}], changed [{}]; {} unchanged",
                d.added.join(", "),
                d.removed.join(", "),
                d.changed.join(", "),
                d.unchanged.len()
            );
            for w in &d.warnings {
                say!("[hale] reload: {w}");
            }
        }
        Err(reload::Refused::Invalid(errors)) => {
            say!("[hale] reload refused, nothing changed:\n{errors}")
        }
        Err(reload::Refused::ShuttingDown) => say!("[hale] reload refused: shutting down"),
    }
}

/// Build component `i` of `config` with its log, register it, and start it at once or, with
/// `depends_on`, once its dependencies meet their conditions.
pub async fn launch(shared: &Arc<Shared>, config: &Config, i: usize) -> Result<()> {
    let c = &config.components[i];
    let width = config.components.iter().map(|c| c.name.len()).max().unwrap_or(4);
    let prefix = if shared.color {
        format!("{}{:<width$}\x1b[0m | ", COLORS[i % COLORS.len()], c.name)
    } else {
        format!("{:<width$} | ", c.name)
    };
    let state_dir = &config.hale.state_dir;
    let mut open_log = |checks: Vec<Arc<dyn OutputSink>>| -> Option<Arc<dyn OutputSink>> {
        let opened = ComponentLog::open(
            state_dir,
            &c.name,
            config.hale.log_max_size,
            config.hale.log_keep,
            shared.echo.then(|| Foreground { prefix: prefix.clone() }),
        );
        match opened {
            Ok(mut log) => {
                for sink in checks {
                    log.also(sink);
                }
                Some(Arc::new(log))
            }
            Err(e) => {
                tracing::error!(
                    "opening the log file of {}: {e}; its output goes to hale's own",
                    c.name
                );
                None
            }
        }
    };
    let component = plan::component(c, &config.base_dir, &mut open_log)?;
    let deps = c.depends_on.clone();
    shared.monitor.register(component.autostart(deps.is_empty())).await?;
    if let Some((dep, cond)) = deps.first() {
        shared
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(c.name.clone(), (dep.clone(), *cond));
        let (shared2, name) = (shared.clone(), c.name.clone());
        let handle = tokio::spawn(async move { wait_then_start(shared2, name, deps).await });
        shared
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(c.name.clone(), handle.abort_handle());
    }
    Ok(())
}

async fn wait_then_start(shared: Arc<Shared>, name: String, deps: Vec<(String, DependCondition)>) {
    for (dep, cond) in deps {
        if let Ok(mut w) = shared.waiting.lock() {
            w.insert(name.clone(), (dep.clone(), cond));
        }
        let Some(mut rx) = shared.monitor.watch(&dep) else { return };
        if rx.wait_for(|h| condition_met(h, cond)).await.is_err() {
            return;
        }
    }
    if let Ok(mut w) = shared.waiting.lock() {
        w.remove(&name);
    }
    if let Ok(mut w) = shared.waiters.lock() {
        w.remove(&name);
    }
    if let Err(e) = shared.monitor.start(&name).await {
        tracing::warn!("starting {name}: {e}");
    }
}

fn kill_everything(monitor: &Monitor) {
    for h in monitor.health_summary() {
        if let Some(pid) = h.pid
            && let Ok(pid) = i32::try_from(pid)
            && pid > 1
        {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// `hale up -d`: start the daemon in its own session, detached from this terminal, with its
/// output in `state_dir/hale.log`; return once every component has started, or fail naming
/// what did not.
pub fn detach(config_path: &Path, config: &Config) -> Result<i32> {
    let state_dir = &config.hale.state_dir;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    let log_path = state_dir.join("hale.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let socket = state_dir.join("hale.sock");
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        bail!(
            "a hale daemon is already running for {} (socket {}); stop it with `hale down -c {}`",
            config_path.display(),
            socket.display(),
            config_path.display()
        );
    }
    let exe = std::env::current_exe().context("finding the hale executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("up").arg("--no-echo").arg("-c").arg(config_path);
    cmd.stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // SAFETY: setsid is async-signal-safe; it only detaches the child from our session.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().context("starting the daemon")?;
    let started = std::time::Instant::now();
    let names: Vec<String> = config.components.iter().map(|c| c.name.clone()).collect();
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the daemon exited with {status} before it was ready; see {}",
                log_path.display()
            );
        }
        if let Ok(v) = crate::client::request_blocking(&socket, "GET", "/v1/status") {
            let comps = v["components"].as_array().cloned().unwrap_or_default();
            let failed: Vec<String> = comps
                .iter()
                .filter(|c| c["state"] == "failed")
                .map(|c| {
                    format!(
                        "{}: {}",
                        c["name"].as_str().unwrap_or("?"),
                        c["last_error"].as_str().unwrap_or("failed")
                    )
                })
                .collect();
            if !failed.is_empty() {
                eprintln!(
                    "hale: the daemon runs (pid {}), but these components failed:",
                    child.id()
                );
                for f in failed {
                    eprintln!("  {f}");
                }
                return Ok(1);
            }
            let all_started = names.iter().all(|n| {
                comps.iter().any(|c| {
                    c["name"] == n.as_str()
                        && (c["state"] == "running"
                            || (c["state"] == "stopped"
                                && c["incarnation"].as_u64().unwrap_or(0) > 0))
                })
            });
            if all_started {
                say!("hale: daemon started (pid {}); every component is up", child.id());
                return Ok(0);
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            eprintln!("hale: gave up waiting for every component to start; see `hale status`");
            return Ok(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
