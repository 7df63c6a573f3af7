//! State transitions, kept in `state_dir/events.jsonl` so that they outlive the daemon: one
//! JSON object a line, appended as each transition happens; and the `hale events` reader.
//!
//! The file is bounded: past [`MAX_EVENTS_FILE`] bytes it becomes `events.jsonl.1` (replacing
//! the previous one) and a new file starts, so at most twice that is kept.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

/// Size at which the events file is rotated.
pub const MAX_EVENTS_FILE: u64 = 4 * 1024 * 1024;

/// Appends transitions to the events file.
pub struct EventLog {
    path: PathBuf,
    file: File,
    size: u64,
}

/// The events file under `state_dir`.
pub fn events_path(state_dir: &Path) -> PathBuf {
    state_dir.join("events.jsonl")
}

/// One transition as the JSON object of CONTRACT.md.
pub fn to_json(e: &hale::Event) -> Value {
    json!({
        "at": humantime::format_rfc3339_millis(e.at).to_string(),
        "component": &*e.component,
        "from": e.from.as_str(),
        "to": e.to.as_str(),
        "reason": e.reason,
        "incarnation": e.incarnation,
    })
}

impl EventLog {
    /// Open (append) the events file.
    pub fn open(state_dir: &Path) -> io::Result<Self> {
        let path = events_path(state_dir);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(EventLog { path, file, size })
    }

    /// Append one transition.
    pub fn append(&mut self, e: &hale::Event) -> io::Result<()> {
        let mut line = to_json(e).to_string();
        line.push('\n');
        if self.size + line.len() as u64 > MAX_EVENTS_FILE {
            let old = PathBuf::from(format!("{}.1", self.path.display()));
            fs::rename(&self.path, old)?;
            self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(line.as_bytes())?;
        self.size += line.len() as u64;
        Ok(())
    }
}

/// Every kept event, oldest first.
pub fn read_all(state_dir: &Path) -> io::Result<Vec<Value>> {
    let path = events_path(state_dir);
    let mut out = Vec::new();
    for p in [PathBuf::from(format!("{}.1", path.display())), path] {
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    Ok(out)
}

/// One event as a line for people.
pub fn human(e: &Value) -> String {
    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    format!(
        "{}  {:<16} {:>10} -> {:<10} {}",
        s("at"),
        s("component"),
        s("from"),
        s("to"),
        s("reason")
    )
}

/// Follow the events file from its end, calling `each` for every new event.
pub fn follow(state_dir: &Path, mut each: impl FnMut(&Value)) -> io::Result<()> {
    let path = events_path(state_dir);
    let mut file = OpenOptions::new().create(true).append(true).read(true).open(&path)?;
    let mut pos = file.seek(SeekFrom::End(0))?;
    loop {
        let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            file = File::open(&path)?;
            pos = 0;
        }
        file.seek(SeekFrom::Start(pos))?;
        let mut reader = BufReader::new(&file);
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 {
            if !line.ends_with('\n') {
                break;
            }
            pos += line.len() as u64;
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                each(&v);
            }
            line.clear();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
