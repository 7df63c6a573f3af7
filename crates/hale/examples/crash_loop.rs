//! A process that crashes as soon as it starts, restarted with exponential backoff until the
//! restart limit puts it in the sticky `Failed` state.
//!
//! The child is `sh -c 'echo crashing; exit 1'`; its output is captured through an
//! [`OutputSink`]. Backoff starts at 100 ms and doubles up to 1 s; five restarts are allowed
//! per minute, so the sixth crash, about 2.5 s in, ends in `Failed`. Every transition is
//! printed, then the final health, and the example exits 0. Run it with
//! `cargo run -p hale --example crash_loop`.

use std::sync::Arc;
use std::time::Duration;

use hale::{Command, Component, Monitor, OutputSink, RestartConfig, State, Stream};
use tokio::time::Instant;

/// Prints each line the child writes.
struct Print;

impl OutputSink for Print {
    fn line(&self, component: &str, stream: Stream, line: &[u8]) {
        println!("         [{component} {}] {}", stream.as_str(), String::from_utf8_lossy(line));
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let began = Instant::now();
    let monitor = Monitor::new();
    let mut events = monitor.subscribe();
    monitor
        .register(
            Component::process(
                "crasher",
                Command::shell("echo crashing; exit 1").output(Arc::new(Print)),
            )
            .restart(RestartConfig {
                initial_backoff: Duration::from_millis(100),
                multiplier: 2.0,
                max_backoff: Duration::from_secs(1),
                max_restarts: 5,
                window: Duration::from_secs(60),
                ..RestartConfig::default()
            }),
        )
        .await?;

    // Print transitions until Failed; the guard keeps a bug from hanging the example.
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let e = events.recv().await?;
            println!(
                "{:>7.3}s {}: {} -> {} ({})",
                began.elapsed().as_secs_f64(),
                e.component,
                e.from,
                e.to,
                e.reason
            );
            if e.to == State::Failed {
                return Ok::<_, tokio::sync::broadcast::error::RecvError>(());
            }
        }
    })
    .await??;

    let h = monitor.health("crasher").expect("registered");
    println!("final health of {}:", h.name);
    println!("  state:          {}", h.state);
    println!("  restart count:  {}", h.restart_count);
    println!("  in window:      {}", h.restarts_in_window);
    println!("  last exit:      {}", h.last_exit.map_or("none".to_owned(), |e| e.to_string()));
    println!("  last error:     {}", h.last_error.as_deref().unwrap_or("none"));
    monitor.shutdown().await?;
    Ok(())
}
