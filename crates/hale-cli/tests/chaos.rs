//! Chaos against the real `hale` binary: 50 process components (plain, forking grandchildren,
//! ignoring SIGTERM, both), restart policy `always` with zero or small backoff and a restart
//! limit that is never reached; every 50 ms one of them, chosen by a seeded generator, has its
//! main process SIGKILLed. Afterwards: every kill was answered by exactly one restart (per
//! component, `restart_count` and the incarnation moved by exactly the kills it took), no zombie
//! whose parent is hale outlives the orphan reaper's grace, hale's fd count and RSS are back
//! where they were after the warm-up, and after `hale down` no process is left in any
//! component's process group or among hale's descendants seen during the run.
//!
//! The short form runs 10 s of kills (the default, for CI); `HALE_CHAOS_SECS=60` runs the long
//! form; `HALE_CHAOS_SEED=N` replays a run's choice of victims (the seed is printed).
//! `cargo test -p hale-cli --test chaos -- --nocapture` shows the summary.
//!
//! How a kill is counted without races. The victim's pid comes from the daemon's API
//! (`GET /v1/components/NAME`), which may be stale: the process may already be dead (killed by
//! us a moment ago and not yet processed), a zombie (on which `kill` still succeeds), not yet
//! exec'ed (a fork of hale), or even a recycled pid (this machine's `pid_max` is 32768). So the
//! test opens a pidfd on the pid first, which pins the process it names; then reads that pid's
//! /proc entry and requires a live (not zombie) process whose parent is hale, which leads its
//! own process group (a main process, not a grandchild), whose environment carries this
//! component's `CHAOS_NAME` (so it has exec'ed the component's program), and whose (pid, start
//! time) was never killed before; then checks through the pidfd's fdinfo that the pidfd's
//! process still holds that pid (so the /proc reads were about the pinned process, not a
//! successor); and only then signals through the pidfd (`pidfd_send_signal`, never a bare pid).
//! Nothing else kills a main process during the chaos (the children sleep 1000 s and there are
//! no probes), so a successful send is exactly one death of one live instance of that
//! component, which hale must answer with exactly one restart. At most one instance of a
//! component is alive at a time, so a live main process of hale's carrying the component's name
//! is its current incarnation.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Hale;
use nix::libc;
use serde_json::Value;

const COMPONENTS: usize = 50;
const KILL_EVERY: Duration = Duration::from_millis(50);
/// Kills before the baseline is taken, so that lazily grown buffers are already grown.
const WARM_UP: Duration = Duration::from_secs(2);
/// hale reaps an orphan once it has been a zombie for a second (OrphanReaper, on a 500 ms
/// tick): 1.5 s, and room for a loaded machine.
const ZOMBIE_GRACE: Duration = Duration::from_secs(5);

fn name(i: usize) -> String {
    format!("c{i:02}")
}

/// Component `i`'s table: kind by `i % 4`, backoff by `i / 4 % 4`.
fn component_toml(i: usize, run: &str) -> String {
    let program = match i % 4 {
        0 => r#"command = ["sleep", "1000"]"#,
        1 => r#"shell = "sleep 1000 & exec sleep 1000""#,
        2 => r#"shell = "trap '' TERM; exec sleep 1000""#,
        _ => r#"shell = "trap '' TERM; sleep 1000 & sleep 1000 & exec sleep 1000""#,
    };
    let backoff = ["0s", "0s", "10ms", "25ms"][i / 4 % 4];
    format!(
        "[components.{n}]\n{program}\nenv = {{ CHAOS_NAME = \"{n}\", CHAOS_RUN = \"{run}\" }}\n\
         stop_timeout = \"300ms\"\n\n[components.{n}.restart]\npolicy = \"always\"\n\
         initial_backoff = \"{backoff}\"\nmax_backoff = \"50ms\"\nmultiplier = 2.0\n\
         max_restarts = 100000\nwindow = \"1m\"\nmin_uptime = \"1s\"\n\n",
        n = name(i)
    )
}

/// A small seeded generator (xorshift64*), so that a run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

// ------------------------------------------------------------------------------- the API

