//! The driver: one tokio task that owns every component's state machine and runtime slot, and
//! turns the machines' actions into processes, signals, probe runs and events.
//!
//! The loop `select!`s over requests from handles, finished tasks (child exits, probe runs,
//! external actions, output readers) and one sleep until the earliest deadline of any machine.
//! It reads the clock once per iteration and hands that instant to every input of the
//! iteration. Every task it starts lives in one `JoinSet` that it owns and aborts on shutdown:
//! nothing is fire-and-forget. Probe timeouts are applied here, never by the probes.
//!
//! What it does not do: decide anything. Every decision is `hale_core::Component`'s.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use hale_core::{
    Action, Exit, Input, Instant as CoreInstant, JitterSource, NotifyMessage, ProbeKind,
    ProbeOutcome, Signal, State,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::component::{ActionContext, Component, NotifyAccess, Run, Stream};
use crate::monitor::{
    Error, Event, Health, MonitorOptions, Op, ProbeHealth, ProbeResult, ProbeStats,
};
use crate::notify::{self, NotifySocket};
use crate::probe::{Probe, ProbeContext};
use crate::process;

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// A request from a [`crate::Monitor`] handle.
pub(crate) enum Request {
    Register { component: Box<Component>, reply: Reply<()> },
    Act { name: String, op: Op, reply: Reply<()> },
    Remove { name: String, reply: Reply<()> },
    Check { name: String, kind: ProbeKind, reply: Reply<ProbeResult> },
    Notify { name: String, incarnation: u64, message: NotifyMessage, reply: Reply<()> },
    Shutdown { reply: oneshot::Sender<()> },
}

/// What a finished task reports.
enum Done {
    Exited { slot: usize, incarnation: u64, pid: u32, exit: Exit },
    Probe { slot: usize, incarnation: u64, kind: ProbeKind, outcome: ProbeOutcome },
    Manual { outcome: ProbeOutcome, reply: Reply<ProbeResult> },
    Started { slot: usize, incarnation: u64, result: Result<(), String> },
    Stopped { slot: usize, incarnation: u64 },
    Output,
}

struct Child {
    incarnation: u64,
    pid: u32,
}

struct Slot {
    name: Arc<str>,
    kind: Arc<str>,
    core: hale_core::Component,
    run: Run,
    probes: [Option<Arc<dyn Probe>>; 3],
    child: Option<Child>,
    health: watch::Sender<Health>,
    /// Who may notify, and the `NOTIFY_SOCKET` value, when the component has a socket.
    notify: Option<(NotifyAccess, String)>,
    /// The deadline last pushed onto the heap for this slot.
    scheduled: Option<CoreInstant>,
    touched: bool,
    /// Removed by the embedder: the slot stays as a tombstone (its index may still be named
    /// by finished tasks in flight), but takes no input and publishes nothing.
    removed: bool,
    /// Per probe kind, every run counted (boxed: only configured probes pay for it).
    stats: [Option<Box<ProbeStats>>; 3],
    restarts_total: u64,
    /// The last transition's reason.
    state_reason: Option<Arc<str>>,
}

struct RandomJitter(fastrand::Rng);

impl JitterSource for RandomJitter {
    fn jitter(&mut self, period: Duration) -> Duration {
        let nanos = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(if nanos == 0 { 0 } else { self.0.u64(0..nanos) })
    }
}

pub(crate) fn spawn(
    requests: mpsc::Receiver<Request>,
    registry: watch::Sender<Arc<Vec<watch::Receiver<Health>>>>,
    events: broadcast::Sender<Event>,
    options: MonitorOptions,
) {
    let (notify_tx, notify_rx) = mpsc::unbounded_channel();
    let driver = Driver {
        slots: Vec::new(),
        names: HashMap::new(),
        tasks: JoinSet::new(),
        heap: BinaryHeap::new(),
        origin: Instant::now(),
        wall_origin: SystemTime::now(),
        events,
        registry,
        options,
        shutdown: None,
        actions: Vec::new(),
        notify_tx,
        notify: None,
        by_pid: HashMap::new(),
    };
    tokio::spawn(driver.run(requests, notify_rx));
}

