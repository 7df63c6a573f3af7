//! The `grpc` check against real tonic servers on the loopback interface.
//!
//! A server with tonic-health's `grpc.health.v1.Health` answers for the whole server, for a
//! service reported NOT_SERVING, UNKNOWN or SERVICE_UNKNOWN, for an unknown service, and for a
//! service flipped from SERVING to NOT_SERVING and back; a server without the health service
//! answers UNIMPLEMENTED. Also: a refused port, a server that accepts TCP and never speaks
//! HTTP/2 (the dropped check must close its connection), one that hangs up at once, one
//! connection per check, closed when the check ends, and TLS with a self-signed certificate
//! (refused by default, trusted through `ca_file` or `insecure`). Timeouts are the driver's: the
//! tests drop the future as it would.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hale::probe::{Grpc, Probe, ProbeContext, ProbeKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic::transport::server::Connected;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService, health_reporter};

/// Upper bound for anything a test waits for; reached only when something is broken.
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

async fn check(probe: &Grpc) -> hale::probe::CheckResult {
    tokio::time::timeout(GUARD, probe.check(ctx())).await.expect("the check hung")
}

/// A tonic server with the health service on 127.0.0.1:0, served from a `TcpListenerStream`.
async fn health_server() -> (SocketAddr, HealthReporter) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reporter, service) = health_reporter();
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr, reporter)
}

#[tokio::test]
async fn the_whole_server_serving_is_healthy() {
    let (addr, reporter) = health_server().await;
    let probe = Grpc::new(addr.to_string()).unwrap();
    assert_eq!(probe.describe(), format!("grpc {addr}"));
    assert_eq!(check(&probe).await, Ok("SERVING".to_owned()));

    reporter.set_service_status("", ServingStatus::NotServing).await;
    let err = check(&probe).await.unwrap_err();
    assert_eq!(err.reason, format!("grpc {addr}: NOT_SERVING"));
}

