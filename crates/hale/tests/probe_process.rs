//! The `process` check against real child processes, read through `/proc`.
//!
//! Covers the component's own instance (alive, a zombie killed but not reaped, reaped, none at
//! all) and pidfiles: alive, a dead process named, a pidfile moving to another process (adopted),
//! missing, empty and garbage files. A reused process id cannot be produced on demand, so its
//! detection is unit-tested in the module with a made-up start time.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hale::probe::{Probe, ProbeContext, ProbeKind, Process};

/// Upper bound for anything a test waits for; reached only when something is broken.
const GUARD: Duration = Duration::from_secs(10);

fn ctx(pid: Option<u32>) -> ProbeContext {
    ProbeContext {
        component: Arc::from("test"),
        kind: ProbeKind::Liveness,
        incarnation: 1,
        pid,
        timeout: GUARD,
    }
}

async fn check(probe: &Process, pid: Option<u32>) -> hale::probe::CheckResult {
    tokio::time::timeout(GUARD, probe.check(ctx(pid))).await.expect("the check hung")
}

/// A `sleep` child that is killed and reaped when dropped.
struct Sleeper(Child);

impl Sleeper {
    fn spawn() -> Self {
        Self(Command::new("sleep").arg("100").spawn().expect("could not spawn sleep"))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL without reaping, then wait until the kernel shows it as a zombie.
    fn kill_unreaped(&mut self) {
        self.0.kill().unwrap();
        let path = format!("/proc/{}/stat", self.pid());
        let deadline = Instant::now() + GUARD;
        loop {
            let stat = std::fs::read_to_string(&path).unwrap();
            let state = stat.rsplit_once(')').unwrap().1.split_whitespace().next().unwrap();
            if state == "Z" {
                return;
            }
            assert!(Instant::now() < deadline, "never became a zombie: {stat}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn reap(&mut self) {
        let _ = self.0.kill();
        self.0.wait().unwrap();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn own_instance_alive_zombie_and_gone() {
    let probe = Process::own();
    let mut child = Sleeper::spawn();
    let pid = child.pid();
    let ok = check(&probe, Some(pid)).await.unwrap();
    // Just spawned, it may still be running towards its sleep.
    assert!(ok.starts_with(&format!("process {pid}: ")), "{ok}");

    child.kill_unreaped();
    let err = check(&probe, Some(pid)).await.unwrap_err();
    assert_eq!(err.reason, format!("process {pid}: zombie"));

    child.reap();
    let err = check(&probe, Some(pid)).await.unwrap_err();
    assert_eq!(err.reason, format!("process {pid}: not running"));
}

#[tokio::test]
async fn own_instance_sleeping_is_named() {
    let child = Sleeper::spawn();
    let pid = child.pid();
    let deadline = Instant::now() + GUARD;
    // `sleep` reaches its sleep within milliseconds of being spawned.
    loop {
        let ok = check(&Process::own(), Some(pid)).await.unwrap();
        if ok == format!("process {pid}: S (sleeping)") {
            break;
        }
        assert!(Instant::now() < deadline, "never asleep: {ok}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn own_without_an_instance() {
    let err = check(&Process::own(), None).await.unwrap_err();
    assert_eq!(err.reason, "process: no running instance");
    assert_eq!(Process::own().describe(), "process");
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn a_pidfile_naming_a_live_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.pid");
    let child = Sleeper::spawn();
    let pid = child.pid();
    write(&path, &format!("{pid}\n"));
    let probe = Process::pidfile(&path).unwrap();
    assert_eq!(probe.describe(), format!("process pidfile {}", path.display()));
    assert_eq!(probe.pidfile_path(), Some(path.as_path()));
    // The driver's pid is for process components; a pidfile check ignores it.
    for _ in 0..3 {
        let ok = check(&probe, Some(1)).await.unwrap();
        assert!(ok.starts_with(&format!("process {pid} (pidfile {}): ", path.display())), "{ok}");
    }
}

#[tokio::test]
async fn a_pidfile_moving_to_another_process_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.pid");
    let probe = Process::pidfile(&path).unwrap();
    let label = |pid: u32| format!("process {pid} (pidfile {})", path.display());

    let mut first = Sleeper::spawn();
    let a = first.pid();
    write(&path, &format!("{a}\n"));
    assert!(check(&probe, None).await.unwrap().starts_with(&label(a)));

    // A dies; the file still names it.
    first.kill_unreaped();
    assert_eq!(check(&probe, None).await.unwrap_err().reason, format!("{}: zombie", label(a)));
    first.reap();
    assert_eq!(check(&probe, None).await.unwrap_err().reason, format!("{}: not running", label(a)));

    // B takes over and rewrites the file: B is adopted.
    let second = Sleeper::spawn();
    let b = second.pid();
    write(&path, &format!("{b}\n"));
    for _ in 0..2 {
        assert!(check(&probe, None).await.unwrap().starts_with(&label(b)));
    }
    // A clone shares what was seen.
    assert!(check(&probe.clone(), None).await.unwrap().starts_with(&label(b)));
}

#[tokio::test]
async fn unusable_pidfiles_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.pid");
    let probe = Process::pidfile(&path).unwrap();
    let reason = || async { check(&probe, None).await.unwrap_err().reason };
    let label = format!("process pidfile {}", path.display());

    assert_eq!(reason().await, format!("{label}: does not exist"));
    write(&path, "");
    assert_eq!(reason().await, format!("{label}: empty"));
    write(&path, "  \n");
    assert_eq!(reason().await, format!("{label}: empty"));
    write(&path, "not-a-pid\n");
    assert_eq!(reason().await, format!(r#"{label}: "not-a-pid" is not a process id"#));
    std::fs::write(&path, [0xff, 0xfe, b'\n']).unwrap();
    assert_eq!(reason().await, format!("{label}: \"\u{fffd}\u{fffd}\" is not a process id"));
    write(&path, "0\n");
    assert_eq!(reason().await, format!(r#"{label}: "0" is not a process id"#));

    // A directory where the file should be.
    let as_dir = dir.path().join("dir.pid");
    std::fs::create_dir(&as_dir).unwrap();
    let err = check(&Process::pidfile(&as_dir).unwrap(), None).await.unwrap_err();
    assert_eq!(
        err.reason,
        format!("process pidfile {}: cannot read: is a directory", as_dir.display())
    );

    assert!(Process::pidfile("").is_err());
}