struct Driver {
    slots: Vec<Slot>,
    names: HashMap<Arc<str>, usize>,
    tasks: JoinSet<Done>,
    /// (when to wake, the deadline, slot): the wake-up is the deadline with timer slack,
    /// fixed when the deadline is pushed (see [`slacken`]).
    heap: BinaryHeap<Reverse<(CoreInstant, CoreInstant, usize)>>,
    origin: Instant,
    wall_origin: SystemTime,
    events: broadcast::Sender<Event>,
    registry: watch::Sender<Arc<Vec<watch::Receiver<Health>>>>,
    options: MonitorOptions,
    /// Set once shutdown began: who to tell when it is done.
    shutdown: Option<Vec<oneshot::Sender<()>>>,
    actions: Vec<Action>,
    /// The notify socket's reader sends (sender pid, messages) here.
    notify_tx: mpsc::UnboundedSender<NotifyDatagram>,
    /// The one notify socket every component that asks for one shares (its `NOTIFY_SOCKET`
    /// value and its reader task), bound on first need. Datagrams are routed by the sender's
    /// PID as the kernel reports it: a main process, or a member of its process group.
    notify: Option<(String, tokio::task::AbortHandle)>,
    /// Main PID of each live child -> its slot.
    by_pid: HashMap<u32, usize>,
}

type NotifyDatagram = (Option<u32>, Vec<NotifyMessage>);

