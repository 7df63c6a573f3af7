//! `hale top`: a live terminal view of the daemon (ratatui over crossterm). One row per
//! component, colored by state; a status line with the daemon's socket, the time of the last
//! refresh and the result of the last action; keys act on the selected component; `l` opens a
//! pane with the tail of its log file.
//!
//! Three parts, so that the screen and the keys are tested without a terminal or a daemon:
//! [`Model`] is everything on screen, [`draw`] renders a model and nothing else, [`on_key`]
//! turns a key into a model change and at most one [`Action`]. The I/O runs on one worker
//! thread with its own small runtime: it polls `GET /v1/status` every 500 ms (each request
//! bounded by a timeout), reads the log tail, sends the operator's actions, and hands every
//! result to the UI thread as an [`Update`]. The UI thread never waits for the daemon, so a
//! slow or missing daemon shows as "daemon not reachable" while the keys keep working.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, HighlightSpacing, Paragraph, Row, Table, TableState};
use serde_json::Value;
use tokio::sync::{Notify, mpsc as tmpsc, watch};

use crate::client::{Target, encode};
use crate::logs;

/// How often the status is polled.
const REFRESH: Duration = Duration::from_millis(500);
/// A status request that takes longer than this counts as "daemon not reachable".
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// An action that takes longer than this is reported as unanswered.
const ACT_TIMEOUT: Duration = Duration::from_secs(15);
/// Lines in the log pane.
const LOG_LINES: usize = 20;
/// At most this much of the end of each log file is read for the pane.
const TAIL_BYTES: u64 = 64 * 1024;
/// The key help, at the bottom of the table.
const HELP: &str = " ↑↓/jk select · r restart · s stop · S/t start · x reset · l log · q quit ";
/// The mark in front of the selected row.
const MARK: &str = "▶ ";

// ------------------------------------------------------------------------------ the model

/// One component's row, from its CONTRACT.md status object.
#[derive(Debug, Clone, PartialEq)]
pub struct Comp {
    name: String,
    state: String,
    ready: bool,
    pid: Option<u64>,
    uptime_ms: Option<u64>,
    restart_count: u64,
    incarnation: u64,
    next_restart_in_ms: Option<u64>,
    /// `waiting_for`, else the last error unless healthy, else the status text.
    info: String,
}

impl Comp {
    fn from_json(c: &Value) -> Comp {
        let text = |k: &str| c[k].as_str().map(str::to_owned);
        let info = text("waiting_for")
            .or_else(|| if c["healthy"] == true { None } else { text("last_error") })
            .or_else(|| text("status_text"))
            .unwrap_or_default();
        Comp {
            name: text("name").unwrap_or_else(|| "?".into()),
            state: text("state").unwrap_or_else(|| "?".into()),
            ready: c["ready"] == true,
            pid: c["pid"].as_u64(),
            uptime_ms: c["uptime_ms"].as_u64(),
            restart_count: c["restart_count"].as_u64().unwrap_or(0),
            incarnation: c["incarnation"].as_u64().unwrap_or(0),
            next_restart_in_ms: c["next_restart_in_ms"].as_u64(),
            info: info.lines().next().unwrap_or("").to_owned(),
        }
    }
}

/// One line of a component's log file.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// The time of day, `HH:MM:SS.mmm` (UTC).
    at: String,
    /// Written to stderr.
    stderr: bool,
    text: String,
}

/// Everything `hale top` shows.
#[derive(Debug, Default)]
pub struct Model {
    socket: String,
    comps: Vec<Comp>,
    selected: usize,
    /// Time of day of the last answer from the daemon.
    refreshed: Option<String>,
    /// Why the last status request failed, until one succeeds.
    unreachable: Option<String>,
    /// The result of the last action: text and whether it failed.
    message: Option<(String, bool)>,
    log_open: bool,
    /// The last tail read: the component's name and its lines or why there are none.
    log: Option<(String, Result<Vec<LogLine>, String>)>,
}

