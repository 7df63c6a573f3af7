//! Never a process left behind, even across a killed daemon: the daemon records each live
//! child (name, pid, process start time) in `state_dir/children`, and a daemon starting on the
//! same state_dir ends the process groups of any recorded child that still runs.
//!
//! The start time (field 22 of `/proc/PID/stat`, in clock ticks since boot) makes a reused PID
//! harmless: a record only matches the very process it was written for.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// One recorded child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The component.
    pub name: String,
    /// Its main process (and process group).
    pub pid: u32,
    /// Its start time in clock ticks since boot.
    pub start: u64,
}

/// The record file under `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("children")
}

/// The start time of `pid`, if it exists and is not a zombie.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X") | Some(&"x")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Replace the record file with `records` (atomically: write, then rename).
pub fn write(state_dir: &Path, records: &[Record]) -> io::Result<()> {
    let tmp = state_dir.join("children.tmp");
    let mut f = fs::File::create(&tmp)?;
    for r in records {
        writeln!(f, "{} {} {}", r.pid, r.start, r.name)?;
    }
    f.sync_data()?;
    fs::rename(tmp, path(state_dir))
}

/// Read the record file; a missing file is no records, a garbled line is skipped.
pub fn read(state_dir: &Path) -> Vec<Record> {
    let text = fs::read_to_string(path(state_dir)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            let pid = it.next()?.parse().ok()?;
            let start = it.next()?.parse().ok()?;
            let name = it.next()?.to_owned();
            Some(Record { name, pid, start })
        })
        .collect()
}

/// SIGKILL the process group of every recorded child; returns the records acted on. The
/// record file is removed afterwards.
///
/// A record is skipped only when its PID is alive with another start time: the PID was
/// reused, which Linux does only once the old process group has no member left. When the
/// leader is gone (killed by `PR_SET_PDEATHSIG` with the old daemon) its group may still hold
/// grandchildren, and since the group id cannot be reused while they live, they are ours.
pub fn end(state_dir: &Path) -> Vec<Record> {
    let mut ended = Vec::new();
    for r in read(state_dir) {
        if r.pid <= 1 {
            continue;
        }
        if start_time(r.pid).is_some_and(|t| t != r.start) {
            continue; // the PID now belongs to another process
        }
        let Ok(raw) = i32::try_from(r.pid) else { continue };
        let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
        let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        ended.push(r);
    }
    let _ = fs::remove_file(path(state_dir));
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_only_matches_the_process_it_was_written_for() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep").arg("100").spawn().unwrap();
        let pid = child.id();
        let start = start_time(pid).expect("a running child has a start time");
        // A record with the right pid but another start time is a reused PID: left alone.
        write(dir.path(), &[Record { name: "x".into(), pid, start: start + 1 }]).unwrap();
        assert!(end(dir.path()).is_empty());
        assert!(start_time(pid).is_some(), "the unrelated process must survive");
        // The exact record ends it (and its group).
        write(dir.path(), &[Record { name: "x".into(), pid, start }]).unwrap();
        assert_eq!(end(dir.path()).len(), 1);
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(!path(dir.path()).exists());
    }

    #[test]
    fn grandchildren_of_a_dead_leader_are_ended_with_its_group() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        // A leader in its own group that starts a grandchild, then is killed (as PDEATHSIG would).
        let mut leader = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("sleep 100 & echo $! > {}; wait", pidfile.display()))
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = leader.id();
        let start = start_time(pid).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let grandchild: u32 = loop {
            if let Some(p) = fs::read_to_string(&pidfile).ok().and_then(|t| t.trim().parse().ok()) {
                break p;
            }
            assert!(std::time::Instant::now() < deadline, "no grandchild pid");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        write(dir.path(), &[Record { name: "x".into(), pid, start }]).unwrap();
        leader.kill().unwrap();
        leader.wait().unwrap();
        assert!(start_time(grandchild).is_some());
        assert_eq!(end(dir.path()).len(), 1);
        // The grandchild was reparented to init (or a subreaper), which reaps it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while start_time(grandchild).is_some() {
            assert!(std::time::Instant::now() < deadline, "the grandchild survived");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn garbled_records_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(path(dir.path()), "not a record\n12 x\n1 5 init\n").unwrap();
        assert_eq!(read(dir.path()).len(), 1);
        assert!(end(dir.path()).is_empty(), "pid 1 is never signalled");
    }
}
