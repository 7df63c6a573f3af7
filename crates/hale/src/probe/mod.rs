//! Health checks: the [`Probe`] trait, the [`from_fn`] closure adapter and the built-in checks.
//!
//! A probe only answers "is it healthy, and what did you see?". It never applies its own timeout
//! (the driver wraps every check in `tokio::time::timeout` and drops the future on expiry, so a
//! check must clean up in `Drop`, as the exec check does with its process group), never counts
//! failures and never restarts anything: those decisions belong to `hale-core`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use hale_core::ProbeKind;

pub mod docker;
pub mod exec;
pub mod file;
pub mod grpc;
pub mod http;
mod invalid;
pub mod log;
pub(crate) mod os_error;
pub mod process;
pub mod tcp;
mod tls;

pub use docker::Docker;
pub use exec::Exec;
pub use file::File;
pub use grpc::Grpc;
pub use http::{Http, StatusRange};
pub use invalid::InvalidProbe;
pub use log::{FanOut, Log};
pub use process::Process;
pub use tcp::Tcp;

/// A boxed, sendable future, as returned by [`Probe::check`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a check is told about the thing it checks.
#[derive(Debug, Clone)]
pub struct ProbeContext {
    /// The component's name.
    pub component: Arc<str>,
    /// Which of the three probes this run is.
    pub kind: ProbeKind,
    /// The instance being checked.
    pub incarnation: u64,
    /// The process id of the component's main process, for process components that run.
    pub pid: Option<u32>,
    /// How long the driver lets this check run before it is cancelled.
    pub timeout: Duration,
}

/// Why a check failed: one readable line (what was checked, against what, what happened) plus
/// whatever output the check produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ProbeError {
    /// One line: what was checked, against what, what happened.
    pub reason: String,
    /// Output captured while checking (an exec check's stdout and stderr), cut to 4096 bytes.
    pub output: String,
}

impl ProbeError {
    /// A failure with a reason and no output.
    pub fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), output: String::new() }
    }

    /// A failure with a reason and the check's output.
    pub fn with_output(reason: impl Into<String>, output: impl Into<String>) -> Self {
        Self { reason: reason.into(), output: output.into() }
    }
}

/// The outcome of one check: `Ok(output)` when healthy.
pub type CheckResult = Result<String, ProbeError>;

/// A health check. Implementations must be cancel-safe: the driver drops the future when the
/// timeout passes, and whatever the check started must end with it.
pub trait Probe: Send + Sync + 'static {
    /// Run one check.
    fn check(&self, ctx: ProbeContext) -> BoxFuture<CheckResult>;

    /// A short description for status and logs, such as `tcp 127.0.0.1:8080`.
    fn describe(&self) -> String {
        "closure".to_owned()
    }
}

impl<P: Probe + ?Sized> Probe for Arc<P> {
    fn check(&self, ctx: ProbeContext) -> BoxFuture<CheckResult> {
        (**self).check(ctx)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

impl<P: Probe + ?Sized> Probe for Box<P> {
    fn check(&self, ctx: ProbeContext) -> BoxFuture<CheckResult> {
        (**self).check(ctx)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// A probe made from an async closure; see [`from_fn`].
pub struct FnProbe<F>(F);

/// Turn any async closure into a check: `probe::from_fn(|ctx| async move { Ok(String::new()) })`.
pub fn from_fn<F, Fut>(f: F) -> FnProbe<F>
where
    F: Fn(ProbeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckResult> + Send + 'static,
{
    FnProbe(f)
}

impl<F, Fut> Probe for FnProbe<F>
where
    F: Fn(ProbeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckResult> + Send + 'static,
{
    fn check(&self, ctx: ProbeContext) -> BoxFuture<CheckResult> {
        Box::pin((self.0)(ctx))
    }
}

/// Cut `text` to at most 4096 bytes on a character boundary, adding `...` when cut.
pub fn truncate_output(text: &str) -> String {
    hale_core::truncate_output(text)
}
