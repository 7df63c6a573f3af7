//! The `file` check: healthy when a file exists and was modified recently, for components that
//! show they are alive by touching a heartbeat file.
//!
//! Each check reads the file's modification time (following symbolic links) and compares it
//! with the wall clock. A modification time in the future (a clock set back, a file copied from
//! another host) counts as "just now". This module also holds the duration formatting shared by
//! the checks that report ages. What it does not do: read the file, watch it with inotify, or
//! look at its size or owner.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{BoxFuture, CheckResult, InvalidProbe, Probe, ProbeContext, ProbeError, os_error};

/// Healthy when the file at a path exists and was modified within `max_age`. `Ok` carries
/// `modified 3s ago`.
///
/// ```
/// use std::time::Duration;
/// use hale::probe::{File, Probe};
/// let check = File::new("/run/worker.heartbeat", Duration::from_secs(30))?;
/// assert_eq!(check.describe(), "file /run/worker.heartbeat");
/// # Ok::<(), hale::probe::InvalidProbe>(())
/// ```
#[derive(Clone)]
pub struct File {
    path: PathBuf,
    max_age: Duration,
}

impl File {
    /// A check of `path`, healthy when it was modified at most `max_age` ago. Fails when the
    /// path is empty or `max_age` is zero.
    pub fn new(path: impl Into<PathBuf>, max_age: Duration) -> Result<Self, InvalidProbe> {
        let path = path.into();
        if path.as_os_str().is_empty() {
            return Err(InvalidProbe::new("file: the path is empty"));
        }
        if max_age.is_zero() {
            return Err(InvalidProbe::new(format!(
                "file {}: max_age must be more than zero",
                path.display()
            )));
        }
        Ok(Self { path, max_age })
    }

    /// The path checked.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The oldest modification still healthy.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (max_age {})", self.describe(), fmt_duration(self.max_age))
    }
}

impl Probe for File {
    fn check(&self, _ctx: ProbeContext) -> BoxFuture<CheckResult> {
        let this = self.clone();
        Box::pin(async move { this.run().await })
    }

    /// `file PATH`.
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

impl File {
    async fn run(self) -> CheckResult {
        let fail = |what: String| ProbeError::new(format!("file {}: {what}", self.path.display()));
        let modified = match tokio::fs::metadata(&self.path).await {
            Ok(meta) => meta.modified().map_err(|err| {
                fail(format!("no modification time: {}", os_error::lower_text(&err)))
            })?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(fail("does not exist".to_owned()));
            }
            Err(err) => {
                return Err(fail(format!("cannot stat: {}", os_error::lower_text(&err))));
            }
        };
        let age = SystemTime::now().duration_since(modified).unwrap_or(Duration::ZERO);
        if age > self.max_age {
            return Err(fail(format!(
                "last modified {} ago (max_age {})",
                fmt_age(age),
                fmt_duration(self.max_age)
            )));
        }
        Ok(format!("modified {} ago", fmt_age(age)))
    }
}

/// A configured duration as people write it in config files, as the core spells them.
pub(crate) use hale_core::fmt_duration;

/// A measured age, precise enough to compare with a limit: `250ms`, `4.2s`, `42s`, `75s`.
/// Under 100 seconds a tenth is kept when there is one, so that `30.4s` does not read as `30s`
/// next to a limit of `30s`.
pub(crate) fn fmt_age(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let tenths = ms / 100;
    if ms < 100_000 && !tenths.is_multiple_of(10) {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    format!("{}s", ms / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_written() {
        assert_eq!(fmt_duration(Duration::from_secs(30)), "30s");
        assert_eq!(fmt_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(fmt_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(fmt_age(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_age(Duration::from_millis(4_250)), "4.2s");
        assert_eq!(fmt_age(Duration::from_millis(42_010)), "42s");
        assert_eq!(fmt_age(Duration::from_millis(30_400)), "30.4s");
        assert_eq!(fmt_age(Duration::from_millis(75_900)), "75.9s");
        assert_eq!(fmt_age(Duration::from_millis(175_900)), "175s");
    }
}
