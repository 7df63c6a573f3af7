//! Virtual monotonic time for the core: an [`Instant`] is a point on the driver's clock.
//!
//! The core never reads a clock. The driver picks an origin when it starts and hands every
//! input the time elapsed since then; the simulator in the tests counts from zero. Arithmetic
//! saturates instead of panicking, so no input sequence can make the core overflow.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the driver's monotonic clock, measured from an origin the driver chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(Duration);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(Duration::ZERO);
    /// The furthest representable point; used as "never".
    pub const MAX: Instant = Instant(Duration::MAX);

    /// The point `since` after the origin.
    pub const fn from_origin(since: Duration) -> Self {
        Instant(since)
    }

    /// The time elapsed from the origin to this point.
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// `self - earlier`, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(rhs))
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_sub(rhs))
    }
}

impl fmt::Display for Instant {
    /// Seconds with millisecond precision, as the simulator's traces print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0.as_secs(), self.0.subsec_millis())
    }
}
