//! The client side of the control socket: one HTTP/1 request per call over the Unix socket
//! (hyper), and the everyday verbs built on it: status, start/stop/restart/reset, wait, down.
//!
//! A client that finds no daemon says so and says how to start one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// The daemon could not be reached.
#[derive(Debug, thiserror::Error)]
#[error(
    "no hale daemon is running at {socket}: {why}\n  start one with `hale up{config}` (or `hale up -d{config}` to run it in the background)"
)]
pub struct NoDaemon {
    socket: String,
    why: String,
    config: String,
}

/// How a client found the socket, for error messages.
pub struct Target {
    /// The socket path.
    pub socket: PathBuf,
    /// The config file it came from, if any.
    pub config: Option<PathBuf>,
}

impl Target {
    fn no_daemon(&self, why: impl Into<String>) -> anyhow::Error {
        anyhow!(NoDaemon {
            socket: self.socket.display().to_string(),
            why: why.into(),
            config: self
                .config
                .as_ref()
                .map(|c| format!(" -c {}", c.display()))
                .unwrap_or_default(),
        })
    }

    /// One request; `Ok((status, json))` for any HTTP answer.
    pub async fn request(&self, method: &str, path: &str) -> Result<(u16, Value)> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "the socket does not exist".to_owned(),
                std::io::ErrorKind::ConnectionRefused => "nothing listens on the socket".to_owned(),
                std::io::ErrorKind::PermissionDenied => {
                    return anyhow!(
                        "permission denied on {}: a daemon runs there as another user, and only \
                         that user and root may control it",
                        self.socket.display()
                    );
                }
                _ => e.to_string(),
            };
            self.no_daemon(why)
        })?;
        send(stream, method, path).await.map_err(|e| {
            anyhow!(
                "the daemon at {} refused this client: it admits only its own user and root \
                 (the connection closed without an answer: {e:#})",
                self.socket.display()
            )
        })
    }
}

async fn send(stream: UnixStream, method: &str, path: &str) -> Result<(u16, Value)> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("talking to the daemon")?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "hale")
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let resp = sender.send_request(req).await.context("waiting for the daemon's answer")?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.context("reading the daemon's answer")?.to_bytes();
    conn.abort();
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Ok((status, value))
}

/// One request to `socket`, for callers without a [`Target`].
pub async fn request_at(socket: &Path, method: &str, path: &str) -> Result<Value> {
    let stream = UnixStream::connect(socket).await?;
    let (status, v) = send(stream, method, path).await?;
    if status != 200 {
        bail!("{}", v["error"].as_str().unwrap_or("request failed"));
    }
    Ok(v)
}

/// Blocking form of [`request_at`], for code outside the runtime.
pub fn request_blocking(socket: &Path, method: &str, path: &str) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(request_at(socket, method, path))
}

fn query(names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = names.iter().map(|n| format!("name={}", encode(n))).collect();
    format!("?{}", parts.join("&"))
}

/// Percent-encode `s` for a URL path segment or query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /v1/status` for `names` (all when empty).
pub async fn status(target: &Target, names: &[String]) -> Result<Vec<Value>> {
    let (code, v) = target.request("GET", &format!("/v1/status{}", query(names))).await?;
    if code != 200 {
        bail!("{}", v["error"].as_str().unwrap_or("status failed"));
    }
    Ok(v["components"].as_array().cloned().unwrap_or_default())
}

/// `hale status`: a table, or CONTRACT's JSON.
pub async fn print_status(target: &Target, names: &[String], json: bool) -> Result<i32> {
    let comps = status(target, names).await?;
    if json {
        out!("{}", serde_json::json!({"components": comps}));
        return Ok(0);
    }
    if names.len() == 1 && comps.len() == 1 {
        print_detail(&comps[0]);
        return Ok(0);
    }
    out!("NAME             STATE       READY     PID    UPTIME RESTARTS  INFO");
    for c in &comps {
        let uptime = c["uptime_ms"].as_u64().map(fmt_ms).unwrap_or_else(|| "-".into());
        let pid = c["pid"].as_u64().map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let info = c["why"].as_str().unwrap_or("");
        out!(
            "{:<16} {:<11} {:<5} {:>7} {:>9} {:>8}  {}",
            c["name"].as_str().unwrap_or("?"),
            c["state"].as_str().unwrap_or("?"),
            if c["ready"] == true { "yes" } else { "no" },
            pid,
            uptime,
            c["restart_count"],
            info.lines().next().unwrap_or(""),
        );
    }
    Ok(0)
}

