//! The `process` check: healthy when a process is alive and not a zombie, read from Linux's
//! `/proc/PID/stat`.
//!
//! Two modes. [`Process::own`] checks the component's own instance, whose process id the driver
//! puts in [`ProbeContext::pid`]. [`Process::pidfile`] reads a process id from a file on every
//! check, for things hale did not spawn. A pidfile can outlive its process, and the kernel hands
//! freed process ids out again, so the pidfile mode remembers the start time (field 22 of
//! `/proc/PID/stat`, in clock ticks since boot) of the process it first saw under that id: when
//! the file still names the same id but the process behind it started at another time, the
//! process it named is gone and the check fails. A file that names another id, or that was
//! written again (its modification time changed), is adopted as the new truth.
//!
//! What this module does not do: look at threads, resource use or the process's name, detect a
//! reused id the first time a pidfile is read (there is nothing to compare with yet), or work
//! without `/proc`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{BoxFuture, CheckResult, InvalidProbe, Probe, ProbeContext, ProbeError, os_error};

/// Healthy when a process is alive and not a zombie: the component's own instance
/// ([`Process::own`]) or the one a pidfile names ([`Process::pidfile`]). `Ok` carries the
/// process's state, such as `process 1234: S (sleeping)`.
///
/// Clones share what the pidfile mode remembers.
///
/// ```
/// use hale::probe::{Probe, Process};
/// assert_eq!(Process::own().describe(), "process");
/// let check = Process::pidfile("/run/nginx.pid")?;
/// assert_eq!(check.describe(), "process pidfile /run/nginx.pid");
/// # Ok::<(), hale::probe::InvalidProbe>(())
/// ```
#[derive(Clone)]
pub struct Process {
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    Own,
    Pidfile { path: PathBuf, seen: Arc<Mutex<Option<Seen>>> },
}

/// A process as identified by a pidfile: its id, its start time, and when the file was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    pid: u32,
    start: u64,
    written: Option<SystemTime>,
}

/// What to make of the process a pidfile names, given the one remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Nothing remembered, another id, or the file was written again: remember this one.
    Adopt,
    /// The same process as before.
    Same,
    /// The same id, the same file, but a process that started at another time.
    Reused,
}

fn judge(remembered: Option<&Seen>, now: &Seen) -> Verdict {
    match remembered {
        None => Verdict::Adopt,
        Some(old) if old.pid != now.pid => Verdict::Adopt,
        Some(old) if old.start == now.start => Verdict::Same,
        Some(old) if old.written != now.written => Verdict::Adopt,
        Some(_) => Verdict::Reused,
    }
}

impl Process {
    /// A check of the component's own process, for process components: the driver gives each
    /// check the running instance's process id. Fails with `process: no running instance` when
    /// there is none.
    pub fn own() -> Self {
        Self { mode: Mode::Own }
    }

    /// A check of the process whose id is in the file at `path`, read again on every check
    /// (the first line, surrounding white space ignored). Fails only when `path` is empty.
    pub fn pidfile(path: impl Into<PathBuf>) -> Result<Self, InvalidProbe> {
        let path = path.into();
        if path.as_os_str().is_empty() {
            return Err(InvalidProbe::new("process pidfile: the path is empty"));
        }
        Ok(Self { mode: Mode::Pidfile { path, seen: Arc::new(Mutex::new(None)) } })
    }

