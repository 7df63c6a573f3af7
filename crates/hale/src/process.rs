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

use crate::component::{Command, OutputSink, Stream};

/// The longest line handed to an [`OutputSink`] at once; longer lines arrive in pieces.
pub const MAX_LINE: usize = 64 * 1024;

/// Variables hale may have received from its own supervisor (systemd) and must not pass on:
/// a child talking to hale's supervisor would confuse it. hale sets its own when it gives the
/// child a notify socket.
const INHERITED_NOTIFY_VARS: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Spawn `cmd` with `extra_env` on top of its own environment. With `watchdog_pid`, the child
/// also gets `WATCHDOG_PID` set to its own PID, which is only known after the fork.
pub(crate) fn spawn(
    cmd: &Command,
    extra_env: &[(String, String)],
    watchdog_pid: bool,
) -> io::Result<tokio::process::Child> {
    let Some((program, args)) = cmd.argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let mut c = tokio::process::Command::new(program);
    c.args(args).process_group(0).stdin(Stdio::null());
    if let Some(dir) = &cmd.cwd {
        c.current_dir(dir);
    }
    for k in INHERITED_NOTIFY_VARS {
        c.env_remove(k);
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
    let image = if watchdog_pid { Some(ExecImage::new(cmd, extra_env)?) } else { None };
    let parent = std::process::id();
    let die_with_parent = cmd.die_with_parent;
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe calls (prctl, getppid, kill, getpid, execvpe) and writes into memory
    // allocated before the fork.
    unsafe {
        c.pre_exec(move || {
            if die_with_parent {
                if libc_prctl_pdeathsig() != 0 {
                    return Err(io::Error::last_os_error());
                }
                // hale may have died between fork and prctl: then nobody would kill us.
                if nix::unistd::getppid().as_raw() as u32 != parent {
                    let _ = nix::sys::signal::raise(Signal::SIGKILL);
                }
            }
            if let Some(image) = &image {
                return Err(image.exec());
            }
            Ok(())
        });
    }
    c.spawn()
}

/// A ready-to-exec program, argument and environment image whose `WATCHDOG_PID=` entry is
/// filled in inside the child, after the fork, without allocating.
struct ExecImage {
    program: std::ffi::CString,
    argv: Vec<std::ffi::CString>,
    env: Vec<std::ffi::CString>,
    /// `WATCHDOG_PID=` followed by room for the digits and the NUL.
    /// Boxed so that its address survives the moves of the image into the closure.
    pid_entry: Box<std::cell::UnsafeCell<[u8; 40]>>,
    argv_ptrs: Vec<*const nix::libc::c_char>,
    env_ptrs: std::cell::UnsafeCell<Vec<*const nix::libc::c_char>>,
}

// SAFETY: the image is only read, and `pid_entry`/`env_ptrs` only written, in the forked child,
// which has a single thread.
unsafe impl Send for ExecImage {}
unsafe impl Sync for ExecImage {}

impl ExecImage {
    fn new(cmd: &Command, extra_env: &[(String, String)]) -> io::Result<Self> {
        use std::ffi::{CString, OsStr, OsString};
        use std::os::unix::ffi::OsStrExt;
        let cstr = |s: &OsStr| {
            CString::new(s.as_bytes()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the command")
            })
        };
        let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| !INHERITED_NOTIFY_VARS.iter().any(|v| OsStr::new(v) == k))
            .collect();
        let mut set = |k: OsString, v: OsString| {
            vars.retain(|(old, _)| *old != k);
            vars.push((k, v));
        };
        for (k, v) in &cmd.env {
            set(k.clone(), v.clone());
        }
        for (k, v) in extra_env {
            set(k.into(), v.into());
        }
        let env = vars
            .iter()
            .map(|(k, v)| {
                let mut kv = k.clone();
                kv.push("=");
                kv.push(v);
                cstr(&kv)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let argv = cmd.argv.iter().map(|a| cstr(a)).collect::<io::Result<Vec<_>>>()?;
        let program = cstr(&cmd.argv[0])?;
        let mut pid_entry = [0u8; 40];
        pid_entry[..13].copy_from_slice(b"WATCHDOG_PID=");
        let mut image = ExecImage {
            program,
            argv,
            env,
            pid_entry: Box::new(std::cell::UnsafeCell::new(pid_entry)),
            argv_ptrs: Vec::new(),
            env_ptrs: std::cell::UnsafeCell::new(Vec::new()),
        };
        image.argv_ptrs = image.argv.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
        let pid_ptr = image.pid_entry.get() as *const nix::libc::c_char;
        let env_ptrs: Vec<_> =
            image.env.iter().map(|e| e.as_ptr()).chain([pid_ptr, std::ptr::null()]).collect();
        image.env_ptrs = std::cell::UnsafeCell::new(env_ptrs);
        Ok(image)
    }

    /// In the child: write our PID into the entry and exec; returns only on failure.
    fn exec(&self) -> io::Error {
        let pid = std::process::id();
        // SAFETY: single-threaded child; the buffer was allocated before the fork.
        let entry = unsafe { &mut *self.pid_entry.get() };
        let mut digits = [0u8; 10];
        let mut n = pid;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            entry[13 + i] = digits[len - 1 - i];
        }
        entry[13 + len] = 0;
        // SAFETY: NUL-terminated strings and NULL-terminated pointer arrays built before the fork.
        unsafe {
            nix::libc::execvpe(
                self.program.as_ptr(),
                self.argv_ptrs.as_ptr(),
                (*self.env_ptrs.get()).as_ptr(),
            );
        }
        io::Error::last_os_error()
    }
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

thread_local! {
    /// One read buffer per runtime thread, shared by every output pump on it: a supervised
    /// child costs a few bytes while it is quiet, not a buffer of its own.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
}

/// Read a child's pipe line by line into `sink` until EOF. Lines are split at [`MAX_LINE`] so
/// that a child printing without newlines cannot grow memory; bytes need not be UTF-8.
pub(crate) async fn pump(
    pipe: std::os::fd::OwnedFd,
    component: std::sync::Arc<str>,
    stream: Stream,
    sink: std::sync::Arc<dyn OutputSink>,
) {
    let Ok(rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(pipe) else { return };
    let mut partial: Vec<u8> = Vec::new();
    let emit = |line: &[u8]| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        sink.line(&component, stream, line);
    };
    loop {
        if rx.readable().await.is_err() {
            break;
        }
        let eof = SCRATCH.with_borrow_mut(|buf| match rx.try_read(buf) {
            Ok(0) => true,
            Ok(n) => {
                split_lines(&buf[..n], &mut partial, &emit);
                false
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
            Err(_) => true,
        });
        if eof {
            break;
        }
    }
    if !partial.is_empty() {
        emit(&partial);
    }
}

/// Hand every complete line of `data` to `emit`, carrying an incomplete one in `partial`.
fn split_lines(mut data: &[u8], partial: &mut Vec<u8>, emit: &impl Fn(&[u8])) {
    while !data.is_empty() {
        match data.iter().position(|&b| b == b'\n') {
            Some(i) if partial.is_empty() && i <= MAX_LINE => emit(&data[..i]),
            Some(i) => {
                partial.extend_from_slice(&data[..i]);
                flush_long(partial, emit);
                emit(partial);
                partial.clear();
            }
            None => {
                partial.extend_from_slice(data);
                flush_long(partial, emit);
                break;
            }
        }
        match data.iter().position(|&b| b == b'\n') {
            Some(i) => data = &data[i + 1..],
            None => break,
        }
    }
    if partial.is_empty() && partial.capacity() > 4 * MAX_LINE {
        *partial = Vec::new(); // give back what a burst of long lines took
    }
}

/// Emit full [`MAX_LINE`] pieces of an overlong line, keeping the rest.
fn flush_long(partial: &mut Vec<u8>, emit: &impl Fn(&[u8])) {
    if partial.len() >= MAX_LINE {
        let mut start = 0;
        while partial.len() - start >= MAX_LINE {
            emit(&partial[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        partial.drain(..start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn lines(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let out = RefCell::new(Vec::new());
        let mut partial = Vec::new();
        let emit = |l: &[u8]| out.borrow_mut().push(l.to_vec());
        for c in chunks {
            split_lines(c, &mut partial, &emit);
        }
        if !partial.is_empty() {
            emit(&partial);
        }
        out.into_inner()
    }

    #[test]
    fn lines_split_across_reads_are_joined_and_none_is_lost() {
        let got = lines(&[b"one\ntw", b"o\n", b"\nthree", b"\nfour"]);
        assert_eq!(
            got,
            vec![
                b"one".to_vec(),
                b"two".to_vec(),
                b"".to_vec(),
                b"three".to_vec(),
                b"four".to_vec()
            ]
        );
    }

    #[test]
    fn zombie_children_finds_an_unwaited_child_by_pid_and_start_time() {
        let mut child = std::process::Command::new("true").spawn().expect("spawning true");
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let found = loop {
            let z = zombie_children(std::process::id());
            if let Some(&(p, start)) = z.iter().find(|(p, _)| *p == pid) {
                break (p, start);
            }
            assert!(std::time::Instant::now() < deadline, "true never showed as a zombie: {z:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert!(found.1 > 0, "no start time: {found:?}");
        child.wait().unwrap();
        assert!(!zombie_children(std::process::id()).iter().any(|(p, _)| *p == pid));
    }

    #[test]
    fn a_line_without_newlines_is_cut_at_max_line() {
        let big = vec![b'x'; MAX_LINE * 2 + 10];
        let got = lines(&[&big[..1000], &big[1000..], b"\nend\n"]);
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), vec![MAX_LINE, MAX_LINE, 10, 3]);
    }
}

/// Makes hale the reaper of every orphaned descendant (`PR_SET_CHILD_SUBREAPER`), so that a
/// grandchild whose parent died is re-parented to hale instead of init, and reaps those orphans
/// without stealing the exit statuses of the children tokio waits for.
///
/// There must be exactly one reaper of each child. tokio reaps the children it spawned within
/// milliseconds of their exit; this reaper only takes a zombie that has stayed a zombie for
/// `grace` (a second, say): no waiter will come for it. It finds every zombie child in /proc
/// (by pid and start time, so that a recycled pid is a new zombie) and ages them all at once,
/// then reaps the old ones by PID, so a young zombie of tokio's is never touched and any
/// number of orphans is reaped within `grace` plus a call. Without a usable /proc it falls back
/// to peeking at one zombie at a time (`WNOWAIT`), which reaps about one orphan per `grace`.
/// PID 1 in a container needs the same.
#[derive(Debug, Default)]
pub struct OrphanReaper {
    /// Zombies seen, by (pid, start time; 0 when unknown), and when they were first seen.
    seen: std::collections::HashMap<(i32, u64), std::time::Instant>,
}

impl OrphanReaper {
    /// Become the subreaper of our descendants (a no-op for PID 1, which reaps all orphans).
    pub fn become_subreaper() -> io::Result<()> {
        nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
    }

    /// Reap the zombies that waited longer than `grace`; returns how many were reaped and
    /// whether a zombie is still pending (call again a little later).
    pub fn reap(&mut self, now: std::time::Instant, grace: std::time::Duration) -> (usize, bool) {
        use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
        let peek =
            || waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT);
        if !matches!(peek(), Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..))) {
            self.seen.clear(); // no zombie child at all
            return (0, false);
        }
        let zombies = zombie_children(std::process::id());
        if !zombies.is_empty() {
            let current: std::collections::HashSet<(i32, u64)> = zombies.iter().copied().collect();
            self.seen.retain(|k, _| current.contains(k));
            let (mut reaped, mut pending) = (0, false);
            for z in zombies {
                let first = *self.seen.entry(z).or_insert(now);
                if now.duration_since(first) < grace {
                    pending = true; // probably tokio's: give its waiter time
                    continue;
                }
                self.seen.remove(&z);
                if waitpid(Pid::from_raw(z.0), Some(WaitPidFlag::WNOHANG)).is_ok() {
                    reaped += 1;
                }
            }
            return (reaped, pending);
        }
        // No /proc, or one that shows another PID namespace: one zombie at a time.
        let mut reaped = 0;
        for _ in 0..4096 {
            let pid = match peek() {
                Ok(WaitStatus::Exited(pid, _)) | Ok(WaitStatus::Signaled(pid, _, _)) => pid,
                _ => {
                    self.seen.clear();
                    return (reaped, false);
                }
            };
            let first = *self.seen.entry((pid.as_raw(), 0)).or_insert(now);
            if now.duration_since(first) < grace {
                return (reaped, true);
            }
            self.seen.remove(&(pid.as_raw(), 0));
            if waitpid(pid, Some(WaitPidFlag::WNOHANG)).is_ok() {
                reaped += 1;
            }
        }
        (reaped, true)
    }
}

/// The zombie children of process `me`, as (pid, start time), from /proc/PID/stat.
fn zombie_children(me: u32) -> Vec<(i32, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // After the command name in parentheses: state, ppid, ... start time (field 22).
        let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else { continue };
        let mut fields = rest.split_ascii_whitespace();
        let (Some("Z"), Some(ppid)) = (fields.next(), fields.next()) else { continue };
        if ppid.parse::<u32>().ok() != Some(me) {
            continue;
        }
        let start = fields.nth(17).and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push((pid, start));
    }
    out
}