impl Driver {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut notifications: mpsc::UnboundedReceiver<NotifyDatagram>,
    ) {
        let far = self.origin + Duration::from_secs(86400 * 365 * 30);
        let sleep = tokio::time::sleep_until(far);
        tokio::pin!(sleep);
        let mut open = true;
        loop {
            let deadline = self.next_deadline();
            sleep.as_mut().reset(deadline.map_or(far, |d| self.origin + d.since_origin()));
            tokio::select! {
                biased;
                done = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Some(Ok(done)) = done {
                        let now = self.now();
                        self.done(now, done);
                    }
                }
                req = requests.recv(), if open => match req {
                    Some(req) => {
                        let now = self.now();
                        self.request(now, req);
                    }
                    None => {
                        open = false;
                        let now = self.now();
                        self.begin_shutdown(now, None);
                    }
                },
                Some((pid, messages)) = notifications.recv() => {
                    let now = self.now();
                    self.notified(now, pid, messages);
                }
                () = &mut sleep, if deadline.is_some() => {
                    let now = self.now();
                    self.tick(now);
                }
            }
            self.publish();
            if self.shutdown_complete() {
                break;
            }
        }
        // Let output readers drain what the children wrote last, then end every task.
        // (The notify reader never ends by itself.)
        if let Some((_, reader)) = self.notify.take() {
            reader.abort();
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(done) = self.tasks.join_next().await {
                if let Ok(Done::Manual { reply, .. }) = done {
                    let _ = reply.send(Err(Error::Closed));
                }
            }
        })
        .await;
        self.tasks.shutdown().await;
        for reply in self.shutdown.take().unwrap_or_default() {
            let _ = reply.send(());
        }
    }

    fn now(&self) -> CoreInstant {
        CoreInstant::from_origin(Instant::now().saturating_duration_since(self.origin))
    }

    /// When the driver must wake next (a deadline, with its slack).
    fn next_deadline(&mut self) -> Option<CoreInstant> {
        while let Some(&Reverse((wake, t, i))) = self.heap.peek() {
            if self.slots[i].scheduled == Some(t) {
                return Some(wake);
            }
            self.heap.pop(); // stale: the slot rescheduled since
        }
        None
    }

    fn tick(&mut self, now: CoreInstant) {
        while let Some(&Reverse((wake, t, i))) = self.heap.peek() {
            if wake > now {
                break;
            }
            self.heap.pop();
            if self.slots[i].scheduled == Some(t) {
                self.slots[i].scheduled = None;
                self.feed(i, now, Input::Tick);
            }
        }
    }

    // ---------------------------------------------------------------- requests

    fn request(&mut self, now: CoreInstant, req: Request) {
        match req {
            Request::Register { component, reply } => {
                let _ = reply.send(self.register(now, *component));
            }
            Request::Act { name, op, reply } => {
                let result = self.slot_of(&name).map(|i| {
                    let input = match op {
                        Op::Start => Input::Start,
                        Op::Stop => Input::Stop,
                        Op::Restart => Input::Restart,
                        Op::Reset => Input::Reset,
                    };
                    if self.shutdown.is_none() || op == Op::Stop {
                        self.feed(i, now, input);
                        Ok(())
                    } else {
                        Err(Error::Closed) // shutting down: only stop still means something
                    }
                });
                let _ = reply.send(result.and_then(|r| r));
            }
            Request::Remove { name, reply } => {
                let _ = reply.send(self.slot_of(&name).and_then(|i| self.remove(i)));
            }
            Request::Check { name, kind, reply } => match self.slot_of(&name) {
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
                Ok(i) => match self.probe_task(i, kind) {
                    Some(run) => {
                        self.tasks.spawn(async move { Done::Manual { outcome: run.await, reply } });
                    }
                    None => {
                        let _ = reply.send(Err(Error::NoSuchProbe { name, kind }));
                    }
                },
            },
            Request::Notify { name, incarnation, message, reply } => {
                let result = self
                    .slot_of(&name)
                    .map(|i| self.feed(i, now, Input::Notify { incarnation, message }));
                let _ = reply.send(result);
            }
            Request::Shutdown { reply } => self.begin_shutdown(now, Some(reply)),
        }
    }

    fn slot_of(&self, name: &str) -> Result<usize, Error> {
        self.names.get(name).copied().ok_or_else(|| Error::UnknownComponent(name.to_owned()))
    }

    fn register(&mut self, now: CoreInstant, c: Component) -> Result<(), Error> {
        if self.names.contains_key(c.name.as_str()) {
            return Err(Error::DuplicateComponent(c.name));
        }
        if self.shutdown.is_some() {
            return Err(Error::Closed);
        }
        let spec = c.spec();
        let core = hale_core::Component::new(spec).map_err(|errors| Error::InvalidComponent {
            name: c.name.clone(),
            errors: errors.iter().map(ToString::to_string).collect(),
        })?;
        let core = if self.options.jitter {
            core.with_jitter(Box::new(RandomJitter(fastrand::Rng::new())), CoreInstant::ZERO)
        } else {
            core
        };
        let name: Arc<str> = c.name.as_str().into();
        let kind: Arc<str> = c.kind_label.as_str().into();
        let probes = c.checks.map(|check| check.map(|c| c.probe));
        let stats = std::array::from_fn(|k| probes[k].as_ref().map(|_| Box::default()));
        let i = self.slots.len();
        let notify = match (&c.run, c.notify) {
            (Run::Process(_), Some(access)) => {
                let env_value = self.notify_socket().map_err(|e| Error::InvalidComponent {
                    name: c.name.clone(),
                    errors: vec![format!("notify socket: {e}")],
                })?;
                Some((access, env_value))
            }
            _ => None,
        };
        let slot = Slot {
            name: name.clone(),
            kind,
            core,
            run: c.run,
            probes,
            child: None,
            notify,
            health: watch::Sender::new(placeholder_health(&name)),
            scheduled: None,
            touched: true,
            removed: false,
            stats,
            restarts_total: 0,
            state_reason: None,
        };
        slot.health.send_replace(self.health_of(&slot, now));
        let rx = slot.health.subscribe();
        self.slots.push(slot);
        self.names.insert(name, i);
        self.registry.send_modify(|list| Arc::make_mut(list).push(rx));
        if c.autostart {
            self.feed(i, now, Input::Start);
        }
        Ok(())
    }

    fn remove(&mut self, i: usize) -> Result<(), Error> {
        let slot = &mut self.slots[i];
        let settled = slot.child.is_none()
            && !slot.core.has_instance()
            && matches!(slot.core.state(), State::Stopped | State::Failed);
        if !settled {
            return Err(Error::NotSettled(slot.name.to_string()));
        }
        slot.removed = true;
        slot.scheduled = None;
        slot.probes = [None, None, None];
        slot.stats = [None, None, None];
        // Dropping the command closes its output sink (the component's log file).
        slot.run = Run::External(crate::component::External::new());
        self.names.remove(&slot.name);
        let gone = slot.health.subscribe();
        self.registry.send_modify(|list| Arc::make_mut(list).retain(|rx| !rx.same_channel(&gone)));
        // Waiters on the old channel see it close.
        slot.health = watch::Sender::new(placeholder_health(&slot.name));
        Ok(())
    }

    fn begin_shutdown(&mut self, now: CoreInstant, reply: Option<oneshot::Sender<()>>) {
        let waiting = self.shutdown.get_or_insert_with(Vec::new);
        waiting.extend(reply);
        for i in 0..self.slots.len() {
            self.feed(i, now, Input::Stop);
        }
    }

    fn shutdown_complete(&self) -> bool {
        self.shutdown.is_some()
            && self.slots.iter().all(|s| {
                s.child.is_none()
                    && !s.core.has_instance()
                    && matches!(s.core.state(), State::Stopped | State::Failed)
            })
    }

    /// The shared notify socket's `NOTIFY_SOCKET` value, binding it (and starting its reader)
    /// on first use.
    fn notify_socket(&mut self) -> std::io::Result<String> {
        if let Some((env, _)) = &self.notify {
            return Ok(env.clone());
        }
        let socket = NotifySocket::bind()?;
        let env_value = socket.env_value.clone();
        let tx = self.notify_tx.clone();
        let reader = self.tasks.spawn(async move {
            loop {
                match socket.recv().await {
                    Ok((pid, data)) => {
                        let messages = notify::parse(&data);
                        if !messages.is_empty() && tx.send((pid, messages)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("notify socket: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            Done::Output
        });
        self.notify = Some((env_value.clone(), reader));
        Ok(env_value)
    }

    /// A datagram on the notify socket: from a component's main process, or with
    /// `NotifyAccess::All` from any process of its group (the main process leads the group);
    /// anything else is logged and dropped.
    fn notified(&mut self, now: CoreInstant, pid: Option<u32>, messages: Vec<NotifyMessage>) {
        let Some(p) = pid else {
            tracing::warn!("ignored a notify message without sender credentials");
            return;
        };
        let group = || {
            let raw = i32::try_from(p).ok()?;
            let g = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(raw))).ok()?;
            u32::try_from(g.as_raw()).ok()
        };
        let Some(i) = self
            .by_pid
            .get(&p)
            .copied()
            .or_else(|| group().and_then(|g| self.by_pid.get(&g).copied()))
        else {
            tracing::warn!(
                "ignored a notify message from pid {p}: no supervised process group has it"
            );
            return;
        };
        let slot = &self.slots[i];
        let (Some(child), Some((access, _))) = (&slot.child, &slot.notify) else { return };
        let allowed = match (pid, access) {
            (Some(p), _) if p == child.pid => true,
            (Some(p), NotifyAccess::All) => i32::try_from(p).ok().is_some_and(|p| {
                nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(p)))
                    .is_ok_and(|g| g.as_raw() as u32 == child.pid)
            }),
            _ => false,
        };
        if !allowed {
            tracing::warn!(
                component = %slot.name,
                "ignored a notify message from pid {pid:?}: only the main process (pid {}) may send (notify_access)",
                child.pid
            );
            return;
        }
        let incarnation = child.incarnation;
        for message in messages {
            self.feed(i, now, Input::Notify { incarnation, message });
        }
    }

    // ---------------------------------------------------------------- finished tasks

    fn done(&mut self, now: CoreInstant, done: Done) {
        match done {
            Done::Exited { slot, incarnation, pid, exit } => {
                // The main process is gone: whatever it left in its group goes with it.
                let _ = process::signal_group(pid, nix::sys::signal::Signal::SIGKILL as i32);
                let s = &mut self.slots[slot];
                if s.child.as_ref().is_some_and(|c| c.incarnation == incarnation) {
                    s.child = None;
                    self.by_pid.remove(&pid);
                }
                self.feed(slot, now, Input::Exited { incarnation, exit });
            }
            Done::Probe { slot, incarnation, kind, outcome } => {
                if let Some(stats) = &mut self.slots[slot].stats[kind as usize] {
                    stats.record(outcome.duration, outcome.ok);
                }
                self.feed(slot, now, Input::ProbeDone { incarnation, kind, outcome });
            }
            Done::Manual { outcome, reply } => {
                let at = SystemTime::now();
                let _ = reply.send(Ok(ProbeResult {
                    at,
                    duration: outcome.duration,
                    ok: outcome.ok,
                    output: join_reason(&outcome),
                }));
            }
            Done::Started { slot, incarnation, result } => {
                let input = match result {
                    Ok(()) => Input::Spawned { incarnation },
                    Err(error) => Input::SpawnFailed { incarnation, error },
                };
                self.feed(slot, now, input);
            }
            Done::Stopped { slot, incarnation } => {
                self.feed(slot, now, Input::Stopped { incarnation });
            }
            Done::Output => {}
        }
    }

    // ---------------------------------------------------------------- the machine

    /// Hand `input` to slot `i`'s machine and carry out what it asks, including the inputs
    /// that actions answer at once (a spawn's success or failure).
    fn feed(&mut self, i: usize, now: CoreInstant, input: Input) {
        if self.slots[i].removed {
            return;
        }
        let mut out = std::mem::take(&mut self.actions);
        let mut pending = vec![input];
        while let Some(input) = pending.pop() {
            out.clear();
            self.slots[i].core.handle(now, input, &mut out);
            for action in out.drain(..) {
                if let Some(next) = self.perform(i, now, action) {
                    pending.push(next);
                }
            }
        }
        self.actions = out;
        let slot = &mut self.slots[i];
        slot.touched = true;
        let next = slot.core.next_deadline();
        if next != slot.scheduled {
            slot.scheduled = next;
            if let Some(t) = next {
                // The slack is chosen now, from the whole distance to the deadline, so that
                // the wake-up stays on its grid however often the driver wakes meanwhile.
                let wake = slacken(t.since_origin(), now.since_origin(), self.options.timer_slack);
                self.heap.push(Reverse((CoreInstant::from_origin(wake), t, i)));
            }
        }
    }

    fn perform(&mut self, i: usize, now: CoreInstant, action: Action) -> Option<Input> {
        match action {
            Action::Start { incarnation, restart } => {
                self.slots[i].restarts_total += u64::from(restart);
                self.start(i, incarnation, restart)
            }
            Action::Signal { incarnation, signal } => {
                let slot = &self.slots[i];
                if let (Some(child), Run::Process(cmd)) = (&slot.child, &slot.run)
                    && child.incarnation == incarnation
                {
                    let sig = match signal {
                        Signal::Stop => cmd.stop_signal,
                        Signal::Kill => nix::sys::signal::Signal::SIGKILL as i32,
                    };
                    if let Err(e) = process::signal_group(child.pid, sig) {
                        tracing::warn!(component = %slot.name, "signal {sig}: {e}");
                    }
                }
                None
            }
            Action::StopExternal { incarnation } => {
                let slot = &self.slots[i];
                let Run::External(ext) = &slot.run else {
                    return Some(Input::Stopped { incarnation });
                };
                let Some(stop) = ext.stop.clone() else {
                    return Some(Input::Stopped { incarnation });
                };
                let ctx = ActionContext { component: slot.name.clone(), incarnation };
                let limit = slot.core.spec().stop_timeout;
                let name = slot.name.clone();
                self.tasks.spawn(async move {
                    match tokio::time::timeout(limit, AssertUnwindSafe(stop(ctx)).catch_unwind())
                        .await
                    {
                        Ok(Ok(Ok(()))) => {}
                        Ok(Ok(Err(e))) => tracing::warn!(component = %name, "stop action: {e}"),
                        Ok(Err(_)) => tracing::warn!(component = %name, "stop action panicked"),
                        Err(_) => tracing::warn!(component = %name, "stop action timed out"),
                    }
                    Done::Stopped { slot: i, incarnation }
                });
                None
            }
            Action::RunProbe { incarnation, kind } => {
                if let Some(run) = self.probe_task_for(i, kind, incarnation) {
                    self.tasks.spawn(async move {
                        Done::Probe { slot: i, incarnation, kind, outcome: run.await }
                    });
                }
                None
            }
            Action::Transition { from, to, reason, incarnation } => {
                let at = self.wall(now);
                let slot = &mut self.slots[i];
                slot.state_reason = Some(Arc::from(reason.as_str()));
                tracing::info!(component = %slot.name, %from, %to, "{reason}");
                let _ = self.events.send(Event {
                    at,
                    component: slot.name.clone(),
                    from,
                    to,
                    reason,
                    incarnation,
                });
                None
            }
        }
    }

    fn start(&mut self, i: usize, incarnation: u64, restart: bool) -> Option<Input> {
        let slot = &mut self.slots[i];
        match &slot.run {
            Run::Process(cmd) => {
                let mut env = vec![
                    ("HALE_COMPONENT".to_owned(), slot.name.to_string()),
                    ("HALE_INCARNATION".to_owned(), incarnation.to_string()),
                ];
                let watchdog = slot.core.spec().watchdog;
                if let Some((_, socket)) = &slot.notify {
                    env.push(("NOTIFY_SOCKET".to_owned(), socket.clone()));
                    if let Some(w) = watchdog {
                        env.push(("WATCHDOG_USEC".to_owned(), w.as_micros().to_string()));
                    }
                }
                let watchdog_pid = watchdog.is_some() && slot.notify.is_some();
                match process::spawn(cmd, &env, watchdog_pid) {
                    Ok(mut child) => {
                        let Some(pid) = child.id() else {
                            return Some(Input::SpawnFailed {
                                incarnation,
                                error: "the child exited before it could be watched".into(),
                            });
                        };
                        if let Some(sink) = cmd.output.clone() {
                            // One task reads both pipes: a quiet child costs one small task.
                            let out = child.stdout.take().and_then(|o| o.into_owned_fd().ok());
                            let err = child.stderr.take().and_then(|e| e.into_owned_fd().ok());
                            let name = slot.name.clone();
                            self.tasks.spawn(async move {
                                let read = |pipe: Option<std::os::fd::OwnedFd>, stream| {
                                    let (name, sink) = (name.clone(), sink.clone());
                                    async move {
                                        if let Some(pipe) = pipe {
                                            process::pump(pipe, name, stream, sink).await;
                                        }
                                    }
                                };
                                tokio::join!(read(out, Stream::Stdout), read(err, Stream::Stderr));
                                Done::Output
                            });
                        }
                        slot.child = Some(Child { incarnation, pid });
                        self.by_pid.insert(pid, i);
                        self.tasks.spawn(async move {
                            let exit = match child.wait().await {
                                Ok(status) => exit_of(status),
                                Err(_) => Exit::Code(-1),
                            };
                            Done::Exited { slot: i, incarnation, pid, exit }
                        });
                        Some(Input::Spawned { incarnation })
                    }
                    Err(e) => {
                        let program = cmd.argv.first().map(|p| p.to_string_lossy().into_owned());
                        Some(Input::SpawnFailed {
                            incarnation,
                            error: format!("spawn {}: {e}", program.unwrap_or_default()),
                        })
                    }
                }
            }
            Run::External(ext) => {
                let f = if restart {
                    ext.restart.clone().or(ext.start.clone())
                } else {
                    ext.start.clone()
                };
                let Some(f) = f else { return Some(Input::Spawned { incarnation }) };
                let ctx = ActionContext { component: slot.name.clone(), incarnation };
                let limit = slot.core.spec().restart_timeout;
                self.tasks.spawn(async move {
                    let result =
                        match tokio::time::timeout(limit, AssertUnwindSafe(f(ctx)).catch_unwind())
                            .await
                        {
                            Ok(Ok(r)) => r,
                            Ok(Err(_)) => Err("start action panicked".to_owned()),
                            Err(_) => Err(format!("start action timed out after {limit:?}")),
                        };
                    Done::Started { slot: i, incarnation, result }
                });
                None
            }
        }
    }

    /// The future of one run of slot `i`'s `kind` probe against its current instance.
    fn probe_task(
        &self,
        i: usize,
        kind: ProbeKind,
    ) -> Option<impl Future<Output = ProbeOutcome> + use<>> {
        let incarnation = self.slots[i].core.incarnation();
        self.probe_task_for(i, kind, incarnation)
    }

    fn probe_task_for(
        &self,
        i: usize,
        kind: ProbeKind,
        incarnation: u64,
    ) -> Option<impl Future<Output = ProbeOutcome> + use<>> {
        let slot = &self.slots[i];
        let probe = slot.probes[kind as usize].clone()?;
        let timeout = slot.core.spec().probe(kind)?.timeout;
        let pid = slot.child.as_ref().filter(|c| c.incarnation == incarnation).map(|c| c.pid);
        let ctx = ProbeContext { component: slot.name.clone(), kind, incarnation, pid, timeout };
        Some(run_probe(probe, ctx, timeout))
    }

    // ---------------------------------------------------------------- health

    fn wall(&self, at: CoreInstant) -> SystemTime {
        self.wall_origin + at.since_origin()
    }

    fn publish(&mut self) {
        let now = self.now();
        for i in 0..self.slots.len() {
            if self.slots[i].touched {
                self.slots[i].touched = false;
                let h = self.health_of(&self.slots[i], now);
                self.slots[i].health.send_replace(h);
            }
        }
    }

    fn health_of(&self, slot: &Slot, now: CoreInstant) -> Health {
        let st = slot.core.status(now);
        let std_now = std::time::Instant::now();
        let mut probes = BTreeMap::new();
        for kind in ProbeKind::ALL {
            if let Some(p) = &st.probes[kind as usize] {
                let last = p
                    .last
                    .iter()
                    .map(|r| ProbeResult {
                        at: self.wall(r.at),
                        duration: r.duration,
                        ok: r.ok,
                        output: r.output.clone(),
                    })
                    .collect();
                probes.insert(
                    kind,
                    ProbeHealth {
                        consecutive_successes: p.consecutive_successes,
                        consecutive_failures: p.consecutive_failures,
                        last,
                        stats: slot.stats[kind as usize].as_deref().copied().unwrap_or_default(),
                    },
                );
            }
        }
        Health {
            name: slot.name.clone(),
            kind: slot.kind.clone(),
            state: st.state,
            ready: st.ready,
            healthy: st.healthy,
            pid: slot.child.as_ref().map(|c| c.pid),
            incarnation: st.incarnation,
            started_at: st.uptime.and_then(|u| std_now.checked_sub(u)),
            restart_count: st.restart_count,
            restarts_total: slot.restarts_total,
            restarts_in_window: st.restarts_in_window,
            unstable: st.unstable,
            next_restart_at: st.next_restart_in.map(|d| std_now + d),
            state_reason: slot.state_reason.clone(),
            last_error: st.last_error,
            last_exit: st.last_exit,
            status_text: st.status_text,
            stopping: st.stopping,
            probes,
        }
    }
}

