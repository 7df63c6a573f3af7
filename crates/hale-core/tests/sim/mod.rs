//! The simulator: drives one `Component` in virtual time, quinn `Pair`-style.
//!
//! It jumps the clock to the next deadline (the component's or a scripted event's), plays the
//! part of the driver (spawns succeed or fail, processes exit on a script, probes answer from a
//! script after a scripted duration, signals are obeyed or ignored) and records every action as
//! one line of text with its time. Tests compare those traces with `expect-test` snapshots.
//! Hours of simulated restarts run in milliseconds; nothing here reads a real clock.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use hale_core::{
    Action, Component, Exit, Input, Instant, NotifyMessage, ProbeKind, ProbeOutcome, Signal, Spec,
    State,
};

/// How a scripted instance lives.
#[derive(Debug, Clone, Copy)]
pub struct Life {
    /// Exit on its own after this long with this exit.
    pub exits: Option<(Duration, Exit)>,
    /// What it does with the stop signal: exit after this long with this exit, or ignore it.
    pub on_stop: Option<(Duration, Exit)>,
}

impl Life {
    /// Runs until stopped; exits 0 at once on the stop signal.
    pub fn forever() -> Self {
        Life { exits: None, on_stop: Some((Duration::ZERO, Exit::Code(0))) }
    }
    /// Exits with `code` after `after`.
    pub fn crash_after(after: Duration, code: i32) -> Self {
        Life { exits: Some((after, Exit::Code(code))), ..Life::forever() }
    }
    /// Ignores the stop signal (only SIGKILL ends it).
    pub fn ignoring_stop(mut self) -> Self {
        self.on_stop = None;
        self
    }
}

/// A probe answer: how long it takes and whether it passes.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub took: Duration,
    pub ok: bool,
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
pub fn at(d: Duration) -> Instant {
    Instant::from_origin(d)
}

type LifeScript = Box<dyn FnMut(u64) -> Result<Life, String>>;
type ProbeScript = Box<dyn FnMut(Instant, ProbeKind, u64) -> Answer>;

pub struct Sim {
    pub now: Instant,
    pub comp: Component,
    pub trace: String,
    /// Scripted inputs, by time, then by insertion order.
    events: BTreeMap<(Instant, u64), Input>,
    seq: u64,
    life: LifeScript,
    probe: ProbeScript,
    /// Every action the component produced, in order, with its time.
    pub actions: Vec<(Instant, Action)>,
    /// Incarnations currently alive in the simulated world (spawned, exit not delivered).
    pub alive: Vec<u64>,
    pub max_alive: usize,
    /// When true, probe runs are not traced (keeps long traces readable).
    pub quiet_probes: bool,
    stop_behaviour: HashMap<u64, Option<(Duration, Exit)>>,
}

impl Sim {
    pub fn new(spec: Spec) -> Self {
        Sim {
            now: Instant::ZERO,
            comp: Component::new(spec).expect("valid spec"),
            trace: String::new(),
            events: BTreeMap::new(),
            seq: 0,
            life: Box::new(|_| Ok(Life::forever())),
            probe: Box::new(|_, _, _| Answer { took: ms(1), ok: true }),
            actions: Vec::new(),
            alive: Vec::new(),
            max_alive: 0,
            quiet_probes: false,
            stop_behaviour: HashMap::new(),
        }
    }

    /// How each incarnation lives (or `Err` to make its start fail).
    pub fn lives(mut self, f: impl FnMut(u64) -> Result<Life, String> + 'static) -> Self {
        self.life = Box::new(f);
        self
    }

    /// How probes answer.
    pub fn probes(mut self, f: impl FnMut(Instant, ProbeKind, u64) -> Answer + 'static) -> Self {
        self.probe = Box::new(f);
        self
    }

    pub fn quiet(mut self) -> Self {
        self.quiet_probes = true;
        self
    }

    /// Schedule an input at an absolute time.
    pub fn at(&mut self, t: Duration, input: Input) {
        self.schedule(Instant::from_origin(t), input);
    }

    fn schedule(&mut self, t: Instant, input: Input) {
        self.seq += 1;
        self.events.insert((t, self.seq), input);
    }

    /// Feed one input now.
    pub fn input(&mut self, input: Input) {
        let gone = match &input {
            Input::Exited { incarnation, exit } => Some((*incarnation, exit.to_string())),
            Input::Stopped { incarnation } => Some((*incarnation, "stopped".to_owned())),
            _ => None,
        };
        if let Some((incarnation, what)) = gone {
            // A real process ends once: only the first exit of an instance is reported.
            let Some(pos) = self.alive.iter().position(|&i| i == incarnation) else { return };
            self.alive.remove(pos);
            self.line(format!("#{incarnation} {what}"));
        }
        self.raw(input);
    }

