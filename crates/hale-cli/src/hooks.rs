//! `on_state_change` hooks: on every transition, run a command or POST the event to a URL,
//! for the component's own hook and for the `[hale]` one.
//!
//! Hooks never block supervision: the events task only spawns them, at most
//! [`MAX_RUNNING`] run at once and at most [`MAX_QUEUED`] wait (beyond that a hook is dropped
//! with a warning), and each is bounded by its `timeout`. A command runs in the config file's
//! directory, in its own process group (killed whole at the timeout and when the daemon exits),
//! with `HALE_COMPONENT`, `HALE_FROM`, `HALE_TO`, `HALE_REASON`, `HALE_INCARNATION` and
//! `HALE_AT` set; its output is discarded, a failure is logged. A webhook receives the same
//! JSON object as a line of `hale events --json`, by POST, over http or https.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokio::sync::Semaphore;

use crate::config::{Hook, HookAction};

/// Hooks running at once.
pub const MAX_RUNNING: usize = 16;
/// Hooks waiting for a turn; more are dropped.
pub const MAX_QUEUED: usize = 1024;

/// The daemon's hook runner.
pub struct Hooks {
    slots: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
    /// Process groups of hook commands still running.
    groups: Arc<Mutex<HashSet<i32>>>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            slots: Arc::new(Semaphore::new(MAX_RUNNING)),
            queued: Arc::new(AtomicUsize::new(0)),
            groups: Arc::new(Mutex::new(HashSet::new())),
        }
    }
}

impl Hooks {
    /// Start `hooks` for event `e` in the background (`cwd`: the config file's directory).
    pub fn fire(&self, hooks: &[Hook], e: &hale::Event, cwd: &Path) {
        for hook in hooks {
            if self.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(
                    "dropped an on_state_change hook for {}: {MAX_QUEUED} are already waiting",
                    e.component
                );
                continue;
            }
            let (slots, queued, groups) =
                (self.slots.clone(), self.queued.clone(), self.groups.clone());
            let (hook, e, cwd) = (hook.clone(), e.clone(), cwd.to_path_buf());
            tokio::spawn(async move {
                let _turn = slots.acquire_owned().await;
                queued.fetch_sub(1, Ordering::Relaxed);
                let what = match &hook.action {
                    HookAction::Command(argv) => format!("command {argv:?}"),
                    HookAction::Webhook(url) => format!("webhook {url}"),
                };
                if let Err(err) = run(&hook, &e, &cwd, &groups).await {
                    tracing::warn!(
                        "on_state_change {what} for {} ({} -> {}): {err}",
                        e.component,
                        e.from,
                        e.to
                    );
                }
            });
        }
    }

    /// Kill every hook command still running (the daemon is exiting).
    pub fn kill_all(&self) {
        for pgid in self.groups.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Wait up to `grace` for the hooks in flight to finish.
    pub async fn settle(&self, grace: Duration) {
        let _ = tokio::time::timeout(grace, async {
            let _all = self.slots.acquire_many(MAX_RUNNING as u32).await;
            while self.queued.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

async fn run(
    hook: &Hook,
    e: &hale::Event,
    cwd: &PathBuf,
    groups: &Mutex<HashSet<i32>>,
) -> Result<(), String> {
    match &hook.action {
        HookAction::Command(argv) => {
            let Some((program, args)) = argv.split_first() else { return Ok(()) };
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args)
                .current_dir(cwd)
                .env("HALE_COMPONENT", &*e.component)
                .env("HALE_FROM", e.from.as_str())
                .env("HALE_TO", e.to.as_str())
                .env("HALE_REASON", &e.reason)
                .env("HALE_INCARNATION", e.incarnation.to_string())
                .env("HALE_AT", humantime::format_rfc3339_millis(e.at).to_string())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .kill_on_drop(true);
            let mut child = cmd.spawn().map_err(|err| format!("cannot start: {err}"))?;
            let pgid = child.id().and_then(|p| i32::try_from(p).ok());
            if let Some(g) = pgid {
                groups.lock().unwrap_or_else(|e| e.into_inner()).insert(g);
            }
            let result = tokio::time::timeout(hook.timeout, child.wait()).await;
            if let Some(g) = pgid {
                groups.lock().unwrap_or_else(|e| e.into_inner()).remove(&g);
                // Whatever the hook left in its group goes with it.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(g),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            match result {
                Ok(Ok(status)) if status.success() => Ok(()),
                Ok(Ok(status)) => Err(format!("exited with {status}")),
                Ok(Err(err)) => Err(format!("waiting for it: {err}")),
                Err(_) => {
                    let _ = child.wait().await;
                    Err(format!(
                        "killed after its timeout of {}",
                        humantime::format_duration(hook.timeout)
                    ))
                }
            }
        }
        HookAction::Webhook(url) => {
            let body = crate::events::to_json(e).to_string();
            tokio::time::timeout(hook.timeout, post(url, body)).await.map_err(|_| {
                format!(
                    "no answer within its timeout of {}",
                    humantime::format_duration(hook.timeout)
                )
            })?
        }
    }
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https)
    })
}

async fn post(url: &str, body: String) -> Result<(), String> {
    let req = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, concat!("hale/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::from(body)))
        .map_err(|err| format!("bad request: {err}"))?;
    let resp = client().request(req).await.map_err(|err| format!("{err}"))?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    if status.is_success() { Ok(()) } else { Err(format!("answered {status}")) }
}