/// `GET path` on the control socket (HTTP/1.1, one connection per request), every step
/// bounded by a timeout.
fn api_get(socket: &Path, path: &str) -> Result<Value, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("connecting: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: hale\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("writing: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| format!("reading: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("answer: {head}"));
    }
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body).ok_or("bad chunked body")?
    } else {
        body.to_owned()
    };
    serde_json::from_str(&body).map_err(|e| format!("not JSON ({e}): {body}"))
}

fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n")?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..n)?);
        s = rest.get(n + 2..)?;
    }
}

/// Every component's status object by name.
fn statuses(socket: &Path) -> BTreeMap<String, Value> {
    let v = api_get(socket, "/v1/status").unwrap_or_else(|e| panic!("GET /v1/status: {e}"));
    v["components"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["name"].as_str().unwrap_or("?").to_owned(), c.clone()))
        .collect()
}

// ------------------------------------------------------------------------------- /proc

#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: u32,
    ppid: u32,
    pgid: u32,
    state: char,
    start: u64,
}

impl Proc {
    fn dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

fn stat_of(pid: u32) -> Option<Proc> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Proc {
        pid,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

fn procs() -> Vec<Proc> {
    let Ok(rd) = fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat_of)
        .collect()
}

/// Now, in the clock ticks of /proc/PID/stat's start time.
fn uptime_ticks() -> u64 {
    let up = fs::read_to_string("/proc/uptime").unwrap_or_default();
    let secs: f64 = up.split_whitespace().next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (secs * hz).ceil() as u64
}

fn has_env(pid: u32, kv: &str) -> bool {
    fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == kv.as_bytes()))
}

fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

fn status_field(pid: u32, key: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// hale's fds, as `fd -> target`, for messages.
fn fd_targets(pid: u32) -> BTreeMap<u32, String> {
    let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) else { return BTreeMap::new() };
    rd.flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(e.path()).ok()?.display().to_string();
            Some((fd, target))
        })
        .collect()
}

/// Everything seen of hale's descendants during the run.
struct Tracker {
    hale: u32,
    /// Every descendant of hale seen: (pid, start time) -> process group.
    seen: HashMap<(u32, u64), u32>,
    /// Every component process group seen (main processes lead their own group).
    pgids: HashSet<u32>,
    /// Zombies whose parent is hale: (pid, start time) -> (first seen, last seen).
    zombies: HashMap<(u32, u64), (Instant, Instant)>,
    most_zombies: usize,
    /// Scans done and the time they took.
    scans: u64,
    scan_time: Duration,
}

impl Tracker {
    fn new(hale: u32) -> Self {
        Tracker {
            hale,
            seen: HashMap::new(),
            pgids: HashSet::new(),
            zombies: HashMap::new(),
            most_zombies: 0,
            scans: 0,
            scan_time: Duration::ZERO,
        }
    }

    /// Record hale's descendants and zombies in a snapshot of /proc; returns the zombies whose
    /// parent is hale in it.
    fn observe(&mut self, all: Vec<Proc>, now: Instant) -> Vec<Proc> {
        let mut children: HashMap<u32, Vec<Proc>> = HashMap::new();
        for p in &all {
            children.entry(p.ppid).or_default().push(*p);
        }
        let mut stack = vec![self.hale];
        while let Some(parent) = stack.pop() {
            for c in children.get(&parent).into_iter().flatten() {
                self.seen.insert((c.pid, c.start), c.pgid);
                if c.ppid == self.hale && c.pgid == c.pid {
                    self.pgids.insert(c.pgid);
                }
                stack.push(c.pid);
            }
        }
        let zombies: Vec<Proc> =
            all.into_iter().filter(|p| p.ppid == self.hale && p.state == 'Z').collect();
        for z in &zombies {
            self.zombies.entry((z.pid, z.start)).or_insert((now, now)).1 = now;
        }
        self.most_zombies = self.most_zombies.max(zombies.len());
        self.scans += 1;
        self.scan_time += now.elapsed();
        zombies
    }

    /// The longest time any zombie of hale's was seen as one.
    fn longest_zombie(&self) -> Duration {
        self.zombies.values().map(|(first, last)| *last - *first).max().unwrap_or_default()
    }
}

