//! The `log` check: healthy when a line of the component's output matched a pattern recently,
//! and [`FanOut`], which hands one component's output to several sinks.
//!
//! A [`Log`] is both halves at once: an [`OutputSink`] that the driver (through
//! [`Command::output`](crate::Command::output)) feeds every line the component prints, on stdout
//! and stderr alike, and a [`Probe`] that looks at when the last line matched. Clones share their
//! state, so give one clone to the command's output and another to the check. Lines are matched
//! as bytes (a line that is not UTF-8 can still match its ASCII parts); a match only records the
//! time and the line, so the driver's reader tasks are never held up.
//!
//! The window is counted from the last match. Before any line has matched, the check fails
//! (`no matching line yet`): a readiness or startup check on `pattern = "listening on"` must not
//! pass before the line is printed. For a liveness check on a heartbeat line, use a startup
//! check or an `initial_delay`, or opt into [`Log::grace_from_creation`], which counts the window
//! from the moment the `Log` was made until the first match.
//!
//! What this module does not do: tell which instance printed a line (a match made by the
//! previous instance still counts after a restart until it leaves the window, unless
//! [`Log::reset`] is called), keep more than the last match, or read log files.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use regex::bytes::Regex;

use super::file::{fmt_age, fmt_duration};
use super::{BoxFuture, CheckResult, InvalidProbe, Probe, ProbeContext, ProbeError};
use crate::{OutputSink, Stream};

/// How much of a matching line is kept for the check's output.
const KEPT_LINE: usize = 256;

/// Matches each line of a component's output against a regular expression; healthy when a line
/// matched within the last `within`. `Ok` carries `last match 2.1s ago: <the line>`.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use hale::{Check, Command, OutputSink, Stream};
/// use hale::probe::Log;
///
/// let ready = Log::new(r"listening on \d+", Duration::from_secs(3600))?;
/// let command = Command::new("./api").output(Arc::new(ready.clone()));
/// let check = Check::new(ready.clone());
/// ready.line("api", Stream::Stdout, b"listening on 8080");
/// assert!(ready.last_match().is_some());
/// # Ok::<(), hale::probe::InvalidProbe>(())
/// ```
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
    grace: bool,
}

struct Shared {
    regex: Regex,
    within: Duration,
    created: Instant,
    last: Mutex<Option<Match>>,
}

struct Match {
    at: Instant,
    line: String,
}

impl Log {
    /// A check for lines matching `pattern` (Rust `regex` syntax: `(?i)` for case-insensitive,
    /// `\d`, `\p{L}`, ...; it matches anywhere in the line unless anchored with `^` or `$`),
    /// healthy when one matched within the last `within`. Fails when the pattern does not
    /// compile or `within` is zero.
    pub fn new(pattern: &str, within: Duration) -> Result<Self, InvalidProbe> {
        let regex = Regex::new(pattern).map_err(|err| {
            InvalidProbe::new(format!("log /{pattern}/: invalid pattern: {}", regex_error(&err)))
        })?;
        if within.is_zero() {
            return Err(InvalidProbe::new(format!(
                "log /{pattern}/: within must be more than zero"
            )));
        }
        let shared = Shared { regex, within, created: Instant::now(), last: Mutex::new(None) };
        Ok(Self { shared: Arc::new(shared), grace: false })
    }

    /// Until the first match, count the window from when this `Log` was made instead of
    /// failing: a component gets `within` to print its first matching line. This clone only;
    /// the others keep their own setting.
    pub fn grace_from_creation(mut self) -> Self {
        self.grace = true;
        self
    }

    /// The pattern, as given.
    pub fn pattern(&self) -> &str {
        self.shared.regex.as_str()
    }

    /// The window.
    pub fn within(&self) -> Duration {
        self.shared.within
    }

    /// When a line last matched, and the line (lossy UTF-8, cut to 256 bytes).
    pub fn last_match(&self) -> Option<(Instant, String)> {
        self.lock().as_ref().map(|m| (m.at, m.line.clone()))
    }

    /// Forget the last match, as if no line had matched yet (for example when the component
    /// restarts, so that a line printed by the old instance does not count for the new one).
    /// With [`Log::grace_from_creation`], the grace is not given again.
    pub fn reset(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> MutexGuard<'_, Option<Match>> {
        // A panic elsewhere while holding the lock leaves a valid Option behind.
        self.shared.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn evaluate(&self, now: Instant) -> CheckResult {
        let label = self.describe();
        let within = self.shared.within;
        let last = self.lock().as_ref().map(|m| (m.at, m.line.clone()));
        match last {
            Some((at, line)) => {
                let age = now.saturating_duration_since(at);
                if age <= within {
                    return Ok(format!("last match {} ago: {line}", fmt_age(age)));
                }
                Err(ProbeError::new(format!(
                    "{label}: no matching line in the last {} (last match {} ago)",
                    fmt_duration(within),
                    fmt_age(age)
                )))
            }
            None => {
                let watching = now.saturating_duration_since(self.shared.created);
                if watching > within {
                    return Err(ProbeError::new(format!(
                        "{label}: no matching line in the last {}",
                        fmt_duration(within)
                    )));
                }
                match self.grace {
                    true => Ok(format!(
                        "no matching line yet ({} of {} grace used)",
                        fmt_age(watching),
                        fmt_duration(within)
                    )),
                    false => Err(ProbeError::new(format!("{label}: no matching line yet"))),
                }
            }
        }
    }
}

impl OutputSink for Log {
    fn line(&self, _component: &str, _stream: Stream, line: &[u8]) {
        if !self.shared.regex.is_match(line) {
            return;
        }
        let kept = &line[..line.len().min(KEPT_LINE)];
        let mut text = String::from_utf8_lossy(kept).into_owned();
        if kept.len() < line.len() {
            // The cut may have split a character: drop the replacement it became.
            text = text.trim_end_matches('\u{FFFD}').to_owned();
            text.push_str("...");
        }
        *self.lock() = Some(Match { at: Instant::now(), line: text });
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (within {})", self.describe(), fmt_duration(self.shared.within))
    }
}

impl Probe for Log {
    fn check(&self, _ctx: ProbeContext) -> BoxFuture<CheckResult> {
        let result = self.evaluate(Instant::now());
        Box::pin(async move { result })
    }

