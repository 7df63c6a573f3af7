//! Property tests of the sd_notify datagram parser (`hale::notify::parse`, SEMANTICS.md §8):
//! arbitrary bytes never make it panic, and a datagram of generated `KEY=VALUE\n` lines, with
//! unknown keys, malformed values and lines without `=` mixed in, parses back to exactly the
//! messages hale knows, in order.
//!
//! The case counts are small (256) so the file runs in a few seconds; the `notify` fuzz target
//! (fuzz/fuzz_targets/notify.rs) explores the same function for longer.

use std::time::Duration;

use hale::NotifyMessage;
use hale::notify::parse;
use proptest::prelude::*;

/// One line of a datagram: a message hale acts on, or one it must ignore.
#[derive(Debug, Clone)]
enum Line {
    Known(NotifyMessage),
    /// Written as is; parses to nothing.
    Ignored(String),
}

impl Line {
    fn text(&self) -> String {
        match self {
            Line::Known(m) => match m {
                NotifyMessage::Ready => "READY=1".to_owned(),
                NotifyMessage::Stopping => "STOPPING=1".to_owned(),
                NotifyMessage::Watchdog => "WATCHDOG=1".to_owned(),
                NotifyMessage::WatchdogTrigger => "WATCHDOG=trigger".to_owned(),
                NotifyMessage::RestartReset => "RESTART_RESET=1".to_owned(),
                NotifyMessage::ExtendTimeout(d) => format!("EXTEND_TIMEOUT_USEC={}", d.as_micros()),
                NotifyMessage::Status(s) => format!("STATUS={s}"),
            },
            Line::Ignored(s) => s.clone(),
        }
    }

    /// What parsing this line must give.
    fn expected(&self) -> Option<NotifyMessage> {
        match self {
            Line::Known(NotifyMessage::Status(s)) => {
                Some(NotifyMessage::Status(hale_core::truncate_output(s)))
            }
            Line::Known(m) => Some(m.clone()),
            Line::Ignored(_) => None,
        }
    }
}

/// A status text: any characters but a newline (which ends the line), sometimes past the
/// 4096-byte output limit.
fn status_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[^\n]{0,64}",
        1 => ("[^\n]{0,8}", 1usize..1200).prop_map(|(unit, n)| unit.repeat(n)),
    ]
}

fn known() -> impl Strategy<Value = NotifyMessage> {
    prop_oneof![
        Just(NotifyMessage::Ready),
        Just(NotifyMessage::Stopping),
        Just(NotifyMessage::Watchdog),
        Just(NotifyMessage::WatchdogTrigger),
        Just(NotifyMessage::RestartReset),
        any::<u64>().prop_map(|us| NotifyMessage::ExtendTimeout(Duration::from_micros(us))),
        status_text().prop_map(NotifyMessage::Status),
    ]
}

/// Lines hale must ignore: keys it does not know, values it does not accept, no `=` at all.
fn ignored() -> impl Strategy<Value = String> {
    prop_oneof![
        "(MAINPID|ERRNO|BUSERROR|FDSTORE|X_[A-Z]{1,8})=[^\n]{0,20}",
        "(READY|STOPPING|WATCHDOG|RESTART_RESET)=(0|2|yes|true| 1|1 |)",
        "EXTEND_TIMEOUT_USEC=(|-1|soon|1e6|18446744073709551616| 5)",
        "[^\n=]{0,20}",
        "(ready|status|Watchdog)=1",
    ]
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![3 => known().prop_map(Line::Known), 2 => ignored().prop_map(Line::Ignored)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever a child sends, the parser returns (the driver runs it on every datagram).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let messages = parse(&bytes);
        // Each message comes from its own line, so there are never more than lines.
        prop_assert!(messages.len() <= bytes.iter().filter(|&&b| b == b'\n').count() + 1);
        for m in &messages {
            if let NotifyMessage::Status(s) = m {
                prop_assert!(s.len() <= hale_core::OUTPUT_LIMIT + 3);
            }
        }
    }

    /// Generated `KEY=VALUE\n` datagrams parse back to the known messages, in order; unknown
    /// keys, bad values and lines without `=` are skipped, as systemd does.
    #[test]
    fn generated_datagrams_round_trip(
        lines in proptest::collection::vec(line(), 0..12),
        trailing_newline in any::<bool>(),
    ) {
        let mut datagram = lines.iter().map(Line::text).collect::<Vec<_>>().join("\n");
        if trailing_newline {
            datagram.push('\n');
        }
        let expected: Vec<NotifyMessage> = lines.iter().filter_map(Line::expected).collect();
        prop_assert_eq!(parse(datagram.as_bytes()), expected, "datagram {:?}", datagram);
    }

    /// Bytes that are not UTF-8 in one line spoil only that line's value, never its neighbours.
    #[test]
    fn invalid_utf8_stays_in_its_line(
        junk in proptest::collection::vec(128u8..=255, 1..16),
        before in known(),
        after in known(),
    ) {
        let mut datagram = Line::Known(before.clone()).text().into_bytes();
        datagram.extend_from_slice(b"\nX_JUNK=");
        datagram.extend_from_slice(&junk);
        datagram.push(b'\n');
        datagram.extend_from_slice(Line::Known(after.clone()).text().as_bytes());
        let expected: Vec<NotifyMessage> = [before, after]
            .into_iter()
            .map(|m| Line::Known(m).expected().expect("a known message"))
            .collect();
        prop_assert_eq!(parse(&datagram), expected);
    }
}
