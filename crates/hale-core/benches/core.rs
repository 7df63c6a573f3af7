//! Throughput of `Component::handle`: how many inputs one core handles per second on one CPU.
//!
//! Two workloads: a running component answering probe results and ticks (the steady state of
//! a supervised fleet), and a crash loop with zero backoff (spawn, exit, decide, respawn). Run
//! with `cargo bench -p hale-core`; criterion reports time per iteration, and each iteration
//! handles a known number of inputs (`Throughput::Elements`).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hale_core::{
    Action, Component, Exit, Input, Instant, ProbeKind, ProbeOutcome, ProbeSpec, RestartConfig,
    Spec,
};

const INPUTS: u64 = 10_000;

fn steady_state(c: &mut Criterion) {
    let spec = Spec {
        liveness: Some(ProbeSpec {
            period: Duration::from_millis(100),
            ..ProbeSpec::defaults(ProbeKind::Liveness)
        }),
        readiness: Some(ProbeSpec {
            period: Duration::from_millis(100),
            ..ProbeSpec::defaults(ProbeKind::Readiness)
        }),
        ..Spec::default()
    };
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(INPUTS));
    group.bench_function("probe results and ticks", |b| {
        let mut comp = Component::new(spec.clone()).unwrap();
        let mut out = Vec::with_capacity(16);
        let mut now = Instant::ZERO;
        comp.handle(now, Input::Start, &mut out);
        comp.handle(now, Input::Spawned { incarnation: 1 }, &mut out);
        b.iter(|| {
            for _ in 0..INPUTS / 2 {
                now = comp.next_deadline().unwrap_or(now);
                out.clear();
                comp.handle(now, Input::Tick, &mut out);
                for a in &out {
                    if let Action::RunProbe { incarnation, kind } = *a {
                        let outcome = ProbeOutcome::pass(Duration::from_micros(50), String::new());
                        comp.handle(
                            now,
                            Input::ProbeDone { incarnation, kind, outcome },
                            &mut Vec::new(),
                        );
                    }
                }
            }
        });
    });
    group.bench_function("crash loop with zero backoff", |b| {
        let restart = RestartConfig {
            initial_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            max_restarts: u32::MAX,
            window: Duration::from_nanos(1),
            ..RestartConfig::default()
        };
        let mut comp = Component::new(Spec { restart, ..Spec::default() }).unwrap();
        let mut out = Vec::with_capacity(16);
        let mut now = Instant::ZERO;
        comp.handle(now, Input::Start, &mut out);
        b.iter(|| {
            for _ in 0..INPUTS / 2 {
                now = now + Duration::from_micros(1);
                let incarnation = comp.incarnation();
                out.clear();
                comp.handle(now, Input::Spawned { incarnation }, &mut out);
                out.clear();
                comp.handle(now, Input::Exited { incarnation, exit: Exit::Code(1) }, &mut out);
            }
        });
    });
    group.finish();
}

criterion_group!(benches, steady_state);
criterion_main!(benches);