    /// Feed one input now, bypassing the simulated world's bookkeeping (for stale inputs).
    pub fn raw(&mut self, input: Input) {
        let mut out = Vec::new();
        self.comp.handle(self.now, input, &mut out);
        for a in out {
            self.perform(a);
        }
    }

    /// Run until virtual time `until` (inclusive), or until nothing is left to happen.
    pub fn run_until(&mut self, until: Duration) {
        self.run_to(Instant::from_origin(until));
        self.now = self.now.max(Instant::from_origin(until));
    }

    /// Run until nothing is scheduled anywhere; the clock stays at the last thing that happened.
    pub fn settle(&mut self) {
        self.run_to(Instant::MAX);
    }

    fn run_to(&mut self, until: Instant) {
        for _ in 0..1_000_000 {
            let next_event = self.events.keys().next().map(|k| k.0);
            let next_timer = self.comp.next_deadline();
            let next = match (next_event, next_timer) {
                (Some(e), Some(t)) => e.min(t),
                (Some(e), None) => e,
                (None, Some(t)) => t,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            assert!(next >= self.now, "time went backwards: {next} < {}", self.now);
            self.now = next;
            if next_event == Some(next) {
                let key = *self.events.keys().next().unwrap();
                let input = self.events.remove(&key).unwrap();
                self.input(input);
            } else {
                self.input(Input::Tick);
            }
        }
    }

    fn line(&mut self, text: impl AsRef<str>) {
        let _ = writeln!(self.trace, "{:<9} {}", self.now.to_string(), text.as_ref());
    }

    fn perform(&mut self, action: Action) {
        self.actions.push((self.now, action.clone()));
        match action {
            Action::Start { incarnation, restart } => {
                let how = if restart { "restart" } else { "start" };
                match (self.life)(incarnation) {
                    Ok(life) => {
                        self.line(format!("{how} #{incarnation}"));
                        self.alive.push(incarnation);
                        self.max_alive = self.max_alive.max(self.alive.len());
                        let now = self.now;
                        self.schedule(now, Input::Spawned { incarnation });
                        if let Some((after, exit)) = life.exits {
                            self.schedule(self.now + after, Input::Exited { incarnation, exit });
                        }
                        self.stop_behaviour.insert(incarnation, life.on_stop);
                    }
                    Err(error) => {
                        self.line(format!("{how} #{incarnation} fails: {error}"));
                        let now = self.now;
                        self.schedule(now, Input::SpawnFailed { incarnation, error });
                    }
                }
            }
            Action::Signal { incarnation, signal } => {
                self.line(format!("signal #{incarnation} {signal:?}"));
                let reaction = match signal {
                    Signal::Kill => Some((Duration::ZERO, Exit::Signal(9))),
                    Signal::Stop => self.stop_behaviour.get(&incarnation).copied().flatten(),
                };
                if let Some((after, exit)) = reaction {
                    // The first exit delivered wins; a later one for the same incarnation is a
                    // stale input the core must ignore.
                    self.schedule(self.now + after, Input::Exited { incarnation, exit });
                }
            }
            Action::StopExternal { incarnation } => {
                self.line(format!("stop-external #{incarnation}"));
                let now = self.now;
                self.schedule(now, Input::Stopped { incarnation });
            }
            Action::RunProbe { incarnation, kind } => {
                let answer = (self.probe)(self.now, kind, incarnation);
                let timeout = self.comp.spec().probe(kind).map(|p| p.timeout).unwrap();
                let outcome = if answer.took >= timeout {
                    ProbeOutcome::fail(timeout, format!("timed out after {timeout:?}"))
                } else if answer.ok {
                    ProbeOutcome::pass(answer.took, "")
                } else {
                    ProbeOutcome::fail(answer.took, "check failed")
                };
                if !self.quiet_probes {
                    let verdict = if outcome.ok { "ok" } else { "FAIL" };
                    self.line(format!("probe #{incarnation} {kind} -> {verdict}"));
                }
                let t = self.now + answer.took.min(timeout);
                self.schedule(t, Input::ProbeDone { incarnation, kind, outcome });
            }
            Action::Transition { from, to, reason, .. } => {
                self.line(format!("{from} -> {to}: {reason}"));
            }
        }
    }

    /// Deliver exits once per incarnation, as a real child reports once.
    pub fn notify(&mut self, t: Duration, message: NotifyMessage) {
        let incarnation = self.comp.incarnation();
        self.at(t, Input::Notify { incarnation, message });
    }

    pub fn state(&self) -> State {
        self.comp.state()
    }

    /// Times (seconds) at which automatic restarts were started.
    pub fn restart_times(&self) -> Vec<f64> {
        self.actions
            .iter()
            .filter_map(|(t, a)| match a {
                Action::Start { restart: true, .. } => Some(t.since_origin().as_secs_f64()),
                _ => None,
            })
            .collect()
    }
}