/// Scan /proc (outside the lock: under load a scan takes a while) and record what it shows;
/// returns the zombies whose parent is hale.
fn scan(tracker: &Mutex<Tracker>) -> Vec<Proc> {
    let t0 = Instant::now();
    let all = procs();
    tracker.lock().unwrap().observe(all, t0)
}

/// Scan /proc every 50 ms on a thread of its own until `stop`, so that the kill loop keeps
/// its pace however slow the scans are.
fn scanner(tracker: Arc<Mutex<Tracker>>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            scan(&tracker);
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

// ------------------------------------------------------------------------------- the kill

/// What a kill attempt did.
enum Attempt {
    Killed { start: u64, pgid: u32 },
    Skipped(&'static str),
}

/// The pid the pidfd refers to, from its fdinfo (`Pid: -1` once the process was reaped).
fn pidfd_pid(fd: &OwnedFd) -> Option<i64> {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines().find_map(|l| l.strip_prefix("Pid:")).and_then(|v| v.trim().parse().ok())
}

/// SIGKILL `pid` if, and only if, it is a live, never-killed main process of `name` (see the
/// module documentation for why each check is there).
fn kill_instance(hale: u32, name: &str, pid: u32, killed: &HashSet<(u32, u64)>) -> Attempt {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if raw < 0 {
        return Attempt::Skipped("pid already reaped (pidfd_open failed)");
    }
    // SAFETY: a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let Some(p) = stat_of(pid) else { return Attempt::Skipped("pid already reaped") };
    if p.dead() {
        return Attempt::Skipped("already dead (zombie)");
    }
    if p.ppid != hale || p.pgid != pid {
        return Attempt::Skipped("not a main process of hale's");
    }
    if killed.contains(&(pid, p.start)) {
        return Attempt::Skipped("this instance was already killed");
    }
    if !has_env(pid, &format!("CHAOS_NAME={name}")) {
        return Attempt::Skipped("not (yet) running this component's program");
    }
    if pidfd_pid(&fd) != Some(i64::from(pid)) {
        return Attempt::Skipped("reaped while being checked");
    }
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r != 0 {
        return Attempt::Skipped("pidfd_send_signal failed");
    }
    Attempt::Killed { start: p.start, pgid: p.pgid }
}

/// The chaos loop's state.
struct Chaos {
    hale: u32,
    socket: std::path::PathBuf,
    rng: Rng,
    kills: BTreeMap<String, u64>,
    killed: HashSet<(u32, u64)>,
    skipped: BTreeMap<&'static str, u64>,
    attempts: u64,
    tracker: Arc<Mutex<Tracker>>,
    /// Time spent asking the daemon, and checking and killing, for the summary.
    spent: [Duration; 2],
}

impl Chaos {
    /// One kill attempt every `KILL_EVERY` for `period`.
    fn run(&mut self, period: Duration) {
        let end = Instant::now() + period;
        let mut next = Instant::now();
        while Instant::now() < end {
            let victim = name(self.rng.below(COMPONENTS));
            self.attempts += 1;
            let path = format!("/v1/components/{victim}");
            let t = Instant::now();
            let c = api_get(&self.socket, &path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
            self.spent[0] += t.elapsed();
            let t = Instant::now();
            match c["pid"].as_u64() {
                None => *self.skipped.entry("no pid (restarting)").or_default() += 1,
                Some(pid) => {
                    let pid = pid as u32;
                    match kill_instance(self.hale, &victim, pid, &self.killed) {
                        Attempt::Killed { start, pgid } => {
                            self.killed.insert((pid, start));
                            let mut tracker = self.tracker.lock().unwrap();
                            tracker.pgids.insert(pgid);
                            tracker.seen.insert((pid, start), pgid);
                            *self.kills.entry(victim).or_default() += 1;
                        }
                        Attempt::Skipped(why) => *self.skipped.entry(why).or_default() += 1,
                    }
                }
            }
            self.spent[1] += t.elapsed();
            next += KILL_EVERY;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            } else {
                next = Instant::now();
            }
        }
    }

    /// Wait (guarded) until every component runs an instance that was not killed and its
    /// restart count equals its kills; panic naming each component that does not.
    /// Wait (guarded) until every component runs an instance that was not killed and both its
    /// restart count and its incarnation moved by exactly its kills; returns how long that
    /// took, or names each component that is not there. More restarts than kills fails at once.
    fn settle(
        &mut self,
        first_incarnation: &BTreeMap<String, u64>,
        guard: Duration,
    ) -> Result<Duration, String> {
        let t0 = Instant::now();
        loop {
            let all = statuses(&self.socket);
            let mut wrong = Vec::new();
            for i in 0..COMPONENTS {
                let n = name(i);
                let c = &all[&n];
                let kills = self.kills.get(&n).copied().unwrap_or(0);
                let restarts = c["restart_count"].as_u64().unwrap_or(u64::MAX);
                if restarts > kills {
                    return Err(format!(
                        "{n} was restarted {restarts} times but killed only {kills} times: {c}"
                    ));
                }
                let incarnations = c["incarnation"].as_u64().unwrap_or(0) - first_incarnation[&n];
                let running = c["state"] == "running"
                    && c["pid"]
                        .as_u64()
                        .and_then(|p| stat_of(p as u32))
                        .is_some_and(|p| !p.dead() && !self.killed.contains(&(p.pid, p.start)));
                if restarts != kills || incarnations != kills || !running {
                    wrong.push(format!(
                        "{n}: killed {kills}, restart_count {restarts}, incarnations {incarnations}, \
                         state {}, pid {}, last_exit {}",
                        c["state"], c["pid"], c["last_exit"]
                    ));
                }
            }
            if wrong.is_empty() {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > guard {
                return Err(format!(
                    "{guard:?} after the last kill, not every kill was answered by exactly one \
                     restart:\n  {}",
                    wrong.join("\n  ")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn total_kills(&self) -> u64 {
        self.kills.values().sum()
    }
}

/// How long the zombies left at the end of a phase are watched when they outlive the grace,
/// to say how slowly they go.
const DRAIN_GUARD: Duration = Duration::from_secs(60);

/// Wait for every zombie whose parent is hale to be reaped: `Ok(time taken)` within
/// `ZOMBIE_GRACE`; otherwise keep watching (up to `DRAIN_GUARD`) and say how slowly they went.
fn drain_zombies(tracker: &Mutex<Tracker>, when: &str) -> Result<Duration, String> {
    let t0 = Instant::now();
    let hale = tracker.lock().unwrap().hale;
    let first = scan(tracker).len();
    loop {
        let z = scan(tracker);
        let took = t0.elapsed();
        if z.is_empty() {
            if took <= ZOMBIE_GRACE {
                return Ok(took);
            }
            return Err(format!(
                "{first} zombies whose parent is hale (pid {}) were there {when}; reaping them \
                 took {:.1} s (about {:.1} a second), past the {ZOMBIE_GRACE:?} grace",
                hale,
                took.as_secs_f64(),
                first as f64 / took.as_secs_f64()
            ));
        }
        if took > DRAIN_GUARD {
            return Err(format!(
                "{first} zombies whose parent is hale (pid {}) were there {when}; {} still are \
                 {DRAIN_GUARD:?} later: {:?}",
                hale,
                z.len(),
                z.iter().map(|p| p.pid).take(20).collect::<Vec<_>>()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn chaos_secs() -> u64 {
    std::env::var("HALE_CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10)
}

/// Poll `read` every 100 ms for up to `guard` until `ok` holds; the last value either way.
fn poll<T: Copy>(guard: Duration, mut read: impl FnMut() -> T, ok: impl Fn(T) -> bool) -> T {
    let t0 = Instant::now();
    let mut v = read();
    while !ok(v) && t0.elapsed() < guard {
        std::thread::sleep(Duration::from_millis(100));
        v = read();
    }
    v
}

#[test]
fn every_kill_is_answered_and_nothing_leaks() {
    let secs = chaos_secs();
    let seed =
        std::env::var("HALE_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    println!("chaos: {secs} s, seed {seed} (replay with HALE_CHAOS_SEED={seed})");
    // Every check runs and reports; the test fails at the end with all that went wrong.
    let mut failures: Vec<String> = Vec::new();

    let mut h = Hale::new();
    let run = h.root.file_name().unwrap().to_string_lossy().into_owned();
    let config: String = (0..COMPONENTS).map(|i| component_toml(i, &run)).collect();
    h.write_config(&config);
    let hale = h.up();
    let socket = h.socket();

    // Every component up, with its program exec'ed.
    let first_incarnation: BTreeMap<String, u64> =
        common::wait_until(Duration::from_secs(20), "every component running", || {
            let all = statuses(&socket);
            let up = all.values().all(|c| {
                c["state"] == "running"
                    && c["pid"].as_u64().is_some_and(|p| {
                        has_env(p as u32, &format!("CHAOS_NAME={}", c["name"].as_str().unwrap()))
                    })
            });
            (up && all.len() == COMPONENTS).then(|| {
                all.iter().map(|(n, c)| (n.clone(), c["incarnation"].as_u64().unwrap())).collect()
            })
        });

    let mut chaos = Chaos {
        hale,
        socket: socket.clone(),
        rng: Rng(seed),
        kills: BTreeMap::new(),
        killed: HashSet::new(),
        skipped: BTreeMap::new(),
        attempts: 0,
        tracker: Arc::new(Mutex::new(Tracker::new(hale))),
        spent: [Duration::ZERO; 2],
    };
    let stop_scanning = Arc::new(AtomicBool::new(false));
    let scanning = scanner(chaos.tracker.clone(), stop_scanning.clone());

    // Warm-up: some kills, then the baseline once everything has settled.
    chaos.run(WARM_UP);
    if let Err(e) = chaos.settle(&first_incarnation, Duration::from_secs(30)) {
        failures.push(format!("after the warm-up: {e}"));
    }
    if let Err(e) = drain_zombies(&chaos.tracker, "after the warm-up") {
        failures.push(e);
    }
    std::thread::sleep(Duration::from_millis(500));
    let fds_before = fd_count(hale);
    let fd_list_before = fd_targets(hale);
    let rss_before = rss_kib(hale);
    let warm_kills = chaos.total_kills();
    println!(
        "baseline after {warm_kills} warm-up kills: {fds_before} fds, RSS {rss_before} KiB \
         (VmHWM {} KiB)",
        status_field(hale, "VmHWM:")
    );

    // The chaos.
    let t0 = Instant::now();
    chaos.run(Duration::from_secs(secs));
    let chaos_time = t0.elapsed();
    let zombies_at_end = scan(&chaos.tracker).len();
    let settled = chaos.settle(&first_incarnation, Duration::from_secs(30));
    let drained = drain_zombies(&chaos.tracker, "at the end of the chaos");

    // fds and RSS back to the baseline once the children settled (polled: a pipe reader may
    // still be closing, a buffer still being freed).
    let fds_after = poll(Duration::from_secs(10), || fd_count(hale), |n| n == fds_before);
    let rss_after =
        poll(Duration::from_secs(5), || rss_kib(hale), |r| r as f64 <= rss_before as f64 * 1.10);
    let rss_peak = status_field(hale, "VmHWM:");

    let kills = chaos.total_kills() - warm_kills;
    let restarts: u64 =
        statuses(&socket).values().map(|c| c["restart_count"].as_u64().unwrap_or(0)).sum();
    let per = |d: Duration, n: u64| d.as_secs_f64() * 1000.0 / n.max(1) as f64;
    let tracker = chaos.tracker.lock().unwrap();
    println!(
        "chaos: {kills} kills in {:.1} s ({} with the warm-up, {} attempts; per attempt {:.1} ms \
         asking hale, {:.1} ms checking and killing; {} /proc scans of {:.0} ms); skipped: {:?}",
        chaos_time.as_secs_f64(),
        chaos.total_kills(),
        chaos.attempts,
        per(chaos.spent[0], chaos.attempts),
        per(chaos.spent[1], chaos.attempts),
        tracker.scans,
        per(tracker.scan_time, tracker.scans),
        chaos.skipped
    );
    match &settled {
        Ok(t) => println!(
            "restarts: {restarts} (sum of restart_count) for {} kills, all answered {:.0} ms \
             after the last kill",
            chaos.total_kills(),
            t.as_secs_f64() * 1000.0
        ),
        Err(e) => failures.push(e.clone()),
    }
    println!(
        "zombies whose parent is hale: at most {} at once, the longest-lived seen for {:.2} s, \
         {zombies_at_end} at the end of the chaos, reaped {}",
        tracker.most_zombies,
        tracker.longest_zombie().as_secs_f64(),
        match &drained {
            Ok(t) => format!("{:.2} s later", t.as_secs_f64()),
            Err(_) => "too slowly (see the failure)".to_owned(),
        }
    );
    if let Err(e) = drained {
        failures.push(e);
    }
    if tracker.longest_zombie() > ZOMBIE_GRACE {
        failures.push(format!(
            "a zombie whose parent is hale was seen for {:.1} s during the chaos (grace {:?})",
            tracker.longest_zombie().as_secs_f64(),
            ZOMBIE_GRACE
        ));
    }
    println!(
        "fds: {fds_before} before, {fds_after} after; RSS: {rss_before} KiB before, {rss_after} \
         KiB after ({:+.1} %), peak (VmHWM) {rss_peak} KiB",
        (rss_after as f64 / rss_before as f64 - 1.0) * 100.0
    );
    if restarts != chaos.total_kills() {
        failures.push(format!("{restarts} restarts for {} kills", chaos.total_kills()));
    }
    // Nominally 20 a second; a quarter of that still tests something on a loaded machine.
    if kills < secs * 5 {
        failures.push(format!(
            "only {kills} kills in {secs} s: the loop or the daemon is too slow to test anything"
        ));
    }
    if fds_after != fds_before {
        let after = fd_targets(hale);
        let gained: Vec<_> =
            after.iter().filter(|(k, _)| !fd_list_before.contains_key(k)).collect();
        let lost: Vec<_> = fd_list_before.iter().filter(|(k, _)| !after.contains_key(k)).collect();
        failures.push(format!(
            "hale's fd count went from {fds_before} to {fds_after}: gained {gained:?}, lost {lost:?}"
        ));
    }
    if rss_after as f64 > rss_before as f64 * 1.10 {
        failures.push(format!(
            "hale's RSS grew from {rss_before} KiB to {rss_after} KiB (more than 10 %)"
        ));
    }

    drop(tracker);

    // Down: nothing left of any component's group or of hale's descendants.
    stop_scanning.store(true, Ordering::Relaxed);
    scanning.join().unwrap();
    scan(&chaos.tracker);
    let down = h.cli(&["down"]);
    if down.code != Some(0) {
        failures.push(format!("`hale down` failed:\n{down}"));
    }
    h.wait_daemon_exit(0, Duration::from_secs(15));
    // A leftover: a live process seen as hale's descendant (same pid and start time), or
    // carrying this run's environment (every descendant inherits it), or in a component's
    // process group and started before hale exited (a group number recycled later by an
    // unrelated process is not one).
    let tag = format!("CHAOS_RUN={run}");
    let hale_gone = uptime_ticks();
    let left = |tracker: &Tracker| -> Vec<Proc> {
        procs()
            .into_iter()
            .filter(|p| !p.dead())
            .filter(|p| {
                tracker.seen.contains_key(&(p.pid, p.start))
                    || has_env(p.pid, &tag)
                    || (tracker.pgids.contains(&p.pgid) && p.start <= hale_gone)
            })
            .collect()
    };
    let t_left = Instant::now();
    let tracker = chaos.tracker.lock().unwrap();
    let mut leftovers = left(&tracker);
    while !leftovers.is_empty() && t_left.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
        leftovers = left(&tracker);
    }
    println!(
        "after `hale down` ({:.2} s): {} processes left of {} seen in {} process groups",
        down.elapsed.as_secs_f64(),
        leftovers.len(),
        tracker.seen.len(),
        tracker.pgids.len()
    );
    if !leftovers.is_empty() {
        failures.push(format!(
            "processes left after `hale down`:\n  {}",
            leftovers.iter().map(|p| common::describe(p.pid)).collect::<Vec<_>>().join("\n  ")
        ));
    }
    assert!(failures.is_empty(), "chaos found:\n- {}", failures.join("\n- "));
}
