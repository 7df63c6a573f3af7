//! Fuzz target `control_request`: any bytes as a request to the daemon's API router
//! (`hale_cli::api::router`), the one served on the control socket. The input is split into a
//! method (first line), a path with its query (second line) and a body (the rest); what `http`
//! cannot make a request of is skipped. The router serves a live `Monitor` with one external
//! component, `ext`, whose actions succeed at once, and a config file on disk for `reload`.
//! Every request must be answered within 10 s, never with a 500, and never panic.

#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, Uri};
use hale::{Component, External, Monitor};
use hale_cli::api::{Shared, router};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tower::ServiceExt;

const CONFIG: &str =
    "[components.ext]\nstart = [\"true\"]\nstop = [\"true\"]\nrestart = [\"true\"]\n";

struct Fixture {
    rt: Runtime,
    shared: Arc<Shared>,
    /// Kept so that `down` and the event stream see the daemon as stopped at once.
    _stopped: watch::Sender<bool>,
    _shutdown_rx: watch::Receiver<bool>,
    _dir: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let dir = std::env::temp_dir().join(format!("hale-fuzz-control-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the fixture directory");
        let path = dir.join("hale.toml");
        std::fs::write(&path, CONFIG).expect("the fixture config");
        let config = hale_cli::config::load(&path).expect("the fixture config is valid");
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (stopped_tx, stopped) = watch::channel(true);
        let shared = rt.block_on(async {
            let monitor = Monitor::new();
            let ok = || hale::action(|_ctx| async { Ok(()) });
            let actions = External::new().start(ok()).stop(ok()).restart(ok());
            monitor.register(Component::external("ext", actions)).await.expect("register ext");
            Arc::new(Shared::new(monitor, config.into(), shutdown, stopped, false, false))
        });
        Fixture { rt, shared, _stopped: stopped_tx, _shutdown_rx: shutdown_rx, _dir: dir }
    })
}

fn line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (method, rest) = line(data);
    let (target, body) = line(rest);
    let Ok(method) = Method::from_bytes(method) else { return };
    let Ok(uri) = Uri::try_from(target) else { return };
    let Ok(request) = Request::builder().method(method).uri(uri).body(Body::from(body.to_vec()))
    else {
        return;
    };
    let f = fixture();
    f.rt.block_on(async {
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            router(f.shared.clone()).oneshot(request),
        )
        .await;
        let response = answer.expect("the API answered within 10 s").expect("infallible");
        assert_ne!(response.status(), StatusCode::INTERNAL_SERVER_ERROR, "{response:?}");
        let body = tokio::time::timeout(
            Duration::from_secs(10),
            axum::body::to_bytes(response.into_body(), 16 << 20),
        )
        .await;
        body.expect("the body ended within 10 s").expect("a body under 16 MiB");
    });
    // `POST /v1/down` asked for a shutdown; the next request meets a running daemon again.
    f.shared.shutdown.send_replace(false);
});