    /// The pidfile's path, in pidfile mode.
    pub fn pidfile_path(&self) -> Option<&Path> {
        match &self.mode {
            Mode::Own => None,
            Mode::Pidfile { path, .. } => Some(path),
        }
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Probe for Process {
    fn check(&self, ctx: ProbeContext) -> BoxFuture<CheckResult> {
        let this = self.clone();
        Box::pin(async move {
            match &this.mode {
                Mode::Own => check_own(ctx.pid).await,
                Mode::Pidfile { path, seen } => check_pidfile(path, seen).await,
            }
        })
    }

    /// `process`, or `process pidfile PATH`.
    fn describe(&self) -> String {
        match &self.mode {
            Mode::Own => "process".to_owned(),
            Mode::Pidfile { path, .. } => format!("process pidfile {}", path.display()),
        }
    }
}

async fn check_own(pid: Option<u32>) -> CheckResult {
    let Some(pid) = pid else {
        return Err(ProbeError::new("process: no running instance"));
    };
    let label = format!("process {pid}");
    let stat = alive(pid).await.map_err(|what| ProbeError::new(format!("{label}: {what}")))?;
    Ok(format!("{label}: {}", stat.state_text()))
}

async fn check_pidfile(path: &Path, seen: &Mutex<Option<Seen>>) -> CheckResult {
    let file_label = format!("process pidfile {}", path.display());
    let file_fail = |what: String| ProbeError::new(format!("{file_label}: {what}"));
    let contents = match tokio::fs::read(path).await {
        Ok(contents) => contents,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(file_fail("does not exist".to_owned()));
        }
        Err(err) => return Err(file_fail(format!("cannot read: {}", os_error::lower_text(&err)))),
    };
    // The time the file was written tells a process that restarted under the same id from a
    // reused id; a file that cannot be stat'ed just has no such time.
    let written = tokio::fs::metadata(path).await.and_then(|m| m.modified()).ok();
    let pid = parse_pid(&contents).map_err(file_fail)?;

    let label = format!("process {pid} (pidfile {})", path.display());
    let fail = |what: String| ProbeError::new(format!("{label}: {what}"));
    let stat = alive(pid).await.map_err(fail)?;
    let now = Seen { pid, start: stat.start, written };
    let mut remembered = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match judge(remembered.as_ref(), &now) {
        Verdict::Adopt => *remembered = Some(now),
        Verdict::Same => {}
        Verdict::Reused => {
            return Err(fail(format!("pid reused: process {pid} started at a different time")));
        }
    }
    Ok(format!("{label}: {}", stat.state_text()))
}

/// The process id on the first line of a pidfile's contents, or what is wrong with it.
fn parse_pid(contents: &[u8]) -> Result<u32, String> {
    let text = String::from_utf8_lossy(contents);
    let first = text.lines().map(str::trim).find(|line| !line.is_empty());
    let Some(first) = first else {
        return Err("empty".to_owned());
    };
    match first.parse::<u32>() {
        // Process ids fit an i32 on Linux; 0 and the rest are not a process.
        Ok(pid) if pid > 0 && i32::try_from(pid).is_ok() => Ok(pid),
        _ => {
            let shown: String = first.chars().take(40).collect();
            let cut = if shown.len() < first.len() { "..." } else { "" };
            Err(format!("{shown:?}{cut} is not a process id"))
        }
    }
}

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// The one-letter state: R, S, D, Z, T, t, X, I, ...
    state: char,
    /// Field 22: when the process started, in clock ticks since boot.
    start: u64,
}

impl Stat {
    fn state_text(&self) -> String {
        let word = match self.state {
            'R' => "running",
            'S' => "sleeping",
            'D' => "disk sleep",
            'T' => "stopped",
            't' => "tracing stop",
            'I' => "idle",
            'P' => "parked",
            'W' => "waking",
            _ => return self.state.to_string(),
        };
        format!("{} ({word})", self.state)
    }
}

/// The stat of a live process that is not a zombie, or the words for what it is instead.
async fn alive(pid: u32) -> Result<Stat, String> {
    let path = format!("/proc/{pid}/stat");
    let text = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        // ESRCH: it died while the file was being read.
        Err(err) if err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(3) => {
            if !Path::new("/proc/self/stat").exists() {
                return Err("cannot check: /proc is not available".to_owned());
            }
            return Err("not running".to_owned());
        }
        Err(err) => return Err(format!("cannot read {path}: {}", os_error::lower_text(&err))),
    };
    let stat = parse_stat(&text).ok_or_else(|| format!("cannot parse {path}"))?;
    match stat.state {
        'Z' => Err("zombie".to_owned()),
        'X' | 'x' => Err("not running".to_owned()),
        _ => Ok(stat),
    }
}