/// What the worker reports to the UI thread.
#[derive(Debug)]
pub enum Update {
    /// An answer to `GET /v1/status` (the components), or why there was none.
    Status { at: SystemTime, result: Result<Vec<Value>, String> },
    /// The tail of a component's log.
    Log { name: String, result: Result<Vec<LogLine>, String> },
    /// An action finished.
    Done { name: String, verb: Verb, result: Result<(), String> },
}

/// An operator action on one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
    Reset,
}

impl Verb {
    /// The action's path segment in `POST /v1/components/{name}/{action}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::Reset => "reset",
        }
    }
}

/// What a key asks the program to do beyond changing the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Leave `hale top`.
    Quit,
    /// Send `verb` for component `name` to the daemon.
    Act { name: String, verb: Verb },
}

impl Model {
    /// An empty model for the daemon at `socket` (shown in the status line).
    pub fn new(socket: impl Into<String>) -> Model {
        Model { socket: socket.into(), ..Model::default() }
    }

    fn selected_comp(&self) -> Option<&Comp> {
        self.comps.get(self.selected)
    }

    /// The component whose log the pane shows, when it is open.
    pub fn log_target(&self) -> Option<&str> {
        if self.log_open { self.selected_comp().map(|c| c.name.as_str()) } else { None }
    }

    /// Take in what the worker found. The selection follows its component by name.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Status { at, result: Ok(comps) } => {
                let keep = self.selected_comp().map(|c| c.name.clone());
                self.comps = comps.iter().map(Comp::from_json).collect();
                self.selected = keep
                    .and_then(|n| self.comps.iter().position(|c| c.name == n))
                    .unwrap_or(self.selected)
                    .min(self.comps.len().saturating_sub(1));
                self.unreachable = None;
                self.refreshed = Some(time_of_day(at, 19));
            }
            Update::Status { result: Err(why), .. } => self.unreachable = Some(why),
            Update::Log { name, result } => self.log = Some((name, result)),
            Update::Done { name, verb, result } => {
                self.message = Some(match result {
                    Ok(()) => (format!("{} {name}: ok", verb.as_str()), false),
                    Err(e) => (format!("{} {name}: {e}", verb.as_str()), true),
                });
            }
        }
    }
}

/// `HH:MM:SS` (end 19) or `HH:MM:SS.mmm` (end 23) of an RFC 3339 time in UTC.
fn time_of_day(at: SystemTime, end: usize) -> String {
    let text = humantime::format_rfc3339_millis(at).to_string();
    text.get(11..end).unwrap_or(&text).to_owned()
}

// ------------------------------------------------------------------------------ keys

/// Apply `key` to the model; return what else it asks for.
pub fn on_key(model: &mut Model, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let last = model.comps.len().saturating_sub(1);
    let verb = match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
            return Some(Action::Quit);
        }
        KeyCode::Char('q') | KeyCode::Esc => return Some(Action::Quit),
        KeyCode::Up | KeyCode::Char('k') => {
            model.selected = model.selected.saturating_sub(1);
            return None;
        }
        KeyCode::Down | KeyCode::Char('j') => {
            model.selected = (model.selected + 1).min(last);
            return None;
        }
        KeyCode::Home | KeyCode::Char('g') => {
            model.selected = 0;
            return None;
        }
        KeyCode::End | KeyCode::Char('G') => {
            model.selected = last;
            return None;
        }
        KeyCode::Char('l') => {
            model.log_open = !model.log_open;
            return None;
        }
        KeyCode::Char('r') => Verb::Restart,
        KeyCode::Char('s') => Verb::Stop,
        KeyCode::Char('S') | KeyCode::Char('t') => Verb::Start,
        KeyCode::Char('x') => Verb::Reset,
        _ => return None,
    };
    let Some(name) = model.selected_comp().map(|c| c.name.clone()) else {
        model.message = Some((format!("no component to {}", verb.as_str()), true));
        return None;
    };
    model.message = Some((format!("{} {name}…", verb.as_str()), false));
    Some(Action::Act { name, verb })
}

