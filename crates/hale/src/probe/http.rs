//! The `http` check: healthy when a request is answered with a status in range and, if asked,
//! a body that contains some text.
//!
//! Each check opens a fresh HTTP/1.1 connection (no pooling, `Connection: close`), as the kubelet
//! does, over plain TCP or TLS (rustls with the ring provider; the web PKI roots are trusted by
//! default, or only the CA given with [`Http::ca_file`], or nothing is verified with
//! [`Http::insecure`]). The connection is driven inside the check's own future, so dropping the
//! future (the driver's timeout) closes it: no task is left behind. At most 10 KiB of the body
//! is read, and `body_contains` looks only there.
//!
//! What this module does not do: follow redirects (a 302 is a status like any other, healthy
//! under the default 200-399), speak HTTP/2, send a request body, use a proxy, or apply a timeout
//! of its own.

use std::error::Error as StdError;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use crate::probe::tls::{AcceptAnyCertificate, load_ca_file};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::{ClientConfig, RootCertStore};
use tower_service::Service;

use super::{BoxFuture, CheckResult, InvalidProbe, Probe, ProbeContext, ProbeError, os_error};

/// How much of the body is read. The rest is never read: the connection is closed instead.
pub const BODY_LIMIT: usize = 10 * 1024;

/// Sends one request; healthy when the status is in range (200-399 unless told otherwise) and,
/// when [`Http::body_contains`] was given, the first 10 KiB of the body contain that text.
///
/// `Ok` carries `status 200` followed by the start of the body, cut to 4096 bytes.
///
/// ```
/// use hale::probe::Http;
/// let check = Http::get("http://127.0.0.1:8080/healthz")?
///     .header("x-probe", "hale")?
///     .status_range(200, 299)?
///     .body_contains("ok");
/// assert!(Http::get("not a url").is_err());
/// # Ok::<(), hale::probe::InvalidProbe>(())
/// ```
#[derive(Clone)]
pub struct Http {
    url: Uri,
    method: Method,
    headers: HeaderMap,
    status: StatusRange,
    body_contains: Option<String>,
    trust: Trust,
    /// The TLS client configuration, built on the first check and shared by clones: building
    /// it copies the root store, which cost more than the rest of an `http://` check.
    tls: Arc<std::sync::OnceLock<Result<ClientConfig, String>>>,
}

/// Which server certificates an `https` check accepts.
#[derive(Clone)]
enum Trust {
    /// Those that chain to the web PKI roots (Mozilla's list, compiled in).
    WebPki,
    /// Only those that chain to these CAs, as curl's `--cacert`.
    Only(Arc<RootCertStore>),
    /// Any certificate: the connection is encrypted but the server is not authenticated.
    Anything,
}

impl Http {
    /// A `GET` of `url`, which must be an absolute `http://` or `https://` URL.
    pub fn get(url: &str) -> Result<Self, InvalidProbe> {
        let invalid = |what: &str| InvalidProbe::new(format!("http {url:?}: {what}"));
        let parsed: Uri = url.parse().map_err(|err| invalid(&format!("not a URL: {err}")))?;
        match parsed.scheme_str() {
            Some("http" | "https") => {}
            Some(other) => return Err(invalid(&format!("unsupported scheme {other:?}"))),
            None => return Err(invalid("expected http://host/path or https://host/path")),
        }
        match parsed.host() {
            Some(host) if !host.is_empty() => {}
            _ => return Err(invalid("the URL has no host")),
        }
        Ok(Self {
            url: parsed,
            method: Method::GET,
            headers: HeaderMap::new(),
            status: StatusRange::default(),
            body_contains: None,
            trust: Trust::WebPki,
            tls: Arc::default(),
        })
    }

    /// Use this method instead of `GET` (`HEAD`, `POST`, ... or an extension method). No request
    /// body is sent.
    pub fn method(mut self, method: &str) -> Result<Self, InvalidProbe> {
        self.method = Method::from_bytes(method.as_bytes()).map_err(|_| {
            InvalidProbe::new(format!("{}: invalid method {method:?}", self.describe()))
        })?;
        Ok(self)
    }

