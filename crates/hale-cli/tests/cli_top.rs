//! `hale top` end to end: the real binary in a real terminal (a detached tmux session on a
//! server of its own), against a real daemon started by the shared harness. The test reads
//! the screen with `tmux capture-pane` and types with `tmux send-keys`; every wait polls the
//! screen with a guard deadline. It checks the rows, a restart through `r` (a new incarnation
//! on screen, as the daemon says), a crash (the restart count on screen goes up), the log pane
//! through `l` (the first line of every instance), a daemon that goes away (shown, and the
//! keys still work), and that `q` quits with exit 0 and gives the terminal back. Skipped, with
//! a message, when tmux is not installed.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Hale, hale_bin};

const S: fn(u64) -> Duration = Duration::from_secs;

/// A tmux server of the test's own (`tmux -L NAME`), killed when dropped.
struct Tmux {
    server: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Start `shell_command` in a detached 160x40 session.
    fn start(cwd: &std::path::Path, shell_command: &str) -> Tmux {
        let server = format!("hale-top-test-{}", std::process::id());
        let t = Tmux { server };
        t.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "160",
            "-y",
            "40",
            "-c",
            &cwd.display().to_string(),
            shell_command,
        ]);
        t
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.server)
            .args(args)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .expect("running tmux");
        assert!(
            out.status.success(),
            "tmux {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p"])
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", keys]);
    }

    /// Poll the screen until `pred` finds what it wants; panic with the screen after `guard`.
    fn wait_for<T>(&self, guard: Duration, what: &str, pred: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + guard;
        loop {
            let screen = self.screen();
            if let Some(v) = pred(&screen) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {guard:?} waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.server)
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The screen line of component `name` in the table: `(selected, columns)`.
fn row<'a>(screen: &'a str, name: &str) -> Option<(bool, Vec<&'a str>)> {
    screen.lines().find_map(|l| {
        let l = l.trim_start_matches(['│', ' ']);
        let (selected, rest) = match l.strip_prefix('▶') {
            Some(rest) => (true, rest),
            None => (false, l),
        };
        let cols: Vec<&str> = rest.split_whitespace().filter(|c| *c != "│").collect();
        (cols.first() == Some(&name)).then_some((selected, cols))
    })
}

/// The RESTARTS and INC columns of `name`'s row, once it is running.
fn running_counts(screen: &str, name: &str) -> Option<(u64, u64)> {
    let (_, cols) = row(screen, name)?;
    // NAME STATE READY PID UPTIME RESTARTS INC ...
    if cols.get(1) != Some(&"running") || cols.get(3) == Some(&"-") {
        return None;
    }
    Some((cols.get(5)?.parse().ok()?, cols.get(6)?.parse().ok()?))
}

#[test]
fn top_shows_components_restarts_tails_logs_and_quits() {
    if !Tmux::available() {
        eprintln!("skipped: tmux is not installed, and `hale top` needs a terminal to run in");
        return;
    }
    let mut h = Hale::new();
    h.write_config(&format!(
        "[components.web]\ncommand = [\"/bin/sh\", \"-c\", \"echo hello-from-web $$; exec sleep 600\"]\n\n\
         [components.web.restart]\npolicy = \"always\"\ninitial_backoff = \"100ms\"\n\n\
         [components.worker]\ncommand = {}\n",
        h.child_cmd("worker.log", "600", 0, "")
    ));
    h.up();
    h.wait_state("web", "running", S(10));
    h.wait_state("worker", "running", S(10));

    // After `hale top` ends, the shell prints its exit code on the restored screen.
    let cmd =
        format!("{} top -c {}; echo hale-top-exited-$?; sleep 600", hale_bin(), h.config.display());
    let tmux = Tmux::start(&h.root, &format!("env -u HALE_SOCKET {cmd}"));

    tmux.wait_for(S(15), "both rows running, and the refresh time", |s| {
        (running_counts(s, "web").is_some()
            && running_counts(s, "worker").is_some()
            && s.contains("refreshed")
            && s.contains(&h.socket().display().to_string()))
        .then_some(())
    });

    // Select web, whatever the daemon's order.
    let (restarts, incarnation) = tmux.wait_for(S(10), "web selected", |s| {
        let (selected, _) = row(s, "web")?;
        if !selected {
            // Two rows: pressing towards web's end lands on it, however often it is pressed.
            let line = |n: &str| s.lines().position(|l| row(l, n).is_some());
            tmux.keys(if line("web") < line("worker") { "k" } else { "j" });
            return None;
        }
        running_counts(s, "web")
    });
    let before = h.comp("web");
    assert_eq!(before["restart_count"].as_u64(), Some(restarts), "{before}");
    assert_eq!(before["incarnation"].as_u64(), Some(incarnation), "{before}");

    // An operator's restart starts a new incarnation (the restart count is for restarts hale
    // decided on, so it stays): the screen shows the daemon's new numbers.
    tmux.keys("r");
    let (r, i) = tmux.wait_for(S(15), "web restarted on screen", |s| {
        let (r, i) = running_counts(s, "web")?;
        (i > incarnation && s.contains("restart web: ok")).then_some((r, i))
    });
    let after = h.comp("web");
    assert_eq!(after["incarnation"].as_u64(), Some(i), "{after}");
    assert_eq!(after["restart_count"].as_u64(), Some(r), "{after}");
    assert!(r >= restarts, "{after}");
    assert_ne!(after["pid"], before["pid"], "a new process: {after}");

    // A crash is a restart hale decides on: the count on screen goes up.
    let pid = after["pid"].as_u64().expect("web's pid") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .expect("killing web");
    tmux.wait_for(S(15), "web's crash counted on screen", |s| {
        let (r2, i2) = running_counts(s, "web")?;
        (r2 == r + 1 && i2 > i).then_some(())
    });

    tmux.keys("l");
    tmux.wait_for(S(10), "web's log pane with every instance's first line", |s| {
        (s.contains("log: web") && s.matches("hello-from-web").count() >= 3).then_some(())
    });
    tmux.keys("l");
    tmux.wait_for(S(5), "the log pane closed", |s| (!s.contains("log: web")).then_some(()));

    // The daemon goes away: top says so and keeps answering keys.
    h.ok(&["down"]);
    tmux.wait_for(S(10), "daemon not reachable", |s| {
        s.contains("daemon not reachable").then_some(())
    });
    let screen = tmux.screen();
    let line = |n: &str| screen.lines().position(|l| row(l, n).is_some());
    tmux.keys(if line("web") < line("worker") { "j" } else { "k" });
    tmux.wait_for(S(5), "the selection to move to worker without a daemon", |s| {
        row(s, "worker").is_some_and(|(sel, _)| sel).then_some(())
    });

    tmux.keys("q");
    let screen = tmux.wait_for(S(10), "hale top to exit", |s| {
        s.contains("hale-top-exited-").then(|| s.to_owned())
    });
    assert!(screen.contains("hale-top-exited-0"), "exit code 0 expected:\n{screen}");
    assert!(
        !screen.contains("RESTARTS"),
        "the alternate screen was left, so the table is gone:\n{screen}"
    );
}
