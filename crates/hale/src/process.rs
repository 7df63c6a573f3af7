//! Spawning, signalling and reaping process components: the only place in the library that
//! does so for supervised children.
//!
//! Each child starts in its own process group (so a stop reaches its grandchildren too), with
//! `PR_SET_PDEATHSIG` = SIGKILL unless the embedder opts out (so a killed hale leaves no child
//! behind; it fires when the *spawning thread* exits, which is why the driver spawns from its own
//! long-lived task thread rather than from a blocking pool). Exits are seen through tokio's
//! `Child::wait`, which reaps: exactly one waiter owns each child.

use std::io;
use std::process::Stdio;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::component::{Command, OutputSink, Stream};

/// The longest line handed to an [`OutputSink`] at once; longer lines arrive in pieces.
pub const MAX_LINE: usize = 64 * 1024;

/// Spawn `cmd` with `extra_env` on top of its own environment.
pub(crate) fn spawn(
    cmd: &Command,
    extra_env: &[(String, String)],
) -> io::Result<tokio::process::Child> {
    let Some((program, args)) = cmd.argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let mut c = tokio::process::Command::new(program);
    c.args(args).process_group(0).stdin(Stdio::null());
    if let Some(dir) = &cmd.cwd {
        c.current_dir(dir);
    }
    for (k, v) in &cmd.env {
        c.env(k, v);
    }
    for (k, v) in extra_env {
        c.env(k, v);
    }
    if cmd.output.is_some() {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    if cmd.die_with_parent {
        let parent = std::process::id();
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (prctl, getppid, kill).
        unsafe {
            c.pre_exec(move || {
                if libc_prctl_pdeathsig() != 0 {
                    return Err(io::Error::last_os_error());
                }
                // hale may have died between fork and prctl: then nobody would kill us.
                if nix::unistd::getppid().as_raw() as u32 != parent {
                    let _ = nix::sys::signal::raise(Signal::SIGKILL);
                }
                Ok(())
            });
        }
    }
    c.spawn()
}

fn libc_prctl_pdeathsig() -> i32 {
    match nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

/// Send `signal` to the process group `pgid`. A group that is already gone is not an error.
pub(crate) fn signal_group(pgid: u32, signal: i32) -> io::Result<()> {
    let Ok(sig) = Signal::try_from(signal) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad signal {signal}")));
    };
    let Ok(raw) = i32::try_from(pgid) else { return Ok(()) };
    if raw <= 1 {
        // Never signal group 0 (our own) or 1.
        return Ok(());
    }
    match killpg(Pid::from_raw(raw), sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Read `reader` line by line into `sink` until EOF. Lines are split at [`MAX_LINE`] so that
/// a child printing without newlines cannot grow memory; bytes need not be UTF-8.
pub(crate) async fn pump<R: AsyncRead + Unpin>(
    reader: R,
    component: std::sync::Arc<str>,
    stream: Stream,
    sink: std::sync::Arc<dyn OutputSink>,
) {
    let mut reader = BufReader::with_capacity(16 * 1024, reader);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let mut complete = false;
        while line.len() < MAX_LINE {
            let buf = match reader.fill_buf().await {
                Ok(b) => b,
                Err(_) => break,
            };
            if buf.is_empty() {
                break;
            }
            let room = MAX_LINE - line.len();
            let window = &buf[..buf.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&window[..i]);
                    reader.consume(i + 1);
                    complete = true;
                    break;
                }
                None => {
                    let n = window.len();
                    line.extend_from_slice(window);
                    reader.consume(n);
                }
            }
        }
        if line.is_empty() && !complete {
            return; // EOF
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        sink.line(&component, stream, &line);
    }
}
