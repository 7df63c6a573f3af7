//! The `file` check against real files in a temporary directory.
//!
//! Covers a freshly written file, one whose modification time is set into the past and into
//! the future (`std::fs::File::set_modified`), a file touched again after going stale, a missing
//! file, a missing directory, and the constructor's errors.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hale::probe::{File, Probe, ProbeContext, ProbeKind};

/// Upper bound for anything a test waits for; reached only when something is broken.
const GUARD: Duration = Duration::from_secs(10);

fn ctx() -> ProbeContext {
    ProbeContext {
        component: Arc::from("test"),
        kind: ProbeKind::Liveness,
        incarnation: 1,
        pid: None,
        timeout: GUARD,
    }
}

async fn check(probe: &File) -> hale::probe::CheckResult {
    tokio::time::timeout(GUARD, probe.check(ctx())).await.expect("the check hung")
}

fn set_modified(path: &std::path::Path, at: SystemTime) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(at).unwrap();
}

#[tokio::test]
async fn a_fresh_file_is_healthy_and_a_stale_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heartbeat");
    std::fs::write(&path, "").unwrap();
    let probe = File::new(&path, Duration::from_secs(30)).unwrap();
    assert_eq!(probe.describe(), format!("file {}", path.display()));
    let ok = check(&probe).await.unwrap();
    assert!(ok.starts_with("modified ") && ok.ends_with(" ago"), "{ok}");

    set_modified(&path, SystemTime::now() - Duration::from_secs(42));
    let err = check(&probe).await.unwrap_err();
    // 42s, or 42.1s on a slow machine.
    let prefix = format!("file {}: last modified 42", path.display());
    assert!(err.reason.starts_with(&prefix), "{}", err.reason);
    assert!(err.reason.ends_with("s ago (max_age 30s)"), "{}", err.reason);

    // Touched again: healthy again.
    set_modified(&path, SystemTime::now());
    assert!(check(&probe).await.is_ok());
}

#[tokio::test]
async fn a_modification_in_the_future_counts_as_now() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heartbeat");
    std::fs::write(&path, "").unwrap();
    set_modified(&path, SystemTime::now() + Duration::from_secs(3600));
    let probe = File::new(&path, Duration::from_secs(1)).unwrap();
    assert_eq!(check(&probe).await, Ok("modified 0ms ago".to_owned()));
}

#[tokio::test]
async fn missing_files_do_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    for path in [dir.path().join("never-written"), dir.path().join("no-dir/heartbeat")] {
        let probe = File::new(&path, Duration::from_secs(30)).unwrap();
        let err = check(&probe).await.unwrap_err();
        assert_eq!(err.reason, format!("file {}: does not exist", path.display()));
    }
}

#[test]
fn bad_settings_are_errors() {
    assert!(File::new("", Duration::from_secs(1)).is_err());
    let err = File::new("/x", Duration::ZERO).unwrap_err();
    assert_eq!(err.to_string(), "file /x: max_age must be more than zero");
    let probe = File::new("/x", Duration::from_secs(90)).unwrap();
    assert_eq!(
        (probe.path(), probe.max_age()),
        (std::path::Path::new("/x"), Duration::from_secs(90))
    );
    assert_eq!(format!("{probe:?}"), "file /x (max_age 1m30s)");
}
