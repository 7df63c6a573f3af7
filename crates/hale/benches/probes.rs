//! The CPU cost of one check, for the `tcp`, `http` and `grpc` probes against a local server:
//! each check opens a fresh loopback connection, as the probes always do. The server runs on
//! its own OS thread with its own single-threaded runtime (a TCP accept-and-close loop, a hyper
//! HTTP/1.1 server answering 200 `ok`, a tonic server with the health service); the checks run
//! on the main thread in a second single-threaded runtime, one after another and then 64 at a
//! time. hale's cost is the main thread's CPU time (`getrusage(RUSAGE_THREAD)`, user + system,
//! so the kernel work of its own syscalls is counted; on loopback that includes part of the
//! server's side of the handshake, which the kernel runs in the connecting thread's softirq).
//! Reports checks run, wall time, checks per second, client CPU per check (and the kernel's
//! share of it), checks per client CPU-second (the rate one core could sustain if the checks
//! were all it did), and the whole process's CPU per check (client and server together).
//!
//! Run: `cargo bench -p hale --bench probes` (a whole-process bench, not criterion).
//! `HALE_BENCH_SECONDS` (default 3) sets how long each measurement runs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hale::probe::{Grpc, Http, Probe, ProbeContext, ProbeKind, Tcp};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use nix::sys::resource::{UsageWho, getrusage};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;

/// Checks in flight at once in the concurrent runs.
const IN_FLIGHT: usize = 64;

/// User and system CPU time of `who`.
fn cpu_times(who: UsageWho) -> (Duration, Duration) {
    let usage = getrusage(who).unwrap();
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    (tv(usage.user_time()), tv(usage.system_time()))
}

/// User + system CPU time of `who`.
fn cpu_time(who: UsageWho) -> Duration {
    let (user, system) = cpu_times(who);
    user + system
}

fn ctx() -> ProbeContext {
    ProbeContext {
        component: Arc::from("bench"),
        kind: ProbeKind::Liveness,
        incarnation: 1,
        pid: None,
        timeout: Duration::from_secs(10),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Tcp,
    Http,
    Grpc,
}

/// Starts the server for `kind` on its own thread and runtime; returns its address.
fn start_server(kind: Kind) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("server".to_owned())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                match kind {
                    Kind::Tcp => loop {
                        // Accept and close: all a tcp check needs.
                        if let Ok((stream, _)) = listener.accept().await {
                            drop(stream);
                        }
                    },
                    Kind::Http => loop {
                        let Ok((stream, _)) = listener.accept().await else { continue };
                        tokio::spawn(async move {
                            let service =
                                service_fn(|_req: Request<hyper::body::Incoming>| async {
                                    Ok::<_, Infallible>(Response::new(Full::new(
                                        Bytes::from_static(b"ok"),
                                    )))
                                });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    },
                    Kind::Grpc => {
                        let (_reporter, service) = tonic_health::server::health_reporter();
                        tonic::transport::Server::builder()
                            .add_service(service)
                            .serve_with_incoming(TcpListenerStream::new(listener))
                            .await
                            .unwrap();
                    }
                }
            });
        })
        .unwrap();
    rx.recv().unwrap()
}

struct Run {
    checks: u64,
    wall: Duration,
    client_cpu: Duration,
    client_system: Duration,
    process_cpu: Duration,
}

/// Runs checks for `seconds`, `in_flight` at a time, on the current (single-threaded) runtime.
async fn measure(probe: Arc<dyn Probe>, in_flight: usize, seconds: Duration) -> Run {
    let (cpu0, proc0, start) =
        (cpu_times(UsageWho::RUSAGE_THREAD), cpu_time(UsageWho::RUSAGE_SELF), Instant::now());
    let deadline = start + seconds;
    let mut checks = 0u64;
    let mut set = JoinSet::new();
    for _ in 0..in_flight {
        set.spawn(probe.check(ctx()));
    }
    while let Some(result) = set.join_next().await {
        if let Err(err) = result.unwrap() {
            panic!("{}: {err:?}", probe.describe());
        }
        checks += 1;
        if Instant::now() < deadline {
            set.spawn(probe.check(ctx()));
        }
    }
    let (wall, cpu1) = (start.elapsed(), cpu_times(UsageWho::RUSAGE_THREAD));
    Run {
        checks,
        wall,
        client_cpu: (cpu1.0 + cpu1.1) - (cpu0.0 + cpu0.1),
        client_system: cpu1.1 - cpu0.1,
        process_cpu: cpu_time(UsageWho::RUSAGE_SELF) - proc0,
    }
}

fn main() {
    let seconds = std::env::var("HALE_BENCH_SECONDS").ok().and_then(|v| v.parse().ok());
    let seconds = Duration::from_secs_f64(seconds.unwrap_or(3.0));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!(
        "| probe | in flight | checks | wall s | checks/s | client CPU us/check | of which kernel | checks per client CPU-s | process CPU us/check |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for kind in [Kind::Tcp, Kind::Http, Kind::Grpc] {
        let addr = start_server(kind);
        let (name, probe): (&str, Arc<dyn Probe>) = match kind {
            Kind::Tcp => ("tcp", Arc::new(Tcp::new(addr.to_string()).unwrap())),
            Kind::Http => ("http", Arc::new(Http::get(&format!("http://{addr}/healthz")).unwrap())),
            Kind::Grpc => ("grpc", Arc::new(Grpc::new(addr.to_string()).unwrap())),
        };
        rt.block_on(async {
            // Warm-up: first connections, lazy statics, allocator.
            measure(probe.clone(), 8, Duration::from_millis(300)).await;
            for in_flight in [1, IN_FLIGHT] {
                let run = measure(probe.clone(), in_flight, seconds).await;
                let n = run.checks as f64;
                println!(
                    "| {name} | {in_flight} | {} | {:.2} | {:.0} | {:.1} | {:.0} % | {:.0} | {:.1} |",
                    run.checks,
                    run.wall.as_secs_f64(),
                    n / run.wall.as_secs_f64(),
                    run.client_cpu.as_secs_f64() * 1e6 / n,
                    run.client_system.as_secs_f64() * 100.0 / run.client_cpu.as_secs_f64(),
                    n / run.client_cpu.as_secs_f64(),
                    run.process_cpu.as_secs_f64() * 1e6 / n,
                );
            }
        });
    }
}
