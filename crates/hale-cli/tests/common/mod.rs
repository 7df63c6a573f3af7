//! The harness the `cli_*` integration tests share: a temporary directory under /tmp (unix
//! socket paths are limited to 108 bytes) with a `hale.toml`, the real `hale` binary run as a
//! user would run it, polling helpers with guard deadlines, the records that the test children
//! append, and a guard that always ends the daemon and fails the test if any process it started
//! is still alive afterwards.
//!
//! Children are `/bin/sh` scripts (`child.sh` below) that append `EVENT EPOCH PID [ARGS]` lines
//! to a file, so that a test reads exact times and pids without trusting hale for them.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{Read, Seek};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The binary under test.
pub fn hale_bin() -> &'static str {
    env!("CARGO_BIN_EXE_hale")
}

/// The environment variable every process started by a test daemon inherits, so that the
/// guard finds them again in /proc whatever hale reports.
pub const TAG_VAR: &str = "HALE_CLI_TEST_TAG";

/// A generic child: `child.sh LOG LIFE CODE [ignore-term]`.
/// Appends `start EPOCH PID`, then after LIFE seconds `exit EPOCH PID CODE` and exits CODE.
/// On SIGTERM it appends `term EPOCH PID` and exits 0, or with `ignore-term` keeps running.
pub const CHILD_SH: &str = r#"#!/bin/sh
log=$1; life=$2; code=$3; mode=${4:-}
echo "start $(date +%s.%N) $$" >> "$log"
if [ "$mode" = ignore-term ]; then
    trap 'echo "term $(date +%s.%N) $$" >> "$log"' TERM
    while :; do sleep 0.05; done
fi
trap 'echo "term $(date +%s.%N) $$" >> "$log"; exit 0' TERM
sleep "$life" &
wait $!
echo "exit $(date +%s.%N) $$ $code" >> "$log"
exit "$code"
"#;

// ------------------------------------------------------------------------------- time

/// Wall-clock seconds since the epoch (the children's `date +%s.%N`).
pub fn now_epoch() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Poll `f` every 20 ms until it returns `Some`, or panic after `guard` naming `what`.
pub fn wait_until<T>(guard: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + guard;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {guard:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `f` must hold for the whole of `period` (checks that something does not happen).
pub fn hold_for(period: Duration, what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + period;
    loop {
        if let Err(e) = f() {
            panic!("{what} stopped holding: {e}");
        }
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

// ------------------------------------------------------------------------------- records

/// One line a child appended: `EVENT EPOCH PID [ARGS...]`.
#[derive(Debug, Clone)]
pub struct Rec {
    pub ev: String,
    pub t: f64,
    pub pid: u32,
    pub args: Vec<String>,
}

/// Every well-formed record of `path` (none when it does not exist yet).
pub fn recs(path: &Path) -> Vec<Rec> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let ev = it.next()?.to_owned();
            let t = it.next()?.parse().ok()?;
            let pid = it.next()?.parse().ok()?;
            Some(Rec { ev, t, pid, args: it.map(str::to_owned).collect() })
        })
        .collect()
}

/// The records of one kind.
pub fn recs_of(path: &Path, ev: &str) -> Vec<Rec> {
    recs(path).into_iter().filter(|r| r.ev == ev).collect()
}

/// Seconds from each instance's end (`exit` or `term`) to the next `start`.
pub fn restart_gaps(path: &Path) -> Vec<f64> {
    let mut gaps = Vec::new();
    let mut end: Option<f64> = None;
    for r in recs(path) {
        match r.ev.as_str() {
            "exit" | "term" => end = Some(r.t),
            "start" => {
                if let Some(e) = end.take() {
                    gaps.push(r.t - e);
                }
            }
            _ => {}
        }
    }
    gaps
}

/// Gaps as milliseconds, for messages.
pub fn ms(xs: &[f64]) -> String {
    let v: Vec<String> = xs.iter().map(|x| format!("{:.0}", x * 1000.0)).collect();
    format!("[{}] ms", v.join(", "))
}

// ------------------------------------------------------------------------------- /proc

/// `(state, start time)` of a process from /proc/PID/stat.
pub fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.first()?.chars().next()?, fields.get(19)?.parse().ok()?))
}

