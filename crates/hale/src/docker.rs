//! A small Docker Engine API client over the engine's Unix socket: inspect, start, stop and
//! restart one container, and the [`actions`] of a `docker = "name"` component built on them.
//!
//! Each call opens a fresh HTTP/1.1 connection to the socket (hyper's `client::conn::http1`
//! over a `UnixStream`), driven inside the call's own future: dropping the future (a check's or
//! an action's timeout) closes the connection, and no task is left behind. Answers are read up
//! to [`BODY_LIMIT`]; a longer one is an error, never an unbounded read. Only names that follow
//! the engine's rule are sent ([`container_name`]), percent-encoded all the same, so no name can
//! reach another endpoint.
//!
//! The API version is negotiated once per [`Engine`] (shared by its clones), on the first call
//! that reaches the engine: the `API-Version` header of `GET /_ping` (or `ApiVersion` of
//! `GET /version`), capped at [`MAX_API_VERSION`]; every later path starts with `/v1.NN`. The
//! fields and endpoints used here are the same from API 1.24 to 1.51.
//!
//! What this module does not do: TCP or TLS engines (`DOCKER_HOST=tcp://...` is refused with a
//! clear error), the events stream, creating or removing containers, or timeouts of its own
//! (the driver bounds checks and actions).

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::component::{External, action};

/// The engine socket used when `DOCKER_HOST` is not set.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The newest API version this client speaks, as (major, minor): 1.51 (Docker 28). The engine's
/// own version is used when it is older.
pub const MAX_API_VERSION: (u32, u32) = (1, 51);

/// The largest answer read from the engine: 1 MiB. An inspect answer is a few KiB.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What went wrong talking to the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `DOCKER_HOST` names something other than a Unix socket, such as `tcp://host:2375`.
    #[error(
        "DOCKER_HOST={0:?} is not supported: hale talks to the engine over a Unix socket (unix:///path)"
    )]
    UnsupportedHost(String),
    /// The socket could not be connected to (no engine, no such file, no permission).
    #[error("engine unreachable at {}: {reason}", socket.display())]
    Unreachable {
        /// The socket path.
        socket: PathBuf,
        /// What the connect attempt said, such as `connection refused`.
        reason: String,
    },
    /// The connection was made but the exchange failed (the engine hung up, or spoke something
    /// other than HTTP).
    #[error("engine at {}: {reason}", socket.display())]
    Exchange {
        /// The socket path.
        socket: PathBuf,
        /// What happened.
        reason: String,
    },
    /// The name cannot name a container: names and ids are letters, digits, `_`, `.` and `-`,
    /// starting with a letter or digit (one leading `/` is allowed, as the engine prints them).
    #[error(
        "{0:?} is not a container name or id (letters, digits, _ . -, starting with a letter or digit)"
    )]
    InvalidName(String),
    /// The engine knows no container by this name or id (status 404).
    #[error("no such container")]
    NoSuchContainer,
    /// The engine answered with a status this client does not expect.
    #[error("engine answered {status}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The engine's `message`, or the start of its answer.
        message: String,
    },
    /// An answer that could not be understood: too large, not JSON, or missing a field.
    #[error("unexpected answer from the engine: {0}")]
    BadAnswer(String),
}

/// A Docker engine reached through its Unix socket. Cheap to clone; clones share the
/// negotiated API version.
#[derive(Clone)]
pub struct Engine {
    socket: PathBuf,
    /// The negotiated `/v1.NN` prefix, once known.
    prefix: Arc<Mutex<Option<String>>>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").field("socket", &self.socket).finish_non_exhaustive()
    }
}

/// What inspecting a container says about its state (`State` of `GET /containers/{name}/json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    pub status: String,
    /// Whether its process runs (also true while paused or restarting).
    pub running: bool,
    /// The HEALTHCHECK's status (`starting`, `healthy` or `unhealthy`), `None` without one.
    pub health: Option<String>,
    /// The output of the last health check run, if any.
    pub health_output: Option<String>,
    /// The exit code of its last run (0 while it has never exited).
    pub exit_code: Option<i64>,
    /// When its current (or last) run started, RFC 3339 with nanoseconds, as the engine says.
    pub started_at: String,
}