    /// Send this header with each request. Calling it again with the same name adds another
    /// value. `Host`, `User-Agent`, `Accept` and `Connection` replace the defaults.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, InvalidProbe> {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            InvalidProbe::new(format!("{}: invalid header name {name:?}", self.describe()))
        })?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            InvalidProbe::new(format!("{}: invalid value for header {name}", self.describe()))
        })?;
        self.headers.append(name, value);
        Ok(self)
    }

    /// Healthy statuses are `lo` to `hi`, both included. Fails unless 100 <= lo <= hi <= 999.
    pub fn status_range(self, lo: u16, hi: u16) -> Result<Self, InvalidProbe> {
        let range = StatusRange::new(lo, hi)
            .map_err(|err| InvalidProbe::new(format!("{}: {err}", self.describe())))?;
        Ok(self.status(range))
    }

    /// Healthy statuses are those of `range` (parse one with `"200-399".parse()`).
    pub fn status(mut self, range: StatusRange) -> Self {
        self.status = range;
        self
    }

    /// Healthy only when the first 10 KiB of the body contain `text` (byte for byte).
    pub fn body_contains(mut self, text: impl Into<String>) -> Self {
        self.body_contains = Some(text.into());
        self
    }

    /// Trust only the CA certificates in this PEM file for `https` URLs, instead of the web PKI
    /// roots. The file is read now: fails when it cannot be read or holds no usable certificate.
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Result<Self, InvalidProbe> {
        let roots = load_ca_file(path.as_ref(), &self.describe())?;
        self.trust = Trust::Only(Arc::new(roots));
        self.tls = Arc::default();
        Ok(self)
    }

    /// Accept any server certificate for `https` URLs (expired, self-signed, for another name):
    /// the traffic is still encrypted, but the server is not authenticated. Overrides
    /// [`Http::ca_file`].
    pub fn insecure(mut self) -> Self {
        self.trust = Trust::Anything;
        self.tls = Arc::default();
        self
    }

    /// The URL each check requests.
    pub fn url(&self) -> &Uri {
        &self.url
    }
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Probe for Http {
    fn check(&self, _ctx: ProbeContext) -> BoxFuture<CheckResult> {
        let this = self.clone();
        Box::pin(async move { this.run().await })
    }

    /// `http GET http://host:port/path`.
    fn describe(&self) -> String {
        format!("http {} {}", self.method, self.url)
    }
}

impl Http {
    async fn run(self) -> CheckResult {
        let label = self.describe();
        let fail = |what: String| ProbeError::new(format!("{label}: {what}"));

        let tls = self
            .tls
            .get_or_init(|| self.tls_config().map_err(|err| err.to_string()))
            .clone()
            .map_err(|err| fail(format!("TLS setup: {err}")))?;
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let mut connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        poll_fn(|cx| connector.poll_ready(cx)).await.map_err(|err| fail(error_text(&*err)))?;
        let stream =
            connector.call(self.url.clone()).await.map_err(|err| fail(error_text(&*err)))?;

        let (mut sender, connection) = hyper::client::conn::http1::handshake(stream)
            .await
            .map_err(|err| fail(error_text(&err)))?;
        let request =
            self.request().map_err(|err| fail(format!("could not build the request: {err}")))?;

        // The connection must be polled while the response and its body are read: both futures
        // live here, so dropping this check's future closes the connection with them.
        let exchange = async move {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = read_prefix(response.into_body(), BODY_LIMIT).await?;
            Ok::<_, hyper::Error>((status, body))
        };
        tokio::pin!(exchange, connection);
        let exchanged = tokio::select! {
            biased;
            exchanged = &mut exchange => exchanged,
            ended = &mut connection => match ended {
                // The connection ended cleanly, so the response is complete in the channels.
                Ok(()) => exchange.await,
                Err(err) => Err(err),
            },
        };
        let (status, body) = exchanged.map_err(|err| fail(error_text(&err)))?;
        judge(&label, self.status, self.body_contains.as_deref(), status.as_u16(), &body)
    }

