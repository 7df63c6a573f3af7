//! The `http` check against real HTTP/1.1 and HTTPS servers started on the loopback interface.
//!
//! Covers statuses in and out of range, redirects (not followed), `body_contains` within the
//! 10 KiB that are read, a huge body that must not be read whole, a slow server whose check is
//! dropped (the connection must close), headers and methods, and TLS with a self-signed
//! certificate from rcgen: refused by default, trusted through `ca_file` or `insecure`. It does not
//! test the driver's timeout handling itself: the tests drop the future as the driver would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use hale::probe::{Http, Probe, ProbeContext, ProbeKind, StatusRange};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const GUARD: Duration = Duration::from_secs(10);
const BIG_BODY: usize = 20 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

fn ctx() -> ProbeContext {
    ProbeContext {
        component: Arc::from("test"),
        kind: ProbeKind::Liveness,
        incarnation: 1,
        pid: None,
        timeout: GUARD,
    }
}

async fn check(probe: &Http) -> hale::probe::CheckResult {
    tokio::time::timeout(GUARD, probe.check(ctx())).await.expect("the check hung")
}

type Body = BoxBody<Bytes, Infallible>;

/// A test server. Each connection it serves reports, when it ends, how many bytes of `/big`
/// bodies it produced.
struct Server {
    addr: SocketAddr,
    closed: mpsc::UnboundedReceiver<usize>,
}

impl Server {
    async fn start() -> Self {
        Self::start_with_tls(None).await
    }

    async fn start_with_tls(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let closed_tx = closed_tx.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let produced = Arc::new(AtomicUsize::new(0));
                    let counter = produced.clone();
                    let service = service_fn(move |req| respond(req, counter.clone()));
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(acceptor) => {
                            // A client that rejects the certificate ends the handshake here.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ =
                                    builder.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                    let _ = closed_tx.send(produced.load(Ordering::SeqCst));
                });
            }
        });
        Self { addr, closed }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn respond(
    req: Request<Incoming>,
    produced: Arc<AtomicUsize>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let full = |status: u16, text: String| {
        Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .body(Full::new(Bytes::from(text)).boxed())
            .unwrap()
    };
    let response = if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.parse().unwrap();
        // 204 and 304 have no body by definition.
        let text = if matches!(code, 204 | 304) { String::new() } else { format!("status {code}") };
        full(code, text)
    } else {
        match path.as_str() {
            "/redirect" => Response::builder()
                .status(StatusCode::FOUND)
                // Following this would end on a 500.
                .header("location", "/status/500")
                .body(Full::new(Bytes::new()).boxed())
                .unwrap(),
            "/body" => full(200, "all ok here".to_owned()),
            "/late" => full(200, format!("{}needle", "x".repeat(11 * 1024))),
            "/echo" => {
                let mut text = format!("{}\n", req.method());
                for (name, value) in req.headers() {
                    text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
                }
                full(200, text)
            }
            "/big" => {
                let chunks = stream::iter(0..BIG_BODY / CHUNK).map(move |_| {
                    produced.fetch_add(CHUNK, Ordering::SeqCst);
                    Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'o'; CHUNK])))
                });
                Response::new(BodyExt::boxed(StreamBody::new(chunks)))
            }
            _ => full(404, "no such page".to_owned()),
        }
    };
    Ok(response)
}

#[tokio::test]
async fn statuses_in_range_are_healthy() {
    let server = Server::start().await;
    for code in [200, 204, 302, 399] {
        let probe = Http::get(&server.url(&format!("/status/{code}"))).unwrap();
        let output = check(&probe).await.unwrap_or_else(|err| panic!("{code}: {err}"));
        assert!(output.starts_with(&format!("status {code}")), "{output:?}");
    }
}

