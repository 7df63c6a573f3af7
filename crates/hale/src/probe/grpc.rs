//! The `grpc` check: healthy when `grpc.health.v1.Health/Check` answers `SERVING`.
//!
//! Each check opens a fresh connection (TCP, then TLS with ALPN `h2` when asked), hands that one
//! connection to a tonic channel, sends one `Check` for the service name (`""` asks about the
//! server as a whole) and closes everything when its future ends: dropping the future (the
//! driver's timeout) drops the channel, whose tasks then close the connection. The connection is
//! made here rather than by tonic so that a refused connection or a rejected certificate is
//! reported in plain words, and so that a channel never reconnects behind the check's back.
//! TLS is rustls with the ring provider: the web PKI roots are trusted by default, or only the CA
//! given with [`Grpc::ca_file`], or nothing is verified with [`Grpc::insecure`].
//!
//! What this module does not do: the `Watch` stream, client certificates, compression, or a
//! timeout of its own (the deadline is sent to the server as `grpc-timeout`, but it is the driver
//! that gives up).

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::probe::tls::{AcceptAnyCertificate, load_ca_file};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, lookup_host};
use tonic::transport::{Endpoint, Uri};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower_service::Service;

use super::{BoxFuture, CheckResult, InvalidProbe, Probe, ProbeContext, ProbeError, os_error};

/// Calls `grpc.health.v1.Health/Check`; healthy when the answer is `SERVING`. `Ok` carries
/// `SERVING`.
///
/// Failures name what was checked and what came back: `grpc 127.0.0.1:50051 service "api":
/// NOT_SERVING`, `...: no health service (UNIMPLEMENTED)`, `...: unknown service (NOT_FOUND)`,
/// `grpc 127.0.0.1:50051: connection refused`.
///
/// ```
/// use hale::probe::{Grpc, Probe};
/// let overall = Grpc::new("127.0.0.1:50051")?;
/// let api = Grpc::new("127.0.0.1:50051")?.service("api").tls(true).insecure();
/// assert_eq!(api.describe(), r#"grpc+tls 127.0.0.1:50051 service "api""#);
/// assert!(Grpc::new("localhost").is_err());
/// # Ok::<(), hale::probe::InvalidProbe>(())
/// ```
#[derive(Clone)]
pub struct Grpc {
    address: String,
    host: String,
    port: u16,
    service: String,
    tls: bool,
    trust: Trust,
}

/// Which server certificates a TLS check accepts.
#[derive(Clone)]
enum Trust {
    /// Those that chain to the web PKI roots (Mozilla's list, compiled in).
    WebPki,
    /// Only those that chain to these CAs.
    Only(Arc<RootCertStore>),
    /// Any certificate: the connection is encrypted but the server is not authenticated.
    Anything,
}

