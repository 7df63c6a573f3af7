//! The `hale` command line and daemon as a library, so that the binary stays a thin shell and
//! tests, benchmarks and fuzz targets can reach the config loader, the notify parser's callers
//! and the API without spawning a process. `src/main.rs` is the command line itself.

/// `println!` for client output that ends the program quietly when stdout's reader has gone
/// (`hale logs | head`), as Unix tools do, instead of panicking. SIGPIPE itself stays ignored
/// so that a write to a daemon that closed the socket is an error hale can explain.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

pub mod api;
pub mod client;
pub mod config;
pub mod daemon;
pub mod events;
pub mod explain;
pub mod footprint;
pub mod grpc_health;
pub mod hooks;
pub mod http_api;
pub mod leftovers;
pub mod logs;
pub mod metrics;
pub mod plan;
pub mod reload;
pub mod top;