    fn request(&self) -> Result<Request<Empty<Bytes>>, hyper::http::Error> {
        let target = self.url.path_and_query().map_or("/", |pq| pq.as_str());
        let mut request =
            Request::builder().method(self.method.clone()).uri(target).body(Empty::new())?;
        let headers = request.headers_mut();
        if let Some(authority) = self.url.authority() {
            // The Host header never carries the user:password@ part of a URL.
            let host =
                authority.as_str().rsplit_once('@').map_or(authority.as_str(), |(_, host)| host);
            headers.insert(header::HOST, HeaderValue::from_str(host)?);
        }
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("hale/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        for name in self.headers.keys() {
            headers.remove(name);
        }
        for (name, value) in &self.headers {
            headers.append(name, value.clone());
        }
        Ok(request)
    }

    fn tls_config(&self) -> Result<ClientConfig, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let config = match &self.trust {
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
        Ok(config)
    }
}

/// The verdict on an answer: healthy when `status` is in `range` and, if `body_contains` is
/// given, `body` (the prefix that was read) contains it. `label` (`http GET URL`) starts a
/// failure's message; the output is `status N`, then the body as text, cut to 4096 bytes.
///
/// The check calls this once the exchange is over. It is public only so that the `http_status`
/// fuzz target reaches the same code.
#[doc(hidden)]
pub fn judge(
    label: &str,
    range: StatusRange,
    body_contains: Option<&str>,
    status: u16,
    body: &[u8],
) -> CheckResult {
    let body_text = String::from_utf8_lossy(body);
    let output = super::truncate_output(&match body_text.is_empty() {
        true => format!("status {status}"),
        false => format!("status {status}\n{body_text}"),
    });
    if !range.contains(status) {
        return Err(ProbeError::with_output(
            format!("{label}: status {status} (want {range})"),
            output,
        ));
    }
    if let Some(text) = body_contains
        && !contains(body, text.as_bytes())
    {
        return Err(ProbeError::with_output(
            format!("{label}: body does not contain {text:?}"),
            output,
        ));
    }
    Ok(output)
}

/// Reads the body until its end or until `limit` bytes, whichever comes first. Whatever is left
/// is never read: dropping the body and the connection closes the socket.
async fn read_prefix(mut body: Incoming, limit: usize) -> Result<Vec<u8>, hyper::Error> {
    let mut prefix = Vec::new();
    while prefix.len() < limit {
        let Some(frame) = body.frame().await else { break };
        if let Ok(data) = frame?.into_data() {
            let take = data.len().min(limit - prefix.len());
            prefix.extend_from_slice(&data[..take]);
        }
    }
    Ok(prefix)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|window| window == needle)
}

/// The most precise words for a failed exchange: the innermost cause (`connection refused`,
/// `invalid peer certificate: UnknownIssuer`), as the outer layers only say `tcp connect error`.
fn error_text(err: &(dyn StdError + 'static)) -> String {
    let mut innermost = err;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    match innermost.downcast_ref::<io::Error>() {
        Some(io_err) => os_error::lower_text(io_err),
        None => innermost.to_string(),
    }
}

/// The statuses a check counts as healthy: `lo` to `hi`, both included. The default is
/// 200-399, as with Kubernetes. Parses from `"200-399"` or a single code such as `"204"`, and
/// prints the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    lo: u16,
    hi: u16,
}

impl StatusRange {
    /// `lo` to `hi`, both included. Fails unless 100 <= lo <= hi <= 999.
    pub fn new(lo: u16, hi: u16) -> Result<Self, InvalidProbe> {
        if !(100..=999).contains(&lo) || !(100..=999).contains(&hi) {
            return Err(InvalidProbe::new(format!(
                "status {lo}-{hi}: status codes are from 100 to 999"
            )));
        }
        if lo > hi {
            return Err(InvalidProbe::new(format!("status {lo}-{hi}: the range is empty")));
        }
        Ok(Self { lo, hi })
    }