impl Grpc {
    /// A check of the server at `address`, written `host:port` (`127.0.0.1:50051`,
    /// `api.internal:443`, `[::1]:50051`), asking about the server as a whole (service `""`),
    /// in plain text. `http://host:port` is accepted too, and `https://host:port` turns TLS on.
    pub fn new(address: impl Into<String>) -> Result<Self, InvalidProbe> {
        let given = address.into();
        let invalid = |what: &str| InvalidProbe::new(format!("grpc {given:?}: {what}"));
        let (tls, address) = match given.split_once("://") {
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            Some((scheme, _)) => return Err(invalid(&format!("unsupported scheme {scheme:?}"))),
            None => (false, given.as_str()),
        };
        let address = address.strip_suffix('/').unwrap_or(address);
        let (host, port) = address.rsplit_once(':').ok_or_else(|| invalid("expected host:port"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?;
        let host = match host.strip_prefix('[') {
            Some(rest) => rest
                .strip_suffix(']')
                .ok_or_else(|| invalid("an IPv6 address needs its closing ']'"))?,
            None if host.contains(':') => {
                return Err(invalid("write an IPv6 address in brackets: [::1]:50051"));
            }
            None => host,
        };
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        // The channel needs a URI; catch what cannot be one now rather than at every check.
        if format!("http://{address}").parse::<Uri>().is_err() {
            return Err(invalid("not a valid host:port"));
        }
        Ok(Self {
            address: address.to_owned(),
            host: host.to_owned(),
            port,
            service: String::new(),
            tls,
            trust: Trust::WebPki,
        })
    }

    /// Ask about this service (its fully qualified name, such as `my.pkg.Api`) instead of the
    /// server as a whole (`""`).
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = name.into();
        self
    }

    /// Connect with TLS (`true`) or in plain text (`false`, the default).
    pub fn tls(mut self, yes: bool) -> Self {
        self.tls = yes;
        self
    }

    /// Trust only the CA certificates in this PEM file, instead of the web PKI roots. Turns TLS
    /// on. The file is read now: fails when it cannot be read or holds no usable certificate.
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Result<Self, InvalidProbe> {
        let roots = load_ca_file(path.as_ref(), &self.describe())?;
        self.trust = Trust::Only(Arc::new(roots));
        self.tls = true;
        Ok(self)
    }

    /// Accept any server certificate (expired, self-signed, for another name): the traffic is
    /// still encrypted, but the server is not authenticated. Turns TLS on and overrides
    /// [`Grpc::ca_file`].
    pub fn insecure(mut self) -> Self {
        self.trust = Trust::Anything;
        self.tls = true;
        self
    }

    /// The address, `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The service name asked about; `""` is the server as a whole.
    pub fn service_name(&self) -> &str {
        &self.service
    }
}

impl fmt::Debug for Grpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Probe for Grpc {
    fn check(&self, ctx: ProbeContext) -> BoxFuture<CheckResult> {
        let this = self.clone();
        Box::pin(async move { this.run(ctx).await })
    }

    /// `grpc host:port`, then `service "name"` unless it asks about the whole server;
    /// `grpc+tls` with TLS.
    fn describe(&self) -> String {
        let scheme = if self.tls { "grpc+tls" } else { "grpc" };
        match self.service.is_empty() {
            true => format!("{scheme} {}", self.address),
            false => format!("{scheme} {} service {:?}", self.address, self.service),
        }
    }
}

/// What the one-shot connector hands to the channel.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}
type BoxedStream = Box<dyn Stream>;

/// A connector that yields one connection, made beforehand, and refuses to make another: the
/// check never reconnects.
struct OneShot(Option<BoxedStream>);

impl Service<Uri> for OneShot {
    type Response = TokioIo<BoxedStream>;
    type Error = io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        std::future::ready(
            self.0
                .take()
                .map(TokioIo::new)
                .ok_or_else(|| io::Error::other("the connection closed before an answer")),
        )
    }
}

impl Grpc {
    async fn run(self, ctx: ProbeContext) -> CheckResult {
        let label = self.describe();
        let fail = |what: String| ProbeError::new(format!("{label}: {what}"));

        let stream = self.connect().await.map_err(fail)?;
        let scheme = if self.tls { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{}", self.address))
            .map_err(|err| fail(format!("invalid address: {}", error_text(&err))))?
            .connect_timeout(ctx.timeout)
            .user_agent(concat!("hale/", env!("CARGO_PKG_VERSION")))
            .map_err(|err| fail(error_text(&err)))?;
        let channel = endpoint
            .connect_with_connector(OneShot(Some(stream)))
            .await
            .map_err(|err| fail(format!("HTTP/2 handshake: {}", error_text(&err))))?;

        let mut request = tonic::Request::new(HealthCheckRequest { service: self.service.clone() });
        request.set_timeout(ctx.timeout);
        let response =
            HealthClient::new(channel).check(request).await.map_err(|s| fail(status_text(&s)))?;
        let status = response.into_inner().status;
        match ServingStatus::try_from(status) {
            Ok(ServingStatus::Serving) => Ok("SERVING".to_owned()),
            Ok(other) => Err(fail(other.as_str_name().to_owned())),
            Err(_) => Err(fail(format!("unrecognised serving status {status}"))),
        }
    }

    /// A TCP connection to the first address that accepts, wrapped in TLS when asked. Errors
    /// are the words after `grpc host:port: `.
    async fn connect(&self) -> Result<BoxedStream, String> {
        let addresses = lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|err| format!("could not resolve {}: {}", self.host, resolve_text(&err)))?;
        let mut last_error = None;
        let mut tcp = None;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(err) => last_error = Some(err),
            }
        }
        let tcp = match (tcp, last_error) {
            (Some(tcp), _) => tcp,
            (None, Some(err)) => return Err(os_error::lower_text(&err)),
            (None, None) => return Err(format!("{} has no addresses", self.host)),
        };
        let _ = tcp.set_nodelay(true);
        if !self.tls {
            return Ok(Box::new(tcp));
        }
        let config = self.tls_config().map_err(|err| format!("TLS setup: {err}"))?;
        let server_name = ServerName::try_from(self.host.clone())
            .map_err(|_| format!("TLS: {:?} is not a valid server name", self.host))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|err| format!("TLS handshake: {}", error_text(&err)))?;
        Ok(Box::new(tls))
    }

    fn tls_config(&self) -> Result<ClientConfig, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let mut config = match &self.trust {
            Trust::WebPki => builder
                .with_root_certificates(RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                })
                .with_no_client_auth(),
            Trust::Only(roots) => {
                builder.with_root_certificates(roots.clone()).with_no_client_auth()
            }
            Trust::Anything => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                    algorithms: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth(),
        };
        // gRPC is HTTP/2 only; servers such as tonic's refuse a TLS connection without it.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// The words for a failed call: a status code the health protocol gives a meaning, or the code's
