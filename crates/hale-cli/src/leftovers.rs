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

/// Replace the record file with `records` (atomically: write, then rename). No fsync: the
/// file must outlive the daemon's process, not the machine (after a crash of the machine no
/// child is left to end).
pub fn write(state_dir: &Path, records: &[Record]) -> io::Result<()> {
    let tmp = state_dir.join("children.tmp");
    let mut text = String::new();
    for r in records {
        text.push_str(&format!("{} {} {}\n", r.pid, r.start, r.name));
    }
    fs::write(&tmp, text)?;
    fs::rename(tmp, path(state_dir))
}

/// Keeps `state_dir/children` current at O(1) per change: a new child appends one line, and the
/// file is rewritten with only the live records once stale lines outnumber them. Stale lines
/// are harmless: [`end`] acts on a record only while its PID still has the recorded start time
/// (or is gone, leaving at most its own group).
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    live: std::collections::HashMap<String, Record>,
    lines: usize,
}

impl Recorder {
    /// A recorder that starts with an empty file.
    pub fn new(state_dir: &Path) -> io::Result<Self> {
        write(state_dir, &[])?;
        Ok(Recorder { dir: state_dir.to_path_buf(), live: Default::default(), lines: 0 })
    }

    /// `name`'s main process is now `pid` (or none).
    pub fn update(&mut self, name: &str, pid: Option<u32>) -> io::Result<()> {
        let Some(pid) = pid else {
            self.live.remove(name);
            return Ok(());
        };
        if self.live.get(name).is_some_and(|r| r.pid == pid) {
            return Ok(());
        }
        let Some(start) = start_time(pid) else { return Ok(()) }; // already gone
        let record = Record { name: name.to_owned(), pid, start };
        if self.lines >= 2 * self.live.len() + 64 {
            self.live.insert(name.to_owned(), record);
            let mut all: Vec<Record> = self.live.values().cloned().collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            write(&self.dir, &all)?;
            self.lines = all.len();
            return Ok(());
        }
        let mut f = fs::OpenOptions::new().append(true).create(true).open(path(&self.dir))?;
        f.write_all(format!("{} {} {}\n", record.pid, record.start, record.name).as_bytes())?;
        self.live.insert(name.to_owned(), record);
        self.lines += 1;
        Ok(())
    }
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

    #[test]
    fn the_recorder_appends_new_children_and_compacts_stale_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut children: Vec<std::process::Child> = (0..3)
            .map(|_| std::process::Command::new("sleep").arg("100").spawn().unwrap())
            .collect();
        let mut rec = Recorder::new(dir.path()).unwrap();
        assert!(read(dir.path()).is_empty(), "a fresh recorder starts an empty file");
        rec.update("a", Some(children[0].id())).unwrap();
        rec.update("a", Some(children[0].id())).unwrap(); // unchanged: nothing written
        rec.update("b", Some(children[1].id())).unwrap();
        let names: Vec<String> = read(dir.path()).into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["a", "b"]);
        // Restarts append; stale lines pile up until they outnumber the live ones, then the
        // file is rewritten with the live records only.
        for _ in 0..100 {
            rec.update("a", None).unwrap();
            rec.update("a", Some(children[0].id())).unwrap();
            rec.update("a", Some(children[2].id())).unwrap();
        }
        let records = read(dir.path());
        assert!(records.len() <= 2 * 2 + 64 + 1, "{} lines", records.len());
        let last_a = records.iter().rev().find(|r| r.name == "a").unwrap();
        assert_eq!(last_a.pid, children[2].id(), "the newest record of a is its live child");
        assert!(records.iter().any(|r| r.name == "b" && r.pid == children[1].id()));
        // A daemon starting after this one ends every recorded child that still runs.
        let ended = end(dir.path());
        assert!(ended.len() >= 3, "{ended:?}");
        for c in &mut children {
            assert!(!c.wait().unwrap().success());
        }
    }
}
