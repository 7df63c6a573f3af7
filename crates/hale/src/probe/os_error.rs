//! Turning an `io::Error` into the words of a failure reason.
//!
//! `io::Error`'s own text ends in `(os error 111)`, which says nothing to an operator; this module
//! uses the bare strerror text instead. It does not decide what a failure is.

use std::io;

use nix::errno::Errno;

/// The strerror text of an OS error (`No such file or directory`), or the error's own text.
pub(crate) fn text(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_owned(),
        None => err.to_string(),
    }
}

/// As [`text`], starting with a lowercase letter, to follow a colon in a reason:
/// `tcp 127.0.0.1:8080: connection refused`.
pub(crate) fn lower_text(err: &io::Error) -> String {
    let text = text(err);
    let mut chars = text.chars();
    match chars.next() {
        // Only lowercase a strerror-style capital followed by a lowercase letter, so that
        // acronyms such as "TLS" keep their case.
        Some(first)
            if first.is_ascii_uppercase()
                && chars.next().is_some_and(|c| c.is_ascii_lowercase()) =>
        {
            let mut out = String::with_capacity(text.len());
            out.push(first.to_ascii_lowercase());
            out.push_str(&text[first.len_utf8()..]);
            out
        }
        _ => text,
    }
}