#[tokio::test]
async fn each_serving_status_is_named() {
    let (addr, reporter) = health_server().await;
    reporter.set_service_status("api", ServingStatus::NotServing).await;
    reporter.set_service_status("odd", ServingStatus::Unknown).await;
    let address = addr.to_string();
    let service = |name: &str| Grpc::new(address.as_str()).unwrap().service(name);

    let err = check(&service("api")).await.unwrap_err();
    assert_eq!(err.reason, format!(r#"grpc {addr} service "api": NOT_SERVING"#));
    let err = check(&service("odd")).await.unwrap_err();
    assert_eq!(err.reason, format!(r#"grpc {addr} service "odd": UNKNOWN"#));
    let err = check(&service("nope")).await.unwrap_err();
    assert_eq!(err.reason, format!(r#"grpc {addr} service "nope": unknown service (NOT_FOUND)"#));
    // The whole server is still fine.
    assert!(check(&Grpc::new(address.as_str()).unwrap()).await.is_ok());
}

#[tokio::test]
async fn a_service_flips_and_flips_back() {
    let (addr, reporter) = health_server().await;
    reporter.set_service_status("my.pkg.Api", ServingStatus::Serving).await;
    let probe = Grpc::new(addr.to_string()).unwrap().service("my.pkg.Api");
    assert_eq!(probe.service_name(), "my.pkg.Api");
    assert_eq!(check(&probe).await, Ok("SERVING".to_owned()));

    reporter.set_service_status("my.pkg.Api", ServingStatus::NotServing).await;
    let err = check(&probe).await.unwrap_err();
    assert_eq!(err.reason, format!(r#"grpc {addr} service "my.pkg.Api": NOT_SERVING"#));

    reporter.set_service_status("my.pkg.Api", ServingStatus::Serving).await;
    assert_eq!(check(&probe).await, Ok("SERVING".to_owned()));
}

#[tokio::test]
async fn a_server_without_the_health_service_is_unimplemented() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A router with no service at all: every method is unimplemented.
    let router = Server::builder().add_optional_service(None::<HealthServer<HealthService>>);
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));

    let err = check(&Grpc::new(addr.to_string()).unwrap()).await.unwrap_err();
    assert_eq!(err.reason, format!("grpc {addr}: no health service (UNIMPLEMENTED)"));
}

/// A health service that answers whatever the service name asks for: a raw status number
/// (`"3"` is SERVICE_UNKNOWN), or a gRPC status code (`"code:4"` is DEADLINE_EXCEEDED).
struct Scripted;

#[tonic::async_trait]
impl Health for Scripted {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        let service = request.into_inner().service;
        if let Some(code) = service.strip_prefix("code:") {
            let code = tonic::Code::from_i32(code.parse().unwrap());
            return Err(tonic::Status::new(code, "scripted"));
        }
        Ok(tonic::Response::new(HealthCheckResponse { status: service.parse().unwrap() }))
    }

    type WatchStream = futures_util::stream::Empty<Result<HealthCheckResponse, tonic::Status>>;

    async fn watch(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not scripted"))
    }
}

#[tokio::test]
async fn other_answers_are_named() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Server::builder().add_service(HealthServer::new(Scripted));
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    let reason = |service: &'static str| async move {
        let probe = Grpc::new(addr.to_string()).unwrap().service(service);
        check(&probe).await.map_err(|err| err.reason)
    };
    let prefix = |service: &str| format!(r#"grpc {addr} service "{service}": "#);

    assert_eq!(reason("1").await, Ok("SERVING".to_owned()));
    assert_eq!(reason("0").await, Err(prefix("0") + "UNKNOWN"));
    assert_eq!(reason("3").await, Err(prefix("3") + "SERVICE_UNKNOWN"));
    assert_eq!(reason("7").await, Err(prefix("7") + "unrecognised serving status 7"));
    assert_eq!(
        reason("code:4").await,
        Err(prefix("code:4") + "deadline exceeded (DEADLINE_EXCEEDED)")
    );
    assert_eq!(reason("code:7").await, Err(prefix("code:7") + "PERMISSION_DENIED: scripted"));
}

#[tokio::test]
async fn nothing_listening_is_connection_refused() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let probe = Grpc::new(format!("127.0.0.1:{port}")).unwrap().service("api");
    let err = check(&probe).await.unwrap_err();
    assert_eq!(err.reason, format!(r#"grpc 127.0.0.1:{port} service "api": connection refused"#));
}

#[tokio::test]
async fn a_server_that_never_speaks_http2_is_left_behind_when_dropped() {
    // Accepts, reads whatever comes, never answers, and reports when the client hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (got_bytes_tx, mut got_bytes) = mpsc::unbounded_channel();
    let (hung_up_tx, mut hung_up) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let _ = got_bytes_tx.send(());
        }
        let _ = hung_up_tx.send(());
    });

    let probe = Grpc::new(addr.to_string()).unwrap();
    let mut check = probe.check(ctx());
    tokio::time::timeout(GUARD, async {
        tokio::select! {
            result = &mut check => panic!("the check ended without an answer: {result:?}"),
            _ = got_bytes.recv() => {}
        }
    })
    .await
    .expect("the HTTP/2 preface never arrived");
    // The driver's timeout: the check is still waiting, and is dropped.
    let timed_out = tokio::time::timeout(Duration::from_millis(200), &mut check).await;
    assert!(timed_out.is_err(), "the check finished: {timed_out:?}");
    drop(check);
    tokio::time::timeout(GUARD, hung_up.recv()).await.expect("the connection stayed open");
}

#[tokio::test]
async fn a_server_that_hangs_up_at_once_is_a_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let err = check(&Grpc::new(addr.to_string()).unwrap()).await.unwrap_err();
    // Usually `UNAVAILABLE: the connection closed before an answer`; the words depend on when
    // the hang-up is noticed. The channel would reconnect; the check never does.
    assert!(err.reason.starts_with(&format!("grpc {addr}: ")), "{}", err.reason);
    assert!(!err.reason.contains('\n'), "{}", err.reason);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// A server connection that reports when tonic drops it; TLS or plain TCP.
struct Conn<S> {
    inner: S,
    closed: mpsc::UnboundedSender<()>,
}

impl<S> Drop for Conn<S> {
    fn drop(&mut self) {
        let _ = self.closed.send(());
    }
}

impl<S> Connected for Conn<S> {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A health server whose connections are counted when accepted and reported when closed, each
/// passed through `wrap` (a TLS handshake, or nothing).
async fn counting_server<S, F, Fut>(
    wrap: F,
) -> (SocketAddr, Arc<AtomicUsize>, mpsc::UnboundedReceiver<()>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(TcpStream) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = io::Result<S>> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let (conns_tx, conns) = mpsc::unbounded_channel::<io::Result<Conn<S>>>();
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            let (wrap, conns_tx, closed) = (wrap.clone(), conns_tx.clone(), closed_tx.clone());
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake here.
                if let Ok(inner) = wrap(stream).await {
                    let _ = conns_tx.send(Ok(Conn { inner, closed }));
                } else {
                    let _ = closed.send(());
                }
            });
        }
    });
    let incoming = futures_util::stream::unfold(conns, |mut conns| async move {
        conns.recv().await.map(|conn| (conn, conns))
    });
    let (_, service) = health_reporter();
    tokio::spawn(Server::builder().add_service(service).serve_with_incoming(incoming));
    (addr, accepted, closed)
}