#[tokio::test]
async fn statuses_out_of_range_are_failures() {
    let server = Server::start().await;
    for code in [400, 404, 500, 503] {
        let url = server.url(&format!("/status/{code}"));
        let err = check(&Http::get(&url).unwrap()).await.unwrap_err();
        assert_eq!(err.reason, format!("http GET {url}: status {code} (want 200-399)"));
        assert_eq!(err.output, format!("status {code}\nstatus {code}"));
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = Server::start().await;
    let probe = Http::get(&server.url("/redirect")).unwrap();
    assert_eq!(check(&probe).await, Ok("status 302".to_owned()));
    let err = check(&probe.status(StatusRange::new(200, 299).unwrap())).await.unwrap_err();
    assert!(err.reason.ends_with(": status 302 (want 200-299)"), "{}", err.reason);
}

#[tokio::test]
async fn custom_ranges() {
    let server = Server::start().await;
    let url = server.url("/status/404");
    let probe = Http::get(&url).unwrap().status_range(404, 404).unwrap();
    assert!(check(&probe).await.is_ok());
    let probe = Http::get(&server.url("/status/200")).unwrap().status("204".parse().unwrap());
    let err = check(&probe).await.unwrap_err();
    assert!(err.reason.ends_with(": status 200 (want 204)"), "{}", err.reason);
    let probe = Http::get(&server.url("/status/503")).unwrap().status("500-599".parse().unwrap());
    assert!(check(&probe).await.is_ok());
    assert!(Http::get(&url).unwrap().status_range(300, 200).is_err());
}

#[tokio::test]
async fn body_contains() {
    let server = Server::start().await;
    let hit = Http::get(&server.url("/body")).unwrap().body_contains("ok");
    assert_eq!(check(&hit).await, Ok("status 200\nall ok here".to_owned()));

    let url = server.url("/body");
    let miss = Http::get(&url).unwrap().body_contains("healthy");
    let err = check(&miss).await.unwrap_err();
    assert_eq!(err.reason, format!(r#"http GET {url}: body does not contain "healthy""#));
    assert_eq!(err.output, "status 200\nall ok here");

    // Only the first 10 KiB are read: text after them is not seen.
    let late = Http::get(&server.url("/late")).unwrap().body_contains("needle");
    let err = check(&late).await.unwrap_err();
    assert!(err.reason.ends_with(r#"body does not contain "needle""#), "{}", err.reason);
    assert!(err.output.ends_with("..."));
}

#[tokio::test]
async fn methods_and_headers_are_sent() {
    let server = Server::start().await;
    let probe = Http::get(&server.url("/echo"))
        .unwrap()
        .method("POST")
        .unwrap()
        .header("X-Probe", "hale")
        .unwrap()
        .header("user-agent", "custom")
        .unwrap();
    let output = check(&probe).await.unwrap();
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines[1], "POST");
    assert!(lines.contains(&"x-probe: hale"), "{output}");
    assert!(lines.contains(&"user-agent: custom"), "{output}");
    assert!(lines.contains(&format!("host: {}", server.addr).as_str()), "{output}");
    assert!(lines.contains(&"connection: close"), "{output}");
}

#[tokio::test]
async fn nothing_listening_is_connection_refused() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/healthz");
    let err = check(&Http::get(&url).unwrap()).await.unwrap_err();
    assert_eq!(err.reason, format!("http GET {url}: connection refused"));
}

#[tokio::test]
async fn a_huge_body_is_not_read_whole() {
    let mut server = Server::start().await;
    let probe = Http::get(&server.url("/big")).unwrap().body_contains("ooo");
    let started = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(5), probe.check(ctx()))
        .await
        .expect("the check read too long")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(output.len(), 4096 + 3);

    // The check closed the connection instead of reading on: the server never got to produce
    // the whole body.
    let produced = tokio::time::timeout(GUARD, server.closed.recv())
        .await
        .expect("the connection stayed open")
        .unwrap();
    assert!(produced < BIG_BODY, "the server produced all {produced} bytes");
}

#[tokio::test]
async fn a_dropped_check_closes_its_connection() {
    // A raw server that reads the request, never answers, and reports when the client hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (got_request_tx, mut got_request) = mpsc::unbounded_channel();
    let (hung_up_tx, mut hung_up) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
            if request.windows(4).any(|w| w == b"\r\n\r\n") {
                let _ = got_request_tx.send(());
                // Never answer; wait for the client to go away.
                while stream.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
                break;
            }
        }
        let _ = hung_up_tx.send(());
    });

    let probe = Http::get(&format!("http://{addr}/slow")).unwrap();
    let mut check = probe.check(ctx());
    tokio::time::timeout(GUARD, async {
        tokio::select! {
            result = &mut check => panic!("the check ended without an answer: {result:?}"),
            _ = got_request.recv() => {}
        }
    })
    .await
    .expect("the request never arrived");
    // The server holds its answer back: a timeout drops the check, as the driver does.
    let timed_out = tokio::time::timeout(Duration::from_millis(200), &mut check).await;
    assert!(timed_out.is_err(), "the check finished: {timed_out:?}");
    drop(check);
    tokio::time::timeout(GUARD, hung_up.recv()).await.expect("the connection stayed open");
}