impl Engine {
    /// The engine named by `DOCKER_HOST` (`unix:///path`), or [`DEFAULT_SOCKET`] when it is
    /// unset or empty. Fails for any other scheme, such as `tcp://`.
    pub fn from_env() -> Result<Engine, Error> {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.is_empty() => Engine::from_host(&host),
            _ => Ok(Engine::at(DEFAULT_SOCKET)),
        }
    }

    /// The engine at a `DOCKER_HOST`-style address: `unix:///path`. Fails for any other scheme
    /// (`tcp://`, `ssh://`, `npipe://`) and for an empty path.
    pub fn from_host(host: &str) -> Result<Engine, Error> {
        match host.strip_prefix("unix://") {
            Some(path) if path.starts_with('/') => Ok(Engine::at(path)),
            _ => Err(Error::UnsupportedHost(host.to_owned())),
        }
    }

    /// The engine listening on the Unix socket at `socket`. Nothing is connected yet.
    pub fn at(socket: impl Into<PathBuf>) -> Engine {
        Engine { socket: socket.into(), prefix: Arc::new(Mutex::new(None)) }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The API version in use, such as `1.41`, negotiated with the engine on first use.
    pub async fn api_version(&self) -> Result<String, Error> {
        let prefix = self.prefix().await?;
        Ok(prefix.trim_start_matches("/v").to_owned())
    }

    /// Inspect `container` (a name or id): its status, and its health if it has a HEALTHCHECK.
    pub async fn inspect(&self, container: &str) -> Result<ContainerState, Error> {
        let path = self.container_path(container, "json").await?;
        let (status, body) = self.request(Method::GET, &path).await?;
        match status {
            StatusCode::OK => parse_state(&body),
            StatusCode::NOT_FOUND => Err(Error::NoSuchContainer),
            other => Err(api_error(other, &body)),
        }
    }

    /// Start `container`. Succeeds when it is started or was already running.
    pub async fn start(&self, container: &str) -> Result<(), Error> {
        let path = self.container_path(container, "start").await?;
        self.post(&path).await
    }

    /// Stop `container`: its stop signal, then SIGKILL after `timeout` (whole seconds, rounded
    /// up). Succeeds when it is stopped or was not running. Returns once it has stopped.
    pub async fn stop(&self, container: &str, timeout: Duration) -> Result<(), Error> {
        let path = self.container_path(container, "stop").await?;
        let path = format!("{path}?t={}", whole_seconds(timeout));
        self.post(&path).await
    }

    /// Restart `container`: stop as [`Engine::stop`] (if it runs), then start it. Works on a
    /// stopped container too.
    pub async fn restart(&self, container: &str, timeout: Duration) -> Result<(), Error> {
        let path = self.container_path(container, "restart").await?;
        let path = format!("{path}?t={}", whole_seconds(timeout));
        self.post(&path).await
    }

    /// The [`External`] actions of a component that is the container `container` on this
    /// engine; see [`actions`].
    pub fn actions(&self, container: impl Into<String>, stop_timeout: Duration) -> External {
        let container: Arc<str> = Arc::from(container.into());
        let act = |verb: Verb| {
            let engine = self.clone();
            let container = container.clone();
            action(move |_ctx| {
                let engine = engine.clone();
                let container = container.clone();
                async move {
                    let done = match verb {
                        Verb::Start => engine.start(&container).await,
                        Verb::Stop => engine.stop(&container, stop_timeout).await,
                        Verb::Restart => engine.restart(&container, stop_timeout).await,
                    };
                    done.map_err(|err| format!("docker {} {container}: {err}", verb.as_str()))
                }
            })
        };
        External::new().start(act(Verb::Start)).stop(act(Verb::Stop)).restart(act(Verb::Restart))
    }

    /// `/v1.NN/containers/{name}/{what}`, for a valid name only.
    async fn container_path(&self, container: &str, what: &str) -> Result<String, Error> {
        let name = container_name(container)?;
        // Valid names need no encoding; it stays as a second line of defence.
        Ok(format!("{}/containers/{}/{what}", self.prefix().await?, encode(name)))
    }

    /// A POST that answers 204 (done) or 304 (nothing to do).
    async fn post(&self, path: &str) -> Result<(), Error> {
        let (status, body) = self.request(Method::POST, path).await?;
        match status {
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED => Ok(()),
            StatusCode::NOT_FOUND => Err(Error::NoSuchContainer),
            other => Err(api_error(other, &body)),
        }
    }

    /// The `/v1.NN` prefix, negotiated on first use.
    async fn prefix(&self) -> Result<String, Error> {
        if let Some(prefix) = self.cached_prefix() {
            return Ok(prefix);
        }
        let (version, source) = self.engine_version().await?;
        let (major, minor) = version.min(MAX_API_VERSION);
        let prefix = format!("/v{major}.{minor}");
        tracing::debug!(socket = %self.socket.display(), "docker API {major}.{minor} ({source})");
        if let Ok(mut cached) = self.prefix.lock() {
            *cached = Some(prefix.clone());
        }
        Ok(prefix)
    }

    fn cached_prefix(&self) -> Option<String> {
        self.prefix.lock().ok().and_then(|cached| cached.clone())
    }

    /// The engine's API version: `_ping`'s `API-Version` header, else `/version`'s `ApiVersion`.
    async fn engine_version(&self) -> Result<((u32, u32), &'static str), Error> {
        let request = empty_request(Method::GET, "/_ping")?;
        let (status, headers, _) = self.exchange(request).await?;
        if status.is_success()
            && let Some(version) = headers
                .get("api-version")
                .and_then(|value| value.to_str().ok())
                .and_then(parse_version)
        {
            return Ok((version, "from /_ping"));
        }
        let (status, body) = self.request(Method::GET, "/version").await?;
        if status != StatusCode::OK {
            return Err(api_error(status, &body));
        }
        let json = parse_json(&body)?;
        json.get("ApiVersion")
            .and_then(Value::as_str)
            .and_then(parse_version)
            .map(|version| (version, "from /version"))
            .ok_or_else(|| Error::BadAnswer("GET /version has no ApiVersion".to_owned()))
    }

    async fn request(&self, method: Method, path: &str) -> Result<(StatusCode, Vec<u8>), Error> {
        let request = empty_request(method, path)?;
        let (status, _, body) = self.exchange(request).await?;
        Ok((status, body))
    }

    /// One request on a fresh connection; the connection lives in this future.
    async fn exchange(
        &self,
        request: Request<Empty<Bytes>>,
    ) -> Result<(StatusCode, hyper::HeaderMap, Vec<u8>), Error> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|err| Error::Unreachable {
            socket: self.socket.clone(),
            reason: io_text(&err),
        })?;
        let exchange_error =
            |reason: String| Error::Exchange { socket: self.socket.clone(), reason };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| exchange_error(error_text(&err)))?;
        let exchange = async move {
            let response = sender.send_request(request).await.map_err(Exchanged::Hyper)?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = read_bounded(response.into_body(), BODY_LIMIT).await?;
            Ok::<_, Exchanged>((status, headers, body))
        };
        tokio::pin!(exchange, connection);
        let exchanged = tokio::select! {
            biased;
            exchanged = &mut exchange => exchanged,
            ended = &mut connection => match ended {
                // The connection ended cleanly, so the response is complete in the channels.
                Ok(()) => exchange.await,
                Err(err) => Err(Exchanged::Hyper(err)),
            },
        };
        exchanged.map_err(|err| match err {
            Exchanged::Hyper(err) => exchange_error(error_text(&err)),
            Exchanged::TooLarge => {
                Error::BadAnswer(format!("the answer is larger than {} KiB", BODY_LIMIT / 1024))
            }
        })
    }
}

