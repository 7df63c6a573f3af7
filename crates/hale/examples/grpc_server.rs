//! A tiny gRPC server with the standard health service (`grpc.health.v1.Health`), for the
//! `daemon` example to supervise: the whole server ("") and the service "api" are SERVING.
//!
//! It listens on 127.0.0.1 at the port given as the first argument (default 50051), prints
//! `PID <pid> listening on <address>` once it accepts connections, and stops on SIGTERM or
//! SIGINT. Run it alone with `cargo run -p hale --example grpc_server -- 50051`.

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::health_reporter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::args().nth(1) {
        Some(port) => port.parse().map_err(|err| format!("port {port:?}: {err}"))?,
        None => 50051,
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let address = listener.local_addr()?;

    let (reporter, service) = health_reporter();
    reporter.set_service_status("", ServingStatus::Serving).await;
    reporter.set_service_status("api", ServingStatus::Serving).await;

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    println!("PID {} listening on {address}", std::process::id());
    Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop)
        .await?;
    println!("PID {} stopped", std::process::id());
    Ok(())
}