// ------------------------------------------------------------------------------ drawing

fn state_style(state: &str) -> Style {
    let color = match state {
        "running" => Color::Green,
        "starting" | "restarting" => Color::Yellow,
        "unhealthy" | "failed" => Color::Red,
        "stopped" => Color::DarkGray,
        _ => Color::Reset,
    };
    Style::new().fg(color)
}

fn fmt_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// Render `model` on the whole frame.
pub fn draw(frame: &mut Frame, model: &Model) {
    let area = frame.area();
    // The log pane takes what the table does not need, and at least a third of the screen.
    let log_height = if model.log_open {
        let room = area.height.saturating_sub(2 + (model.comps.len() as u16 + 3).max(5));
        (LOG_LINES as u16 + 2).min(room.max(area.height / 3))
    } else {
        0
    };
    let [table_area, log_area, status_area, message_area] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(log_height),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);

    let dim = Style::new().fg(Color::DarkGray);
    let name_width = model.comps.iter().map(|c| c.name.len()).max().unwrap_or(0).max(4) as u16;
    let header =
        Row::new(["NAME", "STATE", "READY", "PID", "UPTIME", "RESTARTS", "INC", "NEXT", "INFO"])
            .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = model.comps.iter().map(|c| {
        let opt = |v: Option<u64>, f: fn(u64) -> String| v.map(f).unwrap_or_else(|| "-".into());
        Row::new([
            Cell::from(c.name.clone()),
            Cell::from(c.state.clone()).style(state_style(&c.state)),
            Cell::from(if c.ready { "yes" } else { "no" }),
            Cell::from(opt(c.pid, |p| p.to_string())),
            Cell::from(opt(c.uptime_ms, fmt_ms)),
            Cell::from(c.restart_count.to_string()),
            Cell::from(c.incarnation.to_string()),
            Cell::from(opt(c.next_restart_in_ms, |ms| format!("in {}", fmt_ms(ms)))),
            Cell::from(c.info.clone()),
        ])
    });
    let widths = [
        Constraint::Length(name_width),
        Constraint::Length(10),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(4),
        Constraint::Length(9),
        Constraint::Fill(1),
    ];
    let title = format!(" hale top · {} components ", model.comps.len());
    let table = Table::new(rows, widths)
        .header(header)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(title)
                .title_bottom(Line::styled(HELP, dim)),
        )
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol(MARK)
        .highlight_spacing(HighlightSpacing::Always);
    let mut state =
        TableState::default().with_selected((!model.comps.is_empty()).then_some(model.selected));
    frame.render_stateful_widget(table, table_area, &mut state);

    if let Some(name) = model.log_target() {
        let lines: Vec<Line> = match &model.log {
            Some((n, Ok(lines))) if n == name && lines.is_empty() => {
                vec![Line::styled("(no output yet)", dim)]
            }
            Some((n, Ok(lines))) if n == name => lines
                .iter()
                .map(|l| {
                    let text = if l.stderr {
                        Span::styled(l.text.clone(), Style::new().fg(Color::LightRed))
                    } else {
                        Span::raw(l.text.clone())
                    };
                    Line::from(vec![Span::styled(format!("{} ", l.at), dim), text])
                })
                .collect(),
            Some((n, Err(e))) if n == name => vec![Line::styled(e.clone(), dim)],
            _ => vec![Line::styled("reading…", dim)],
        };
        // Show the newest lines when the pane is shorter than the tail.
        let inner = log_area.height.saturating_sub(2) as usize;
        let skip = lines.len().saturating_sub(inner);
        let pane = Paragraph::new(lines.into_iter().skip(skip).collect::<Vec<_>>()).block(
            Block::default().borders(Borders::ALL).title(format!(" log: {name} (l closes) ")),
        );
        frame.render_widget(pane, log_area);
    } else if model.log_open {
        let pane = Paragraph::new(Line::styled("no component selected", dim))
            .block(Block::default().borders(Borders::ALL).title(" log "));
        frame.render_widget(pane, log_area);
    }

    // The reason first when the daemon is away: it names the socket, and the line is clipped.
    let when = |what| model.refreshed.as_ref().map(|t| format!(" · {what} {t} UTC"));
    let status = match &model.unreachable {
        Some(why) => vec![
            Span::styled(
                format!(" daemon not reachable: {why}"),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Span::styled(when("last answer").unwrap_or_default(), dim),
        ],
        None => vec![
            Span::raw(format!(" socket {}", model.socket)),
            Span::styled(when("refreshed").unwrap_or(" · waiting for the daemon…".into()), dim),
        ],
    };
    frame.render_widget(Paragraph::new(Line::from(status)), status_area);
    if let Some((text, failed)) = &model.message {
        let style = Style::new().fg(if *failed { Color::Red } else { Color::Green });
        frame.render_widget(Paragraph::new(Line::styled(format!(" {text}"), style)), message_area);
    }
}

