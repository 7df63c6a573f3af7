//! Property tests: invariants that must hold for any spec and any sequence of events.
//!
//! - the restart delay never exceeds `max_backoff`;
//! - no window of `restart_window` holds more than `max_restarts` automatic restarts (between
//!   operator commands, which clear the window);
//! - at most one instance is alive at any time;
//! - no input sequence panics, including stale, duplicate and nonsensical inputs.

mod sim;

use std::time::Duration;

use hale_core::{
    Action, Component, Exit, Input, Instant, NotifyMessage, ProbeKind, ProbeOutcome, ProbeSpec,
    ReadyMode, RestartConfig, RestartPolicy, Spec, State,
};
use proptest::prelude::*;
use sim::{Answer, Life, Sim, ms};

fn arb_policy() -> impl Strategy<Value = RestartPolicy> {
    prop_oneof![
        Just(RestartPolicy::Always),
        Just(RestartPolicy::OnFailure),
        Just(RestartPolicy::Never)
    ]
}

fn arb_restart() -> impl Strategy<Value = RestartConfig> {
    (arb_policy(), 0u32..6, 1u64..20_000, 0u64..5_000, 0u64..3_000, 0u64..10_000, 1.0f64..4.0)
        .prop_map(|(policy, max_restarts, window, min_uptime, initial, extra, multiplier)| {
            RestartConfig {
                policy,
                max_restarts,
                window: ms(window),
                min_uptime: ms(min_uptime),
                initial_backoff: ms(initial),
                max_backoff: ms(initial + extra),
                multiplier,
            }
        })
}

fn arb_probe(kind: ProbeKind) -> impl Strategy<Value = Option<ProbeSpec>> {
    proptest::option::of((0u64..2_000, 1u64..3_000, 1u64..3_000, 1u32..4, 1u32..4).prop_map(
        move |(delay, period, timeout, success, failure)| ProbeSpec {
            initial_delay: ms(delay),
            period: ms(period),
            timeout: ms(timeout),
            success_threshold: if kind == ProbeKind::Readiness { success } else { 1 },
            failure_threshold: failure,
            termination_grace: None,
        },
    ))
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    (
        arb_restart(),
        arb_probe(ProbeKind::Startup),
        arb_probe(ProbeKind::Liveness),
        arb_probe(ProbeKind::Readiness),
        any::<bool>(),
        proptest::option::of(1u64..5_000),
        1u64..5_000,
    )
        .prop_map(|(restart, startup, liveness, readiness, notify, watchdog, stop)| Spec {
            restart,
            startup,
            liveness,
            readiness,
            ready: if notify { ReadyMode::Notify } else { ReadyMode::Probe },
            watchdog: watchdog.map(ms),
            start_timeout: ms(4_000),
            stop_timeout: ms(stop),
            ..Spec::default()
        })
}

/// How each instance lives: exit after a while (code or signal), maybe ignore the stop signal.
fn arb_lives() -> impl Strategy<Value = Vec<(u64, i32, bool)>> {
    proptest::collection::vec((0u64..4_000, -2i32..3, any::<bool>()), 1..8)
}

fn world(spec: Spec, lives: Vec<(u64, i32, bool)>, answers: Vec<(u64, bool)>) -> Sim {
    let mut i = 0usize;
    Sim::new(spec)
        .quiet()
        .lives(move |inc| {
            let (after, code, ignore) = lives[(inc as usize) % lives.len()];
            let exit = if code < 0 { Exit::Signal(-code) } else { Exit::Code(code) };
            let life =
                Life { exits: Some((ms(after), exit)), on_stop: Some((ms(10), Exit::Code(0))) };
            Ok(if ignore { life.ignoring_stop() } else { life })
        })
        .probes(move |_, _, _| {
            i += 1;
            let (took, ok) = answers[i % answers.len()];
            Answer { took: ms(took), ok }
        })
}

