//! Every rule of SEMANTICS.md §1 to §8, each checked in virtual time by the simulator.
//!
//! Each test names the rule it checks. Traces are compared with `expect-test` snapshots
//! (refresh with `UPDATE_EXPECT=1 cargo test -p hale-core`, then read the diff); the numbers
//! that the spec states outright are asserted directly as well, so a snapshot refresh cannot
//! silently accept a broken rule.

mod sim;

use std::time::Duration;

use expect_test::expect;
use hale_core::{
    Component, ComponentKind, Exit, Input, Instant, JitterSource, NotifyMessage, ProbeKind,
    ProbeOutcome, ProbeSpec, ReadyMode, RestartConfig, RestartPolicy, Spec, State,
};
use sim::{Answer, Life, Sim, ms, secs};

fn probe(period: Duration, failure_threshold: u32) -> ProbeSpec {
    ProbeSpec {
        period,
        timeout: period,
        failure_threshold,
        ..ProbeSpec::defaults(ProbeKind::Liveness)
    }
}

fn crashing(code: i32) -> impl FnMut(u64) -> Result<Life, String> {
    move |_| Ok(Life::crash_after(Duration::ZERO, code))
}

// ---------------------------------------------------------------- §5, §6: the crash loop

#[test]
fn design_crash_loop_restarts_at_1_3_7_15_31_63_123_183_243_303_then_failed() {
    let mut sim = Sim::new(Spec::default()).lives(crashing(1));
    sim.input(Input::Start);
    sim.settle();
    assert_eq!(
        sim.restart_times(),
        vec![1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 123.0, 183.0, 243.0, 303.0]
    );
    assert_eq!(sim.state(), State::Failed);
    assert_eq!(sim.now, Instant::from_origin(secs(303)), "Failed at the death at 303 s");
    let st = sim.comp.status(sim.now);
    assert_eq!(st.restart_count, 10);
    assert_eq!(st.next_restart_in, None);
    assert_eq!(sim.comp.next_deadline(), None, "Failed is sticky: no timers");
    expect![[r#"
        0.000s    stopped -> starting: started by operator
        0.000s    start #1
        0.000s    starting -> running: startup succeeded
        0.000s    #1 exited with code 1
        0.000s    running -> restarting: exited with code 1; restart 1 in 1s
        1.000s    restart #2
        1.000s    restarting -> starting: instance 2 started
        1.000s    starting -> running: startup succeeded
        1.000s    #2 exited with code 1
        1.000s    running -> restarting: exited with code 1; restart 2 in 2s
        3.000s    restart #3
        3.000s    restarting -> starting: instance 3 started
        3.000s    starting -> running: startup succeeded
        3.000s    #3 exited with code 1
        3.000s    running -> restarting: exited with code 1; restart 3 in 4s
        7.000s    restart #4
        7.000s    restarting -> starting: instance 4 started
        7.000s    starting -> running: startup succeeded
        7.000s    #4 exited with code 1
        7.000s    running -> restarting: exited with code 1; restart 4 in 8s
        15.000s   restart #5
        15.000s   restarting -> starting: instance 5 started
        15.000s   starting -> running: startup succeeded
        15.000s   #5 exited with code 1
        15.000s   running -> restarting: exited with code 1; restart 5 in 16s
        31.000s   restart #6
        31.000s   restarting -> starting: instance 6 started
        31.000s   starting -> running: startup succeeded
        31.000s   #6 exited with code 1
        31.000s   running -> restarting: exited with code 1; restart 6 in 32s
        63.000s   restart #7
        63.000s   restarting -> starting: instance 7 started
        63.000s   starting -> running: startup succeeded
        63.000s   #7 exited with code 1
        63.000s   running -> restarting: exited with code 1; restart 7 in 1m
        123.000s  restart #8
        123.000s  restarting -> starting: instance 8 started
        123.000s  starting -> running: startup succeeded
        123.000s  #8 exited with code 1
        123.000s  running -> restarting: exited with code 1; restart 8 in 1m
        183.000s  restart #9
        183.000s  restarting -> starting: instance 9 started
        183.000s  starting -> running: startup succeeded
        183.000s  #9 exited with code 1
        183.000s  running -> restarting: exited with code 1; restart 9 in 1m
        243.000s  restart #10
        243.000s  restarting -> starting: instance 10 started
        243.000s  starting -> running: startup succeeded
        243.000s  #10 exited with code 1
        243.000s  running -> restarting: exited with code 1; restart 10 in 1m
        303.000s  restart #11
        303.000s  restarting -> starting: instance 11 started
        303.000s  starting -> running: startup succeeded
        303.000s  #11 exited with code 1
        303.000s  running -> failed: exited with code 1; restart limit reached: 10 restarts within 10m (max_restarts 10)
    "#]]
    .assert_eq(&sim.trace);
}

#[test]
fn a_component_crashing_every_15s_after_stable_runs_still_reaches_failed() {
    // §6: the window counts every restart, stable or not; only the backoff resets.
    let restart = RestartConfig { min_uptime: secs(10), ..RestartConfig::default() };
    let mut sim =
        Sim::new(Spec { restart, ..Spec::default() }).lives(|_| Ok(Life::crash_after(secs(15), 1)));
    sim.input(Input::Start);
    sim.settle();
    assert_eq!(sim.state(), State::Failed);
    let times = sim.restart_times();
    assert_eq!(times.len(), 10);
    // Each run is stable (15 s >= 10 s), so every delay is the initial 1 s.
    assert!(times.windows(2).all(|w| (w[1] - w[0] - 16.0).abs() < 1e-9), "{times:?}");
}

#[test]
fn backoff_caps_at_max_and_never_overflows() {
    let r = RestartConfig::default();
    let delays: Vec<u64> = (1..=9).map(|n| r.delay(n).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(r.delay(u32::MAX), secs(60));
    let huge = RestartConfig { multiplier: 1e300, max_backoff: Duration::MAX, ..r.clone() };
    assert_eq!(huge.delay(5), Duration::MAX);
    let zero = RestartConfig { initial_backoff: Duration::ZERO, ..r };
    assert_eq!(zero.delay(40), Duration::ZERO);
}

#[test]
fn zero_initial_backoff_restarts_in_the_same_instant() {
    let restart = RestartConfig {
        initial_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        max_restarts: 3,
        ..RestartConfig::default()
    };
    let mut sim = Sim::new(Spec { restart, ..Spec::default() }).lives(crashing(1));
    sim.input(Input::Start);
    sim.settle();
    assert_eq!(sim.restart_times(), vec![0.0, 0.0, 0.0]);
    assert_eq!(sim.state(), State::Failed);
}

// ---------------------------------------------------------------- §1, §5: minimum uptime

fn lives_then_crashes(runs: Vec<Duration>) -> impl FnMut(u64) -> Result<Life, String> {
    move |inc| Ok(Life::crash_after(runs.get(inc as usize - 1).copied().unwrap_or_default(), 1))
}

fn gaps(sim: &Sim) -> Vec<Duration> {
    // Delay between each exit and the next restart = restart time minus previous exit time.
    let mut out = Vec::new();
    let mut last_exit = None;
    for (t, a) in &sim.actions {
        match a {
            hale_core::Action::Transition { to: State::Restarting, .. } => last_exit = Some(*t),
            hale_core::Action::Start { restart: true, .. } => {
                if let Some(e) = last_exit.take() {
                    out.push(t.saturating_since(e));
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn a_run_of_exactly_min_uptime_counts_as_stable() {
    let restart = RestartConfig { min_uptime: secs(10), ..RestartConfig::default() };
    let spec = Spec { restart, ..Spec::default() };
    let runs = vec![ms(0), ms(0), secs(10), ms(0)];
    let mut sim = Sim::new(spec.clone()).lives(lives_then_crashes(runs));
    sim.input(Input::Start);
    sim.run_until(secs(30));
    assert_eq!(gaps(&sim)[..4], [secs(1), secs(2), secs(1), secs(2)]);

    // One millisecond short of min_uptime is not stable: the backoff keeps growing.
    let runs = vec![ms(0), ms(0), ms(9_999), ms(0)];
    let mut sim = Sim::new(spec).lives(lives_then_crashes(runs));
    sim.input(Input::Start);
    sim.run_until(secs(40));
    assert_eq!(gaps(&sim)[..4], [secs(1), secs(2), secs(4), secs(8)]);
}

#[test]
fn stability_resets_the_backoff_counter_visibly_while_running() {
    let restart = RestartConfig { min_uptime: secs(10), ..RestartConfig::default() };
    let mut sim = Sim::new(Spec { restart, ..Spec::default() }).lives(lives_then_crashes(vec![
        ms(0),
        ms(0),
        secs(3600),
    ]));
    sim.input(Input::Start);
    sim.run_until(secs(3)); // instance 3 starts at 3 s
    assert_eq!(sim.comp.status(sim.now).unstable, 2);
    assert_eq!(sim.state(), State::Running);
    sim.run_until(ms(12_999));
    assert_eq!(sim.comp.status(sim.now).unstable, 2, "not yet stable at S + 9.999 s");
    sim.run_until(secs(13));
    assert_eq!(sim.comp.status(sim.now).unstable, 0, "stable at S + min_uptime, while running");
    assert_eq!(
        sim.comp.status(sim.now).restart_count,
        2,
        "restart_count is not reset by stability"
    );
}

#[test]
fn an_instance_that_never_passes_startup_is_never_stable() {
    let restart = RestartConfig { min_uptime: secs(1), ..RestartConfig::default() };
    let startup = ProbeSpec { failure_threshold: 3, ..ProbeSpec::defaults(ProbeKind::Startup) };
    let spec = Spec { restart, startup: Some(startup), ..Spec::default() };
    let mut sim = Sim::new(spec).probes(|_, _, _| Answer { took: ms(10), ok: false }).quiet();
    sim.input(Input::Start);
    sim.run_until(secs(40));
    // Each instance lives over 2 s (> min_uptime) but never starts: delays keep doubling.
    assert_eq!(gaps(&sim)[..4], [secs(1), secs(2), secs(4), secs(8)]);
    expect![[r#"
        0.000s    stopped -> starting: started by operator
        0.000s    start #1
        2.010s    starting -> unhealthy: startup: 3 consecutive failures: check failed
        2.010s    signal #1 Stop
        2.010s    #1 exited with code 0
        2.010s    unhealthy -> restarting: startup: 3 consecutive failures: check failed; restart 1 in 1s
        3.010s    restart #2
        3.010s    restarting -> starting: instance 2 started
        5.020s    starting -> unhealthy: startup: 3 consecutive failures: check failed
        5.020s    signal #2 Stop
        5.020s    #2 exited with code 0
        5.020s    unhealthy -> restarting: startup: 3 consecutive failures: check failed; restart 2 in 2s
        7.020s    restart #3
        7.020s    restarting -> starting: instance 3 started
        9.030s    starting -> unhealthy: startup: 3 consecutive failures: check failed
        9.030s    signal #3 Stop
        9.030s    #3 exited with code 0
        9.030s    unhealthy -> restarting: startup: 3 consecutive failures: check failed; restart 3 in 4s
        13.030s   restart #4
        13.030s   restarting -> starting: instance 4 started
        15.040s   starting -> unhealthy: startup: 3 consecutive failures: check failed
        15.040s   signal #4 Stop
        15.040s   #4 exited with code 0
        15.040s   unhealthy -> restarting: startup: 3 consecutive failures: check failed; restart 4 in 8s
        23.040s   restart #5
        23.040s   restarting -> starting: instance 5 started
        25.050s   starting -> unhealthy: startup: 3 consecutive failures: check failed
        25.050s   signal #5 Stop
        25.050s   #5 exited with code 0
        25.050s   unhealthy -> restarting: startup: 3 consecutive failures: check failed; restart 5 in 16s
    "#]]
    .assert_eq(&sim.trace);
}

#[test]
fn restart_reset_notify_zeroes_the_backoff_counter() {
    let mut sim =
        Sim::new(Spec::default()).lives(lives_then_crashes(vec![ms(0), ms(0), secs(5), ms(0)]));
    sim.input(Input::Start);
    sim.run_until(secs(4));
    assert_eq!(sim.comp.status(sim.now).unstable, 2);
    sim.notify(secs(4), NotifyMessage::RestartReset);
    sim.run_until(secs(4));
    assert_eq!(sim.comp.status(sim.now).unstable, 0);
    sim.run_until(secs(20));
    assert_eq!(gaps(&sim)[..3], [secs(1), secs(2), secs(1)]);
}

// ---------------------------------------------------------------- §1: incarnations

#[test]
fn late_results_and_exits_from_an_old_incarnation_are_ignored() {
    let liveness = probe(secs(1), 1);
    let spec = Spec { liveness: Some(liveness), ..Spec::default() };
    let mut sim = Sim::new(spec).lives(lives_then_crashes(vec![secs(1), secs(3600)]));
    sim.input(Input::Start);
    sim.run_until(secs(5));
    assert_eq!(sim.comp.incarnation(), 2);
    assert_eq!(sim.state(), State::Running);
    let before = sim.comp.status(sim.now);
    // A failing liveness result and an exit from incarnation 1 arrive late.
    let fail = ProbeOutcome::fail(ms(1), "stale");
    sim.raw(Input::ProbeDone { incarnation: 1, kind: ProbeKind::Liveness, outcome: fail });
    sim.raw(Input::Exited { incarnation: 1, exit: Exit::Code(1) });
    sim.raw(Input::Spawned { incarnation: 1 });
    sim.raw(Input::Notify { incarnation: 1, message: NotifyMessage::WatchdogTrigger });
    assert_eq!(sim.comp.status(sim.now), before);
}

// ---------------------------------------------------------------- §4: termination

#[test]
fn liveness_verdict_and_exit_in_the_same_instant_give_one_restart() {
    let liveness = probe(secs(1), 1);
    let spec = Spec { liveness: Some(liveness), ..Spec::default() };
    let failing_from_3s = |now: Instant, _, inc| Answer {
        took: ms(0),
        ok: !(inc == 1 && now >= Instant::from_origin(secs(3))),
    };
    // Verdict first: the probe fails at 3 s, and in the same instant the process exits 1 (before
    // it could have reacted to the stop signal, which it ignores).
    let mut sim = Sim::new(spec.clone())
        .lives(|_| Ok(Life::forever().ignoring_stop()))
        .probes(failing_from_3s);
    sim.input(Input::Start);
    sim.run_until(secs(3));
    assert_eq!(sim.state(), State::Unhealthy);
    sim.input(Input::Exited { incarnation: 1, exit: Exit::Code(1) });
    sim.run_until(secs(10));
    assert_eq!(sim.comp.status(sim.now).restart_count, 1);
    assert_eq!(sim.restart_times(), vec![4.0]);
    assert_eq!(sim.max_alive, 1);

    // Exit first: the process exits at 3 s and the probe due at 3 s finds nothing to condemn.
    let mut sim =
        Sim::new(spec).lives(lives_then_crashes(vec![secs(3), secs(3600)])).probes(failing_from_3s);
    sim.input(Input::Start);
    sim.run_until(secs(10));
    assert_eq!(sim.comp.status(sim.now).restart_count, 1);
    assert_eq!(sim.restart_times(), vec![4.0]);
    assert_eq!(sim.max_alive, 1);
}

#[test]
fn on_failure_restarts_after_a_liveness_kill_even_when_the_process_exits_0() {
    let liveness = probe(secs(1), 2);
    let restart = RestartConfig { policy: RestartPolicy::OnFailure, ..RestartConfig::default() };
    let spec = Spec { liveness: Some(liveness), restart, ..Spec::default() };
    let mut sim = Sim::new(spec)
        .probes(|_, _, inc| Answer { took: ms(0), ok: inc > 1 })
        .lives(|_| Ok(Life::forever())); // exits 0 on SIGTERM
    sim.input(Input::Start);
    sim.run_until(secs(5));
    assert_eq!(sim.comp.status(sim.now).last_exit, Some(Exit::Code(0)));
    assert_eq!(sim.comp.status(sim.now).restart_count, 1);
    assert_eq!(sim.state(), State::Running);
    expect![[r#"
        0.000s    stopped -> starting: started by operator
        0.000s    start #1
        0.000s    starting -> running: startup succeeded
        0.000s    probe #1 liveness -> FAIL
        1.000s    probe #1 liveness -> FAIL
        1.000s    running -> unhealthy: liveness: 2 consecutive failures: check failed
        1.000s    signal #1 Stop
        1.000s    #1 exited with code 0
        1.000s    unhealthy -> restarting: liveness: 2 consecutive failures: check failed; restart 1 in 1s
        2.000s    restart #2
        2.000s    restarting -> starting: instance 2 started
        2.000s    starting -> running: startup succeeded
        2.000s    probe #2 liveness -> ok
        3.000s    probe #2 liveness -> ok
        4.000s    probe #2 liveness -> ok
        5.000s    probe #2 liveness -> ok
    "#]]
    .assert_eq(&sim.trace);
}

fn final_state(policy: RestartPolicy, exit: Exit, exits: hale_core::ExitRules) -> (State, u32) {
    let restart = RestartConfig { policy, max_restarts: 1, ..RestartConfig::default() };
    let spec = Spec { restart, exit: exits, ..Spec::default() };
    let mut sim =
        Sim::new(spec).lives(move |_| Ok(Life { exits: Some((secs(20), exit)), on_stop: None }));
    sim.input(Input::Start);
    sim.run_until(secs(20));
    (sim.state(), sim.comp.status(sim.now).restart_count)
}

#[test]
fn policies_and_exit_status_lists_decide_restarts() {
    use RestartPolicy::*;
    let none = hale_core::ExitRules::default;
    let lists = || hale_core::ExitRules {
        success_exit_status: vec![75],
        restart_prevent_exit_status: vec![42, 3],
        restart_force_exit_status: vec![3, 7],
    };
    let table = [
        // policy, exit, rules, expected state, restarts
        (Always, Exit::Code(0), none(), State::Restarting, 1),
        (Always, Exit::Code(1), none(), State::Restarting, 1),
        (Always, Exit::Signal(9), none(), State::Restarting, 1),
        (OnFailure, Exit::Code(0), none(), State::Stopped, 0),
        (OnFailure, Exit::Code(1), none(), State::Restarting, 1),
        (OnFailure, Exit::Signal(11), none(), State::Restarting, 1),
        (Never, Exit::Code(0), none(), State::Stopped, 0),
        (Never, Exit::Code(1), none(), State::Failed, 0),
        (Never, Exit::Signal(9), none(), State::Failed, 0),
        // success_exit_status: 75 is a success.
        (OnFailure, Exit::Code(75), lists(), State::Stopped, 0),
        // prevent wins over the policy: a prevented failure is Failed, not restarted.
        (Always, Exit::Code(42), lists(), State::Failed, 0),
        // force restarts under every policy...
        (Never, Exit::Code(7), lists(), State::Restarting, 1),
        (OnFailure, Exit::Code(7), lists(), State::Restarting, 1),
        // ...unless the code is also prevented (prevent is checked first).
        (Always, Exit::Code(3), lists(), State::Failed, 0),
    ];
    for (policy, exit, rules, want, restarts) in table {
        let got = final_state(policy, exit, rules.clone());
        assert_eq!(got, (want, restarts), "{policy:?} {exit:?} {rules:?}");
    }
}

#[test]
fn exit_lists_do_not_apply_to_terminations_hale_caused() {
    // The liveness kill makes the process exit 42 (prevented) and 75 (success): both are still
    // failures that restart, because hale caused them.
    for code in [42, 75] {
        let rules = hale_core::ExitRules {
            success_exit_status: vec![75],
            restart_prevent_exit_status: vec![42],
            restart_force_exit_status: vec![],
        };
        let restart =
            RestartConfig { policy: RestartPolicy::OnFailure, ..RestartConfig::default() };
        let spec =
            Spec { liveness: Some(probe(secs(1), 1)), restart, exit: rules, ..Spec::default() };
        let mut sim = Sim::new(spec)
            .probes(|_, _, inc| Answer { took: ms(0), ok: inc > 1 })
            .lives(move |_| Ok(Life { exits: None, on_stop: Some((ms(0), Exit::Code(code))) }));
        sim.input(Input::Start);
        sim.run_until(secs(3));
        assert_eq!(sim.comp.status(sim.now).restart_count, 1, "code {code}");
    }
}

// ---------------------------------------------------------------- §4.1, §7: stopping

#[test]
fn stop_during_backoff_cancels_the_restart() {
    let mut sim = Sim::new(Spec::default()).lives(crashing(1));
    sim.input(Input::Start);
    sim.run_until(ms(500));
    assert_eq!(sim.state(), State::Restarting);
    sim.input(Input::Stop);
    assert_eq!(sim.state(), State::Stopped);
    assert_eq!(sim.comp.next_deadline(), None);
    sim.settle();
    assert!(sim.restart_times().is_empty());
}

#[test]
fn stop_wins_over_a_verdict_in_progress() {
    let spec = Spec { liveness: Some(probe(secs(1), 1)), ..Spec::default() };
    let mut sim = Sim::new(spec)
        .probes(|_, _, _| Answer { took: ms(0), ok: false })
        .lives(|_| Ok(Life::forever().ignoring_stop()));
    sim.input(Input::Start);
    sim.run_until(ms(1));
    assert_eq!(sim.state(), State::Unhealthy);
    sim.input(Input::Stop);
    sim.settle();
    assert_eq!(sim.state(), State::Stopped);
    assert!(sim.restart_times().is_empty());
    assert_eq!(sim.comp.status(sim.now).restart_count, 0);
}

#[test]
fn stop_sequence_signals_then_kills_after_stop_timeout_and_restart_delay_counts_from_the_end() {
    let spec = Spec {
        liveness: Some(ProbeSpec { termination_grace: Some(secs(2)), ..probe(secs(1), 1) }),
        stop_timeout: secs(5),
        ..Spec::default()
    };
    let mut sim = Sim::new(spec)
        .probes(|_, _, inc| Answer { took: ms(0), ok: inc > 1 })
        .lives(|_| Ok(Life::forever().ignoring_stop()));
    sim.input(Input::Start);
    sim.run_until(secs(3));
    sim.input(Input::Stop);
    sim.settle();
    expect![[r#"
        0.000s    stopped -> starting: started by operator
        0.000s    start #1
        0.000s    starting -> running: startup succeeded
        0.000s    probe #1 liveness -> FAIL
        0.000s    running -> unhealthy: liveness: 1 consecutive failures: check failed
        0.000s    signal #1 Stop
        2.000s    signal #1 Kill
        2.000s    #1 killed by signal 9
        2.000s    unhealthy -> restarting: liveness: 1 consecutive failures: check failed; restart 1 in 1s
        3.000s    restart #2
        3.000s    restarting -> starting: instance 2 started
        3.000s    starting -> running: startup succeeded
        3.000s    probe #2 liveness -> ok
        3.000s    signal #2 Stop
        8.000s    signal #2 Kill
        8.000s    #2 killed by signal 9
        8.000s    running -> stopped: stopped by operator
    "#]]
    .assert_eq(&sim.trace);
}

#[test]
fn stop_drops_readiness_at_once_and_keeps_the_state_until_the_exit() {
    let mut sim = Sim::new(Spec::default()).lives(|_| Ok(Life::forever().ignoring_stop()));
    sim.input(Input::Start);
    sim.run_until(ms(0));
    assert!(sim.comp.status(sim.now).ready);
    sim.input(Input::Stop);
    let st = sim.comp.status(sim.now);
    assert!(!st.ready && st.stopping);
    assert!(!st.healthy, "a component being stopped is not healthy, even without readiness");
    assert_eq!(st.state, State::Running);
    sim.settle();
    assert_eq!(sim.state(), State::Stopped);
}

#[test]
fn operator_restart_terminates_then_starts_at_once_with_counters_cleared() {
    let mut sim =
        Sim::new(Spec::default()).lives(lives_then_crashes(vec![ms(0), secs(3600), secs(3600)]));
    sim.input(Input::Start);
    sim.run_until(secs(2));
    assert_eq!(sim.comp.status(sim.now).restart_count, 1);
    sim.input(Input::Restart);
    sim.run_until(secs(2));
    let st = sim.comp.status(sim.now);
    assert_eq!(
        (st.state, st.incarnation, st.restart_count, st.unstable),
        (State::Running, 3, 0, 0)
    );
    assert_eq!(sim.max_alive, 1);
}

// ---------------------------------------------------------------- §6: Failed, reset, start

#[test]
fn reset_and_start_clear_failed_the_window_and_the_counters() {
    let restart = RestartConfig { max_restarts: 2, ..RestartConfig::default() };
    let mut sim = Sim::new(Spec { restart, ..Spec::default() }).lives(crashing(1));
    sim.input(Input::Start);
    sim.settle();
    assert_eq!(sim.state(), State::Failed);
    sim.input(Input::Reset);
    let st = sim.comp.status(sim.now);
    assert_eq!(
        (st.state, st.restart_count, st.restarts_in_window, st.unstable),
        (State::Stopped, 0, 0, 0)
    );
    assert_eq!(sim.comp.next_deadline(), None, "reset starts nothing");
    let t0 = sim.now.since_origin().as_secs_f64();
    sim.input(Input::Start);
    sim.settle();
    assert_eq!(sim.state(), State::Failed);
    let again: Vec<f64> = sim.restart_times().into_iter().filter(|&t| t > t0).collect();
    assert_eq!(again, vec![t0 + 1.0, t0 + 3.0], "full sequence again from initial_backoff");
    // start from Failed clears too
    let t1 = sim.now.since_origin().as_secs_f64();
    sim.input(Input::Start);
    sim.settle();
    let again: Vec<f64> = sim.restart_times().into_iter().filter(|&t| t > t1).collect();
    assert_eq!(again, vec![t1 + 1.0, t1 + 3.0]);
    assert_eq!(sim.comp.status(sim.now).restart_count, 2);
}

#[test]
fn restarts_outside_the_window_no_longer_count() {
    let restart = RestartConfig {
        max_restarts: 2,
        window: secs(10),
        initial_backoff: secs(6),
        max_backoff: secs(6),
        ..RestartConfig::default()
    };
    let mut sim = Sim::new(Spec { restart, ..Spec::default() }).lives(crashing(1));
    sim.input(Input::Start);
    sim.run_until(secs(100));
    // Restarts every 6 s: at most 2 inside any (t - 10 s, t], so it never fails.
    assert_eq!(sim.state(), State::Restarting);
    assert!(sim.restart_times().len() >= 16);
}

// ---------------------------------------------------------------- §2: probes

#[test]
fn probe_schedule_counts_delays_from_startup_success() {
    let startup = ProbeSpec {
        initial_delay: secs(1),
        period: secs(2),
        ..ProbeSpec::defaults(ProbeKind::Startup)
    };
    let liveness = ProbeSpec { initial_delay: secs(3), ..probe(secs(4), 3) };
    let readiness = ProbeSpec { period: secs(5), ..ProbeSpec::defaults(ProbeKind::Readiness) };
    let spec = Spec {
        startup: Some(startup),
        liveness: Some(liveness),
        readiness: Some(readiness),
        ..Spec::default()
    };
    // Startup passes on its third run (at S + 1 + 2*2 = 5 s).
    let mut n = 0;
    let mut sim = Sim::new(spec).probes(move |_, kind, _| {
        if kind == ProbeKind::Startup {
            n += 1;
        }
        Answer { took: ms(100), ok: kind != ProbeKind::Startup || n >= 3 }
    });
    sim.input(Input::Start);
    sim.run_until(secs(14));
    expect![[r#"
        0.000s    stopped -> starting: started by operator
        0.000s    start #1
        1.000s    probe #1 startup -> FAIL
        3.000s    probe #1 startup -> FAIL
        5.000s    probe #1 startup -> ok
        5.100s    starting -> running: startup succeeded
        5.100s    probe #1 readiness -> ok
        8.100s    probe #1 liveness -> ok
        10.100s   probe #1 readiness -> ok
        12.100s   probe #1 liveness -> ok
    "#]]
    .assert_eq(&sim.trace);
}

#[test]
fn a_tick_during_a_running_probe_is_skipped_without_catch_up() {
    let liveness = ProbeSpec { timeout: secs(10), ..probe(secs(1), 3) };
    let spec = Spec { liveness: Some(liveness), ..Spec::default() };
    let mut sim = Sim::new(spec).probes(|_, _, _| Answer { took: ms(2500), ok: true });
    sim.input(Input::Start);
    sim.run_until(secs(9));
    let runs: Vec<f64> = sim
        .actions
        .iter()
        .filter(|(_, a)| matches!(a, hale_core::Action::RunProbe { .. }))
        .map(|(t, _)| t.since_origin().as_secs_f64())
        .collect();
    assert_eq!(runs, vec![0.0, 3.0, 6.0, 9.0]);
}

#[test]
fn a_probe_past_its_timeout_is_a_failure() {
    let liveness = ProbeSpec { timeout: ms(500), ..probe(secs(1), 2) };
    let spec = Spec { liveness: Some(liveness), ..Spec::default() };
    let mut sim = Sim::new(spec).probes(|_, _, inc| Answer { took: secs(30), ok: inc > 1 });
    sim.input(Input::Start);
    sim.run_until(ms(1600));
    assert_eq!(sim.state(), State::Restarting);
    assert!(sim.comp.status(sim.now).last_error.unwrap().contains("timed out"));
}

#[test]
fn counters_are_per_probe_kind_and_restart_at_one_on_an_opposite_result() {
    let liveness = probe(secs(1), 3);
    let readiness = ProbeSpec { period: secs(1), ..ProbeSpec::defaults(ProbeKind::Readiness) };
    let spec = Spec { liveness: Some(liveness), readiness: Some(readiness), ..Spec::default() };
    // Liveness: fail, fail, ok, fail, fail, ok... never 3 in a row. Readiness always fails.
    let mut sim = Sim::new(spec).probes(|now, kind, _| {
        let s = now.since_origin().as_secs();
        Answer { took: ms(1), ok: kind == ProbeKind::Liveness && s % 3 == 2 }
    });
    sim.input(Input::Start);
    sim.run_until(ms(19_500));
    let st = sim.comp.status(sim.now);
    assert_eq!(st.state, State::Running, "alternating failures never reach the threshold");
    assert_eq!(st.restart_count, 0);
    let [_, l, r] = &st.probes;
    let (l, r) = (l.as_ref().unwrap(), r.as_ref().unwrap());
    assert_eq!((l.consecutive_failures, l.consecutive_successes), (2, 0));
    assert_eq!((r.consecutive_failures, r.consecutive_successes), (20, 0));
    assert_eq!(l.last.len(), 5, "each probe keeps its last 5 results");
    assert!(!st.ready && !st.healthy);
}

#[test]
fn readiness_sets_ready_with_thresholds_and_never_restarts() {
    let readiness = ProbeSpec {
        period: secs(1),
        success_threshold: 2,
        failure_threshold: 2,
        ..ProbeSpec::defaults(ProbeKind::Readiness)
    };
    let spec = Spec { readiness: Some(readiness), ..Spec::default() };
    // ok for 0..=4 s, failing 5..=9 s, ok from 10 s.
    let mut sim = Sim::new(spec).probes(|now, _, _| {
        let s = now.since_origin().as_secs();
        Answer { took: ms(0), ok: !(5..10).contains(&s) }
    });
    sim.input(Input::Start);
    let mut ready = Vec::new();
    for s in 0..=12 {
        sim.run_until(secs(s));
        ready.push(sim.comp.ready());
    }
    assert_eq!(
        ready,
        [false, true, true, true, true, true, false, false, false, false, false, true, true]
    );
    assert_eq!(sim.comp.status(sim.now).restart_count, 0);
    assert_eq!(sim.max_alive, 1);
}

#[test]
fn without_a_readiness_probe_ready_follows_the_startup_gate() {
    let startup = ProbeSpec { period: secs(1), ..ProbeSpec::defaults(ProbeKind::Startup) };
    let spec = Spec { startup: Some(startup), ..Spec::default() };
    let mut sim = Sim::new(spec)
        .probes(|now, _, _| Answer { took: ms(0), ok: now >= Instant::from_origin(secs(2)) });
    sim.input(Input::Start);
    sim.run_until(ms(1999));
    let st = sim.comp.status(sim.now);
    assert_eq!((st.state, st.ready, st.healthy), (State::Starting, false, false));
    sim.run_until(secs(2));
    let st = sim.comp.status(sim.now);
    assert_eq!((st.state, st.ready, st.healthy), (State::Running, true, true));
}

struct Fixed(Duration);
impl JitterSource for Fixed {
    fn jitter(&mut self, period: Duration) -> Duration {
        self.0.min(period)
    }
}

#[test]
fn jitter_applies_only_to_instances_started_within_one_period_of_the_monitor_start() {
    let spec = Spec { liveness: Some(probe(secs(10), 3)), ..Spec::default() };
    let comp =
        Component::new(spec.clone()).unwrap().with_jitter(Box::new(Fixed(secs(4))), Instant::ZERO);
    let first = |sim: &Sim| {
        sim.actions
            .iter()
            .find(|(_, a)| matches!(a, hale_core::Action::RunProbe { .. }))
            .map(|(t, _)| t.since_origin())
    };
    let mut sim = Sim::new(spec.clone());
    sim.comp = comp;
    sim.input(Input::Start);
    sim.run_until(secs(5));
    assert_eq!(first(&sim), Some(secs(4)), "jitter delays the first run");

    // Started 10 s after the monitor: no jitter.
    let comp =
        Component::new(spec.clone()).unwrap().with_jitter(Box::new(Fixed(secs(4))), Instant::ZERO);
    let mut sim = Sim::new(spec);
    sim.comp = comp;
    sim.run_until(secs(10));
    sim.input(Input::Start);
    sim.run_until(secs(11));
    assert_eq!(first(&sim), Some(secs(10)));
}

#[test]
fn jitter_is_always_below_the_period() {
    let spec = Spec { liveness: Some(probe(secs(10), 3)), ..Spec::default() };
    let comp =
        Component::new(spec.clone()).unwrap().with_jitter(Box::new(Fixed(secs(99))), Instant::ZERO);
    let mut sim = Sim::new(spec);
    sim.comp = comp;
    sim.input(Input::Start);
    sim.run_until(secs(10));
    let first = sim.actions.iter().find(|(_, a)| matches!(a, hale_core::Action::RunProbe { .. }));
    assert!(first.unwrap().0 < Instant::from_origin(secs(10)));
}

// ---------------------------------------------------------------- §2: validation

#[test]
fn invalid_specs_are_refused_naming_every_field() {
    let bad = Spec {
        liveness: Some(ProbeSpec {
            success_threshold: 2,
            ..ProbeSpec::defaults(ProbeKind::Liveness)
        }),
        startup: Some(ProbeSpec {
            period: Duration::ZERO,
            failure_threshold: 0,
            ..ProbeSpec::defaults(ProbeKind::Startup)
        }),
        readiness: Some(ProbeSpec {
            timeout: Duration::ZERO,
            termination_grace: Some(secs(1)),
            ..ProbeSpec::defaults(ProbeKind::Readiness)
        }),
        restart: RestartConfig {
            multiplier: 0.5,
            initial_backoff: secs(10),
            max_backoff: secs(1),
            window: Duration::ZERO,
            ..RestartConfig::default()
        },
        watchdog: Some(Duration::ZERO),
        ..Spec::default()
    };
    let errors = Component::new(bad).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "startup.period",
            "startup.failure_threshold",
            "liveness.success_threshold",
            "readiness.timeout",
            "readiness.termination_grace",
            "restart.multiplier",
            "restart.max_backoff",
            "restart.window",
            "watchdog",
        ]
    );
    assert!(errors[2].to_string().contains("must be 1"), "{}", errors[2]);
    let nan = Spec {
        restart: RestartConfig { multiplier: f64::NAN, ..RestartConfig::default() },
        ..Spec::default()
    };
    assert!(Component::new(nan).is_err());
    // Readiness may have a success threshold above 1.
    let ok = Spec {
        readiness: Some(ProbeSpec {
            success_threshold: 3,
            ..ProbeSpec::defaults(ProbeKind::Readiness)
        }),
        ..Spec::default()
    };
    assert!(Component::new(ok).is_ok());
}

// ---------------------------------------------------------------- §8: notify

fn notify_spec() -> Spec {
    Spec {
        ready: ReadyMode::Notify,
        watchdog: Some(secs(5)),
        start_timeout: secs(10),
        ..Spec::default()
    }
}

#[test]
fn ready_1_passes_the_gate_and_the_watchdog_starts_at_g() {
    let mut sim = Sim::new(notify_spec());
    sim.input(Input::Start);
    sim.notify(secs(3), NotifyMessage::Ready);
    sim.notify(secs(7), NotifyMessage::Watchdog);
    sim.notify(secs(7), NotifyMessage::Status("serving".into()));
    sim.run_until(secs(11));
    assert_eq!(sim.state(), State::Running);
    assert_eq!(sim.comp.status(sim.now).status_text.as_deref(), Some("serving"));
    sim.run_until(secs(12));
    // Last ping at 7 s, period 5 s: condemned at 12 s.
    assert_eq!(sim.state(), State::Restarting);
    assert_eq!(
        sim.comp.status(sim.now).last_error.as_deref(),
        Some("watchdog: no WATCHDOG=1 within 5s")
    );
}

#[test]
fn no_ready_within_start_timeout_is_a_start_timeout_and_extend_timeout_moves_it() {
    let mut sim = Sim::new(notify_spec());
    sim.input(Input::Start);
    sim.run_until(ms(9999));
    assert_eq!(sim.state(), State::Starting);
    sim.run_until(secs(10));
    assert_eq!(sim.state(), State::Restarting);
    assert!(sim.comp.status(sim.now).last_error.unwrap().starts_with("start: no READY=1"));

    let mut sim = Sim::new(notify_spec());
    sim.input(Input::Start);
    sim.notify(secs(8), NotifyMessage::ExtendTimeout(secs(20)));
    sim.run_until(ms(27_999));
    assert_eq!(sim.state(), State::Starting);
    sim.run_until(secs(28));
    assert_eq!(sim.state(), State::Restarting);
}

#[test]
fn watchdog_trigger_condemns_at_once_and_stopping_drops_readiness() {
    let mut sim = Sim::new(notify_spec());
    sim.input(Input::Start);
    sim.notify(secs(1), NotifyMessage::Ready);
    sim.notify(secs(2), NotifyMessage::Stopping);
    sim.run_until(secs(2));
    let st = sim.comp.status(sim.now);
    assert_eq!((st.state, st.ready), (State::Running, false));
    sim.notify(secs(3), NotifyMessage::WatchdogTrigger);
    sim.run_until(secs(3));
    assert_eq!(sim.comp.status(sim.now).restart_count, 1);
}

#[test]
fn notify_readiness_also_waits_for_the_startup_probe() {
    let startup = ProbeSpec { period: secs(1), ..ProbeSpec::defaults(ProbeKind::Startup) };
    let spec = Spec { startup: Some(startup), ..notify_spec() };
    let mut sim = Sim::new(spec)
        .probes(|now, _, _| Answer { took: ms(0), ok: now >= Instant::from_origin(secs(4)) });
    sim.input(Input::Start);
    sim.notify(secs(1), NotifyMessage::Ready);
    sim.run_until(ms(3999));
    assert_eq!(sim.state(), State::Starting);
    sim.run_until(secs(4));
    assert_eq!(sim.state(), State::Running);
}

// ---------------------------------------------------------------- external components

#[test]
fn external_components_stop_through_their_action_and_start_errors_are_failures() {
    let spec = Spec {
        kind: ComponentKind::External,
        liveness: Some(probe(secs(1), 1)),
        restart: RestartConfig { max_restarts: 2, ..RestartConfig::default() },
        ..Spec::default()
    };
    let mut sim = Sim::new(spec).probes(|_, _, _| Answer { took: ms(0), ok: false }).lives(|inc| {
        if inc == 1 { Ok(Life::forever()) } else { Err("docker: no such container".into()) }
    });
    sim.input(Input::Start);
    sim.settle();
    assert_eq!(sim.state(), State::Failed);
    expect![[r#"
        0.000s    stopped -> starting: started by operator
        0.000s    start #1
        0.000s    starting -> running: startup succeeded
        0.000s    probe #1 liveness -> FAIL
        0.000s    running -> unhealthy: liveness: 1 consecutive failures: check failed
        0.000s    stop-external #1
        0.000s    #1 stopped
        0.000s    unhealthy -> restarting: liveness: 1 consecutive failures: check failed; restart 1 in 1s
        1.000s    restart #2 fails: docker: no such container
        3.000s    restart #3 fails: docker: no such container
        3.000s    restarting -> failed: start failed: docker: no such container; restart limit reached: 2 restarts within 10m (max_restarts 2)
    "#]]
    .assert_eq(&sim.trace);
}
