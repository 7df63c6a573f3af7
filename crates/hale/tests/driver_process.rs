//! The driver with real child processes on real time: crash detection through the exit, group
//! kills that reach grandchildren, SIGKILL after the stop grace, reaping (no zombies), many
//! components at once, output capture, restarts, `PR_SET_PDEATHSIG`, TCP liveness against a
//! real child and spawn failures.
//!
//! Durations are short and every wait has a guard timeout; nothing sleeps in the hope that
//! something happened. Processes are observed through health, the event stream, captured
//! output, and `/proc` (Linux only, like hale's process handling). Time is never paused here:
//! under a paused clock a timeout around a real child fires at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hale::probe::{self, ProbeError};
use hale::{
    Check, Command, Component, Event, Exit, Health, Monitor, MonitorOptions, OutputSink,
    RestartConfig, RestartPolicy, State, Stream,
};
use tokio::sync::{broadcast, watch};

const GUARD: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn monitor() -> Monitor {
    Monitor::with_options(MonitorOptions { jitter: false, ..MonitorOptions::default() })
}

async fn until(m: &Monitor, name: &str, what: &str, pred: impl FnMut(&Health) -> bool) -> Health {
    match tokio::time::timeout(GUARD, m.wait_for(name, pred)).await {
        Ok(h) => h.unwrap(),
        Err(_) => panic!("{name} never got {what} within {GUARD:?}: {:?}", m.health(name)),
    }
}

async fn state_is(m: &Monitor, name: &str, state: State) -> Health {
    until(m, name, &format!("to {state}"), |h| h.state == state).await
}