/// When to wake for a deadline `at` (both counted from the monitor's start), seen at `now`:
/// `at` rounded up to a grid whose step is at most 1/16 of the time left and `max_slack`.
/// Deadlines close together then share one wake-up (1 s checks land on a 50 ms grid), while a
/// timer is never early and late by at most ~6% of its distance (a 100 ms backoff by 5 ms).
fn slacken(at: Duration, now: Duration, max_slack: Duration) -> Duration {
    const STEPS_MS: [u64; 6] = [50, 20, 10, 5, 2, 1];
    let budget = at.saturating_sub(now) / 16;
    let Some(step) = STEPS_MS
        .iter()
        .map(|&ms| Duration::from_millis(ms))
        .find(|&step| step <= budget && step <= max_slack)
    else {
        return at;
    };
    let step_ns = step.as_nanos();
    let n = at.as_nanos().div_ceil(step_ns);
    Duration::from_nanos(u64::try_from(n * step_ns).unwrap_or(u64::MAX))
}

fn placeholder_health(name: &Arc<str>) -> Health {
    Health {
        name: name.clone(),
        kind: "".into(),
        state: State::Stopped,
        ready: false,
        healthy: false,
        pid: None,
        incarnation: 0,
        started_at: None,
        restart_count: 0,
        restarts_total: 0,
        restarts_in_window: 0,
        unstable: 0,
        next_restart_at: None,
        state_reason: None,
        last_error: None,
        last_exit: None,
        status_text: None,
        stopping: false,
        probes: BTreeMap::new(),
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(sig)) => Exit::Signal(sig),
        (None, None) => Exit::Code(-1),
    }
}