// ------------------------------------------------------------------------------ I/O

/// Errors on one line (the client's messages carry a hint on a second line).
fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// The last `max` bytes of `path` from a line start, and whether that is the whole file.
fn tail_bytes(path: &Path, max: u64) -> io::Result<(String, bool)> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(max);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity((len - from) as usize);
    f.take(max).read_to_end(&mut buf)?;
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if from > 0 {
        let cut = text.find('\n').map(|i| i + 1).unwrap_or(text.len());
        text.drain(..cut);
    }
    Ok((text, from == 0))
}

/// The last `n` lines of `name`'s log (`state_dir/logs/NAME.log`, then `NAME.log.1` when the
/// current file is short), reading at most [`TAIL_BYTES`] of each: the pane refreshes twice a
/// second, and `logs::tail` reads whole files.
pub fn read_tail(state_dir: &Path, name: &str, n: usize) -> Result<Vec<LogLine>, String> {
    let path = logs::log_path(state_dir, name);
    let rotated = PathBuf::from(format!("{}.1", path.display()));
    let mut lines: Vec<String> = Vec::new();
    for (i, p) in [&path, &rotated].into_iter().enumerate() {
        let (text, whole) = match tail_bytes(p, TAIL_BYTES) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound && i > 0 => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!("no output captured for {name} ({})", path.display()));
            }
            Err(e) => return Err(format!("reading {}: {e}", p.display())),
        };
        let mut older: Vec<String> = text.lines().map(str::to_owned).collect();
        older.append(&mut lines);
        lines = older;
        if lines.len() >= n || !whole {
            break;
        }
    }
    let skip = lines.len().saturating_sub(n);
    Ok(lines
        .iter()
        .skip(skip)
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let at = parts.next().unwrap_or_default();
            let stream = parts.next().unwrap_or_default();
            LogLine {
                at: at.get(11..23).unwrap_or(at).to_owned(),
                stderr: stream == "stderr",
                text: parts.next().unwrap_or_default().to_owned(),
            }
        })
        .collect())
}

/// The UI thread's ends of the worker's channels.
struct Worker {
    updates: mpsc::Receiver<Update>,
    acts: tmpsc::UnboundedSender<(String, Verb)>,
    tail: watch::Sender<Option<String>>,
}