/// The process exists and is not a zombie (and has this start time, if given).
pub fn alive(pid: u32, start: Option<u64>) -> bool {
    match proc_stat(pid) {
        Some((state, t)) => !matches!(state, 'Z' | 'X' | 'x') && start.is_none_or(|s| s == t),
        None => false,
    }
}

/// The command line of a process, for messages.
pub fn describe(pid: u32) -> String {
    let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd: Vec<String> = cmd
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    format!("pid {pid}: {}", cmd.join(" "))
}

/// Live processes whose environment carries `TAG_VAR=tag`.
pub fn tagged(tag: &str) -> Vec<u32> {
    let needle = format!("{TAG_VAR}={tag}");
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(env) = fs::read(format!("/proc/{pid}/environ"))
            && env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes())
            && alive(pid, None)
        {
            out.push(pid);
        }
    }
    out
}

// ------------------------------------------------------------------------------- commands

/// A finished command.
pub struct Out {
    pub argv: String,
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Out {
    /// stdout and stderr together.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Parse stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}) from {}:\n{self}", self.argv))
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$ {}\n[exit {:?}, signal {:?}, after {:.2?}]\n--- stdout\n{}\n--- stderr\n{}",
            self.argv,
            self.code,
            self.signal,
            self.elapsed,
            tail(&self.stdout, 40),
            tail(&self.stderr, 40)
        )
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Run `cmd` to completion with its output in files (a detached daemon holding a pipe open
/// cannot hang the call); kill it and return `None` past `timeout`.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Option<Out> {
    let argv = format!("{cmd:?}");
    let mut fo = tempfile::tempfile().expect("a temp file");
    let mut fe = tempfile::tempfile().expect("a temp file");
    cmd.stdin(Stdio::null()).stdout(fo.try_clone().unwrap()).stderr(fe.try_clone().unwrap());
    let t0 = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {argv}: {e}"));
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = t0.elapsed();
    let read = |f: &mut fs::File| {
        let mut s = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut s).unwrap();
        String::from_utf8_lossy(&s).into_owned()
    };
    Some(Out {
        argv,
        code: status.code(),
        signal: std::os::unix::process::ExitStatusExt::signal(&status),
        stdout: read(&mut fo),
        stderr: read(&mut fe),
        elapsed,
    })
}