/// The actions of a component that is the container `container` on the engine named by
/// `DOCKER_HOST`: start is `POST /containers/{name}/start`, stop is `.../stop?t=SECS` and
/// restart (used for automatic restarts) is `.../restart?t=SECS`, with `stop_timeout` as SECS
/// (rounded up). Starting a running container and stopping a stopped one succeed.
///
/// The driver bounds the stop action by the component's own `stop_timeout` and restarts by its
/// `restart_timeout`: give the component a few seconds more than `stop_timeout` here, so that
/// the engine's SIGKILL comes before hale gives up waiting. When `DOCKER_HOST` is not a Unix
/// socket, every action fails saying so; use [`Engine::actions`] to choose the engine.
///
/// ```no_run
/// use std::time::Duration;
/// use hale::{Check, Component, probe};
///
/// let component = Component::external("agent", hale::docker::actions("agent", Duration::from_secs(10)))
///     .kind_label("docker")
///     .stop_timeout(Duration::from_secs(15))
///     .liveness(Check::new(probe::Docker::new("agent").unwrap()));
/// ```
pub fn actions(container: impl Into<String>, stop_timeout: Duration) -> External {
    match Engine::from_env() {
        Ok(engine) => engine.actions(container, stop_timeout),
        Err(err) => {
            let message = err.to_string();
            let fail = move |verb: Verb| {
                let message = message.clone();
                action(move |_ctx| {
                    let message = message.clone();
                    async move { Err(format!("docker {}: {message}", verb.as_str())) }
                })
            };
            External::new()
                .start(fail(Verb::Start))
                .stop(fail(Verb::Stop))
                .restart(fail(Verb::Restart))
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }
}

/// `container` without its leading `/`, when it can name a container: letters, digits, `_`,
/// `.` and `-`, starting with a letter or digit (the engine's own rule for names; ids are hex).
/// Anything else could only be refused by the engine, or be cleaned by its router into another
/// path; it is refused here instead.
pub fn container_name(container: &str) -> Result<&str, Error> {
    let name = container.strip_prefix('/').unwrap_or(container);
    let mut bytes = name.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid { Ok(name) } else { Err(Error::InvalidName(container.to_owned())) }
}

enum Exchanged {
    Hyper(hyper::Error),
    TooLarge,
}

fn empty_request(method: Method, path: &str) -> Result<Request<Empty<Bytes>>, Error> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "docker")
        .header(hyper::header::USER_AGENT, concat!("hale/", env!("CARGO_PKG_VERSION")))
        .body(Empty::new())
        .map_err(|err| Error::BadAnswer(format!("could not build the request {path}: {err}")))
}