#[test]
fn bad_urls_are_errors() {
    for bad in ["", "localhost:8080", "/healthz", "ftp://host/x", "http://", "http://[::1"] {
        assert!(Http::get(bad).is_err(), "{bad:?} was accepted");
    }
    assert_eq!(Http::get("http://h:1/x").unwrap().describe(), "http GET http://h:1/x");
    assert_eq!(
        Http::get("http://h:1/x").unwrap().method("HEAD").unwrap().describe(),
        "http HEAD http://h:1/x"
    );
}

mod https {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    struct TlsServer {
        server: Server,
        ca_pem: String,
    }

    async fn start() -> TlsServer {
        let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        TlsServer { server: Server::start_with_tls(Some(acceptor)).await, ca_pem: cert.pem() }
    }

    impl TlsServer {
        fn url(&self, path: &str) -> String {
            format!("https://{}{path}", self.server.addr)
        }
    }

    #[tokio::test]
    async fn a_self_signed_certificate_is_refused_by_default() {
        let server = start().await;
        let url = server.url("/status/200");
        let err = check(&Http::get(&url).unwrap()).await.unwrap_err();
        assert!(err.reason.starts_with(&format!("http GET {url}: ")), "{}", err.reason);
        assert!(err.reason.contains("certificate"), "{}", err.reason);
    }

    #[tokio::test]
    async fn ca_file_trusts_it() {
        let server = start().await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &server.ca_pem).unwrap();
        let probe =
            Http::get(&server.url("/body")).unwrap().ca_file(&ca).unwrap().body_contains("ok");
        assert_eq!(check(&probe).await, Ok("status 200\nall ok here".to_owned()));

        // By name too: the certificate is for localhost as well.
        let url = format!("https://localhost:{}/status/204", server.server.addr.port());
        let probe = Http::get(&url).unwrap().ca_file(&ca).unwrap();
        assert_eq!(check(&probe).await, Ok("status 204".to_owned()));
    }

    #[tokio::test]
    async fn insecure_accepts_it() {
        let server = start().await;
        let probe = Http::get(&server.url("/status/200")).unwrap().insecure();
        assert!(check(&probe).await.is_ok());
        let err =
            check(&Http::get(&server.url("/status/500")).unwrap().insecure()).await.unwrap_err();
        assert!(err.reason.ends_with("status 500 (want 200-399)"), "{}", err.reason);
    }

    #[test]
    fn unusable_ca_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let probe = Http::get("https://127.0.0.1:1/").unwrap();
        let err = probe.clone().ca_file(dir.path().join("missing.pem")).unwrap_err();
        assert!(err.to_string().ends_with("No such file or directory"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = probe.ca_file(&empty).unwrap_err();
        assert!(err.to_string().ends_with("no certificate in the file"), "{err}");
    }
}
