//! [`InvalidProbe`], the error of every built-in check's constructor.
//!
//! It covers what can be known before the first check runs (an empty command, an address without
//! a port, a URL that does not parse, a CA file that cannot be read). It does not describe a
//! failed check: that is [`ProbeError`](super::ProbeError).

/// A built-in check could not be made from what it was given, such as `tcp "localhost"` (no
/// port) or `http "ftp://x"`. The message names the check and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidProbe(String);

impl InvalidProbe {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message, such as `tcp "localhost": expected host:port`.
    pub fn message(&self) -> &str {
        &self.0
    }
}