/// Reads the whole body, failing once it passes `limit` bytes.
async fn read_bounded(mut body: Incoming, limit: usize) -> Result<Vec<u8>, Exchanged> {
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(Exchanged::Hyper)?.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(Exchanged::TooLarge);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

fn parse_json(body: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(body).map_err(|err| Error::BadAnswer(format!("not JSON: {err}")))
}

/// The state of an inspect answer.
fn parse_state(body: &[u8]) -> Result<ContainerState, Error> {
    let json = parse_json(body)?;
    let state = json
        .get("State")
        .filter(|state| state.is_object())
        .ok_or_else(|| Error::BadAnswer("the inspect answer has no State".to_owned()))?;
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let status = text(state.get("Status"))
        .ok_or_else(|| Error::BadAnswer("the inspect answer has no State.Status".to_owned()))?;
    let health = state.get("Health").filter(|health| health.is_object());
    let health_status =
        text(health.and_then(|h| h.get("Status"))).filter(|s| !s.is_empty() && s != "none");
    let health_output = health
        .and_then(|h| h.get("Log"))
        .and_then(Value::as_array)
        .and_then(|log| log.last())
        .and_then(|entry| text(entry.get("Output")));
    Ok(ContainerState {
        running: state.get("Running").and_then(Value::as_bool).unwrap_or(status == "running"),
        status,
        health: health_status,
        health_output,
        exit_code: state.get("ExitCode").and_then(Value::as_i64),
        started_at: text(state.get("StartedAt")).unwrap_or_default(),
    })
}

fn api_error(status: StatusCode, body: &[u8]) -> Error {
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(json) => json.get("message").and_then(Value::as_str).map(str::to_owned),
        Err(_) => None,
    };
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        text.trim().chars().take(200).collect()
    });
    Error::Api { status: status.as_u16(), message }
}

