//! The `exec` and `sh` checks against real processes, on real time.
//!
//! Covers exit statuses, a program that cannot start, output capture and its cut at 4096 bytes,
//! and cancellation: a check whose future is dropped must take its whole process group with it.
//! It does not test scheduling or timeouts applied by the driver: the tests drop the future
//! themselves, as the driver would.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hale::probe::{Exec, Probe, ProbeContext, ProbeKind};

/// Upper bound for anything a test waits for; reached only when something is broken.
const GUARD: Duration = Duration::from_secs(10);

fn ctx() -> ProbeContext {
    ProbeContext {
        component: Arc::from("test"),
        kind: ProbeKind::Liveness,
        incarnation: 1,
        pid: None,
        timeout: GUARD,
    }
}

async fn check(probe: &Exec) -> hale::probe::CheckResult {
    tokio::time::timeout(GUARD, probe.check(ctx())).await.expect("the check hung")
}

#[tokio::test]
async fn exit_zero_is_healthy_and_keeps_both_streams_in_order() {
    assert_eq!(check(&Exec::new(["true"]).unwrap()).await, Ok(String::new()));
    let probe = Exec::sh("echo one; echo two >&2; echo three").unwrap();
    assert_eq!(check(&probe).await, Ok("one\ntwo\nthree\n".to_owned()));
}

#[tokio::test]
async fn nonzero_exit_is_a_failure_with_its_output() {
    let err = check(&Exec::new(["false"]).unwrap()).await.unwrap_err();
    assert_eq!(err.reason, r#"exec ["false"]: exited with code 1"#);
    assert_eq!(err.output, "");

    let err = check(&Exec::sh("echo broken >&2; exit 3").unwrap()).await.unwrap_err();
    assert_eq!(err.reason, r#"sh "echo broken >&2; exit 3": exited with code 3"#);
    assert_eq!(err.output, "broken\n");
}

#[tokio::test]
async fn death_by_signal_is_named() {
    let err = check(&Exec::sh("kill -9 $$").unwrap()).await.unwrap_err();
    assert_eq!(err.reason, r#"sh "kill -9 $$": killed by signal 9"#);
}

#[tokio::test]
async fn a_missing_program_could_not_start() {
    let err = check(&Exec::new(["hale-test-no-such-program"]).unwrap()).await.unwrap_err();
    assert_eq!(
        err.reason,
        r#"exec ["hale-test-no-such-program"]: could not start: No such file or directory"#
    );
    let err = check(&Exec::new(["/nonexistent/nope", "arg"]).unwrap()).await.unwrap_err();
    assert_eq!(
        err.reason,
        r#"exec ["/nonexistent/nope", "arg"]: could not start: No such file or directory"#
    );
}

#[tokio::test]
async fn output_is_cut_at_4096_bytes() {
    // 100 000 bytes: far more than a pipe holds, so the check must keep reading while it waits.
    let probe = Exec::sh("head -c 100000 /dev/zero | tr '\\0' a; exit 1").unwrap();
    let err = check(&probe).await.unwrap_err();
    assert_eq!(err.output.len(), 4096 + 3);
    assert!(err.output.ends_with("a..."));
    assert!(err.output[..4096].bytes().all(|b| b == b'a'));

    let ok = check(&Exec::sh("head -c 4096 /dev/zero | tr '\\0' b").unwrap()).await.unwrap();
    assert_eq!(ok, "b".repeat(4096), "exactly 4096 bytes are not cut");
}

#[tokio::test]
async fn empty_commands_are_refused() {
    assert!(Exec::new(Vec::<String>::new()).is_err());
    assert!(Exec::new([""]).is_err());
    assert!(Exec::sh("  ").is_err());
}

#[tokio::test]
async fn describe_names_the_command() {
    assert_eq!(Exec::new(["pg_isready", "-q"]).unwrap().describe(), r#"exec ["pg_isready", "-q"]"#);
    assert_eq!(Exec::sh("curl -f x | grep ok").unwrap().describe(), r#"sh "curl -f x | grep ok""#);
    assert_eq!(Exec::sh("true").unwrap().argv(), ["/bin/sh", "-c", "true"]);
}

#[tokio::test]
async fn a_dropped_check_kills_its_process_and_grandchild() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "echo $$ > {dir}/child.pid; sleep 100 & echo $! > {dir}/grandchild.pid; sleep 100",
        dir = dir.path().display()
    );
    let probe = Exec::sh(script).unwrap();
    let mut check = probe.check(ctx());

    // Drive the check until the shell has recorded both pids, then drop it, as the driver's
    // timeout does.
    let (child, grandchild) = tokio::time::timeout(GUARD, async {
        tokio::select! {
            result = &mut check => panic!("the check ended by itself: {result:?}"),
            pids = read_pids(dir.path()) => pids,
        }
    })
    .await
    .expect("the shell never wrote its pids");
    assert!(is_running(child) && is_running(grandchild));
    drop(check);

    wait_until(|| !exists(child)).await.expect("the check's process was not killed and reaped");
    wait_until(|| !is_running(grandchild)).await.expect("the grandchild was not killed");
}

#[tokio::test]
async fn processes_left_behind_by_a_finished_check_are_killed() {
    let dir = tempfile::tempdir().unwrap();
    // The background sleep also holds the output pipe open: the check must not wait for it.
    let script = format!("sleep 100 & echo $! > {}/left.pid; echo done", dir.path().display());
    let started = std::time::Instant::now();
    let result = check(&Exec::sh(script).unwrap()).await;
    assert_eq!(result, Ok("done\n".to_owned()));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    let left = read_pid(&dir.path().join("left.pid")).expect("no pid written");
    wait_until(|| !is_running(left)).await.expect("the background process was left running");
}

/// Waits, up to [`GUARD`], for the two pid files the script writes.
async fn read_pids(dir: &Path) -> (i32, i32) {
    loop {
        if let (Some(child), Some(grandchild)) =
            (read_pid(&dir.join("child.pid")), read_pid(&dir.join("grandchild.pid")))
        {
            return (child, grandchild);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A pid from a file, once the line is complete (the shell creates the file before writing).
fn read_pid(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.strip_suffix('\n')?.trim().parse().ok()
}

/// Polls `condition` until it holds, for at most [`GUARD`].
async fn wait_until(mut condition: impl FnMut() -> bool) -> Result<(), ()> {
    tokio::time::timeout(GUARD, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .map_err(|_| ())
}

fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Alive and not a zombie. An orphaned grandchild is reparented to PID 1, which may be slow to
/// reap it (or not reap at all in a container), so a zombie counts as gone: it runs nothing.
fn is_running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name, which is in parentheses and may contain spaces.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}
