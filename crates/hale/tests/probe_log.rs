//! The `log` check, fed through its `OutputSink` side as the driver feeds it, on real time.
//!
//! Covers matching and non-matching lines on both streams, lines that are not UTF-8, a match
//! leaving the window (a 200 ms window, waited out with a guard), `reset`, the grace option,
//! pattern errors, and `FanOut` handing each line to several sinks in order. It does not start a
//! component: the driver's side of `Command::output` is tested with the driver.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hale::probe::{FanOut, Log, Probe, ProbeContext, ProbeKind};
use hale::{OutputSink, Stream};

/// Upper bound for anything a test waits for; reached only when something is broken.
const GUARD: Duration = Duration::from_secs(10);

fn ctx() -> ProbeContext {
    ProbeContext {
        component: Arc::from("api"),
        kind: ProbeKind::Readiness,
        incarnation: 1,
        pid: None,
        timeout: GUARD,
    }
}

async fn check(probe: &Log) -> hale::probe::CheckResult {
    tokio::time::timeout(GUARD, probe.check(ctx())).await.expect("the check hung")
}

#[tokio::test]
async fn a_matching_line_makes_it_healthy() {
    let log = Log::new(r"listening on :\d+", Duration::from_secs(60)).unwrap();
    assert_eq!(log.describe(), r"log /listening on :\d+/");
    // The sink and the check are clones sharing one state, as they are when registered.
    let sink: Arc<dyn OutputSink> = Arc::new(log.clone());

    let err = check(&log).await.unwrap_err();
    assert_eq!(err.reason, r"log /listening on :\d+/: no matching line yet");

    sink.line("api", Stream::Stdout, b"starting up");
    sink.line("api", Stream::Stderr, b"listening on :port");
    assert!(check(&log).await.is_err());

    sink.line("api", Stream::Stderr, b"2026-01-01 INFO listening on :8080 (pid 7)");
    let ok = check(&log).await.unwrap();
    assert!(
        ok.starts_with("last match ")
            && ok.ends_with(" ago: 2026-01-01 INFO listening on :8080 (pid 7)"),
        "{ok}"
    );
    assert_eq!(log.last_match().unwrap().1, "2026-01-01 INFO listening on :8080 (pid 7)");
}

#[tokio::test]
async fn lines_that_are_not_utf8_still_match_their_text() {
    let log = Log::new("(?i)ready", Duration::from_secs(60)).unwrap();
    log.line("api", Stream::Stdout, b"\xff\xfe READY \xc3");
    assert_eq!(log.last_match().unwrap().1, "\u{fffd}\u{fffd} READY \u{fffd}");
    assert!(check(&log).await.is_ok());
}

#[tokio::test]
async fn a_match_leaves_the_window() {
    let within = Duration::from_millis(200);
    let log = Log::new("tick", within).unwrap();
    log.line("api", Stream::Stdout, b"tick");
    let matched = Instant::now();
    assert!(check(&log).await.is_ok());

    // Poll until the check fails; it must not fail before the window is over.
    let err = loop {
        match check(&log).await {
            Ok(_) => {
                assert!(matched.elapsed() < GUARD, "the match never expired");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => break err,
        }
    };
    assert!(matched.elapsed() >= within, "expired after {:?}", matched.elapsed());
    assert!(
        err.reason.starts_with("log /tick/: no matching line in the last 200ms (last match "),
        "{}",
        err.reason
    );

    // A new match brings it back.
    log.line("api", Stream::Stdout, b"tick");
    assert!(check(&log).await.is_ok());
    // And reset forgets it.
    log.reset();
    assert!(log.last_match().is_none());
    let err = check(&log).await.unwrap_err();
    assert_eq!(err.reason, "log /tick/: no matching line in the last 200ms");
}

#[tokio::test]
async fn grace_from_creation_gives_time_for_the_first_line() {
    let within = Duration::from_millis(200);
    let created = Instant::now();
    let log = Log::new("tick", within).unwrap().grace_from_creation();
    if created.elapsed() < Duration::from_millis(150) {
        let ok = check(&log).await.unwrap();
        assert!(ok.starts_with("no matching line yet ("), "{ok}");
    }
    let deadline = created + GUARD;
    let err = loop {
        match check(&log).await {
            Ok(_) => {
                assert!(Instant::now() < deadline, "the grace never ended");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => break err,
        }
    };
    assert!(created.elapsed() >= within);
    assert_eq!(err.reason, "log /tick/: no matching line in the last 200ms");
}

#[test]
fn bad_patterns_and_windows_are_errors() {
    let err = Log::new("(unclosed", Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.to_string(), "log /(unclosed/: invalid pattern: unclosed group");
    let err = Log::new("a{99999999}", Duration::from_secs(1)).unwrap_err();
    assert!(err.to_string().starts_with("log /a{99999999}/: invalid pattern: "), "{err}");
    assert!(!err.to_string().contains('\n'), "{err}");
    let err = Log::new("ok", Duration::ZERO).unwrap_err();
    assert_eq!(err.to_string(), "log /ok/: within must be more than zero");
    let log = Log::new("ok", Duration::from_secs(90)).unwrap();
    assert_eq!((log.pattern(), log.within()), ("ok", Duration::from_secs(90)));
    assert_eq!(format!("{log:?}"), "log /ok/ (within 1m30s)");
}

/// Records what it is given.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Stream, Vec<u8>)>>);

impl OutputSink for Recorder {
    fn line(&self, component: &str, stream: Stream, line: &[u8]) {
        self.0.lock().unwrap().push((component.to_owned(), stream, line.to_vec()));
    }
}

#[tokio::test]
async fn fan_out_hands_each_line_to_every_sink() {
    let ready = Log::new("ready", Duration::from_secs(60)).unwrap();
    let alive = Log::new("heartbeat", Duration::from_secs(60)).unwrap();
    let recorder = Arc::new(Recorder::default());
    let mut fan = FanOut::new().with(recorder.clone()).with(Arc::new(ready.clone()));
    fan.push(Arc::new(alive.clone()));
    assert_eq!(fan.len(), 3);
    let sink: Arc<dyn OutputSink> = Arc::new(fan);

    sink.line("api", Stream::Stdout, b"ready");
    assert!(check(&ready).await.is_ok());
    assert!(check(&alive).await.is_err());
    sink.line("api", Stream::Stderr, b"heartbeat");
    assert!(check(&alive).await.is_ok());

    let seen = recorder.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            ("api".to_owned(), Stream::Stdout, b"ready".to_vec()),
            ("api".to_owned(), Stream::Stderr, b"heartbeat".to_vec()),
        ]
    );
    assert!(FanOut::from(Vec::new()).is_empty());
}
