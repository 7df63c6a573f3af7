//! The `tcp` check against real listeners on the loopback interface.
//!
//! Covers a listener that accepts, one that accepts and hangs up at once (still healthy: the
//! connection was accepted), a port with nothing listening, name resolution and the address
//! forms accepted. It does not test timeouts: the driver applies them.

use std::sync::Arc;
use std::time::Duration;

use hale::probe::{Probe, ProbeContext, ProbeKind, Tcp};
use tokio::net::TcpListener;

const GUARD: Duration = Duration::from_secs(10);

fn ctx() -> ProbeContext {
    ProbeContext {
        component: Arc::from("test"),
        kind: ProbeKind::Liveness,
        incarnation: 1,
        pid: None,
        timeout: GUARD,
    }
}

async fn check(probe: &Tcp) -> hale::probe::CheckResult {
    tokio::time::timeout(GUARD, probe.check(ctx())).await.expect("the check hung")
}

#[tokio::test]
async fn an_accepting_listener_is_healthy() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let probe = Tcp::new(address.to_string()).unwrap();
    // The connection completes in the kernel's backlog, so nobody needs to call accept.
    assert_eq!(check(&probe).await, Ok(format!("connected to {address}")));
    let (_, peer) = tokio::time::timeout(GUARD, listener.accept()).await.unwrap().unwrap();
    assert!(peer.ip().is_loopback());
}

#[tokio::test]
async fn a_listener_that_hangs_up_at_once_is_still_healthy() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        drop(stream);
    });
    let probe = Tcp::new(address.to_string()).unwrap();
    assert!(check(&probe).await.is_ok());
    tokio::time::timeout(GUARD, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn nothing_listening_is_connection_refused() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let probe = Tcp::new(format!("127.0.0.1:{port}")).unwrap();
    let err = check(&probe).await.unwrap_err();
    assert_eq!(err.reason, format!("tcp 127.0.0.1:{port}: connection refused"));
}

#[tokio::test]
async fn host_names_are_resolved() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // `localhost` may resolve to ::1 first, where nothing listens: the next address is tried.
    let probe = Tcp::new(format!("localhost:{port}")).unwrap();
    assert_eq!(check(&probe).await, Ok(format!("connected to 127.0.0.1:{port}")));
}

#[tokio::test]
async fn ipv6_in_brackets() {
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let probe = Tcp::new(format!("[::1]:{port}")).unwrap();
    assert_eq!(probe.describe(), format!("tcp [::1]:{port}"));
    assert_eq!(check(&probe).await, Ok(format!("connected to [::1]:{port}")));
}

#[test]
fn addresses_are_checked() {
    assert_eq!(Tcp::new("127.0.0.1:8080").unwrap().describe(), "tcp 127.0.0.1:8080");
    assert_eq!(Tcp::new("db.internal:5432").unwrap().address(), "db.internal:5432");
    for bad in
        ["localhost", ":80", "host:", "host:0", "host:65536", "host:http", "::1:80", "[::1:80"]
    {
        assert!(Tcp::new(bad).is_err(), "{bad} was accepted");
    }
    let err = Tcp::new("localhost").unwrap_err();
    assert_eq!(err.to_string(), r#"tcp "localhost": expected host:port"#);
}