/// name and the server's message (or, for a failure on this side, its innermost cause).
fn status_text(status: &Status) -> String {
    let detail = match status.source() {
        Some(source) => error_text(source),
        None => status.message().to_owned(),
    };
    let name = code_name(status.code());
    match status.code() {
        Code::Unimplemented => format!("no health service ({name})"),
        Code::NotFound => format!("unknown service ({name})"),
        Code::DeadlineExceeded => format!("deadline exceeded ({name})"),
        _ if detail.is_empty() => name.to_owned(),
        _ => format!("{name}: {detail}"),
    }
}

/// A status code as the gRPC specification writes it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The innermost cause of an error, as the outer layers only say `transport error`.
fn error_text(err: &(dyn StdError + 'static)) -> String {
    let mut innermost = err;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    match innermost.downcast_ref::<io::Error>() {
        Some(io_err) => match io_err.get_ref() {
            // An io::Error carrying another error (rustls' certificate errors do): its text.
            Some(inner) if io_err.raw_os_error().is_none() => inner.to_string(),
            _ => os_error::lower_text(io_err),
        },
        None => innermost.to_string(),
    }
}

/// Resolver errors carry getaddrinfo's text; keep its last part, which says what happened.
fn resolve_text(err: &io::Error) -> String {
    if err.raw_os_error().is_some() {
        return os_error::lower_text(err);
    }
    let text = err.to_string();
    match text.rsplit_once(": ") {
        Some((_, what)) => what.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        let check = Grpc::new("127.0.0.1:50051").unwrap();
        assert_eq!(check.describe(), "grpc 127.0.0.1:50051");
        assert_eq!(
            check.clone().service("api").describe(),
            r#"grpc 127.0.0.1:50051 service "api""#
        );
        assert_eq!(Grpc::new("https://h:443").unwrap().describe(), "grpc+tls h:443");
        assert_eq!(Grpc::new("http://[::1]:1/").unwrap().address(), "[::1]:1");
        for bad in ["localhost", ":80", "h:", "h:0", "h:70000", "::1:80", "[::1:80", "ftp://h:1"] {
            assert!(Grpc::new(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(
            Grpc::new("localhost").unwrap_err().to_string(),
            r#"grpc "localhost": expected host:port"#
        );
        assert!(Grpc::new("bad host:1").is_err());
    }

    #[test]
    fn statuses_are_named() {
        assert_eq!(status_text(&Status::unimplemented("")), "no health service (UNIMPLEMENTED)");
        assert_eq!(status_text(&Status::not_found("x")), "unknown service (NOT_FOUND)");
        assert_eq!(
            status_text(&Status::deadline_exceeded("")),
            "deadline exceeded (DEADLINE_EXCEEDED)"
        );
        assert_eq!(status_text(&Status::internal("boom")), "INTERNAL: boom");
        assert_eq!(status_text(&Status::unavailable("")), "UNAVAILABLE");
    }
}
