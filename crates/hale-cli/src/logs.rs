//! Component output: each line to `state_dir/logs/NAME.log` with a timestamp and its stream,
//! rotated by size, and to the foreground with the component's name in front; and the
//! `hale logs` reader.
//!
//! Each line is written with one `write` call as soon as it arrives, so a killed hale loses
//! nothing it had received, and lines are never split or interleaved. Rotation renames
//! `NAME.log` to `NAME.log.1` (shifting older ones up to `log_keep`) once the file passes
//! `log_max_size`, between lines.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hale::{OutputSink, Stream};

/// Where one component's output goes.
pub struct ComponentLog {
    file: Mutex<Rotating>,
    foreground: Option<Foreground>,
    extra: Vec<Arc<dyn OutputSink>>,
}

/// Prints `name | line` to the daemon's stdout.
#[derive(Clone)]
pub struct Foreground {
    /// The name column, already padded and colored.
    pub prefix: String,
}

struct Rotating {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    keep: u32,
}

impl Rotating {
    fn open(path: PathBuf, max_size: u64, keep: u32) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Rotating { path, file: Some(file), size, max_size, keep })
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate()?;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                self.file.insert(OpenOptions::new().create(true).append(true).open(&self.path)?)
            }
        };
        file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
            fs::remove_file(numbered(self.keep)).or_else(ignore_missing)?;
            for n in (1..self.keep).rev() {
                fs::rename(numbered(n), numbered(n + 1)).or_else(ignore_missing)?;
            }
            fs::rename(&self.path, numbered(1)).or_else(ignore_missing)?;
        }
        self.file = Some(OpenOptions::new().create(true).append(true).open(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) }
}

/// The log file of `name` under `state_dir`.
pub fn log_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("logs").join(format!("{name}.log"))
}

impl ComponentLog {
    /// Open (append) `state_dir/logs/NAME.log`.
    pub fn open(
        state_dir: &Path,
        name: &str,
        max_size: u64,
        keep: u32,
        foreground: Option<Foreground>,
    ) -> io::Result<Self> {
        let file = Rotating::open(log_path(state_dir, name), max_size, keep)?;
        Ok(ComponentLog { file: Mutex::new(file), foreground, extra: Vec::new() })
    }

    /// Also hand every line to `sink` (a log check).
    pub fn also(&mut self, sink: Arc<dyn OutputSink>) {
        self.extra.push(sink);
    }
}

impl OutputSink for ComponentLog {
    fn line(&self, component: &str, stream: Stream, line: &[u8]) {
        let ts = humantime::format_rfc3339_millis(SystemTime::now());
        let mut record = Vec::with_capacity(line.len() + 40);
        let _ = write!(record, "{ts} {} ", stream.as_str());
        // Control bytes other than tab would break the one-record-a-line format: escape them.
        for &b in line {
            if b < 0x20 && b != b'\t' {
                let _ = write!(record, "\\x{b:02x}");
            } else {
                record.push(b);
            }
        }
        record.push(b'\n');
        if let Ok(mut f) = self.file.lock()
            && let Err(e) = f.write_line(&record)
        {
            tracing::warn!(component, "writing the log file: {e}");
        }
        if let Some(fg) = &self.foreground {
            let mut out = io::stdout().lock();
            let _ = out.write_all(fg.prefix.as_bytes());
            let _ = out.write_all(&record[ts.to_string().len() + stream.as_str().len() + 2..]);
        }
        for sink in &self.extra {
            sink.line(component, stream, line);
        }
    }
}

/// One parsed record of a log file.
pub struct Record {
    /// Its timestamp text.
    pub at: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The line itself.
    pub text: String,
}

fn parse(line: &str) -> Record {
    let mut parts = line.splitn(3, ' ');
    let at = parts.next().unwrap_or_default().to_owned();
    let stream = parts.next().unwrap_or_default().to_owned();
    let text = parts.next().unwrap_or_default().to_owned();
    Record { at, stream, text }
}

/// The last `n` records of `name` (all when `n` is `None`), oldest first, from the rotated
/// files and the current one.
pub fn tail(state_dir: &Path, name: &str, n: Option<usize>) -> io::Result<Vec<Record>> {
    let path = log_path(state_dir, name);
    if !path.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no output captured for {name:?} (looked in {})", path.display()),
        ));
    }
    let mut files = vec![path.clone()];
    for k in 1..1000 {
        let p = PathBuf::from(format!("{}.{k}", path.display()));
        if !p.exists() {
            break;
        }
        files.push(p);
    }
    let mut out: Vec<Record> = Vec::new();
    // Newest file first; stop once enough lines were collected.
    for f in &files {
        let text = fs::read(f)?;
        let text = String::from_utf8_lossy(&text);
        let mut recs: Vec<Record> = text.lines().map(parse).collect();
        recs.append(&mut out);
        out = recs;
        if n.is_some_and(|n| out.len() >= n) {
            break;
        }
    }
    if let Some(n) = n {
        let skip = out.len().saturating_sub(n);
        out.drain(..skip);
    }
    Ok(out)
}

/// Follow `name`'s log file from its current end, calling `each` for every new record, until
/// `each` returns false. Survives rotation: when `NAME.log` is renamed away, the rest of the
/// old file is read before the new one, so no line is skipped.
pub fn follow(
    state_dir: &Path,
    name: &str,
    mut each: impl FnMut(Record) -> bool,
) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let path = log_path(state_dir, name);
    let mut file = File::open(&path)?;
    let mut pos = file.seek(SeekFrom::End(0))?;
    let mut partial = String::new();
    loop {
        if !read_from(&mut file, &mut pos, &mut partial, &mut each)? {
            return Ok(());
        }
        let current = fs::metadata(&path).ok();
        let ours = file.metadata()?;
        match current {
            Some(m) if m.ino() != ours.ino() || m.dev() != ours.dev() => {
                // Rotated: drain what was written to the old file before the rename, then
                // follow the new file from its start.
                if !read_from(&mut file, &mut pos, &mut partial, &mut each)? {
                    return Ok(());
                }
                file = File::open(&path)?;
                pos = 0;
                partial.clear();
                continue;
            }
            Some(m) if m.len() < pos => pos = 0, // truncated in place
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Read complete lines from `pos` to the end of `file`; false when `each` asked to stop.
fn read_from(
    file: &mut File,
    pos: &mut u64,
    partial: &mut String,
    each: &mut impl FnMut(Record) -> bool,
) -> io::Result<bool> {
    file.seek(SeekFrom::Start(*pos))?;
    let mut reader = BufReader::new(&*file);
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            return Ok(true);
        }
        *pos += n as u64;
        partial.push_str(&line);
        if partial.ends_with('\n') {
            let rec = parse(partial.trim_end_matches('\n'));
            partial.clear();
            if !each(rec) {
                return Ok(false);
            }
        }
    }
}