fn spawn_worker(target: Target, state_dir: PathBuf) -> Result<Worker> {
    let (out, updates) = mpsc::channel();
    let (acts, acts_rx) = tmpsc::unbounded_channel();
    let (tail, tail_rx) = watch::channel(None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    std::thread::Builder::new()
        .name("hale-top-io".into())
        .spawn(move || rt.block_on(work(target, state_dir, acts_rx, tail_rx, out)))
        .context("starting the status thread")?;
    Ok(Worker { updates, acts, tail })
}

/// The worker: polls the status (and the log tail) and carries out actions concurrently,
/// until the UI drops its ends.
async fn work(
    target: Target,
    state_dir: PathBuf,
    mut acts: tmpsc::UnboundedReceiver<(String, Verb)>,
    mut tail: watch::Receiver<Option<String>>,
    out: mpsc::Sender<Update>,
) {
    let poke = Notify::new();
    let poll = async {
        loop {
            let result =
                match tokio::time::timeout(STATUS_TIMEOUT, target.request("GET", "/v1/status"))
                    .await
                {
                    Ok(Ok((200, v))) => Ok(v["components"].as_array().cloned().unwrap_or_default()),
                    Ok(Ok((code, v))) => Err(format!(
                        "status answered {code}: {}",
                        v["error"].as_str().unwrap_or("no reason given")
                    )),
                    Ok(Err(e)) => Err(one_line(&e)),
                    Err(_) => Err(format!("no answer within {STATUS_TIMEOUT:?}")),
                };
            if out.send(Update::Status { at: SystemTime::now(), result }).is_err() {
                return;
            }
            let name = tail.borrow_and_update().clone();
            if let Some(name) = name {
                let result = read_tail(&state_dir, &name, LOG_LINES);
                if out.send(Update::Log { name, result }).is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                changed = tail.changed() => if changed.is_err() { return },
                _ = poke.notified() => {}
            }
        }
    };
    let act = async {
        while let Some((name, verb)) = acts.recv().await {
            let path = format!("/v1/components/{}/{}", encode(&name), verb.as_str());
            let result =
                match tokio::time::timeout(ACT_TIMEOUT, target.request("POST", &path)).await {
                    Ok(Ok((200, _))) => Ok(()),
                    Ok(Ok((_, v))) => Err(v["error"].as_str().unwrap_or("failed").to_owned()),
                    Ok(Err(e)) => Err(one_line(&e)),
                    Err(_) => Err(format!("no answer within {ACT_TIMEOUT:?}")),
                };
            if out.send(Update::Done { name, verb, result }).is_err() {
                return;
            }
            // Show the effect now rather than at the next tick.
            poke.notify_one();
        }
    };
    tokio::select! {
        _ = poll => {}
        _ = act => {}
    }
}

/// Leaves raw mode and the alternate screen however `run` ends (ratatui's panic hook covers
/// panics).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// `hale top`: run the view until the operator quits.
pub fn run(target: Target, state_dir: PathBuf) -> Result<i32> {
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        bail!("`hale top` needs a terminal; `hale status -w` refreshes a plain table instead");
    }
    let mut model = Model::new(target.socket.display().to_string());
    let worker = spawn_worker(target, state_dir)?;
    // Installs a panic hook that restores the terminal before the panic is printed.
    let _restore = Restore;
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let mut sent_tail: Option<String> = None;
    let mut dirty = true;
    loop {
        loop {
            match worker.updates.try_recv() {
                Ok(u) => {
                    model.apply(u);
                    dirty = true;
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => bail!("the status thread stopped"),
            }
        }
        let want = model.log_target().map(str::to_owned);
        if want != sent_tail {
            worker.tail.send_replace(want.clone());
            sent_tail = want;
        }
        if dirty {
            terminal.draw(|f| draw(f, &model)).context("drawing")?;
            dirty = false;
        }
        if !event::poll(Duration::from_millis(50)).context("reading the terminal")? {
            continue;
        }
        match event::read().context("reading the terminal")? {
            Event::Key(key) => {
                dirty = true;
                match on_key(&mut model, key) {
                    Some(Action::Quit) => return Ok(0),
                    Some(Action::Act { name, verb }) => {
                        let _ = worker.acts.send((name, verb));
                    }
                    None => {}
                }
            }
            Event::Resize(..) => dirty = true,
            _ => {}
        }
    }
}

// ------------------------------------------------------------------------------ tests

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use serde_json::json;

    fn comp(name: &str, state: &str, restarts: u64, extra: Value) -> Value {
        let mut c = json!({
            "name": name, "kind": "process", "state": state, "ready": state == "running",
            "healthy": state == "running", "pid": 100, "incarnation": restarts + 1,
            "uptime_ms": 61_000, "restart_count": restarts, "restarts_in_window": restarts,
            "unstable": 0, "next_restart_in_ms": null, "last_error": null, "last_exit": null,
            "status_text": null, "waiting_for": null, "stopping": false, "probes": {},
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn model() -> Model {
        let mut m = Model::new("/run/hale/hale.sock");
        m.apply(Update::Status {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(3600 * 10 + 62),
            result: Ok(vec![
                comp("web", "running", 2, json!({})),
                comp(
                    "db",
                    "failed",
                    5,
                    json!({"pid": null, "uptime_ms": null, "last_error": "exited with code 1\nmore"}),
                ),
                comp("job", "stopped", 0, json!({"pid": null, "uptime_ms": null})),
                comp(
                    "cache",
                    "restarting",
                    1,
                    json!({"pid": null, "next_restart_in_ms": 1500, "last_error": "killed"}),
                ),
                comp(
                    "api",
                    "starting",
                    0,
                    json!({"pid": null, "waiting_for": "waiting for db (healthy)"}),
                ),
            ]),
        });
        m
    }

    fn render(m: &Model, w: u16, h: u16) -> Buffer {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, m)).unwrap();
        t.backend().buffer().clone()
    }

    fn lines(b: &Buffer) -> Vec<String> {
        (0..b.area.height)
            .map(|y| (0..b.area.width).map(|x| b[(x, y)].symbol()).collect())
            .collect()
    }

    /// The cell where `text` starts, scanning cell by cell.
    fn find(b: &Buffer, text: &str) -> Option<(u16, u16)> {
        let chars: Vec<String> = text.chars().map(|c| c.to_string()).collect();
        for y in 0..b.area.height {
            for x in 0..b.area.width.saturating_sub(chars.len() as u16 - 1) {
                if chars.iter().enumerate().all(|(i, c)| b[(x + i as u16, y)].symbol() == c) {
                    return Some((x, y));
                }
            }
        }
        None
    }

    fn line_of(b: &Buffer, text: &str) -> String {
        let (_, y) = find(b, text).unwrap_or_else(|| panic!("{text:?} not on screen"));
        lines(b)[y as usize].clone()
    }

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    #[test]
    fn rows_show_every_column_with_state_colors() {
        let b = render(&model(), 130, 20);
        let web = line_of(&b, "web ");
        for col in ["running", "yes", "100", "1m1s", " 2 ", " 3 "] {
            assert!(web.contains(col), "{col:?} missing in {web:?}");
        }
        let db = line_of(&b, "db ");
        assert!(db.contains("failed") && db.contains("exited with code 1"), "{db:?}");
        assert!(!db.contains("more"), "only the first line of an error: {db:?}");
        assert!(line_of(&b, "cache").contains("in 1.5s"), "next restart shown");
        assert!(line_of(&b, "api ").contains("waiting for db (healthy)"));
        for (state, color) in [
            ("running", Color::Green),
            ("failed", Color::Red),
            ("stopped", Color::DarkGray),
            ("restarting", Color::Yellow),
            ("starting", Color::Yellow),
        ] {
            let (x, y) = find(&b, state).unwrap();
            assert_eq!(b[(x, y)].fg, color, "{state}");
        }
        assert!(find(&b, "NAME").is_some() && find(&b, "RESTARTS").is_some());
        assert!(find(&b, "hale top · 5 components").is_some());
        let status = line_of(&b, "socket /run/hale/hale.sock");
        assert!(status.contains("refreshed 10:01:02 UTC"), "{status:?}");
        assert!(find(&b, "q quit").is_some(), "key help shown");
    }

    #[test]
    fn the_selected_row_is_marked_and_follows_its_component() {
        let mut m = model();
        let b = render(&m, 130, 20);
        let (x, y) = find(&b, "web").unwrap();
        assert!(lines(&b)[y as usize].contains(MARK.trim()), "first row selected");
        assert!(b[(x, y)].modifier.contains(Modifier::REVERSED));
        assert!(!b[find(&b, "db").unwrap()].modifier.contains(Modifier::REVERSED));

        on_key(&mut m, key('j'));
        let b = render(&m, 130, 20);
        assert!(line_of(&b, "db ").contains(MARK.trim()));
        assert!(!line_of(&b, "web ").contains(MARK.trim()));

        // The next refresh lists db elsewhere: the selection goes with it.
        m.apply(Update::Status {
            at: SystemTime::UNIX_EPOCH,
            result: Ok(vec![
                comp("x", "running", 0, json!({})),
                comp("db", "running", 0, json!({})),
            ]),
        });
        assert_eq!(m.selected_comp().unwrap().name, "db");
        // It disappears: the selection stays in range.
        m.apply(Update::Status {
            at: SystemTime::UNIX_EPOCH,
            result: Ok(vec![comp("x", "running", 0, json!({}))]),
        });
        assert_eq!(m.selected, 0);
    }

    #[test]
    fn keys_move_the_selection_and_map_to_actions() {
        let mut m = model();
        assert_eq!(on_key(&mut m, KeyEvent::new(KeyCode::Up, KeyModifiers::NONE)), None);
        assert_eq!(m.selected, 0, "up at the top stays");
        on_key(&mut m, KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
        on_key(&mut m, key('j'));
        assert_eq!(m.selected, 2);
        on_key(&mut m, key('k'));
        assert_eq!(m.selected, 1);
        on_key(&mut m, key('G'));
        assert_eq!(m.selected, 4);
        on_key(&mut m, key('j'));
        assert_eq!(m.selected, 4, "down at the bottom stays");
        on_key(&mut m, key('g'));
        assert_eq!(m.selected, 0);
        on_key(&mut m, key('j'));

        let act = |verb| Some(Action::Act { name: "db".into(), verb });
        assert_eq!(on_key(&mut m, key('r')), act(Verb::Restart));
        assert_eq!(m.message, Some(("restart db…".into(), false)));
        assert_eq!(on_key(&mut m, key('s')), act(Verb::Stop));
        assert_eq!(on_key(&mut m, key('S')), act(Verb::Start));
        assert_eq!(on_key(&mut m, key('t')), act(Verb::Start));
        assert_eq!(on_key(&mut m, key('x')), act(Verb::Reset));
        assert_eq!(on_key(&mut m, key('?')), None);
        let release = KeyEvent { kind: KeyEventKind::Release, ..key('r') };
        assert_eq!(on_key(&mut m, release), None, "key releases are ignored");

        assert_eq!(on_key(&mut m, key('q')), Some(Action::Quit));
        assert_eq!(
            on_key(&mut m, KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)),
            Some(Action::Quit)
        );
        assert_eq!(
            on_key(&mut m, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );

        let mut empty = Model::new("s");
        assert_eq!(on_key(&mut empty, key('r')), None);
        assert_eq!(empty.message, Some(("no component to restart".into(), true)));
        on_key(&mut empty, key('j'));
        assert_eq!(empty.selected, 0);
    }

    #[test]
    fn l_toggles_the_log_pane_of_the_selected_component() {
        let mut m = model();
        assert_eq!(m.log_target(), None);
        assert_eq!(on_key(&mut m, key('l')), None);
        assert_eq!(m.log_target(), Some("web"));
        let b = render(&m, 130, 40);
        assert!(find(&b, "log: web").is_some());
        assert!(find(&b, "reading…").is_some(), "before the first read");

        let line = |i: usize, stderr| LogLine {
            at: format!("10:00:{i:02}.000"),
            stderr,
            text: format!("line {i}"),
        };
        let many: Vec<LogLine> = (0..20).map(|i| line(i, i == 19)).collect();
        m.apply(Update::Log { name: "web".into(), result: Ok(many) });
        let b = render(&m, 130, 40);
        for i in 0..20 {
            assert!(find(&b, &format!("10:00:{i:02}.000 line {i}")).is_some(), "line {i}");
        }
        let (x, y) = find(&b, "line 19").unwrap();
        assert_eq!(b[(x, y)].fg, Color::LightRed, "stderr lines stand out");
        // A short terminal shows the newest lines.
        let b = render(&m, 130, 16);
        assert!(find(&b, "line 19").is_some() && find(&b, "line 0 ").is_none());

        // Another component: its own tail, not the previous one's.
        on_key(&mut m, key('j'));
        assert_eq!(m.log_target(), Some("db"));
        let b = render(&m, 130, 40);
        assert!(find(&b, "log: db").is_some() && find(&b, "line 3").is_none());
        m.apply(Update::Log { name: "db".into(), result: Err("no output captured for db".into()) });
        assert!(find(&render(&m, 130, 40), "no output captured for db").is_some());

        on_key(&mut m, key('l'));
        assert_eq!(m.log_target(), None);
        assert!(find(&render(&m, 130, 40), "log:").is_none());
    }

    #[test]
    fn an_unreachable_daemon_and_action_results_show_in_the_status_lines() {
        let mut m = model();
        m.apply(Update::Status {
            at: SystemTime::now(),
            result: Err("the socket does not exist".into()),
        });
        let b = render(&m, 130, 20);
        let (x, y) = find(&b, "daemon not reachable: the socket does not exist").unwrap();
        assert_eq!(b[(x, y)].fg, Color::Red);
        assert!(find(&b, "web").is_some(), "the last rows stay");
        assert!(
            lines(&b)[y as usize].contains("last answer 10:01:02 UTC"),
            "{:?}",
            lines(&b)[y as usize]
        );

        m.apply(Update::Done { name: "web".into(), verb: Verb::Restart, result: Ok(()) });
        let b = render(&m, 130, 20);
        let (x, y) = find(&b, "restart web: ok").unwrap();
        assert_eq!(b[(x, y)].fg, Color::Green);
        m.apply(Update::Done {
            name: "db".into(),
            verb: Verb::Stop,
            result: Err("conflict".into()),
        });
        let b = render(&m, 130, 20);
        let (x, y) = find(&b, "stop db: conflict").unwrap();
        assert_eq!(b[(x, y)].fg, Color::Red);

        m.apply(Update::Status { at: SystemTime::now(), result: Ok(vec![]) });
        assert!(find(&render(&m, 130, 20), "not reachable").is_none(), "cleared by an answer");
    }

    #[test]
    fn read_tail_takes_the_last_lines_across_rotation_and_reads_little() {
        let dir = tempfile::tempdir().unwrap();
        let logs_dir = dir.path().join("logs");
        std::fs::create_dir(&logs_dir).unwrap();
        assert!(read_tail(dir.path(), "web", 20).unwrap_err().contains("no output captured"));

        let rec =
            |i: usize, s: &str| format!("2026-11-29T10:00:{:02}.{i:03}Z {s} line {i}\n", i % 60);
        let old: String = (0..15).map(|i| rec(i, "stdout")).collect();
        let new: String =
            (15..25).map(|i| rec(i, if i == 24 { "stderr" } else { "stdout" })).collect();
        std::fs::write(logs_dir.join("web.log.1"), old).unwrap();
        std::fs::write(logs_dir.join("web.log"), new).unwrap();
        let got = read_tail(dir.path(), "web", 20).unwrap();
        assert_eq!(got.len(), 20);
        assert_eq!(got[0].text, "line 5");
        assert_eq!(
            got[19],
            LogLine { at: "10:00:24.024".into(), stderr: true, text: "line 24".into() }
        );

        // A big current file: only its end is read, from a line start.
        let big: String = (0..20_000).map(|i| rec(i, "stdout")).collect();
        assert!(big.len() as u64 > 4 * TAIL_BYTES);
        std::fs::write(logs_dir.join("web.log"), big).unwrap();
        let got = read_tail(dir.path(), "web", 20).unwrap();
        assert_eq!(got.first().unwrap().text, "line 19980");
        assert_eq!(got.last().unwrap().text, "line 19999");
    }
}