/// Fields 3 (state) and 22 (start time) of `/proc/PID/stat`. Field 2, the command name in
/// parentheses, may itself hold spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &[u8]) -> Option<Stat> {
    let text = String::from_utf8_lossy(text);
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4 to 21 lie between the state and the start time.
    let start = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        let line = b"4242 (we ird) (name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                     987654 1000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(parse_stat(line), Some(Stat { state: 'S', start: 987654 }));
        assert_eq!(parse_stat(b"1 (init) Z 0"), None);
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn own_stat_is_readable() {
        let stat = parse_stat(&std::fs::read("/proc/self/stat").unwrap()).unwrap();
        assert!(matches!(stat.state, 'R' | 'S'), "{stat:?}");
        assert!(stat.start > 0);
    }

    #[test]
    fn pidfile_contents() {
        assert_eq!(parse_pid(b"1234\n"), Ok(1234));
        assert_eq!(parse_pid(b"\n  77  \nmore data\n"), Ok(77));
        assert_eq!(parse_pid(b""), Err("empty".to_owned()));
        assert_eq!(parse_pid(b" \n\n"), Err("empty".to_owned()));
        assert_eq!(parse_pid(b"abc"), Err(r#""abc" is not a process id"#.to_owned()));
        assert_eq!(parse_pid(b"0"), Err(r#""0" is not a process id"#.to_owned()));
        assert_eq!(parse_pid(b"-5"), Err(r#""-5" is not a process id"#.to_owned()));
        assert_eq!(parse_pid(b"4294967295"), Err(r#""4294967295" is not a process id"#.to_owned()));
        let long = "x".repeat(100);
        assert!(parse_pid(long.as_bytes()).unwrap_err().ends_with(r#"x"... is not a process id"#));
    }

    #[test]
    fn a_reused_pid_is_told_from_a_restart() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t1 = t0 + Duration::from_secs(5);
        let first = Seen { pid: 100, start: 5000, written: Some(t0) };
        assert_eq!(judge(None, &first), Verdict::Adopt);
        assert_eq!(judge(Some(&first), &first), Verdict::Same);
        // The same id and file, another process: the one the file named is gone.
        let reused = Seen { start: 9000, ..first };
        assert_eq!(judge(Some(&first), &reused), Verdict::Reused);
        // The same id in a file written again: a restart that happened to get the same id.
        let rewritten = Seen { start: 9000, written: Some(t1), ..first };
        assert_eq!(judge(Some(&first), &rewritten), Verdict::Adopt);
        // Another id: adopted whatever its times.
        let moved = Seen { pid: 101, start: 1, written: Some(t0) };
        assert_eq!(judge(Some(&first), &moved), Verdict::Adopt);
    }

    #[tokio::test]
    async fn reuse_is_reported_through_the_check() {
        // Pretend this test process was first seen with another start time under its own id,
        // through an unchanged pidfile: the check must call it a reused id and keep doing so.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pid");
        let pid = std::process::id();
        std::fs::write(&path, format!("{pid}\n")).unwrap();
        let written = std::fs::metadata(&path).unwrap().modified().ok();
        let seen = Mutex::new(Some(Seen { pid, start: 1, written }));
        for _ in 0..2 {
            let err = check_pidfile(&path, &seen).await.unwrap_err();
            assert_eq!(
                err.reason,
                format!(
                    "process {pid} (pidfile {}): pid reused: process {pid} started at a different time",
                    path.display()
                )
            );
        }
        // Writing the file again adopts the process now named.
        std::fs::write(&path, format!("{pid}\n")).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(1)).unwrap();
        assert!(check_pidfile(&path, &seen).await.is_ok());
        assert_eq!(
            seen.lock().unwrap().map(|s| s.start),
            parse_stat(&std::fs::read("/proc/self/stat").unwrap()).map(|s| s.start)
        );
    }
}
