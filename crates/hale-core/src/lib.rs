//! The decisions of hale, without any I/O: one supervised component's state machine.
//!
//! [`Component`] takes timestamped [`Input`]s (operator commands, spawn and exit reports, probe
//! results, notify messages, timer ticks) and answers with [`Action`]s (spawn, signal, run a
//! probe, announce a transition). It never reads a clock, sleeps, spawns or touches the network:
//! the driver in the `hale` crate does all of that and feeds the results back. Because of that,
//! every rule of SEMANTICS.md is tested here in virtual time, hours of restarts in milliseconds.
//!
//! What this crate does not do: schedule anything by itself (the driver asks
//! [`Component::next_deadline`] and sends [`Input::Tick`]), or know how a probe checks.

#![warn(missing_docs)]

mod component;
mod spec;
mod time;

pub use component::{
    Action, Component, Exit, Input, JitterSource, NoJitter, NotifyMessage, ProbeOutcome,
    ProbeRecord, ProbeStatus, Signal, State, Status, Verdict, fmt_duration,
};
pub use spec::{
    ComponentKind, ExitRules, ProbeSpec, ReadyMode, RestartConfig, RestartPolicy, Spec, SpecError,
};
pub use time::Instant;

/// Which of the three probes a check is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// Gates liveness and readiness; condemns the instance when it keeps failing.
    Startup,
    /// Condemns the instance when it keeps failing.
    Liveness,
    /// Sets `ready`; never restarts anything.
    Readiness,
}

impl ProbeKind {
    /// The three kinds, in gate order.
    pub const ALL: [ProbeKind; 3] = [ProbeKind::Startup, ProbeKind::Liveness, ProbeKind::Readiness];

    /// The lowercase name used in config files, status and reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest probe output kept, in bytes, before `...` is appended.
pub const OUTPUT_LIMIT: usize = 4096;

/// Cut `text` to at most [`OUTPUT_LIMIT`] bytes on a character boundary, adding `...` when cut.
pub fn truncate_output(text: &str) -> String {
    if text.len() <= OUTPUT_LIMIT {
        return text.to_owned();
    }
    let mut end = OUTPUT_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}
