//! The seed's basic setup: a [`Monitor`] watching one external service through a liveness
//! closure probe, restarting it through a restart action when it stops answering.
//!
//! The "service" is simulated by a flag that a background task clears after two seconds (the
//! service hangs); the liveness probe fails twice, the component goes unhealthy, and the
//! restart action brings it back. Every transition is printed from `subscribe()`. After about
//! six seconds the example shuts the monitor down and exits. Run it with
//! `cargo run -p hale --example basic`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hale::probe::{self, ProbeError};
use hale::{Check, Component, External, Monitor, RestartConfig, action};
use tokio::time::{Instant, sleep};

#[tokio::main]
async fn main() -> Result<(), hale::Error> {
    let began = Instant::now();
    let monitor = Monitor::new();
    let mut events = monitor.subscribe();

    // The service answers while this flag is set.
    let answering = Arc::new(AtomicBool::new(true));

    let liveness = {
        let answering = answering.clone();
        Check::new(probe::from_fn(move |_ctx| {
            let ok = answering.load(Ordering::SeqCst);
            async move { if ok { Ok("pong".to_owned()) } else { Err(ProbeError::new("no pong")) } }
        }))
        .period(Duration::from_millis(500))
        .timeout(Duration::from_millis(250))
        .failure_threshold(2)
    };
    let restart = {
        let answering = answering.clone();
        action(move |ctx| {
            let answering = answering.clone();
            async move {
                println!(
                    "         restart action: bringing the service back (instance {})",
                    ctx.incarnation
                );
                sleep(Duration::from_millis(200)).await;
                answering.store(true, Ordering::SeqCst);
                Ok(())
            }
        })
    };
    monitor
        .register(
            Component::external("service", External::new().restart(restart))
                .kind_label("demo")
                .liveness(liveness)
                .restart(RestartConfig {
                    initial_backoff: Duration::from_millis(500),
                    ..RestartConfig::default()
                }),
        )
        .await?;

    // The service hangs two seconds in.
    let hang = {
        let answering = answering.clone();
        tokio::spawn(async move {
            sleep(Duration::from_secs(2)).await;
            println!("{:>7.3}s service: hangs", began.elapsed().as_secs_f64());
            answering.store(false, Ordering::SeqCst);
        })
    };

    let print = |e: hale::Event| {
        println!(
            "{:>7.3}s {}: {} -> {} ({})",
            began.elapsed().as_secs_f64(),
            e.component,
            e.from,
            e.to,
            e.reason
        );
    };
    let end = sleep(Duration::from_secs(6));
    tokio::pin!(end);
    loop {
        tokio::select! {
            () = &mut end => break,
            event = events.recv() => match event {
                Ok(e) => print(e),
                Err(e) => println!("events: {e}"),
            },
        }
    }
    hang.await.expect("the hang task");

    let health = monitor.health("service").expect("registered");
    println!(
        "{:>7.3}s service is {} (healthy: {}, instance {}, {} restart(s), last error: {})",
        began.elapsed().as_secs_f64(),
        health.state,
        health.healthy,
        health.incarnation,
        health.restart_count,
        health.last_error.as_deref().unwrap_or("none"),
    );
    monitor.shutdown().await?;
    while let Ok(e) = events.try_recv() {
        print(e);
    }
    Ok(())
}