#[tokio::test]
async fn each_check_opens_one_connection_and_closes_it() {
    let (addr, accepted, mut closed) = counting_server(|tcp| async move { Ok(tcp) }).await;
    let probe = Grpc::new(addr.to_string()).unwrap();
    for round in 1..=3 {
        assert_eq!(check(&probe).await, Ok("SERVING".to_owned()));
        assert_eq!(accepted.load(Ordering::SeqCst), round);
        tokio::time::timeout(GUARD, closed.recv()).await.expect("the connection stayed open");
    }
}

mod tls {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    struct TlsServer {
        addr: SocketAddr,
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
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (addr, _, _) = counting_server(move |tcp| {
            let acceptor = acceptor.clone();
            async move { acceptor.accept(tcp).await }
        })
        .await;
        TlsServer { addr, ca_pem: cert.pem() }
    }

    #[tokio::test]
    async fn a_self_signed_certificate_is_refused_by_default() {
        let server = start().await;
        let probe = Grpc::new(server.addr.to_string()).unwrap().tls(true);
        assert_eq!(probe.describe(), format!("grpc+tls {}", server.addr));
        let err = check(&probe).await.unwrap_err();
        assert!(
            err.reason.starts_with(&format!("grpc+tls {}: TLS handshake: ", server.addr)),
            "{}",
            err.reason
        );
        assert!(err.reason.contains("certificate"), "{}", err.reason);
    }

    #[tokio::test]
    async fn ca_file_trusts_it() {
        let server = start().await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &server.ca_pem).unwrap();
        let probe = Grpc::new(server.addr.to_string()).unwrap().ca_file(&ca).unwrap();
        assert_eq!(check(&probe).await, Ok("SERVING".to_owned()));
        // By name too, through the https:// form.
        let by_name = format!("https://localhost:{}", server.addr.port());
        let probe = Grpc::new(by_name).unwrap().ca_file(&ca).unwrap();
        assert_eq!(check(&probe).await, Ok("SERVING".to_owned()));
    }

    #[tokio::test]
    async fn insecure_accepts_it() {
        let server = start().await;
        let probe = Grpc::new(server.addr.to_string()).unwrap().insecure().service("nope");
        let err = check(&probe).await.unwrap_err();
        assert_eq!(
            err.reason,
            format!(r#"grpc+tls {} service "nope": unknown service (NOT_FOUND)"#, server.addr)
        );
        let probe = Grpc::new(server.addr.to_string()).unwrap().insecure();
        assert_eq!(check(&probe).await, Ok("SERVING".to_owned()));
    }

    #[tokio::test]
    async fn plain_text_against_a_tls_server_fails() {
        let server = start().await;
        let err = check(&Grpc::new(server.addr.to_string()).unwrap()).await.unwrap_err();
        assert!(err.reason.starts_with(&format!("grpc {}: ", server.addr)), "{}", err.reason);
    }

    #[test]
    fn unusable_ca_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let probe = Grpc::new("127.0.0.1:1").unwrap();
        let err = probe.clone().ca_file(dir.path().join("missing.pem")).unwrap_err();
        assert!(err.to_string().ends_with("No such file or directory"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = probe.ca_file(&empty).unwrap_err();
        assert!(err.to_string().ends_with("no certificate in the file"), "{err}");
    }
}

#[test]
fn addresses_are_checked() {
    assert_eq!(Grpc::new("127.0.0.1:50051").unwrap().address(), "127.0.0.1:50051");
    for bad in ["", "localhost", ":50051", "host:", "host:0", "host:65536", "::1:80", "ftp://h:1"] {
        assert!(Grpc::new(bad).is_err(), "{bad:?} was accepted");
    }
    let err = Grpc::new("localhost").unwrap_err();
    assert_eq!(err.to_string(), r#"grpc "localhost": expected host:port"#);
}
