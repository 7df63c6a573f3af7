//! hale: health monitoring and auto-restart supervision, embeddable in a Rust daemon.
//!
//! Register [`Component`]s with a [`Monitor`]: each is a process hale spawns and owns, or an
//! external thing it checks and acts on. Each may have a startup, liveness and readiness
//! [`Check`], any [`probe::Probe`] (TCP, HTTP, exec, ... or an async closure through
//! [`probe::from_fn`]). hale restarts what dies or fails its checks, with exponential backoff,
//! minimum uptime and a restart limit that ends in a sticky `Failed` state, and tells you, on a
//! `watch` per component and a `broadcast` of transitions, what each is doing and why.
//!
//! ```no_run
//! use std::time::Duration;
//! use hale::{Check, Command, Component, Monitor, RestartConfig, probe};
//!
//! # async fn demo() -> Result<(), hale::Error> {
//! let monitor = Monitor::new();
//! monitor
//!     .register(
//!         Component::process("web", Command::new("python3").args(["-m", "http.server", "8080"]))
//!             .liveness(Check::new(probe::Tcp::new("127.0.0.1:8080").unwrap()).period(Duration::from_secs(5)))
//!             .restart(RestartConfig { initial_backoff: Duration::from_millis(100), ..Default::default() }),
//!     )
//!     .await?;
//! let health = monitor.health("web").unwrap();
//! println!("{} is {}", health.name, health.state);
//! monitor.shutdown().await
//! # }
//! ```
//!
//! The decisions live in `hale-core` (re-exported here where embedders need its types); this
//! crate carries them out with tokio: one driver task, no locks around state.

#![warn(missing_docs)]

mod component;
pub mod docker;
mod driver;
mod monitor;
pub mod notify;
pub mod probe;
mod process;

pub use component::{
    ActionContext, ActionFn, Check, Command, Component, External, NotifyAccess, OutputSink, Stream,
    action,
};
pub use hale_core::{
    Exit, NotifyMessage, ProbeKind, ProbeSpec, RestartConfig, RestartPolicy, Spec, State,
};
pub use monitor::{
    Error, Event, Health, Monitor, MonitorOptions, Op, PROBE_DURATION_BOUNDS, ProbeHealth,
    ProbeResult, ProbeStats,
};
pub use process::{MAX_LINE, OrphanReaper};