fn restart_starts(sim: &Sim) -> Vec<Instant> {
    sim.actions
        .iter()
        .filter_map(|(t, a)| matches!(a, Action::Start { restart: true, .. }).then_some(*t))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn restart_delay_never_exceeds_max_backoff(spec in arb_spec(), lives in arb_lives(),
            answers in proptest::collection::vec((0u64..4_000, any::<bool>()), 1..6)) {
        let max = spec.restart.max_backoff;
        let mut sim = world(spec, lives, answers);
        sim.input(Input::Start);
        for step in 1..=600u64 {
            sim.run_until(ms(step * 100));
            if let Some(d) = sim.comp.status(sim.now).next_restart_in {
                prop_assert!(d <= max, "delay {d:?} > max_backoff {max:?}");
            }
        }
        for n in 0..100 {
            prop_assert!(sim.comp.spec().restart.delay(n) <= max);
        }
    }

    #[test]
    fn no_window_holds_more_than_max_restarts(spec in arb_spec(), lives in arb_lives(),
            answers in proptest::collection::vec((0u64..4_000, any::<bool>()), 1..6)) {
        let (window, max) = (spec.restart.window, spec.restart.max_restarts as usize);
        let mut sim = world(spec, lives, answers);
        sim.input(Input::Start);
        sim.run_until(Duration::from_secs(120));
        let starts = restart_starts(&sim);
        for (i, &t) in starts.iter().enumerate() {
            let in_window = starts[..=i].iter().filter(|&&s| t.saturating_since(s) < window).count();
            prop_assert!(in_window <= max, "{in_window} restarts in the window ending at {t}; max {max}");
        }
        if sim.state() == State::Failed {
            prop_assert_eq!(sim.comp.next_deadline(), None, "Failed is sticky");
        }
    }

    #[test]
    fn at_most_one_instance_and_no_panic_with_operator_commands(
        spec in arb_spec(), lives in arb_lives(),
        answers in proptest::collection::vec((0u64..4_000, any::<bool>()), 1..6),
        commands in proptest::collection::vec((0u64..60_000, 0u8..5), 0..20),
    ) {
        let mut sim = world(spec, lives, answers);
        for (t, c) in commands {
            let input = match c {
                0 => Input::Start,
                1 => Input::Stop,
                2 => Input::Restart,
                3 => Input::Reset,
                _ => Input::Tick,
            };
            sim.at(ms(t), input);
        }
        sim.input(Input::Start);
        sim.run_until(Duration::from_secs(90));
        prop_assert!(sim.max_alive <= 1, "{} instances alive at once", sim.max_alive);
        let st = sim.comp.status(sim.now);
        prop_assert_eq!(st.healthy, st.state == State::Running && st.ready);
        if matches!(st.state, State::Stopped | State::Failed) {
            prop_assert!(!sim.comp.has_instance() && st.uptime.is_none());
        }
    }

    #[test]
    fn arbitrary_raw_inputs_never_panic(spec in arb_spec(), steps in proptest::collection::vec(
        (0u64..3_000, 0u8..12, 0u64..6, any::<i32>(), any::<bool>(), 0u64..u64::MAX), 0..200)) {
        let mut comp = Component::new(spec).unwrap();
        let mut now = Instant::ZERO;
        let mut out = Vec::new();
        for (dt, what, inc, code, ok, big) in steps {
            now = now + ms(dt);
            let kind = ProbeKind::ALL[(inc % 3) as usize];
            let input = match what {
                0 => Input::Start,
                1 => Input::Stop,
                2 => Input::Restart,
                3 => Input::Reset,
                4 => Input::Tick,
                5 => Input::Spawned { incarnation: inc },
                6 => Input::SpawnFailed { incarnation: inc, error: "nope".into() },
                7 => Input::Exited { incarnation: inc, exit: if ok { Exit::Code(code) } else { Exit::Signal(code) } },
                8 => Input::Stopped { incarnation: inc },
                9 => Input::ProbeDone { incarnation: inc, kind, outcome: ProbeOutcome {
                    ok, duration: Duration::from_nanos(big), reason: None, output: "x".repeat((big % 5000) as usize) } },
                10 => Input::Notify { incarnation: inc, message: NotifyMessage::ExtendTimeout(Duration::from_micros(big)) },
                _ => Input::Notify { incarnation: inc, message: match big % 6 {
                    0 => NotifyMessage::Ready, 1 => NotifyMessage::Stopping, 2 => NotifyMessage::Watchdog,
                    3 => NotifyMessage::WatchdogTrigger, 4 => NotifyMessage::RestartReset,
                    _ => NotifyMessage::Status("s".into()) } },
            };
            comp.handle(now, input, &mut out);
            if comp.next_deadline().is_some_and(|d| d <= now) {
                comp.handle(now, Input::Tick, &mut out);
            }
            let st = comp.status(now);
            for p in st.probes.iter().flatten() {
                prop_assert!(p.last.len() <= 5);
                prop_assert!(p.last.iter().all(|r| r.output.len() <= hale_core::OUTPUT_LIMIT + 3));
            }
            out.clear();
        }
    }
}
