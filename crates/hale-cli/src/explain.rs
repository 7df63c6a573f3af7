//! Status that explains itself: one sentence saying why a component is in its state, built
//! from its health snapshot, the dependency it waits for and its config.
//!
//! `hale status` shows it in the INFO column, `hale status NAME` and the JSON (`why`) in full,
//! next to the figures it is made of (next restart, backoff step, restarts left in the window,
//! last exit, the last probe outputs, the notify STATUS text).

use hale::{Exit, Health, ProbeKind, State};
use hale_core::fmt_duration;

use crate::config::{ComponentConfig, ReadyMode};

/// Restarts still allowed inside the window before the component fails. A restart that is
/// scheduled (backing off) has already taken its place in the window.
pub fn restarts_left(h: &Health, c: Option<&ComponentConfig>) -> Option<u32> {
    let pending = u32::from(h.state == State::Restarting && h.next_restart_at.is_some());
    c.map(|c| c.restart.max_restarts.saturating_sub(h.restarts_in_window + pending))
}

fn exit_text(e: Exit) -> String {
    match e {
        Exit::Code(c) => format!("exit code {c}"),
        Exit::Signal(s) => format!("killed by signal {s}"),
    }
}

/// The last failed run of `kind`, first line.
fn last_failure(h: &Health, kind: ProbeKind) -> Option<String> {
    let p = h.probes.get(&kind)?;
    let r = p.last.iter().rev().find(|r| !r.ok)?;
    Some(r.output.lines().next().unwrap_or("").to_owned())
}

/// Why `h` is where it is, in one sentence.
pub fn why(h: &Health, waiting: Option<&str>, c: Option<&ComponentConfig>) -> String {
    let mut text = why_state(h, waiting, c);
    if let Some(status) = &h.status_text
        && !status.is_empty()
    {
        text.push_str(&format!(" (STATUS: {status})"));
    }
    text
}

fn why_state(h: &Health, waiting: Option<&str>, c: Option<&ComponentConfig>) -> String {
    if let Some(w) = waiting {
        return w.to_owned();
    }
    let reason = h.state_reason.as_deref().unwrap_or("");
    let window = c.map(|c| fmt_duration(c.restart.window)).unwrap_or_default();
    match h.state {
        _ if h.stopping => "stopping: waiting for the process to exit".to_owned(),
        State::Failed => {
            format!("failed: {reason}; `hale reset {0}` or `hale start {0}` brings it back", h.name)
        }
        State::Restarting => {
            let next = h
                .next_restart_in()
                .map(|d| format!("restarting in {}", fmt_duration(round_ms(d))))
                .unwrap_or_else(|| "restarting".to_owned());
            let left = match restarts_left(h, c) {
                Some(left) => format!(", {left} restarts left in the {window} window"),
                None => String::new(),
            };
            let error = h.last_error.as_deref().unwrap_or(reason);
            format!("{next} (backoff step {}{left}) after: {error}", h.unstable)
        }
        State::Unhealthy => format!("unhealthy, being stopped to restart: {reason}"),
        State::Starting => {
            if c.is_some_and(|c| c.ready == ReadyMode::Notify) {
                let limit = c.map(|c| fmt_duration(c.start_timeout)).unwrap_or_default();
                "starting: waiting for READY=1 on NOTIFY_SOCKET".to_owned()
                    + &if limit.is_empty() {
                        String::new()
                    } else {
                        format!(" (start_timeout {limit})")
                    }
            } else if let Some(p) = h.probes.get(&ProbeKind::Startup) {
                match last_failure(h, ProbeKind::Startup) {
                    Some(out) if p.consecutive_failures > 0 => format!(
                        "starting: the startup check failed {} times so far: {out}",
                        p.consecutive_failures
                    ),
                    _ => "starting: waiting for the startup check to pass".to_owned(),
                }
            } else {
                "starting".to_owned()
            }
        }
        State::Running if !h.ready => match last_failure(h, ProbeKind::Readiness) {
            Some(out) => format!("running but not ready: readiness: {out}"),
            None => "running, not ready yet: waiting for the readiness check".to_owned(),
        },
        State::Running => {
            let up = match h.uptime().map(round_s) {
                Some(d) if !d.is_zero() => fmt_duration(d),
                _ => "under 1s".to_owned(),
            };
            let mut text = format!("healthy, up {up}");
            if let Some(p) = h.probes.get(&ProbeKind::Liveness)
                && p.consecutive_failures > 0
            {
                let out = last_failure(h, ProbeKind::Liveness).unwrap_or_default();
                text = format!(
                    "running; liveness failed {} times in a row (restart at its threshold): {out}",
                    p.consecutive_failures
                );
            }
            text
        }
        State::Stopped if h.incarnation == 0 => "not started".to_owned(),
        State::Stopped => match h.last_exit {
            Some(e) if !reason.is_empty() => format!("stopped ({}): {reason}", exit_text(e)),
            Some(e) => format!("stopped ({})", exit_text(e)),
            None if !reason.is_empty() => format!("stopped: {reason}"),
            None => "stopped".to_owned(),
        },
    }
}

/// Milliseconds below a second, whole seconds (rounded up) above.
fn round_ms(d: std::time::Duration) -> std::time::Duration {
    if d < std::time::Duration::from_secs(1) {
        std::time::Duration::from_millis(d.as_millis() as u64)
    } else {
        std::time::Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
    }
}

fn round_s(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(d.as_secs())
}
