//! The child-facing side of sd_notify (SEMANTICS.md §8): one `AF_UNIX` datagram socket per
//! monitor, shared by every process component that asks for one, in the abstract namespace (no
//! file to clean up, no path length limit), with `SO_PASSCRED` so that every datagram carries
//! its sender's PID as the kernel saw it (which is how the driver tells components apart), and
//! the parser for the `KEY=VALUE` lines children send.
//!
//! This module only receives and parses; whether a sender may speak for the component (main
//! PID only, or any process of its group) and what a message means are decided by the driver
//! and the core.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use hale_core::NotifyMessage;
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr, bind, recvmsg,
    setsockopt, socket, sockopt,
};
use tokio::io::unix::AsyncFd;

/// The longest datagram read; systemd's own limit is about the same.
const MAX_DATAGRAM: usize = 4096;

/// A bound notify socket.
pub(crate) struct NotifySocket {
    fd: AsyncFd<OwnedFd>,
    /// The value for `NOTIFY_SOCKET` (`@` marks the abstract namespace).
    pub(crate) env_value: String,
}

impl NotifySocket {
    /// Bind a fresh socket.
    pub(crate) fn bind() -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        setsockopt(&fd, sockopt::PassCred, &true)?;
        let name = format!("hale/{}/{:016x}", std::process::id(), fastrand::u64(..));
        let addr = UnixAddr::new_abstract(name.as_bytes())?;
        bind(fd.as_raw_fd(), &addr)?;
        // SAFETY: an OwnedFd's descriptor is valid, stays open while the AsyncFd owns it, and
        // `as_raw_fd` always returns the same one.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(NotifySocket { fd, env_value: format!("@{name}") })
    }

    /// The next datagram: its sender's PID (when the kernel attached credentials) and text.
    pub(crate) async fn recv(&self) -> io::Result<(Option<u32>, Vec<u8>)> {
        loop {
            let mut guard = self.fd.readable().await?;
            let result = guard.try_io(|fd| {
                let mut buf = vec![0u8; MAX_DATAGRAM];
                let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
                let (len, pid) = {
                    let mut iov = [IoSliceMut::new(&mut buf)];
                    let msg = recvmsg::<()>(
                        fd.get_ref().as_raw_fd(),
                        &mut iov,
                        Some(&mut cmsg),
                        MsgFlags::MSG_DONTWAIT,
                    )
                    .map_err(io::Error::from)?;
                    let mut pid = None;
                    for c in msg.cmsgs().map_err(io::Error::from)? {
                        if let ControlMessageOwned::ScmCredentials(cred) = c {
                            pid = u32::try_from(cred.pid()).ok();
                        }
                    }
                    (msg.bytes, pid)
                };
                buf.truncate(len);
                Ok((pid, buf))
            });
            match result {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Parse one datagram into the messages hale acts on. Unknown keys and malformed values are
/// ignored, as systemd does.
pub fn parse(datagram: &[u8]) -> Vec<NotifyMessage> {
    let text = String::from_utf8_lossy(datagram);
    let mut out = Vec::new();
    for line in text.split('\n') {
        let Some((key, value)) = line.split_once('=') else { continue };
        let message = match (key, value) {
            ("READY", "1") => NotifyMessage::Ready,
            ("STOPPING", "1") => NotifyMessage::Stopping,
            ("WATCHDOG", "1") => NotifyMessage::Watchdog,
            ("WATCHDOG", "trigger") => NotifyMessage::WatchdogTrigger,
            ("RESTART_RESET", "1") => NotifyMessage::RestartReset,
            ("STATUS", text) => NotifyMessage::Status(hale_core::truncate_output(text)),
            ("EXTEND_TIMEOUT_USEC", usec) => match usec.parse::<u64>() {
                Ok(us) => NotifyMessage::ExtendTimeout(Duration::from_micros(us)),
                Err(_) => continue,
            },
            _ => continue,
        };
        out.push(message);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key_hale_knows_and_ignores_the_rest() {
        let msgs = parse(
            b"READY=1\nSTATUS=serving 3 clients\nWATCHDOG=1\nMAINPID=42\nEXTEND_TIMEOUT_USEC=5000000\n\
              WATCHDOG=trigger\nRESTART_RESET=1\nSTOPPING=1\nEXTEND_TIMEOUT_USEC=soon\nREADY=0\ngarbage",
        );
        assert_eq!(
            msgs,
            vec![
                NotifyMessage::Ready,
                NotifyMessage::Status("serving 3 clients".into()),
                NotifyMessage::Watchdog,
                NotifyMessage::ExtendTimeout(Duration::from_secs(5)),
                NotifyMessage::WatchdogTrigger,
                NotifyMessage::RestartReset,
                NotifyMessage::Stopping,
            ]
        );
    }

    #[test]
    fn binary_and_huge_input_never_panics() {
        let junk: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let _ = parse(&junk);
        let long = format!("STATUS={}", "x".repeat(10_000));
        match &parse(long.as_bytes())[..] {
            [NotifyMessage::Status(s)] => assert!(s.len() <= hale_core::OUTPUT_LIMIT + 3),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_datagram_arrives_with_its_senders_pid() {
        let sock = NotifySocket::bind().unwrap();
        let path = sock.env_value.trim_start_matches('@').to_owned();
        let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let addr = <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(path.as_bytes()).unwrap();
        tx.send_to_addr(b"READY=1", &addr).unwrap();
        let (pid, data) =
            tokio::time::timeout(Duration::from_secs(5), sock.recv()).await.unwrap().unwrap();
        assert_eq!(pid, Some(std::process::id()));
        assert_eq!(data, b"READY=1");
    }
}