/// `1.41` as (1, 41).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Everything but RFC 3986's unreserved characters, percent-encoded.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The innermost cause of a hyper error, as its outer layers say little.
fn error_text(err: &(dyn StdError + 'static)) -> String {
    let mut innermost = err;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    match innermost.downcast_ref::<io::Error>() {
        Some(io_err) => io_text(io_err),
        None => innermost.to_string(),
    }
}

fn io_text(err: &io::Error) -> String {
    crate::probe::os_error::lower_text(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_percent_encoded() {
        assert_eq!(encode("hale-test_1.a~b"), "hale-test_1.a~b");
        assert_eq!(encode("a b/../c?d"), "a%20b%2F..%2Fc%3Fd");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn container_names_follow_the_engines_rule() {
        for ok in ["a", "db", "hale-test_1.x", "/agent", "0abc123def"] {
            assert_eq!(container_name(ok), Ok(ok.trim_start_matches('/')), "{ok}");
        }
        for bad in ["", "/", "..", "-x", ".x", "a/b", "a b", "a?b", "a%2F", "é", "//a"] {
            assert_eq!(container_name(bad), Err(Error::InvalidName(bad.to_owned())), "{bad}");
        }
    }

    #[test]
    fn versions_parse_and_are_capped() {
        assert_eq!(parse_version("1.41"), Some((1, 41)));
        assert_eq!(parse_version(" 1.9 "), Some((1, 9)));
        assert_eq!(parse_version("1"), None);
        assert_eq!(parse_version("x.41"), None);
        assert_eq!((1, 41).min(MAX_API_VERSION), (1, 41));
        assert_eq!((1, 52).min(MAX_API_VERSION), MAX_API_VERSION);
        assert_eq!((1, 9).min(MAX_API_VERSION), (1, 9));
    }

    #[test]
    fn docker_host_must_be_a_unix_socket() {
        assert_eq!(
            Engine::from_host("unix:///run/d.sock").unwrap().socket(),
            Path::new("/run/d.sock")
        );
        for host in ["tcp://127.0.0.1:2375", "unix://", "unix://relative", "/run/d.sock"] {
            assert_eq!(
                Engine::from_host(host).unwrap_err(),
                Error::UnsupportedHost(host.to_owned())
            );
        }
    }

    #[test]
    fn stop_timeouts_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(10)), 10);
        assert_eq!(whole_seconds(Duration::from_millis(10_500)), 11);
    }

    #[test]
    fn inspect_state_without_and_with_health() {
        let plain = br#"{"Id":"x","State":{"Status":"exited","Running":false,"ExitCode":137,
            "StartedAt":"2026-01-01T00:00:00.1Z"}}"#;
        assert_eq!(
            parse_state(plain).unwrap(),
            ContainerState {
                status: "exited".into(),
                running: false,
                health: None,
                health_output: None,
                exit_code: Some(137),
                started_at: "2026-01-01T00:00:00.1Z".into(),
            }
        );
        let health = br#"{"State":{"Status":"running","Running":true,"Health":{"Status":"unhealthy",
            "FailingStreak":2,"Log":[{"ExitCode":1,"Output":"old"},{"ExitCode":1,"Output":"no file\n"}]}}}"#;
        let state = parse_state(health).unwrap();
        assert_eq!(state.health.as_deref(), Some("unhealthy"));
        assert_eq!(state.health_output.as_deref(), Some("no file\n"));
        assert!(matches!(parse_state(b"[]"), Err(Error::BadAnswer(_))));
        assert!(matches!(parse_state(b"{\"State\":{}}"), Err(Error::BadAnswer(_))));
        assert!(matches!(parse_state(b"<html>"), Err(Error::BadAnswer(_))));
    }

    #[test]
    fn api_errors_carry_the_engine_message() {
        assert_eq!(
            api_error(StatusCode::CONFLICT, br#"{"message":"container is paused"}"#).to_string(),
            "engine answered 409: container is paused"
        );
        assert_eq!(
            api_error(StatusCode::INTERNAL_SERVER_ERROR, b" oops\n").to_string(),
            "engine answered 500: oops"
        );
    }
}
