//! Demo programs for the quickstart (`examples/quickstart/hale.toml`), using only std so that a
//! fresh machine with the Rust toolchain can run them: `demo web` (an HTTP server with
//! `/healthz` and a `/ready` that turns 200 after a warm-up), `demo worker` (prints, then
//! crashes) and `demo client` (prints a heartbeat line). They exist to be supervised, not to be
//! good servers.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("web") => web(&args),
        Some("worker") => worker(&args),
        Some("client") => client(&args),
        _ => {
            eprintln!(
                "usage: demo web [--port P] [--warmup SECS] | worker [--crash-after SECS] | client"
            );
            std::process::exit(2);
        }
    }
}

fn web(args: &[String]) {
    let port = arg(args, "--port", "8080");
    let warmup = Duration::from_secs_f64(arg(args, "--warmup", "1").parse().unwrap_or(1.0));
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).unwrap_or_else(|e| {
        eprintln!("web: cannot listen on 127.0.0.1:{port}: {e}");
        std::process::exit(1);
    });
    println!("web: listening on http://127.0.0.1:{port} (ready after {warmup:?})");
    let started = Instant::now();
    for stream in listener.incoming().flatten() {
        let mut request_line = String::new();
        let mut reader = BufReader::new(&stream);
        if reader.read_line(&mut request_line).is_err() {
            continue;
        }
        // Drain the headers.
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
            line.clear();
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/");
        let (status, body) = match path {
            "/healthz" => ("200 OK", "ok\n"),
            "/ready" if started.elapsed() >= warmup => ("200 OK", "ready\n"),
            "/ready" => ("503 Service Unavailable", "warming up\n"),
            _ => ("404 Not Found", "not found\n"),
        };
        let mut s = &stream;
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        if path != "/healthz" {
            println!("web: GET {path} -> {status}");
        }
    }
}

fn worker(args: &[String]) {
    let after: f64 = arg(args, "--crash-after", "1").parse().unwrap_or(1.0);
    println!("worker: polling for jobs");
    std::thread::sleep(Duration::from_secs_f64(after));
    eprintln!("worker: lost the database connection, exiting 1");
    std::process::exit(1);
}

fn client(_args: &[String]) {
    let mut n = 0u64;
    loop {
        n += 1;
        println!("client: request {n} served by web");
        std::thread::sleep(Duration::from_secs(2));
    }
}
