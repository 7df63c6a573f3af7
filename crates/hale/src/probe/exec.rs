//! The `exec` and `sh` checks: run a command, healthy when it exits 0.
//!
//! The command runs in a process group of its own, with stdin from `/dev/null` and stdout and
//! stderr captured together through one pipe (so their lines keep their order), cut to 4096
//! bytes plus `...`. When the future is dropped before the command exits (the driver's timeout),
//! the whole process group is killed with SIGKILL and the command is reaped, so a hanging check
//! leaves neither its process nor the processes it started behind. When the command exits by
//! itself, whatever it left running in its group is killed too.
//!
//! What this module does not do: apply a timeout of its own (the driver does), look at the
//! output to decide health (only the exit status counts), or change the environment, working
//! directory or user the command runs with (it inherits hale's).

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

use super::{BoxFuture, CheckResult, InvalidProbe, Probe, ProbeContext, ProbeError, os_error};

/// How many bytes of output are kept; more than the 4096 that are reported, so that the cut
/// (and its `...`) is made by [`hale_core::truncate_output`] on a character boundary.
const KEEP_BYTES: usize = 8192;

/// How long to keep reading output after the command exited and its group was killed. Only a
/// process that left the group (with `setsid`) and kept the pipe open makes this wait matter.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

/// Runs a command; healthy when it exits 0. `Ok` carries the command's combined output.
///
/// ```no_run
/// use hale::probe::Exec;
/// let direct = Exec::new(["pg_isready", "-q"]).unwrap();
/// let shell = Exec::sh("curl -fsS localhost:8080/healthz | grep -q ok").unwrap();
/// ```
#[derive(Clone)]
pub struct Exec {
    argv: Arc<[String]>,
    form: Form,
}

#[derive(Clone)]
enum Form {
    /// `exec ["cmd", "arg"]`.
    Argv,
    /// `sh "cmd"`: the argv is `/bin/sh -c cmd`.
    Shell(String),
}

impl Exec {
    /// A check that runs `argv[0]` with the remaining arguments, looked up in `PATH` when it has
    /// no slash. Fails when `argv` is empty or its first element is empty.
    pub fn new<I, S>(argv: I) -> Result<Self, InvalidProbe>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
        match argv.first() {
            None => return Err(InvalidProbe::new("exec []: the command is empty")),
            Some(program) if program.is_empty() => {
                return Err(InvalidProbe::new(format!("exec {argv:?}: the program name is empty")));
            }
            Some(_) => {}
        }
        Ok(Self { argv: argv.into(), form: Form::Argv })
    }

    /// A check that runs `/bin/sh -c command`. Fails when `command` is blank.
    pub fn sh(command: impl Into<String>) -> Result<Self, InvalidProbe> {
        let command = command.into();
        if command.trim().is_empty() {
            return Err(InvalidProbe::new(format!("sh {command:?}: the command is empty")));
        }
        let argv = vec!["/bin/sh".to_owned(), "-c".to_owned(), command.clone()];
        Ok(Self { argv: argv.into(), form: Form::Shell(command) })
    }

    /// The program and arguments that each check runs (`/bin/sh -c ...` for [`Exec::sh`]).
    pub fn argv(&self) -> &[String] {
        &self.argv
    }
}

impl fmt::Debug for Exec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Probe for Exec {
    fn check(&self, _ctx: ProbeContext) -> BoxFuture<CheckResult> {
        Box::pin(run(self.argv.clone(), self.describe()))
    }

    /// `exec ["cmd", "arg"]` or `sh "cmd"`.
    fn describe(&self) -> String {
        match &self.form {
            Form::Argv => format!("exec {:?}", &self.argv[..]),
            Form::Shell(command) => format!("sh {command:?}"),
        }
    }
}

async fn run(argv: Arc<[String]>, label: String) -> CheckResult {
    let could_not_start = |err: io::Error| {
        ProbeError::new(format!("{label}: could not start: {}", os_error::text(&err)))
    };

    // One pipe for stdout and stderr, so that their lines keep the order they were written in.
    let (reader, writer) = io::pipe().map_err(could_not_start)?;
    let writer_for_stderr = writer.try_clone().map_err(could_not_start)?;
    let mut reader =
        pipe::Receiver::from_owned_fd(OwnedFd::from(reader)).map_err(could_not_start)?;

    let (program, args) = match argv.split_first() {
        Some(split) => split,
        None => return Err(ProbeError::new(format!("{label}: the command is empty"))),
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_for_stderr)
        .process_group(0);
    let spawned = command.spawn();
    // The command keeps the parent's copies of the pipe's write end: drop them now, or the pipe
    // would never reach end-of-file.
    drop(command);
    let mut group = Group::new(spawned.map_err(could_not_start)?);

    let mut output = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut open = true;
    let status = loop {
        tokio::select! {
            status = group.wait() => break status,
            read = reader.read(&mut buf), if open => match read {
                Ok(0) | Err(_) => open = false,
                Ok(n) => keep(&mut output, &buf[..n]),
            },
        }
    };
    // The command is reaped; kill whatever it left in its group, so that checks do not pile up
    // background processes. (Members still alive keep the group id from being reused.)
    group.finish();

    if open {
        let drain = async {
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => keep(&mut output, &buf[..n]),
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, drain).await;
    }
    let output = super::truncate_output(&String::from_utf8_lossy(&output));

    match status {
        Ok(status) if status.success() => Ok(output),
        Ok(status) => {
            Err(ProbeError::with_output(format!("{label}: {}", exit_text(status)), output))
        }
        Err(err) => Err(ProbeError::with_output(
            format!("{label}: could not wait for it: {}", os_error::text(&err)),
            output,
        )),
    }
}

/// Keeps the first [`KEEP_BYTES`] of the output; the rest is read and thrown away, so that a
/// chatty command never blocks on a full pipe.
fn keep(output: &mut Vec<u8>, bytes: &[u8]) {
    let room = KEEP_BYTES.saturating_sub(output.len());
    output.extend_from_slice(&bytes[..room.min(bytes.len())]);
}

fn exit_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}

/// The running command and its process group. Dropped before the command was reaped (the check's
/// future was cancelled), it kills the whole group and makes sure the command gets reaped.
struct Group {
    /// Always `Some` until `drop` moves it into a reaping task.
    child: Option<Child>,
    pgid: Option<Pid>,
    reaped: bool,
}

impl Group {
    fn new(child: Child) -> Self {
        // `process_group(0)` makes the child the leader of a group whose id is its pid. A child
        // that already exited and was reaped has no id; then there is nothing to kill.
        let pgid = child.id().and_then(|pid| i32::try_from(pid).ok()).map(Pid::from_raw);
        Self { child: Some(child), pgid, reaped: false }
    }

    /// Waits for the command to exit and reaps it. Cancel-safe.
    async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self.child.as_mut() {
            Some(child) => child.wait().await,
            None => Err(io::Error::other("the command was already reaped")),
        }
    }

    /// Called once the command was reaped: kills what is left of its group.
    fn finish(&mut self) {
        self.reaped = true;
        self.kill_group();
    }

    fn kill_group(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH means the group is already empty: nothing left to do.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // Kill before reaping: while the leader is unreaped, its pid (the group id) cannot be
        // given to another process, so this signal reaches only the check's own processes.
        self.kill_group();
        let Some(mut child) = self.child.take() else { return };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        // SIGKILL is delivered at once but the exit takes a moment. `Child::wait` is what reaps
        // it; run that on the runtime when there is one. Otherwise dropping the `Child` hands it
        // to tokio's own reaping of orphaned children.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = child.wait().await;
            });
        }
    }
}
