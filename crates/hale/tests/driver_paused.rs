//! The driver's scheduling, timeouts and handle API in paused virtual time, with external
//! components and closure probes only.
//!
//! Each test runs on a paused tokio clock that jumps straight to the next timer when every task
//! is idle, so seconds of supervision take microseconds and every instant is exact (up to the
//! timer wheel's 1 ms resolution). No real process appears here: under a paused clock a timeout
//! around a real child fires at once (CRATES.md); those tests live in `driver_process.rs`.
//! Waiting is done on the health `watch` or the event stream, each inside a guard timeout, or by
//! sleeping the virtual clock to a known instant, which is deterministic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hale::probe::{self, CheckResult, ProbeError};
use hale::{
    Check, Component, Error, Event, External, Health, Monitor, MonitorOptions, ProbeKind,
    RestartConfig, RestartPolicy, State, action,
};
use tokio::sync::broadcast;
use tokio::time::Instant;

/// Longer than anything a test waits for; virtual, so it costs nothing unless something hangs.
const GUARD: Duration = Duration::from_secs(3600);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn monitor() -> Monitor {
    Monitor::with_options(MonitorOptions { jitter: false, ..MonitorOptions::default() })
}

/// Wait, within the guard, until `name`'s health satisfies `pred`.
async fn until(m: &Monitor, name: &str, what: &str, pred: impl FnMut(&Health) -> bool) -> Health {
    match tokio::time::timeout(GUARD, m.wait_for(name, pred)).await {
        Ok(h) => h.unwrap(),
        Err(_) => panic!("{name} never got {what}: {:?}", m.health(name)),
    }
}

async fn state_is(m: &Monitor, name: &str, state: State) -> Health {
    until(m, name, &format!("to {state}"), |h| h.state == state).await
}

async fn next_event(rx: &mut broadcast::Receiver<Event>) -> Event {
    tokio::time::timeout(GUARD, rx.recv()).await.expect("no event within the guard").unwrap()
}

/// The timer wheel fires at millisecond ticks, so an instant may be up to 1 ms late.
fn assert_near(actual: Duration, expected: Duration, what: &str) {
    let diff = actual.abs_diff(expected);
    assert!(diff <= ms(1), "{what}: at {actual:?}, expected {expected:?}");
}

/// Instants at which a probe was called.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Instant>>>);

impl Calls {
    fn record(&self) {
        self.0.lock().unwrap().push(Instant::now());
    }
    fn offsets(&self, t0: Instant) -> Vec<Duration> {
        self.0.lock().unwrap().iter().map(|t| *t - t0).collect()
    }
}

fn passing(calls: &Calls) -> Check {
    let calls = calls.clone();
    Check::new(probe::from_fn(move |_ctx| {
        calls.record();
        async { Ok(String::new()) }
    }))
}

fn never_returns() -> Check {
    Check::new(probe::from_fn(|_ctx| std::future::pending::<CheckResult>()))
}

/// A probe that passes while `healthy` is set and fails with "down" otherwise.
fn flag_probe(healthy: &Arc<AtomicBool>) -> Check {
    let healthy = healthy.clone();
    Check::new(probe::from_fn(move |_ctx| {
        let ok = healthy.load(Ordering::SeqCst);
        async move { if ok { Ok("up".to_owned()) } else { Err(ProbeError::new("down")) } }
    }))
}

/// Names of the actions called, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn action(&self, label: &'static str) -> hale::ActionFn {
        let log = self.clone();
        action(move |_ctx| {
            let log = log.clone();
            async move {
                log.0.lock().unwrap().push(label.to_owned());
                Ok(())
            }
        })
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[tokio::test(start_paused = true)]
async fn liveness_runs_at_a_fixed_rate_from_startup_success() {
    let m = monitor();
    let t0 = Instant::now();
    let calls = Calls::default();
    m.register(
        Component::external("svc", External::new()).liveness(passing(&calls).period(secs(1))),
    )
    .await
    .unwrap();
    tokio::time::sleep_until(t0 + ms(3500)).await;
    let got = calls.offsets(t0);
    assert_eq!(got.len(), 4, "calls at {got:?}");
    for (k, at) in got.into_iter().enumerate() {
        assert_near(at, secs(k as u64), &format!("liveness run {k}"));
    }
}