/// `hale status NAME`: one component, every figure its explanation is made of.
fn print_detail(c: &Value) {
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let ms = |v: &Value| v.as_u64().map(fmt_ms).unwrap_or_else(|| "-".into());
    out!("{}: {}", text(&c["name"]), text(&c["state"]));
    out!("  why:            {}", text(&c["why"]));
    out!("  ready/healthy:  {} / {}", c["ready"], c["healthy"]);
    out!("  pid:            {} (instance {})", text(&c["pid"]), c["incarnation"]);
    out!("  uptime:         {}", ms(&c["uptime_ms"]));
    out!(
        "  restarts:       {} since start, {} in the window, {} left; backoff step {}",
        c["restart_count"],
        c["restarts_in_window"],
        text(&c["restarts_left"]),
        c["backoff_step"]
    );
    out!("  next restart:   {}", ms(&c["next_restart_in_ms"]));
    let exit = &c["last_exit"];
    let exit = if exit.is_null() {
        "-".to_owned()
    } else if !exit["signal"].is_null() {
        format!("signal {}", exit["signal"])
    } else {
        format!("code {}", exit["code"])
    };
    out!("  last exit:      {exit}");
    out!("  last error:     {}", text(&c["last_error"]).lines().next().unwrap_or(""));
    out!("  status text:    {}", text(&c["status_text"]));
    if let Some(probes) = c["probes"].as_object() {
        for (kind, p) in probes {
            out!(
                "  {kind}: {} passed / {} failed in a row",
                p["consecutive_successes"],
                p["consecutive_failures"]
            );
            for r in p["last"].as_array().into_iter().flatten() {
                out!(
                    "    {} {} {:>7.1}ms  {}",
                    text(&r["at"]),
                    if r["ok"] == true { "ok  " } else { "FAIL" },
                    r["duration_ms"].as_f64().unwrap_or(0.0),
                    text(&r["output"]).lines().next().unwrap_or("")
                );
            }
        }
    }
}

fn fmt_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// `hale start|stop|restart|reset NAME... | --all`.
pub async fn act(target: &Target, action: &str, names: &[String], all: bool) -> Result<i32> {
    let names: Vec<String> = if all {
        status(target, &[])
            .await?
            .iter()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    } else if names.is_empty() {
        bail!("name the components to {action}, or use --all");
    } else {
        names.to_vec()
    };
    let mut code = 0;
    for name in names {
        let (status, v) =
            target.request("POST", &format!("/v1/components/{}/{action}", encode(&name))).await?;
        if status == 200 {
            out!("{action}: {name}");
        } else {
            eprintln!("hale {action} {name}: {}", v["error"].as_str().unwrap_or("failed"));
            code = 1;
        }
    }
    Ok(code)
}

/// The condition `hale wait --for` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitFor {
    /// Passed the startup gate (running).
    Started,
    /// Ready.
    Ready,
    /// Running and ready.
    Healthy,
    /// Stopped.
    Stopped,
}

/// `hale wait`: exit 0 once every component meets the condition; 1 on timeout or Failed.
pub async fn wait(
    target: &Target,
    names: &[String],
    what: WaitFor,
    timeout: Option<Duration>,
) -> Result<i32> {
    if names.is_empty() {
        bail!("name the components to wait for");
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let comps = status(target, names).await?;
        let mut all = true;
        for c in &comps {
            let name = c["name"].as_str().unwrap_or("?");
            let state = c["state"].as_str().unwrap_or("");
            if state == "failed" && what != WaitFor::Stopped {
                eprintln!(
                    "hale wait: {name} has failed: {}",
                    c["last_error"].as_str().unwrap_or("")
                );
                return Ok(1);
            }
            let met = match what {
                WaitFor::Started => state == "running",
                WaitFor::Ready => c["ready"] == true,
                WaitFor::Healthy => c["healthy"] == true,
                WaitFor::Stopped => state == "stopped" && c["pid"].is_null(),
            };
            all &= met;
        }
        if all {
            return Ok(0);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let pending: Vec<String> = comps
                .iter()
                .map(|c| {
                    format!(
                        "{} is {}",
                        c["name"].as_str().unwrap_or("?"),
                        c["state"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            eprintln!("hale wait: timed out: {}", pending.join(", "));
            return Ok(1);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `hale reload`: the daemon re-reads its config file and applies the difference; an invalid
/// file is refused with its errors (exit 1) and nothing changes.
pub async fn reload(target: &Target) -> Result<i32> {
    let (code, v) = target.request("POST", "/v1/reload").await?;
    if code != 200 {
        eprintln!("hale reload: {}", v["error"].as_str().unwrap_or("refused"));
        if let Some(errors) = v["errors"].as_str() {
            eprintln!("{errors}");
        }
        return Ok(1);
    }
    let list = |key: &str| -> String {
        let names: Vec<&str> =
            v[key].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if names.is_empty() { "-".to_owned() } else { names.join(", ") }
    };
    out!("added:     {}", list("added"));
    out!("removed:   {}", list("removed"));
    out!("changed:   {} (restarted)", list("changed"));
    out!("unchanged: {}", list("unchanged"));
    for w in v["warnings"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        out!("warning: {w}");
    }
    Ok(0)
}

/// `hale down`: stop everything in reverse dependency order, then the daemon; returns once the
/// daemon has gone.
pub async fn down(target: &Target) -> Result<i32> {
    let (code, v) = target.request("POST", "/v1/down").await?;
    if code != 200 {
        bail!("{}", v["error"].as_str().unwrap_or("down failed"));
    }
    let start = Instant::now();
    while target.socket.exists() && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out!("hale: every component stopped; the daemon has exited");
    Ok(0)
}
