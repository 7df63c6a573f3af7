//! The `tcp` check: healthy when a TCP connection to `host:port` is accepted.
//!
//! The host is resolved on every check (tokio's `lookup_host`, so a name that moves is followed),
//! and each address is tried in turn until one accepts. The connection is closed at once: no
//! byte is sent or read, so a server that accepts and then hangs up is still healthy, as with
//! Kubernetes' `tcpSocket`. What this module does not do: TLS, a protocol exchange, or a timeout
//! of its own (the driver drops the future, which abandons the connect attempt).

use std::fmt;
use std::io;

use tokio::net::{TcpStream, lookup_host};

use super::{BoxFuture, CheckResult, InvalidProbe, Probe, ProbeContext, ProbeError, os_error};

/// Connects to `host:port`; healthy when the connection is accepted. `Ok` names the address
/// that accepted, such as `connected to 127.0.0.1:8080`.
///
/// ```
/// use hale::probe::Tcp;
/// let check = Tcp::new("127.0.0.1:8080").unwrap();
/// assert!(Tcp::new("localhost").is_err());
/// ```
#[derive(Clone)]
pub struct Tcp {
    address: String,
    host: String,
    port: u16,
}

impl Tcp {
    /// A check of `address`, written `host:port`: `127.0.0.1:8080`, `db.internal:5432` or
    /// `[::1]:8080`. Fails when the port is missing or not a number from 1 to 65535, or the host
    /// is empty.
    pub fn new(address: impl Into<String>) -> Result<Self, InvalidProbe> {
        let address = address.into();
        let invalid = |what: &str| InvalidProbe::new(format!("tcp {address:?}: {what}"));
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
                return Err(invalid("write an IPv6 address in brackets: [::1]:8080"));
            }
            None => host,
        };
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        let host = host.to_owned();
        Ok(Self { address, host, port })
    }

    /// The address as given, `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl fmt::Debug for Tcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Probe for Tcp {
    fn check(&self, _ctx: ProbeContext) -> BoxFuture<CheckResult> {
        let this = self.clone();
        Box::pin(async move { this.run().await })
    }

    /// `tcp host:port`.
    fn describe(&self) -> String {
        format!("tcp {}", self.address)
    }
}

impl Tcp {
    async fn run(&self) -> CheckResult {
        let fail = |what: String| ProbeError::new(format!("tcp {}: {what}", self.address));
        let addresses = lookup_host((self.host.as_str(), self.port)).await.map_err(|err| {
            fail(format!("could not resolve {}: {}", self.host, resolve_text(&err)))
        })?;
        let mut last_error = None;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    // Close with a reset rather than FIN: a check every second must not leave
                    // a TIME_WAIT socket behind each time (ports run out at scale), and the
                    // abortive close is less work for both ends.
                    let _ = stream.set_zero_linger();
                    drop(stream);
                    return Ok(format!("connected to {address}"));
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(match last_error {
            Some(err) => fail(os_error::lower_text(&err)),
            None => fail(format!("{} has no addresses", self.host)),
        })
    }
}

/// Resolver errors carry getaddrinfo's text (`failed to lookup address information: Name or
/// service not known`); keep its last part, which says what happened.
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