fn join_reason(o: &ProbeOutcome) -> String {
    match &o.reason {
        Some(r) if o.output.is_empty() => r.clone(),
        Some(r) => format!("{r}\n{}", o.output),
        None => o.output.clone(),
    }
}

/// Run one check with the driver's timeout; a panic or an overrun is a failure with a reason.
async fn run_probe(probe: Arc<dyn Probe>, ctx: ProbeContext, timeout: Duration) -> ProbeOutcome {
    let started = Instant::now();
    // `describe` allocates: only a failure that needs the probe's name pays for it.
    let describe = |probe: &Arc<dyn Probe>| probe.describe();
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| probe.check(ctx))) {
        Ok(fut) => fut,
        Err(_) => {
            let what = describe(&probe);
            return ProbeOutcome::fail(Duration::ZERO, format!("{what}: check panicked"));
        }
    };
    let result = tokio::time::timeout(timeout, AssertUnwindSafe(fut).catch_unwind()).await;
    let took = started.elapsed();
    match result {
        Ok(Ok(Ok(output))) => ProbeOutcome::pass(took, hale_core::truncate_output(&output)),
        Ok(Ok(Err(e))) => ProbeOutcome {
            ok: false,
            duration: took,
            reason: Some(e.reason),
            output: hale_core::truncate_output(&e.output),
        },
        Ok(Err(_)) => ProbeOutcome::fail(took, format!("{}: check panicked", describe(&probe))),
        Err(_) => {
            let what = describe(&probe);
            ProbeOutcome::fail(took, format!("{what}: timed out after {timeout:?}"))
        }
    }
}

