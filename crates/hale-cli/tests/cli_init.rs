//! hale as a subreaper and as PID 1 (issue 6 items 4 and 7): orphaned grandchildren are
//! re-parented to the daemon and reaped by it, never left as zombies; and in a PID namespace of
//! its own (`unshare --pid`), hale runs as PID 1, says so, reaps orphans, and stops everything
//! on SIGTERM with exit 0. Real processes on real time, with guard timeouts.

mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Hale, wait_until};

/// Children of `pid` and their states, from /proc.
fn children_of(pid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let (Some(state), Some(ppid)) = (fields.first(), fields.get(1)) else { continue };
        if ppid.parse::<u32>().ok() == Some(pid) {
            out.push((p, state.chars().next().unwrap_or('?')));
        }
    }
    out
}

#[test]
fn orphaned_grandchildren_are_reparented_to_hale_and_reaped() {
    let mut h = Hale::new();
    // Each `( ... &)` subshell exits at once, orphaning a `sleep 0.4` that then exits.
    h.write_config(
        "[components.spawner]\n\
         shell = \"for i in 1 2 3; do (sleep 0.4 &) ; done; exec sleep 100\"\n",
    );
    let daemon = h.up();
    let main = h.wait_state("spawner", "running", Duration::from_secs(10))["pid"]
        .as_u64()
        .expect("a pid") as u32;
    let mut orphans_seen = HashSet::new();
    let start = Instant::now();
    wait_until(Duration::from_secs(8), "every orphan reaped by hale", || {
        let kids = children_of(daemon);
        for (pid, _) in &kids {
            if *pid != main {
                orphans_seen.insert(*pid);
            }
        }
        let zombies = kids.iter().filter(|(_, s)| *s == 'Z').count();
        (start.elapsed() > Duration::from_millis(600) && zombies == 0 && !orphans_seen.is_empty())
            .then_some(())
    });
    assert!(
        orphans_seen.len() >= 3,
        "the orphans should have been re-parented to hale (subreaper), saw {orphans_seen:?}"
    );
    let left: Vec<u32> =
        children_of(daemon).into_iter().map(|(p, _)| p).filter(|p| *p != main).collect();
    assert!(left.is_empty(), "children of hale besides the component: {left:?}");
}

#[test]
fn in_its_own_pid_namespace_hale_runs_as_pid_1_reaps_orphans_and_stops_on_sigterm() {
    let unshare =
        ["/usr/bin/unshare", "/bin/unshare"].into_iter().find(|p| fs::metadata(p).is_ok());
    let Some(unshare) = unshare else {
        eprintln!("skipped: no unshare(1) on this machine");
        return;
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: creating a PID namespace needs root");
        return;
    }
    let h = Hale::new();
    h.write_config(
        "[components.spawner]\n\
         shell = \"for i in 1 2 3; do (sleep 0.3 &) ; done; exec sleep 100\"\n",
    );
    let out_path = h.path("pid1.out");
    let out = fs::File::create(&out_path).unwrap();
    let mut ns = Command::new(unshare)
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(common::hale_bin())
        .arg("up")
        .arg("-c")
        .arg(h.path("hale.toml"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("unshare");
    // hale is the only child of `unshare --fork`.
    let hale = wait_until(Duration::from_secs(10), "hale inside the namespace", || {
        children_of(ns.id()).first().map(|(p, _)| *p)
    });
    wait_until(Duration::from_secs(10), "hale to say it is PID 1", || {
        fs::read_to_string(&out_path).ok().filter(|t| t.contains("running as PID 1")).map(|_| ())
    });
    wait_until(
        Duration::from_secs(10),
        "the component to run and its orphans to be reaped",
        || {
            let kids = children_of(hale);
            (kids.len() == 1 && kids[0].1 != 'Z').then_some(())
        },
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hale as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = ns.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = ns.kill();
            panic!(
                "hale as PID 1 did not stop on SIGTERM:\n{}",
                fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = fs::read_to_string(&out_path).unwrap_or_default();
    assert!(status.success(), "exit {status:?}:\n{text}");
    assert!(text.contains("[hale] stopped"), "{text}");
}