/// The next event whose target state is `to`, skipping others.
async fn event_to(rx: &mut broadcast::Receiver<Event>, to: State) -> Event {
    tokio::time::timeout(GUARD, async {
        loop {
            let e = rx.recv().await.unwrap();
            if e.to == to {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no transition to {to} within {GUARD:?}"))
}

/// Collects every output line and lets a test wait for one.
struct Lines(watch::Sender<Vec<(Stream, String)>>);

impl Lines {
    fn new() -> Arc<Lines> {
        Arc::new(Lines(watch::Sender::new(Vec::new())))
    }

    fn of(&self, stream: Stream) -> Vec<String> {
        self.0.borrow().iter().filter(|(s, _)| *s == stream).map(|(_, l)| l.clone()).collect()
    }

    /// Wait until some line satisfies `pred` and return it.
    async fn wait(&self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        let mut rx = self.0.subscribe();
        let found = tokio::time::timeout(GUARD, rx.wait_for(|v| v.iter().any(|(_, l)| pred(l))))
            .await
            .unwrap_or_else(|_| panic!("no line {what} within {GUARD:?}: {:?}", self.0.borrow()));
        let lines = found.unwrap();
        lines.iter().find(|(_, l)| pred(l)).unwrap().1.clone()
    }
}

impl OutputSink for Lines {
    fn line(&self, _component: &str, stream: Stream, line: &[u8]) {
        let line = String::from_utf8_lossy(line).into_owned();
        self.0.send_modify(|v| v.push((stream, line)));
    }
}

/// What `/proc` says about a process: `None` when it is gone, else its state letter and parent.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Alive means present and not a zombie.
fn alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// Poll `/proc` (there is nothing to wait on for a process that is not our child) until `pid`
/// is no longer alive, within the guard.
async fn until_dead(pid: u32, what: &str) {
    let deadline = Instant::now() + GUARD;
    while alive(pid) {
        assert!(Instant::now() < deadline, "{what} (pid {pid}) still alive: {:?}", proc_stat(pid));
        tokio::time::sleep(ms(10)).await;
    }
}

/// Our zombie children: processes whose parent is this test process and which nobody reaped.
fn our_zombies() -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_stat(pid) == Some(('Z', me)))
        .collect()
}

fn quick_restarts() -> RestartConfig {
    RestartConfig { initial_backoff: ms(50), max_backoff: ms(200), ..RestartConfig::default() }
}

#[tokio::test]
async fn a_crash_is_seen_at_once_through_the_exit() {
    let m = monitor();
    let mut events = m.subscribe();
    // A long backoff holds the component in Restarting, so the state cannot be missed.
    let restart = RestartConfig { initial_backoff: Duration::from_secs(30), ..Default::default() };
    let began = Instant::now();
    m.register(Component::process("crash", Command::shell("exit 3")).restart(restart))
        .await
        .unwrap();
    let h = until(&m, "crash", "the crash", |h| h.state == State::Restarting).await;
    let took = began.elapsed();
    assert!(took < Duration::from_secs(2), "the crash took {took:?} to be seen");
    assert_eq!(h.last_exit, Some(Exit::Code(3)));
    assert_eq!(h.restart_count, 1);
    assert_eq!(h.pid, None, "a reaped child has no pid");
    assert!(h.next_restart_at.is_some());
    let e = event_to(&mut events, State::Restarting).await;
    assert_eq!(&*e.component, "crash");
    assert!(e.reason.contains("exited with code 3"), "reason: {}", e.reason);
    assert!(e.reason.contains("restart 1 in 30s"), "reason: {}", e.reason);
}

#[tokio::test]
async fn a_stop_kills_the_whole_process_group_including_grandchildren() {
    let m = monitor();
    let lines = Lines::new();
    let cmd = Command::shell("sleep 1000 & echo $!; wait").output(lines.clone());
    m.register(Component::process("tree", cmd)).await.unwrap();
    let h = state_is(&m, "tree", State::Running).await;
    let child = h.pid.unwrap();
    let grandchild: u32 = lines.wait("with the grandchild's pid", |_| true).await.parse().unwrap();
    assert!(alive(grandchild));
    assert_eq!(proc_stat(grandchild).unwrap().1, child, "sleep is the shell's child");

    m.stop("tree").await.unwrap();
    let h = state_is(&m, "tree", State::Stopped).await;
    assert_eq!(h.last_exit, Some(Exit::Signal(15)), "SIGTERM ended the shell");
    assert!(!alive(child));
    // The grandchild was reparented (to init or a subreaper), which reaps it in its own time.
    until_dead(grandchild, "the grandchild").await;
}

#[tokio::test]
async fn a_child_ignoring_sigterm_is_killed_after_the_grace() {
    let m = monitor();
    let lines = Lines::new();
    let cmd = Command::shell(r#"trap "" TERM; echo trapped; while :; do sleep 0.05; done"#)
        .output(lines.clone());
    m.register(Component::process("stubborn", cmd).stop_timeout(ms(300))).await.unwrap();
    state_is(&m, "stubborn", State::Running).await;
    lines.wait("saying the trap is set", |l| l == "trapped").await;

    let began = Instant::now();
    m.stop("stubborn").await.unwrap();
    let h = state_is(&m, "stubborn", State::Stopped).await;
    let took = began.elapsed();
    assert!(took >= ms(300), "killed after {took:?}, before the 300 ms grace");
    assert!(took < ms(3000), "the kill took {took:?}");
    assert_eq!(h.last_exit, Some(Exit::Signal(9)));
    assert_eq!(h.restart_count, 0, "an operator stop is never restarted");
}

#[tokio::test]
async fn stopped_children_are_reaped_and_no_zombie_remains() {
    let m = monitor();
    let mut pids = Vec::new();
    for i in 0..5 {
        let name = format!("z{i}");
        m.register(Component::process(name.clone(), Command::new("sleep").arg("1000")))
            .await
            .unwrap();
        pids.push(state_is(&m, &name, State::Running).await.pid.unwrap());
    }
    // One exits on its own and is restarted; its first process must be reaped too.
    m.register(
        Component::process("quick", Command::shell("exit 1"))
            .restart(RestartConfig { max_restarts: 2, ..quick_restarts() }),
    )
    .await
    .unwrap();
    state_is(&m, "quick", State::Failed).await;
    for i in 0..5 {
        m.stop(&format!("z{i}")).await.unwrap();
    }
    for i in 0..5 {
        state_is(&m, &format!("z{i}"), State::Stopped).await;
    }
    // Stopped is published only after the exit was reaped: the entries are gone already.
    for pid in pids {
        assert_eq!(proc_stat(pid), None, "pid {pid} left behind");
    }
    // Other tests run in this process at the same time and may have a child that has just
    // exited; wait until there is none rather than demand it at one instant.
    let deadline = Instant::now() + GUARD;
    loop {
        let zombies = our_zombies();
        if zombies.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "zombie children left: {zombies:?}");
        tokio::time::sleep(ms(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_components_run_and_shutdown_leaves_none_alive() {
    let m = monitor();
    for i in 0..100 {
        m.register(Component::process(format!("s{i}"), Command::new("sleep").arg("1000")))
            .await
            .unwrap();
    }
    let mut pids = Vec::new();
    for i in 0..100 {
        pids.push(state_is(&m, &format!("s{i}"), State::Running).await.pid.unwrap());
    }
    assert!(pids.iter().all(|&p| alive(p)));
    let mut unique = pids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 100);

    tokio::time::timeout(GUARD, m.shutdown()).await.expect("shutdown hung").unwrap();
    let left: Vec<u32> = pids.into_iter().filter(|&p| proc_stat(p).is_some()).collect();
    assert!(left.is_empty(), "still present after shutdown: {left:?}");
    for h in m.health_summary() {
        assert!(h.is_settled(), "{} is {}", h.name, h.state);
    }
}

#[tokio::test]
async fn the_output_sink_gets_stdout_and_stderr_lines_in_order() {
    let m = monitor();
    let lines = Lines::new();
    let script = "echo out1; echo err1 >&2; printf 'out2\\r\\n'; echo err2 >&2; \
                  printf 'no newline at the end'";
    let cmd = Command::shell(script).output(lines.clone());
    let policy = RestartConfig { policy: RestartPolicy::OnFailure, ..RestartConfig::default() };
    m.register(Component::process("talker", cmd).restart(policy)).await.unwrap();
    state_is(&m, "talker", State::Stopped).await;
    lines.wait("the last one", |l| l == "no newline at the end").await;
    lines.wait("err2", |l| l == "err2").await;
    assert_eq!(lines.of(Stream::Stdout), ["out1", "out2", "no newline at the end"]);
    assert_eq!(lines.of(Stream::Stderr), ["err1", "err2"]);
    assert_eq!(m.health("talker").unwrap().last_exit, Some(Exit::Code(0)));
}

#[tokio::test]
async fn a_restart_with_no_backoff_spawns_a_new_process_at_once() {
    let m = monitor();
    let restart = RestartConfig { initial_backoff: Duration::ZERO, ..RestartConfig::default() };
    m.register(Component::process("svc", Command::new("sleep").arg("1000")).restart(restart))
        .await
        .unwrap();
    let first = state_is(&m, "svc", State::Running).await;
    let old = first.pid.unwrap();
    // A SIGKILL that hale did not send is a crash.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old as i32), nix::sys::signal::SIGKILL)
        .unwrap();
    let h =
        until(&m, "svc", "a second instance", |h| h.incarnation == 2 && h.state == State::Running)
            .await;
    let new = h.pid.unwrap();
    assert_ne!(new, old);
    assert!(alive(new));
    assert_eq!(proc_stat(old), None, "the old process was reaped");
    assert_eq!(h.last_exit, Some(Exit::Signal(9)));
    assert_eq!(h.restart_count, 1);
    m.shutdown().await.unwrap();
}

/// Run a process component on a thread of its own and let that thread end without stopping
/// anything, as when hale dies; returns the child's pid.
fn spawn_from_a_thread_that_ends(die_with_parent: bool) -> u32 {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let m = monitor();
            let cmd = Command::new("sleep").arg("1000").die_with_parent(die_with_parent);
            m.register(Component::process("orphan", cmd)).await.unwrap();
            let pid = state_is(&m, "orphan", State::Running).await.pid.unwrap();
            // Keep the handle's channel open so the driver never begins a graceful shutdown:
            // the runtime is dropped with the driver still in it.
            std::mem::forget(m);
            pid
        })
    })
    .join()
    .unwrap()
}

/// Reap `pid` if it is our zombie (tokio's orphan queue may beat us to it: that is fine).
fn reap(pid: u32) {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    let _ = waitpid(nix::unistd::Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
}

#[tokio::test]
async fn children_die_with_the_thread_that_spawned_them() {
    let pid = spawn_from_a_thread_that_ends(true);
    until_dead(pid, "the child of an ended thread").await;
    reap(pid);

    // The control: without PR_SET_PDEATHSIG the child outlives its spawner.
    let pid = spawn_from_a_thread_that_ends(false);
    tokio::time::sleep(ms(200)).await;
    let survived = alive(pid);
    let _ =
        nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL);
    until_dead(pid, "the control child").await;
    reap(pid);
    assert!(survived, "die_with_parent(false) still killed the child");
}

#[tokio::test]
async fn tcp_liveness_against_a_real_child_condemns_it_when_it_stops_listening() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    // Listens for about two seconds, then closes the socket and stays alive.
    let script = format!(
        "import socket, time\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port})); s.listen(16)\n\
         time.sleep(2.0); s.close(); time.sleep(1000)\n"
    );
    let address = format!("127.0.0.1:{port}");
    let pids = Arc::new(Mutex::new(Vec::new()));
    let readiness = {
        let pids = pids.clone();
        probe::from_fn(move |ctx| {
            pids.lock().unwrap().push(ctx.pid);
            async move {
                match ctx.pid {
                    Some(pid) if alive(pid) => Ok(format!("pid {pid} alive")),
                    other => Err(ProbeError::new(format!("no live pid: {other:?}"))),
                }
            }
        })
    };
    let c = Component::process("web", Command::new("python3").arg("-c").arg(script))
        .startup(
            Check::new(probe::Tcp::new(address.clone()).unwrap())
                .period(ms(50))
                .failure_threshold(100),
        )
        .liveness(
            Check::new(probe::Tcp::new(address).unwrap()).period(ms(100)).failure_threshold(2),
        )
        .readiness(Check::new(readiness).period(ms(100)))
        .stop_timeout(ms(500))
        .restart(RestartConfig { initial_backoff: Duration::from_secs(30), ..Default::default() });
    let m = monitor();
    let mut events = m.subscribe();
    m.register(c).await.unwrap();

    event_to(&mut events, State::Running).await;
    let h = until(&m, "web", "ready", |h| h.ready).await;
    assert!(h.healthy);
    let pid = h.pid.unwrap();
    assert!(pids.lock().unwrap().iter().all(|p| *p == Some(pid)), "probes saw {pids:?}");

    let e = event_to(&mut events, State::Unhealthy).await;
    assert!(e.reason.starts_with("liveness: 2 consecutive failures"), "reason: {}", e.reason);
    assert!(e.reason.contains("connection refused"), "reason: {}", e.reason);
    let h = state_is(&m, "web", State::Restarting).await;
    assert_eq!(h.last_exit, Some(Exit::Signal(15)), "SIGTERM ended it");
    assert!(h.last_error.unwrap().starts_with("liveness"));
    assert_eq!(proc_stat(pid), None);
}

#[tokio::test]
async fn a_spawn_failure_is_restarted_then_fails_at_the_limit() {
    let m = monitor();
    let mut events = m.subscribe();
    let restart = RestartConfig {
        max_restarts: 2,
        window: Duration::from_secs(60),
        initial_backoff: ms(50),
        ..RestartConfig::default()
    };
    m.register(Component::process("ghost", Command::new("/nonexistent/program")).restart(restart))
        .await
        .unwrap();
    let e = event_to(&mut events, State::Restarting).await;
    assert!(e.reason.contains("spawn"), "reason: {}", e.reason);
    let e = event_to(&mut events, State::Failed).await;
    assert!(e.reason.contains("restart limit"), "reason: {}", e.reason);
    let h = state_is(&m, "ghost", State::Failed).await;
    let error = h.last_error.unwrap();
    assert!(error.contains("spawn") && error.contains("/nonexistent/program"), "{error}");
    assert_eq!(h.restart_count, 2);
    assert_eq!(h.incarnation, 3);
    assert_eq!(h.pid, None);
}
