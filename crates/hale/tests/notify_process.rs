//! sd_notify with real processes on real time (SEMANTICS.md §8): `READY=1` passes the startup
//! gate, `WATCHDOG=1` keeps an instance alive and its absence condemns it, `STATUS=` shows in
//! health, `WATCHDOG_USEC`/`WATCHDOG_PID` are exported, and messages from a process other than
//! the main one are refused unless `notify_access` is `All`. Children are small Python scripts
//! (Python is on every machine hale's CI runs on).

use std::time::Duration;

use hale::{Command, Component, Monitor, MonitorOptions, NotifyAccess, RestartConfig, State};

const GUARD: Duration = Duration::from_secs(10);

/// A Python child that sends `messages` (each after `delay` seconds) to NOTIFY_SOCKET, records
/// its environment in `env_file`, then sleeps.
fn notifier(script: &str) -> Command {
    let prelude = r#"
import os, socket, sys, time
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
def send(msg, pid_from_child=False):
    if pid_from_child:
        if os.fork() == 0:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(msg.encode(), addr); os._exit(0)
        os.wait()
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(msg.encode(), addr)
"#;
    Command::new("python3").arg("-c").arg(format!("{prelude}\n{script}\ntime.sleep(1000)\n"))
}

fn monitor() -> Monitor {
    Monitor::with_options(MonitorOptions { jitter: false, ..MonitorOptions::default() })
}

async fn state_is(m: &Monitor, name: &str, state: State) -> hale::Health {
    tokio::time::timeout(GUARD, m.wait_for(name, |h| h.state == state))
        .await
        .unwrap_or_else(|_| panic!("{name} never reached {state}: {:?}", m.health(name)))
        .unwrap()
}

#[tokio::test]
async fn ready_1_passes_the_startup_gate_and_status_is_shown() {
    let m = monitor();
    let c = Component::process(
        "svc",
        notifier("time.sleep(0.3)\nsend('STATUS=warming up')\ntime.sleep(0.2)\nsend('READY=1\\nSTATUS=serving')"),
    )
    .ready_on_notify(Duration::from_secs(30));
    m.register(c).await.unwrap();
    let h = state_is(&m, "svc", State::Starting).await;
    assert!(!h.ready);
    let h = state_is(&m, "svc", State::Running).await;
    assert!(h.ready && h.healthy);
    let h = tokio::time::timeout(
        GUARD,
        m.wait_for("svc", |h| h.status_text.as_deref() == Some("serving")),
    )
    .await
    .expect("STATUS=serving")
    .unwrap();
    assert!(h.uptime().unwrap() >= Duration::from_millis(400), "READY came after ~0.5 s");
    m.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_missing_watchdog_ping_condemns_the_instance_and_the_env_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    let script = format!(
        "open({:?}, 'w').write(os.environ['WATCHDOG_USEC'] + ' ' + os.environ['WATCHDOG_PID'] + ' ' + str(os.getpid()))\n\
         send('READY=1')\nfor _ in range(4):\n    time.sleep(0.1)\n    send('WATCHDOG=1')\n",
        env_file.display().to_string()
    );
    let m = monitor();
    let c = Component::process("dog", notifier(&script))
        .ready_on_notify(Duration::from_secs(30))
        .watchdog(Duration::from_millis(400))
        .restart(RestartConfig {
            initial_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
            ..Default::default()
        });
    m.register(c).await.unwrap();
    let mut events = m.subscribe();
    state_is(&m, "dog", State::Running).await;
    let h = state_is(&m, "dog", State::Restarting).await;
    assert!(
        h.last_error.as_deref().unwrap_or("").contains("watchdog"),
        "the verdict names the watchdog: {:?}",
        h.last_error
    );
    let mut saw_unhealthy = false;
    while let Ok(e) = events.try_recv() {
        saw_unhealthy |= e.to == State::Unhealthy;
    }
    assert!(saw_unhealthy);
    let env = std::fs::read_to_string(&env_file).unwrap();
    let parts: Vec<&str> = env.split(' ').collect();
    assert_eq!(parts[0], "400000", "WATCHDOG_USEC");
    assert_eq!(parts[1], parts[2], "WATCHDOG_PID is the child's own pid");
    m.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_message_from_another_process_is_refused_unless_access_is_all() {
    for (access, expect_ready) in [(NotifyAccess::Main, false), (NotifyAccess::All, true)] {
        let m = monitor();
        let c = Component::process(
            "svc",
            notifier("send('READY=1', pid_from_child=True)\nsend('STATUS=sent')"),
        )
        .ready_on_notify(Duration::from_secs(30))
        .notify_access(access);
        m.register(c).await.unwrap();
        // STATUS=sent comes from the main process after the child's READY=1: once it is seen,
        // the READY=1 has been handled one way or the other.
        tokio::time::timeout(
            GUARD,
            m.wait_for("svc", |h| h.status_text.as_deref() == Some("sent")),
        )
        .await
        .expect("STATUS from the main process")
        .unwrap();
        let h = m.health("svc").unwrap();
        assert_eq!(h.state == State::Running, expect_ready, "{access:?}: {h:?}");
        m.shutdown().await.unwrap();
    }
}

/// Every component shares one notify socket: messages reach the component whose process sent
/// them (the kernel's sender PID decides), and a process outside every component is ignored.
#[tokio::test]
async fn one_shared_socket_routes_each_message_by_its_sender() {
    let m = monitor();
    for name in ["a", "b", "c"] {
        let script = format!("time.sleep(0.2)\nsend('READY=1\\nSTATUS=I am {name}')");
        let c =
            Component::process(name, notifier(&script)).ready_on_notify(Duration::from_secs(30));
        m.register(c).await.unwrap();
    }
    for name in ["a", "b", "c"] {
        let want = format!("I am {name}");
        let h = tokio::time::timeout(
            GUARD,
            m.wait_for(name, |h| h.ready && h.status_text.as_deref() == Some(want.as_str())),
        )
        .await
        .unwrap_or_else(|_| panic!("{name} never got its own STATUS: {:?}", m.health(name)))
        .unwrap();
        assert_eq!(h.state, State::Running);
    }
    // This test process is no component's: its message changes nothing.
    let env =
        std::fs::read_to_string(format!("/proc/{}/environ", m.health("a").unwrap().pid.unwrap()))
            .unwrap();
    let addr = env.split('\0').find_map(|kv| kv.strip_prefix("NOTIFY_SOCKET=")).unwrap().to_owned();
    let b_env =
        std::fs::read_to_string(format!("/proc/{}/environ", m.health("b").unwrap().pid.unwrap()))
            .unwrap();
    assert!(b_env.contains(&format!("NOTIFY_SOCKET={addr}")), "one socket for every component");
    let stranger = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let name = addr.strip_prefix('@').unwrap();
    use std::os::linux::net::SocketAddrExt;
    let target = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    stranger.send_to_addr(b"STATUS=intruder\nWATCHDOG=trigger", &target).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for name in ["a", "b", "c"] {
        let h = m.health(name).unwrap();
        assert_eq!(h.status_text.as_deref(), Some(format!("I am {name}").as_str()));
        assert_eq!((h.state, h.incarnation), (State::Running, 1));
    }
    m.shutdown().await.unwrap();
}
