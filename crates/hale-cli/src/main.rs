//! The `hale` binary: `hale up` supervises what a `hale.toml` describes; every other command
//! is a client of that daemon (or reads its state directory).
//!
//! This file only parses the command line, finds the daemon, and maps results to exit codes:
//! 0 ok, 1 the thing asked for did not happen, 2 usage or config error. Errors are printed once,
//! here, with their context.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use hale_cli::client::{Target, WaitFor};
use hale_cli::{client, config, daemon, events, logs, out, plan};

#[derive(Parser)]
#[command(
    name = "hale",
    version,
    about = "Keep processes alive and tell the truth about their health"
)]
struct Cli {
    /// The config file (default ./hale.toml); clients find the daemon through its state_dir.
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The daemon's control socket (also HALE_SOCKET).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Supervise the components of the config file in the foreground.
    Up {
        /// Detach: run the daemon in the background and return once every component started.
        #[arg(short = 'd', long)]
        detach: bool,
        /// Do not copy component output to stdout (it is always in state_dir/logs).
        #[arg(long)]
        no_echo: bool,
    },
    /// Validate the config file: exit 0 when valid, 1 with every error otherwise.
    Check,
    /// One row per component (or CONTRACT.md's JSON).
    Status {
        /// Only these components.
        names: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Keep refreshing.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Start components (also leaves Failed).
    Start(Targets),
    /// Stop components; they are not restarted.
    Stop(Targets),
    /// Restart components now.
    Restart(Targets),
    /// Leave Failed and clear the restart counters.
    Reset(Targets),
    /// Captured output of components.
    Logs {
        /// Only these components (default: all).
        names: Vec<String>,
        /// Keep printing new lines.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines of each component.
        #[arg(short = 'n', long = "lines", value_name = "N")]
        lines: Option<usize>,
        /// Show each line's timestamp and stream.
        #[arg(short = 't', long)]
        timestamps: bool,
    },
    /// State transitions, newest last.
    Events {
        /// Keep printing new events.
        #[arg(short = 'f', long)]
        follow: bool,
        /// One JSON object a line.
        #[arg(long)]
        json: bool,
    },
    /// Wait until components reach a condition: exit 0, or 1 on timeout or Failed.
    Wait {
        /// The components.
        names: Vec<String>,
        /// The condition.
        #[arg(long = "for", value_enum, default_value = "healthy")]
        what: WaitFor,
        /// Give up after this long ("10s", "1m").
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Apply a changed config file to the running daemon.
    Reload,
    /// Stop every component in reverse dependency order, then the daemon.
    Down,
    /// Live terminal view: components, actions on the selected one, its log (q quits).
    Top,
}

#[derive(clap::Args)]
struct Targets {
    /// The components.
    names: Vec<String>,
    /// Every component.
    #[arg(long)]
    all: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e} (write durations like \"500ms\", \"10s\", \"1m30s\")"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("HALE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("hale: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config.clone().unwrap_or_else(|| PathBuf::from("hale.toml"))
}

fn run(cli: Cli) -> Result<i32> {
    match &cli.command {
        Cmd::Check => {
            let path = config_path(&cli);
            match config::load(&path) {
                Ok(cfg) => {
                    let mut bad = 0;
                    for c in &cfg.components {
                        if let Err(e) = plan::component(c, &cfg.base_dir, &mut |_| None) {
                            eprintln!("{}:{}: error: {e:#}", path.display(), c.line);
                            bad += 1;
                        }
                    }
                    if bad > 0 {
                        return Ok(1);
                    }
                    out!("{}: ok ({} components)", path.display(), cfg.components.len());
                    Ok(0)
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!("{}", errors.summary());
                    Ok(1)
                }
            }
        }
        Cmd::Up { detach, no_echo } => {
            let path = config_path(&cli);
            let cfg = match config::load(&path) {
                Ok(cfg) => cfg,
                Err(errors) => {
                    eprintln!("{errors}");
                    eprintln!("{}; nothing was started", errors.summary());
                    return Ok(2);
                }
            };
            for c in &cfg.components {
                if let Err(e) = plan::component(c, &cfg.base_dir, &mut |_| None) {
                    eprintln!("{}:{}: error: {e:#}", path.display(), c.line);
                    return Ok(2);
                }
            }
            if *detach {
                return daemon::detach(&path, &cfg);
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            match rt.block_on(daemon::run(cfg, !*no_echo)) {
                Ok(code) => Ok(code),
                Err(e) => {
                    eprintln!("hale: {e:#}");
                    Ok(2)
                }
            }
        }
        Cmd::Logs { names, follow, lines, timestamps } => {
            let (state_dir, known) = state_dir(&cli);
            let names = if names.is_empty() {
                known.unwrap_or_else(|| logged_names(&state_dir))
            } else {
                names.clone()
            };
            print_logs(&state_dir, &names, *lines, *follow, *timestamps)
        }
        Cmd::Events { follow, json } => {
            let (state_dir, _) = state_dir(&cli);
            for e in events::read_all(&state_dir)
                .with_context(|| format!("reading events in {}", state_dir.display()))?
            {
                out!("{}", if *json { e.to_string() } else { events::human(&e) });
            }
            if *follow {
                events::follow(&state_dir, |e| {
                    out!("{}", if *json { e.to_string() } else { events::human(e) });
                })?;
            }
            Ok(0)
        }
        Cmd::Top => {
            let (state_dir, _) = state_dir(&cli);
            hale_cli::top::run(target(&cli), state_dir)
        }
        _ => {
            let target = target(&cli);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(client_command(&cli.command, &target))
        }
    }
}

async fn client_command(cmd: &Cmd, target: &Target) -> Result<i32> {
    match cmd {
        Cmd::Status { names, json, watch } => {
            if !*watch {
                return client::print_status(target, names, *json).await;
            }
            loop {
                print!("\x1b[2J\x1b[H");
                client::print_status(target, names, *json).await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Cmd::Start(t) => client::act(target, "start", &t.names, t.all).await,
        Cmd::Stop(t) => client::act(target, "stop", &t.names, t.all).await,
        Cmd::Restart(t) => client::act(target, "restart", &t.names, t.all).await,
        Cmd::Reset(t) => client::act(target, "reset", &t.names, t.all).await,
        Cmd::Wait { names, what, timeout } => client::wait(target, names, *what, *timeout).await,
        Cmd::Down => client::down(target).await,
        Cmd::Reload => client::reload(target).await,
        _ => unreachable!("handled in run"),
    }
}

/// Find the daemon's socket: --socket, then -c FILE's state_dir, then HALE_SOCKET, then
/// ./hale.toml's state_dir, then ./.hale/hale.sock.
fn target(cli: &Cli) -> Target {
    if let Some(socket) = &cli.socket {
        return Target { socket: socket.clone(), config: None };
    }
    if cli.config.is_none()
        && let Some(socket) = std::env::var_os("HALE_SOCKET")
    {
        return Target { socket: PathBuf::from(socket), config: None };
    }
    let (state_dir, _) = state_dir(cli);
    Target { socket: state_dir.join("hale.sock"), config: cli.config.clone() }
}

/// The state directory and, when a config was read, its component names.
fn state_dir(cli: &Cli) -> (PathBuf, Option<Vec<String>>) {
    if let Some(socket) = cli.socket.clone().or_else(|| {
        cli.config.is_none().then(|| std::env::var_os("HALE_SOCKET").map(PathBuf::from)).flatten()
    }) {
        let dir = socket.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        return (dir, None);
    }
    let path = config_path(cli);
    match config::load(&path) {
        Ok(cfg) => {
            let names = cfg
                .components
                .iter()
                .filter(|c| c.run.is_process())
                .map(|c| c.name.clone())
                .collect();
            (cfg.hale.state_dir, Some(names))
        }
        Err(_) => {
            let base =
                path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            (base.join(config::DEFAULT_STATE_DIR), None)
        }
    }
}

fn logged_names(state_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state_dir.join("logs"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn print_logs(
    state_dir: &Path,
    names: &[String],
    lines: Option<usize>,
    follow: bool,
    timestamps: bool,
) -> Result<i32> {
    let prefix = names.len() > 1;
    let width = names.iter().map(String::len).max().unwrap_or(0);
    let show = |name: &str, r: &logs::Record| {
        let mut line = String::new();
        if prefix {
            line.push_str(&format!("{name:<width$} | "));
        }
        if timestamps {
            line.push_str(&format!("{} {} ", r.at, r.stream));
        }
        line.push_str(&r.text);
        out!("{line}");
    };
    let mut all: Vec<(String, logs::Record)> = Vec::new();
    let mut code = 0;
    for name in names {
        match logs::tail(state_dir, name, lines) {
            Ok(recs) => all.extend(recs.into_iter().map(|r| (name.clone(), r))),
            Err(e) => {
                eprintln!("hale logs: {e}");
                code = 1;
            }
        }
    }
    // Merge components by timestamp (RFC 3339 in UTC sorts as text); stable within one.
    all.sort_by(|a, b| a.1.at.cmp(&b.1.at));
    for (name, r) in &all {
        show(name, r);
    }
    if follow {
        if names.len() != 1 {
            anyhow::bail!("`hale logs -f` follows one component at a time; name it");
        }
        logs::follow(state_dir, &names[0], |r| {
            show(&names[0], &r);
            true
        })?;
    }
    Ok(code)
}