#[tokio::test(start_paused = true)]
async fn liveness_delay_counts_from_startup_success_not_from_start() {
    let m = monitor();
    let t0 = Instant::now();
    let startup_calls = Calls::default();
    let liveness_calls = Calls::default();
    // Startup fails twice and passes on its third run, at 2 s: that is G.
    let startup = {
        let calls = startup_calls.clone();
        Check::new(probe::from_fn(move |_ctx| {
            calls.record();
            let n = calls.0.lock().unwrap().len();
            async move { if n >= 3 { Ok(String::new()) } else { Err(ProbeError::new("not yet")) } }
        }))
        .period(secs(1))
    };
    let liveness = passing(&liveness_calls).period(secs(1)).initial_delay(ms(500));
    m.register(Component::external("svc", External::new()).startup(startup).liveness(liveness))
        .await
        .unwrap();
    let h = state_is(&m, "svc", State::Running).await;
    assert_near(Instant::now() - t0, secs(2), "startup success");
    assert_eq!(h.probes[&ProbeKind::Startup].consecutive_successes, 1);
    tokio::time::sleep_until(t0 + ms(5000)).await;
    let startup = startup_calls.offsets(t0);
    assert_eq!(startup.len(), 3, "startup stops once it passed: {startup:?}");
    for (k, at) in startup.into_iter().enumerate() {
        assert_near(at, secs(k as u64), &format!("startup run {k}"));
    }
    let liveness = liveness_calls.offsets(t0);
    assert_eq!(liveness.len(), 3, "calls at {liveness:?}");
    for (k, at) in liveness.into_iter().enumerate() {
        assert_near(at, ms(2500 + 1000 * k as u64), &format!("liveness run {k}"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_probe_past_its_timeout_fails_and_condemns_then_stop_and_restart_actions_run() {
    let m = monitor();
    let t0 = Instant::now();
    let log = Log::default();
    let external = External::new().stop(log.action("stop")).restart(log.action("restart"));
    let c = Component::external("svc", external)
        .liveness(never_returns().period(secs(1)).timeout(ms(300)).failure_threshold(3))
        .restart(RestartConfig { initial_backoff: secs(1), ..RestartConfig::default() });
    let mut events = m.subscribe();
    m.register(c).await.unwrap();

    // Runs at 0, 1 and 2 s each time out 300 ms later: the third failure condemns at 2.3 s.
    // Transient states are read from the event stream, which misses none.
    let mut e = next_event(&mut events).await;
    while e.to != State::Unhealthy {
        e = next_event(&mut events).await;
    }
    assert_near(Instant::now() - t0, ms(2300), "the verdict");
    assert!(e.reason.contains("timed out"), "reason: {}", e.reason);
    let h = m.health("svc").unwrap();
    let error = h.last_error.clone().unwrap();
    assert!(error.contains("liveness") && error.contains("timed out"), "last_error: {error}");
    let live = &h.probes[&ProbeKind::Liveness];
    assert_eq!(live.consecutive_failures, 3);
    assert_eq!(live.last.len(), 3);
    for r in &live.last {
        assert!(!r.ok);
        assert_eq!(r.duration, ms(300), "a timed-out run lasts exactly the timeout");
        assert!(r.output.contains("timed out after 300ms"), "output: {}", r.output);
    }
    let e = next_event(&mut events).await;
    assert_eq!((e.from, e.to), (State::Unhealthy, State::Restarting));
    let h =
        until(&m, "svc", "a second instance", |h| h.state == State::Running && h.incarnation == 2)
            .await;
    assert_near(Instant::now() - t0, ms(3300), "the restart after 1 s of backoff");
    assert_eq!(h.restart_count, 1);
    assert_eq!(log.take(), ["stop", "restart"], "stop first, then the restart action");
}

#[tokio::test(start_paused = true)]
async fn a_slow_probe_never_overlaps_itself_and_skipped_ticks_are_not_caught_up() {
    let m = monitor();
    let t0 = Instant::now();
    let calls = Calls::default();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    struct InFlight(Arc<AtomicUsize>);
    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let probe = {
        let (calls, running, most) = (calls.clone(), running.clone(), most.clone());
        probe::from_fn(move |_ctx| {
            calls.record();
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let guard = InFlight(running.clone());
            async move {
                tokio::time::sleep(ms(2500)).await;
                drop(guard);
                Ok(String::new())
            }
        })
    };
    let c = Component::external("svc", External::new())
        .liveness(Check::new(probe).period(secs(1)).timeout(secs(10)));
    m.register(c).await.unwrap();
    tokio::time::sleep_until(t0 + ms(10_000)).await;
    assert_eq!(most.load(Ordering::SeqCst), 1, "two runs of one probe were in flight at once");
    // Ticks at 1 and 2 s fall inside the first run and are skipped; the next run is at the
    // 3 s tick, not at 2.5 s when the first one ended.
    let got = calls.offsets(t0);
    assert_eq!(got.len(), 4, "calls at {got:?}");
    for (k, at) in got.into_iter().enumerate() {
        assert_near(at, secs(3 * k as u64), &format!("run {k}"));
    }
    let h = m.health("svc").unwrap();
    assert_eq!(h.state, State::Running);
    assert_eq!(h.probes[&ProbeKind::Liveness].consecutive_successes, 3);
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_first_probes_within_one_period_and_only_near_monitor_start() {
    let m = Monitor::new(); // jitter on
    let t0 = Instant::now();
    let period = secs(10);
    let calls: HashMap<String, Calls> =
        (0..20).map(|i| (format!("c{i}"), Calls::default())).collect();
    for (name, c) in &calls {
        let check = passing(c).period(period);
        m.register(Component::external(name.clone(), External::new()).liveness(check))
            .await
            .unwrap();
    }
    tokio::time::sleep_until(t0 + period + ms(5)).await;
    let mut firsts = Vec::new();
    for (name, c) in &calls {
        let got = c.offsets(t0);
        let first = *got.first().unwrap_or_else(|| panic!("{name} never probed in one period"));
        // The drawn jitter is below the period; the timer wheel may round it up by < 1 ms.
        assert!(first < period + ms(1), "{name}'s first probe at {first:?}");
        if let Some(second) = got.get(1) {
            assert_near(*second - first, period, "fixed rate after the jittered start");
        }
        firsts.push(first);
    }
    assert!(firsts.iter().any(|f| *f != firsts[0]), "all first probes at {:?}", firsts[0]);

    // An instance that starts more than one period after the monitor gets no jitter.
    let late = Calls::default();
    let at = Instant::now();
    m.register(
        Component::external("late", External::new()).liveness(passing(&late).period(period)),
    )
    .await
    .unwrap();
    tokio::time::sleep(ms(500)).await;
    assert_eq!(late.offsets(at), [Duration::ZERO], "a late instance probes at once");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_probe_is_a_failure_and_the_driver_survives() {
    let m = monitor();
    let policy = RestartConfig { policy: RestartPolicy::Never, ..RestartConfig::default() };
    let in_future = Check::new(probe::from_fn(|_ctx| async { panic!("boom in the check") }));
    let before_future = Check::new(probe::from_fn(|_ctx| -> std::future::Ready<CheckResult> {
        panic!("boom before the check")
    }));
    for (name, check) in [("async", in_future), ("sync", before_future)] {
        let c = Component::external(name, External::new())
            .liveness(check.failure_threshold(1))
            .restart(policy.clone());
        m.register(c).await.unwrap();
        let h = state_is(&m, name, State::Failed).await;
        let error = h.last_error.unwrap();
        assert!(error.contains("liveness") && error.contains("panicked"), "{name}: {error}");
    }
    // The driver still answers.
    let calls = Calls::default();
    m.register(Component::external("after", External::new()).liveness(passing(&calls)))
        .await
        .unwrap();
    let h = state_is(&m, "after", State::Running).await;
    assert!(h.healthy);
}

#[tokio::test(start_paused = true)]
async fn run_health_check_returns_a_result_and_moves_no_counter() {
    let m = monitor();
    // A long initial delay keeps scheduled runs out of the way.
    let failing = Check::new(probe::from_fn(|_ctx| async {
        Err(ProbeError::with_output("nope", "details"))
    }))
    .initial_delay(secs(1000))
    .failure_threshold(1);
    m.register(Component::external("sick", External::new()).liveness(failing)).await.unwrap();
    let ok = Check::new(probe::from_fn(|ctx| async move {
        tokio::time::sleep(ms(200)).await;
        Ok(format!("fine, incarnation {}", ctx.incarnation))
    }))
    .initial_delay(secs(1000));
    m.register(Component::external("well", External::new()).readiness(ok)).await.unwrap();
    state_is(&m, "sick", State::Running).await;

    let r = m.run_health_check("sick", ProbeKind::Liveness).await.unwrap();
    assert!(!r.ok);
    assert!(r.output.contains("nope") && r.output.contains("details"), "{}", r.output);
    let h = m.health("sick").unwrap();
    assert_eq!(h.state, State::Running, "a manual failure condemns nothing");
    assert_eq!(h.probes[&ProbeKind::Liveness].consecutive_failures, 0);
    assert_eq!(h.probes[&ProbeKind::Liveness].consecutive_successes, 0);
    assert!(h.probes[&ProbeKind::Liveness].last.is_empty(), "nor enters the history");

    let r = m.run_health_check("well", ProbeKind::Readiness).await.unwrap();
    assert!(r.ok);
    assert_eq!(r.output, "fine, incarnation 1");
    assert_eq!(r.duration, ms(200));
    let h = m.health("well").unwrap();
    assert!(!h.ready, "a manual success does not make it ready");
    assert_eq!(h.probes[&ProbeKind::Readiness].consecutive_successes, 0);

    match m.run_health_check("well", ProbeKind::Liveness).await {
        Err(Error::NoSuchProbe { name, kind }) => {
            assert_eq!((name.as_str(), kind), ("well", ProbeKind::Liveness));
        }
        other => panic!("expected NoSuchProbe, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn subscribe_delivers_every_transition_in_order() {
    let m = monitor();
    let mut events = m.subscribe();
    let healthy = Arc::new(AtomicBool::new(true));
    let c = Component::external("svc", External::new())
        .liveness(flag_probe(&healthy).period(secs(1)).failure_threshold(2))
        .restart(RestartConfig { initial_backoff: secs(2), ..RestartConfig::default() });
    m.register(c).await.unwrap();
    state_is(&m, "svc", State::Running).await;
    healthy.store(false, Ordering::SeqCst);
    until(&m, "svc", "a second instance", |h| h.incarnation == 2).await;
    healthy.store(true, Ordering::SeqCst);
    until(&m, "svc", "a healthy second instance", |h| h.incarnation == 2 && h.healthy).await;
    m.stop("svc").await.unwrap();
    state_is(&m, "svc", State::Stopped).await;

    let expected = [
        (State::Stopped, State::Starting, 1),
        (State::Starting, State::Running, 1),
        (State::Running, State::Unhealthy, 1),
        (State::Unhealthy, State::Restarting, 1),
        (State::Restarting, State::Starting, 2),
        (State::Starting, State::Running, 2),
        (State::Running, State::Stopped, 2),
    ];
    let mut got = Vec::new();
    for _ in expected {
        let e = next_event(&mut events).await;
        assert_eq!(&*e.component, "svc");
        got.push((e.from, e.to, e.incarnation));
        if e.to == State::Unhealthy {
            assert!(e.reason.contains("liveness: 2 consecutive failures: down"), "{}", e.reason);
        }
        if e.to == State::Restarting {
            assert!(e.reason.contains("restart 1 in 2s"), "{}", e.reason);
        }
    }
    assert_eq!(got, expected);
    assert!(events.try_recv().is_err(), "no transition beyond these");
}

#[tokio::test(start_paused = true)]
async fn a_restart_action_past_restart_timeout_is_a_start_failure() {
    let m = monitor();
    let healthy = Arc::new(AtomicBool::new(true));
    let called = Calls::default();
    let hang = {
        let called = called.clone();
        action(move |_ctx| {
            called.record();
            std::future::pending()
        })
    };
    let c = Component::external("svc", External::new().restart(hang))
        .liveness(flag_probe(&healthy).period(secs(1)).failure_threshold(1))
        .restart_timeout(secs(2))
        .restart(RestartConfig { initial_backoff: secs(1), ..RestartConfig::default() });
    m.register(c).await.unwrap();
    state_is(&m, "svc", State::Running).await;
    healthy.store(false, Ordering::SeqCst);
    state_is(&m, "svc", State::Restarting).await;
    let h = until(&m, "svc", "a start failure", |h| {
        h.last_error.as_deref().is_some_and(|e| e.contains("start failed"))
    })
    .await;
    let first_call = called.0.lock().unwrap()[0];
    assert_near(Instant::now() - first_call, secs(2), "the start failure");
    let error = h.last_error.unwrap();
    assert!(error.contains("start action timed out after 2s"), "last_error: {error}");
    assert_eq!(h.state, State::Restarting, "a start failure is restarted under `always`");
    assert_eq!(h.restart_count, 2);
    assert_eq!(h.incarnation, 2, "the failed attempt was instance 2");
}

#[tokio::test(start_paused = true)]
async fn operator_stop_start_restart_and_reset_call_the_actions() {
    let m = monitor();
    let log = Log::default();
    let external = External::new().start(log.action("start")).stop(log.action("stop"));
    m.register(Component::external("svc", external)).await.unwrap();
    state_is(&m, "svc", State::Running).await;
    assert_eq!(log.take(), ["start"]);

    m.stop("svc").await.unwrap();
    let h = state_is(&m, "svc", State::Stopped).await;
    assert!(h.is_settled() && !h.ready);
    assert_eq!(log.take(), ["stop"]);
    m.stop("svc").await.unwrap();
    tokio::time::sleep(secs(60)).await;
    assert_eq!(m.health("svc").unwrap().state, State::Stopped, "a stop is never restarted");
    assert!(log.take().is_empty(), "stopping a stopped component does nothing");

    m.start("svc").await.unwrap();
    let h = state_is(&m, "svc", State::Running).await;
    assert_eq!(h.incarnation, 2);
    assert_eq!(log.take(), ["start"]);

    m.restart("svc").await.unwrap();
    let h =
        until(&m, "svc", "instance 3", |h| h.incarnation == 3 && h.state == State::Running).await;
    assert_eq!(h.restart_count, 0, "an operator restart is not an automatic one");
    assert_eq!(log.take(), ["stop", "start"]);

    // Reset: a start action that fails twice reaches Failed (max_restarts 1).
    let broken = Arc::new(AtomicBool::new(true));
    let start = {
        let broken = broken.clone();
        action(move |_ctx| {
            let fail = broken.load(Ordering::SeqCst);
            async move { if fail { Err("no database".to_owned()) } else { Ok(()) } }
        })
    };
    let restart = RestartConfig { max_restarts: 1, initial_backoff: ms(100), ..Default::default() };
    m.register(Component::external("flaky", External::new().start(start)).restart(restart))
        .await
        .unwrap();
    let h = state_is(&m, "flaky", State::Failed).await;
    assert_eq!(h.restart_count, 1);
    assert!(h.last_error.unwrap().contains("no database"));
    tokio::time::sleep(secs(60)).await;
    let h = m.health("flaky").unwrap();
    assert_eq!((h.state, h.incarnation), (State::Failed, 2), "Failed is sticky");

    m.reset("flaky").await.unwrap();
    let h = state_is(&m, "flaky", State::Stopped).await;
    assert_eq!((h.restart_count, h.unstable, h.restarts_in_window), (0, 0, 0));
    broken.store(false, Ordering::SeqCst);
    m.start("flaky").await.unwrap();
    let h = state_is(&m, "flaky", State::Running).await;
    assert_eq!(h.incarnation, 3);
}

#[tokio::test(start_paused = true)]
async fn unknown_component_names_are_refused() {
    let m = monitor();
    m.register(Component::external("known", External::new())).await.unwrap();
    let unknown = |r: Result<(), Error>| match r {
        Err(Error::UnknownComponent(name)) => assert_eq!(name, "ghost"),
        other => panic!("expected UnknownComponent, got {other:?}"),
    };
    unknown(m.start("ghost").await);
    unknown(m.stop("ghost").await);
    unknown(m.restart("ghost").await);
    unknown(m.reset("ghost").await);
    unknown(m.run_health_check("ghost", ProbeKind::Liveness).await.map(drop));
    unknown(m.wait_for("ghost", |_| true).await.map(drop));
    assert!(m.health("ghost").is_none());
    assert!(m.watch("ghost").is_none());
    assert_eq!(m.health_summary().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_spec_is_refused_naming_every_field() {
    let m = monitor();
    let calls = Calls::default();
    let c = Component::external("bad", External::new())
        .liveness(passing(&calls).success_threshold(2))
        .startup(passing(&calls).period(Duration::ZERO));
    match m.register(c).await {
        Err(Error::InvalidComponent { name, errors }) => {
            assert_eq!(name, "bad");
            assert!(
                errors.iter().any(|e| e.starts_with("liveness.success_threshold")),
                "{errors:?}"
            );
            assert!(errors.iter().any(|e| e.starts_with("startup.period")), "{errors:?}");
        }
        other => panic!("expected InvalidComponent, got {other:?}"),
    }
    assert!(m.health("bad").is_none(), "nothing was registered");
    tokio::time::sleep(secs(10)).await;
    assert!(calls.0.lock().unwrap().is_empty(), "nothing ran");
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_name_is_refused_and_the_first_is_untouched() {
    let m = monitor();
    let log = Log::default();
    m.register(Component::external("svc", External::new().start(log.action("first"))))
        .await
        .unwrap();
    state_is(&m, "svc", State::Running).await;
    let second = Component::external("svc", External::new().start(log.action("second")));
    match m.register(second).await {
        Err(Error::DuplicateComponent(name)) => assert_eq!(name, "svc"),
        other => panic!("expected DuplicateComponent, got {other:?}"),
    }
    tokio::time::sleep(secs(1)).await;
    assert_eq!(log.take(), ["first"]);
    let h = m.health("svc").unwrap();
    assert_eq!((h.state, h.incarnation), (State::Running, 1));
    assert_eq!(m.health_summary().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_everything_at_once_and_returns() {
    let m = monitor();
    let t0 = Instant::now();
    let stopped = Arc::new(AtomicUsize::new(0));
    for i in 0..3 {
        let stopped = stopped.clone();
        let stop = action(move |_ctx| {
            let stopped = stopped.clone();
            async move {
                tokio::time::sleep(secs(1)).await;
                stopped.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        });
        m.register(Component::external(format!("svc{i}"), External::new().stop(stop)))
            .await
            .unwrap();
    }
    // A stop action that never returns is bounded by stop_timeout.
    let hang = action(|_ctx| std::future::pending());
    m.register(Component::external("stuck", External::new().stop(hang)).stop_timeout(secs(5)))
        .await
        .unwrap();
    m.register(Component::external("idle", External::new()).autostart(false)).await.unwrap();
    for i in 0..3 {
        state_is(&m, &format!("svc{i}"), State::Running).await;
    }

    tokio::time::timeout(GUARD, m.shutdown()).await.expect("shutdown hung").unwrap();
    assert_near(Instant::now() - t0, secs(5), "shutdown waits for the slowest stop only");
    assert_eq!(stopped.load(Ordering::SeqCst), 3);
    for h in m.health_summary() {
        assert_eq!(h.state, State::Stopped, "{}", h.name);
        assert!(h.is_settled());
    }
    assert!(matches!(
        m.register(Component::external("new", External::new())).await,
        Err(Error::Closed)
    ));
    assert!(matches!(m.start("svc0").await, Err(Error::Closed)));
    assert!(matches!(m.shutdown().await, Err(Error::Closed)));
}

#[tokio::test(start_paused = true)]
async fn remove_refuses_a_running_component_then_frees_its_name() {
    let m = monitor();
    let calls = Calls::default();
    let c =
        || Component::external("svc", External::new()).liveness(passing(&calls).period(secs(1)));
    m.register(c()).await.unwrap();
    state_is(&m, "svc", State::Running).await;
    let mut rx = m.watch("svc").unwrap();
    assert!(matches!(m.remove("svc").await, Err(Error::NotSettled(name)) if name == "svc"));
    assert_eq!(m.health("svc").unwrap().state, State::Running, "a refused remove changes nothing");

    m.stop("svc").await.unwrap();
    until(&m, "svc", "settled", Health::is_settled).await;
    m.remove("svc").await.unwrap();
    assert!(m.health("svc").is_none());
    assert!(m.health_summary().is_empty());
    let closed = tokio::time::timeout(GUARD, async { while rx.changed().await.is_ok() {} }).await;
    assert!(closed.is_ok(), "a watcher sees the removed component's channel close");
    let probes_before = calls.0.lock().unwrap().len();
    tokio::time::sleep(secs(10)).await;
    assert_eq!(calls.0.lock().unwrap().len(), probes_before, "a removed component is not probed");
    assert!(matches!(m.remove("svc").await, Err(Error::UnknownComponent(_))));

    // The name is free: a new component under it starts from scratch.
    m.register(c()).await.unwrap();
    let h = state_is(&m, "svc", State::Running).await;
    assert_eq!((h.incarnation, h.restart_count), (1, 0));
    assert_eq!(m.health_summary().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn probe_stats_and_restarts_total_count_everything_and_never_reset() {
    let m = monitor();
    let healthy = Arc::new(AtomicBool::new(true));
    let c = Component::external("svc", External::new())
        .liveness(flag_probe(&healthy).period(secs(1)).failure_threshold(2))
        .restart(RestartConfig { initial_backoff: secs(1), ..RestartConfig::default() });
    m.register(c).await.unwrap();
    state_is(&m, "svc", State::Running).await;
    until(&m, "svc", "3 passing runs", |h| h.probes[&ProbeKind::Liveness].stats.runs == 3).await;
    healthy.store(false, Ordering::SeqCst);
    state_is(&m, "svc", State::Restarting).await;
    healthy.store(true, Ordering::SeqCst); // before the second instance's first check
    let h =
        until(&m, "svc", "a healthy second instance", |h| h.incarnation == 2 && h.healthy).await;
    assert_eq!((h.restart_count, h.restarts_total), (1, 1));
    let stats = h.probes[&ProbeKind::Liveness].stats;
    assert_eq!(stats.failures, 2, "two failures condemned the first instance");
    assert_eq!(stats.buckets.iter().sum::<u64>(), stats.runs, "every run is in one bucket");
    assert_eq!(stats.buckets[0], stats.runs, "closure checks in virtual time take no time");

    // An operator restart clears restart_count but not the cumulative counters.
    m.restart("svc").await.unwrap();
    let h = until(&m, "svc", "a third instance", |h| h.incarnation == 3 && h.healthy).await;
    assert_eq!((h.restart_count, h.restarts_total), (0, 1));
    assert!(h.probes[&ProbeKind::Liveness].stats.runs >= stats.runs);
    assert_eq!(h.probes[&ProbeKind::Liveness].stats.failures, 2);
}

#[tokio::test(start_paused = true)]
async fn timer_slack_makes_timers_late_by_at_most_the_slack_and_never_early() {
    let slack = ms(10);
    let m = Monitor::with_options(MonitorOptions {
        jitter: false,
        timer_slack: slack,
        ..MonitorOptions::default()
    });
    let t0 = Instant::now();
    let (a, b) = (Calls::default(), Calls::default());
    for (name, calls) in [("a", &a), ("b", &b)] {
        let c =
            Component::external(name, External::new()).liveness(passing(calls).period(ms(1003)));
        m.register(c).await.unwrap();
    }
    // A check every 7 ms keeps the driver waking in between: the slack of a deadline is fixed
    // when it is scheduled, so those wake-ups must not pull a and b off their grid.
    let noise = Calls::default();
    let c = Component::external("noise", External::new()).liveness(passing(&noise).period(ms(7)));
    m.register(c).await.unwrap();
    tokio::time::sleep(ms(3500)).await;
    assert!(noise.offsets(t0).len() > 400, "the noise ran");
    let (a, b) = (a.offsets(t0), b.offsets(t0));
    assert_eq!(a.len(), 4, "{a:?}");
    for (k, at) in a.iter().enumerate() {
        let due = ms(1003) * k as u32;
        assert!(*at + ms(1) >= due, "check {k} ran early: at {at:?}, due {due:?}");
        assert!(*at <= due + slack + ms(1), "check {k} ran late by more than the slack: {at:?}");
        let on_grid = at.as_millis() % 10;
        assert!(on_grid <= 1 || on_grid == 9, "check {k} at {at:?} is not on the 10 ms grid");
    }
    assert_eq!(a, b, "two checks due together share each wake-up");
}