#[cfg(test)]
mod slack_tests {
    use super::slacken;
    use std::time::Duration;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn slack_is_at_most_a_sixteenth_of_the_distance_and_never_early() {
        // No slack allowed: exact.
        assert_eq!(slacken(MS(1003), MS(0), Duration::ZERO), MS(1003));
        // 1 s away: a 50 ms grid.
        assert_eq!(slacken(MS(1003), MS(0), MS(50)), MS(1050));
        assert_eq!(slacken(MS(2006), MS(1010), MS(50)), MS(2050));
        // The cap wins over the distance.
        assert_eq!(slacken(MS(1003), MS(0), MS(10)), MS(1010));
        // 100 ms away: a 5 ms grid; 10 ms away: none.
        assert_eq!(slacken(MS(5101), MS(5000), MS(50)), MS(5105));
        assert_eq!(slacken(MS(5010), MS(5000), MS(50)), MS(5010));
        // Already on the grid, or past: unchanged.
        assert_eq!(slacken(MS(1050), MS(0), MS(50)), MS(1050));
        assert_eq!(slacken(MS(900), MS(1000), MS(50)), MS(900));
        for at in (0..5000).step_by(7) {
            let wake = slacken(MS(at), MS(0), MS(50));
            assert!(wake >= MS(at) && wake - MS(at) <= MS(at) / 16, "{at} -> {wake:?}");
        }
    }
}