    /// The lowest healthy status.
    pub fn lo(&self) -> u16 {
        self.lo
    }

    /// The highest healthy status.
    pub fn hi(&self) -> u16 {
        self.hi
    }

    /// Whether `status` is in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.lo..=self.hi).contains(&status)
    }
}

impl Default for StatusRange {
    fn default() -> Self {
        Self { lo: 200, hi: 399 }
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl FromStr for StatusRange {
    type Err = InvalidProbe;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            InvalidProbe::new(format!(
                "status {text:?}: expected a code (204) or a range (200-399)"
            ))
        };
        let code = |part: &str| part.trim().parse::<u16>().map_err(|_| invalid());
        match text.split_once('-') {
            Some((lo, hi)) => Self::new(code(lo)?, code(hi)?),
            None => {
                let single = code(text)?;
                Self::new(single, single)
            }
        }
    }
}

impl From<StatusRange> for (u16, u16) {
    fn from(range: StatusRange) -> Self {
        (range.lo, range.hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges_parse_and_print() {
        let range: StatusRange = "200-399".parse().unwrap();
        assert_eq!((range.lo(), range.hi()), (200, 399));
        assert_eq!(range.to_string(), "200-399");
        let single: StatusRange = " 204 ".parse().unwrap();
        assert_eq!(single.to_string(), "204");
        assert!(single.contains(204) && !single.contains(200));
        assert!("399-200".parse::<StatusRange>().is_err());
        assert!("2xx".parse::<StatusRange>().is_err());
        assert!("0-99".parse::<StatusRange>().is_err());
        assert!("".parse::<StatusRange>().is_err());
    }

    #[test]
    fn urls_are_checked() {
        assert!(Http::get("http://127.0.0.1:1/x").is_ok());
        assert!(Http::get("https://example.invalid").is_ok());
        assert!(Http::get("/healthz").is_err());
        assert!(Http::get("ftp://host/").is_err());
        assert!(Http::get("http://").is_err());
        assert!(Http::get("not a url").is_err());
    }

    #[test]
    fn headers_replace_defaults_and_host_drops_userinfo() {
        let check = Http::get("http://user:pw@127.0.0.1:8080/a?b=1")
            .unwrap()
            .header("User-Agent", "me")
            .unwrap()
            .header("X-A", "1")
            .unwrap()
            .header("X-A", "2")
            .unwrap();
        let request = check.request().unwrap();
        assert_eq!(request.uri(), "/a?b=1");
        assert_eq!(request.headers()[header::HOST], "127.0.0.1:8080");
        assert_eq!(request.headers()[header::USER_AGENT], "me");
        assert_eq!(request.headers().get_all("x-a").iter().count(), 2);
        assert!(Http::get("http://h/").unwrap().header("bad name", "x").is_err());
        assert!(Http::get("http://h/").unwrap().method("GE T").is_err());
    }

    #[test]
    fn judge_checks_status_then_body_and_cuts_the_output() {
        let range = StatusRange::new(200, 299).unwrap();
        assert_eq!(judge("http GET u", range, None, 204, b""), Ok("status 204".to_owned()));
        assert_eq!(
            judge("http GET u", range, Some("ok"), 200, b"all ok"),
            Ok("status 200\nall ok".to_owned())
        );
        let err = judge("http GET u", range, Some("ok"), 500, b"ok").unwrap_err();
        assert_eq!(err.reason, "http GET u: status 500 (want 200-299)");
        assert_eq!(err.output, "status 500\nok");
        let err = judge("http GET u", range, Some("ok"), 200, b"nope").unwrap_err();
        assert_eq!(err.reason, "http GET u: body does not contain \"ok\"");
        // A body past the output limit, cut in the middle of a multi-byte character.
        let body = "\u{e9}".repeat(BODY_LIMIT / 2);
        let out = judge("http GET u", range, None, 200, body.as_bytes()).unwrap();
        assert!(out.len() <= hale_core::OUTPUT_LIMIT + 3 && out.ends_with("..."), "{}", out.len());
    }
}