    /// `log /pattern/`.
    fn describe(&self) -> String {
        format!("log /{}/", self.shared.regex.as_str())
    }
}

/// The last line of the regex crate's error (`unclosed group`), which is the part that says
/// what is wrong; the lines above repeat the pattern with a caret.
fn regex_error(err: &regex::Error) -> String {
    let text = err.to_string();
    let last = text.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or(&text);
    last.trim().strip_prefix("error: ").unwrap_or(last.trim()).to_owned()
}

/// Hands every line to each of several sinks, in order: one component's output to its log file
/// and to its [`Log`] checks, say.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use hale::Command;
/// use hale::probe::{FanOut, Log};
///
/// let ready = Log::new("ready", Duration::from_secs(60))?;
/// let alive = Log::new("heartbeat", Duration::from_secs(30))?;
/// let sinks = FanOut::new().with(Arc::new(ready.clone())).with(Arc::new(alive.clone()));
/// let command = Command::new("./worker").output(Arc::new(sinks));
/// # Ok::<(), hale::probe::InvalidProbe>(())
/// ```
#[derive(Clone, Default)]
pub struct FanOut {
    sinks: Vec<Arc<dyn OutputSink>>,
}

impl FanOut {
    /// No sinks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a sink, builder style.
    pub fn with(mut self, sink: Arc<dyn OutputSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Add a sink.
    pub fn push(&mut self, sink: Arc<dyn OutputSink>) {
        self.sinks.push(sink);
    }

    /// How many sinks there are.
    pub fn len(&self) -> usize {
        self.sinks.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }
}

impl From<Vec<Arc<dyn OutputSink>>> for FanOut {
    fn from(sinks: Vec<Arc<dyn OutputSink>>) -> Self {
        Self { sinks }
    }
}

impl fmt::Debug for FanOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanOut").field("sinks", &self.sinks.len()).finish()
    }
}

impl OutputSink for FanOut {
    fn line(&self, component: &str, stream: Stream, line: &[u8]) {
        for sink in &self.sinks {
            sink.line(component, stream, line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_counted_from_the_last_match() {
        let log = Log::new("tick", Duration::from_secs(60)).unwrap();
        let start = log.shared.created;
        assert_eq!(log.evaluate(start).unwrap_err().reason, "log /tick/: no matching line yet");
        assert_eq!(
            log.evaluate(start + Duration::from_secs(61)).unwrap_err().reason,
            "log /tick/: no matching line in the last 1m"
        );
        log.line("c", Stream::Stderr, b"tick 1");
        let (at, line) = log.last_match().unwrap();
        assert_eq!(line, "tick 1");
        assert_eq!(
            log.evaluate(at + Duration::from_millis(2_100)),
            Ok("last match 2.1s ago: tick 1".to_owned())
        );
        assert!(log.evaluate(at + Duration::from_secs(60)).is_ok());
        assert_eq!(
            log.evaluate(at + Duration::from_secs(75)).unwrap_err().reason,
            "log /tick/: no matching line in the last 1m (last match 75s ago)"
        );
    }

    #[test]
    fn grace_from_creation_until_the_first_match() {
        let log = Log::new("tick", Duration::from_secs(60)).unwrap().grace_from_creation();
        let start = log.shared.created;
        assert_eq!(
            log.evaluate(start + Duration::from_secs(10)),
            Ok("no matching line yet (10s of 1m grace used)".to_owned())
        );
        assert_eq!(
            log.evaluate(start + Duration::from_secs(61)).unwrap_err().reason,
            "log /tick/: no matching line in the last 1m"
        );
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let log = Log::new("é", Duration::from_secs(1)).unwrap();
        let line = "é".repeat(200);
        log.line("c", Stream::Stdout, line.as_bytes());
        let (_, kept) = log.last_match().unwrap();
        assert_eq!(kept, format!("{}...", "é".repeat(KEPT_LINE / 2)));
        let odd = format!("x{line}");
        log.line("c", Stream::Stdout, odd.as_bytes());
        let (_, kept) = log.last_match().unwrap();
        assert_eq!(kept, format!("x{}...", "é".repeat(KEPT_LINE / 2 - 1)));
    }
}