/// A `hale` command with a clean environment (no HALE_SOCKET, no colors).
pub fn hale_cmd(cwd: &Path) -> Command {
    let mut c = Command::new(hale_bin());
    c.current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("HALE_SOCKET")
        .env_remove("HALE_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove(TAG_VAR);
    c
}

// ------------------------------------------------------------------------------- the guard

/// One test's hale: a temp dir, its `hale.toml`, the daemons started from it and the CLI.
/// Dropping it runs `hale down`, SIGKILLs each daemon's process group, and fails the test if
/// a process started under it (tagged, or seen in a status) is still alive.
pub struct Hale {
    dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
    pub config: PathBuf,
    tag: String,
    daemons: Vec<(Child, PathBuf)>,
    seen: Mutex<HashMap<u32, (u64, String)>>,
}

impl Hale {
    /// A fresh directory `/tmp/hale-XXXXXX` holding `child.sh`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("hale-").tempdir_in("/tmp").expect("temp dir");
        let root = dir.path().to_path_buf();
        let script = root.join("child.sh");
        fs::write(&script, CHILD_SH).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let tag = format!("{}-{}", std::process::id(), root.file_name().unwrap().to_string_lossy());
        Hale {
            config: root.join("hale.toml"),
            root,
            dir: Some(dir),
            tag,
            daemons: Vec::new(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// A path in the test's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `child.sh`'s path, as a TOML string.
    pub fn child(&self) -> String {
        self.path("child.sh").display().to_string()
    }

    /// A `command = [...]` value running `child.sh LOG LIFE CODE [MODE]`.
    pub fn child_cmd(&self, log: &str, life: &str, code: i32, mode: &str) -> String {
        let mut argv = vec![
            "/bin/sh".to_owned(),
            self.child(),
            self.path(log).display().to_string(),
            life.to_owned(),
            code.to_string(),
        ];
        if !mode.is_empty() {
            argv.push(mode.to_owned());
        }
        let quoted: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
        format!("[{}]", quoted.join(", "))
    }

    /// Write `hale.toml`.
    pub fn write_config(&self, text: &str) {
        fs::write(&self.config, text).unwrap();
    }

    /// The default state directory (`.hale` next to the config).
    pub fn state_dir(&self) -> PathBuf {
        self.path(".hale")
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.state_dir().join("hale.sock")
    }

    fn configured_names(&self) -> Vec<String> {
        let text = fs::read_to_string(&self.config).unwrap_or_default();
        let table: toml::Table = text.parse().unwrap_or_default();
        table
            .get("components")
            .and_then(|c| c.as_table())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Start `hale up -c hale.toml ARGS` in its own process group, output to a file, without
    /// waiting for anything. Returns the daemon's index.
    pub fn spawn_up(&mut self, args: &[&str]) -> usize {
        let log = self.path(&format!("daemon-{}.out", self.daemons.len() + 1));
        let out = fs::File::create(&log).unwrap();
        let mut cmd = hale_cmd(&self.root);
        cmd.arg("up").arg("-c").arg(&self.config).args(args);
        cmd.env(TAG_VAR, &self.tag)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0);
        let child = cmd.spawn().expect("spawning hale up");
        self.daemons.push((child, log));
        self.daemons.len() - 1
    }

    /// Start the daemon and wait until `hale status --json` lists every configured component.
    pub fn up(&mut self) -> u32 {
        let i = self.spawn_up(&[]);
        self.wait_answering(i);
        self.daemons[i].0.id()
    }

    /// Wait until daemon `i` answers with every configured component.
    pub fn wait_answering(&mut self, i: usize) {
        let want = self.configured_names();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.daemons[i].0.try_wait().unwrap() {
                panic!(
                    "`hale up` exited with {status} before answering; its output:\n{}",
                    self.daemon_output(i)
                );
            }
            if self.socket().exists()
                && let Some(out) = self.try_cli(&["status", "--json"], Duration::from_secs(5))
                && out.code == Some(0)
                && let Ok(v) = serde_json::from_str::<Value>(&out.stdout)
            {
                let names: Vec<&str> = v["components"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
                    .unwrap_or_default();
                if want.iter().all(|w| names.contains(&w.as_str())) {
                    self.track_status(&v);
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not answer within 15 s; its output:\n{}",
                self.daemon_output(i)
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Daemon `i`'s process id.
    pub fn daemon_pid(&self, i: usize) -> u32 {
        self.daemons[i].0.id()
    }

    /// What daemon `i` printed so far.
    pub fn daemon_output(&self, i: usize) -> String {
        fs::read_to_string(&self.daemons[i].1).unwrap_or_default()
    }

    /// Wait up to `guard` for daemon `i` to exit.
    pub fn wait_daemon_exit(&mut self, i: usize, guard: Duration) -> ExitStatus {
        let deadline = Instant::now() + guard;
        loop {
            if let Some(s) = self.daemons[i].0.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon still runs {guard:?} later; its output:\n{}",
                self.daemon_output(i)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Has daemon `i` exited?
    pub fn daemon_exited(&mut self, i: usize) -> Option<ExitStatus> {
        self.daemons[i].0.try_wait().unwrap()
    }

    /// `hale ARGS -c hale.toml`, or `None` past `timeout`.
    pub fn try_cli(&self, args: &[&str], timeout: Duration) -> Option<Out> {
        let mut cmd = hale_cmd(&self.root);
        cmd.args(args).arg("-c").arg(&self.config);
        run_bounded(cmd, timeout)
    }

    /// `hale ARGS -c hale.toml` carrying the test's tag, for commands that start a daemon
    /// (`hale up -d`): whatever it leaves running is found at the end of the test.
    pub fn cli_tagged(&self, args: &[&str], timeout: Duration) -> Out {
        let mut cmd = hale_cmd(&self.root);
        cmd.args(args).arg("-c").arg(&self.config).env(TAG_VAR, &self.tag);
        run_bounded(cmd, timeout)
            .unwrap_or_else(|| panic!("`hale {}` still ran after {timeout:?}", args.join(" ")))
    }

    /// `hale ARGS -c hale.toml`; panics past 20 s.
    pub fn cli(&self, args: &[&str]) -> Out {
        self.try_cli(args, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("`hale {}` still ran after 20 s", args.join(" ")))
    }

    /// `hale ARGS` must exit 0.
    pub fn ok(&self, args: &[&str]) -> Out {
        let out = self.cli(args);
        assert_eq!(out.code, Some(0), "expected exit 0:\n{out}");
        out
    }

    fn track_status(&self, v: &Value) {
        for c in v["components"].as_array().into_iter().flatten() {
            if let Some(pid) = c["pid"].as_u64() {
                self.track(pid as u32, c["name"].as_str().unwrap_or("?"));
            }
        }
    }

    /// Add a pid to the end-of-test check.
    pub fn track(&self, pid: u32, name: &str) {
        let mut seen = self.seen.lock().unwrap();
        if !seen.contains_key(&pid)
            && let Some((_, start)) = proc_stat(pid)
        {
            seen.insert(pid, (start, name.to_owned()));
        }
    }

    /// `hale status --json`, with every pid tracked.
    pub fn status(&self) -> Value {
        let out = self.cli(&["status", "--json"]);
        assert_eq!(out.code, Some(0), "`hale status --json` failed:\n{out}");
        let v = out.json();
        self.track_status(&v);
        v
    }

    /// One component's status object.
    pub fn comp(&self, name: &str) -> Value {
        let v = self.status();
        v["components"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no component {name:?} in {v}"))
    }

    /// Poll `name`'s status until `pred` holds; panics after `guard`.
    pub fn wait_comp(
        &self,
        name: &str,
        guard: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + guard;
        loop {
            let c = self.comp(name);
            if pred(&c) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {guard:?} waiting for {name} to be {what}; last status: {c}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for `name` to be in `state`.
    pub fn wait_state(&self, name: &str, state: &str, guard: Duration) -> Value {
        self.wait_comp(name, guard, state, |c| c["state"] == state)
    }

    /// `hale events --json`, parsed.
    pub fn events(&self) -> Vec<Value> {
        let out = self.ok(&["events", "--json"]);
        out.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}"))
            })
            .collect()
    }

    /// Live processes that carry this test's tag (a daemon and everything it started).
    pub fn tagged_alive(&self) -> Vec<u32> {
        tagged(&self.tag)
    }

    /// Processes this test started that are still alive.
    pub fn leftovers(&self) -> Vec<u32> {
        let mut pids = tagged(&self.tag);
        for (&pid, &(start, _)) in self.seen.lock().unwrap().iter() {
            if alive(pid, Some(start)) && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        pids.sort();
        pids
    }

    fn debug_dump(&self) {
        for (i, (_, log)) in self.daemons.iter().enumerate() {
            let text = fs::read_to_string(log).unwrap_or_default();
            eprintln!("--- daemon {} output (last 60 lines)\n{}", i + 1, tail(&text, 60));
        }
        let events = fs::read_to_string(self.state_dir().join("events.jsonl")).unwrap_or_default();
        eprintln!("--- events (last 30)\n{}", tail(&events, 30));
    }
}

impl Default for Hale {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Hale {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        let mut problems = Vec::new();
        let running = self.daemons.iter_mut().any(|(c, _)| matches!(c.try_wait(), Ok(None)));
        if running || self.socket().exists() || !tagged(&self.tag).is_empty() {
            let _ = self.try_cli(&["down"], Duration::from_secs(20));
        }
        for (child, _) in &mut self.daemons {
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut left = self.leftovers();
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            left = self.leftovers();
        }
        if !left.is_empty() {
            let names = self.seen.lock().unwrap().clone();
            let described: Vec<String> = left
                .iter()
                .map(|p| {
                    let comp = names.get(p).map(|(_, n)| n.as_str()).unwrap_or("tagged");
                    format!("{} [{comp}]", describe(*p))
                })
                .collect();
            problems.push(format!(
                "processes of this test still alive after hale went down:\n  {}",
                described.join("\n  ")
            ));
            for pid in left {
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        if failing || !problems.is_empty() {
            self.debug_dump();
            if let Some(dir) = self.dir.take() {
                eprintln!("[test directory kept: {}]", dir.keep().display());
            }
        }
        if !problems.is_empty() && !failing {
            panic!("{}", problems.join("\n"));
        }
    }
}
