//! The `grpc.health.v1` server on `[hale] grpc_health` (tonic-health), so that Kubernetes'
//! gRPC probes, grpc_health_probe or a load balancer can ask hale itself.
//!
//! Service `""` is SERVING while the daemon runs and every component that should run is
//! healthy (the same rule as `/readyz`), NOT_SERVING otherwise. Each component's name is a
//! service of its own: SERVING while the component is healthy. Each component has a small task
//! that waits on its health `watch` (never polling) and reports to one aggregator; a reload
//! adds tasks for new components, and a removed component's channel closes, which clears its
//! service (NOT_FOUND from then on). At shutdown every service goes NOT_SERVING before the
//! server stops.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::api::Shared;

/// Bind `[hale] grpc_health` (before any child starts).
pub async fn bind(addr: &str) -> Result<TcpListener> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("[hale] grpc_health = {addr:?}: cannot resolve the address"))?
        .collect();
    let first = addrs
        .first()
        .with_context(|| format!("[hale] grpc_health = {addr:?}: resolves to no address"))?;
    TcpListener::bind(first)
        .await
        .with_context(|| format!("[hale] grpc_health = {addr:?}: binding {first}"))
}

fn status(serving: bool) -> ServingStatus {
    if serving { ServingStatus::Serving } else { ServingStatus::NotServing }
}

/// Serve until the daemon has stopped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_service_status("", ServingStatus::NotServing).await;
    // Every registered component is a known service before the first request is read.
    for h in shared.monitor.health_summary() {
        reporter.set_service_status(&*h.name, status(h.healthy)).await;
    }
    let follow = tokio::spawn(follow(reporter.clone(), shared.clone()));
    let mut stopped = shared.stopped.clone();
    let mut shutdown = shared.shutdown.subscribe();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let signal = async move {
        let _ = shutdown.wait_for(|s| *s).await;
        // Shutting down: nothing is to be trusted with work any more.
        reporter.set_service_status("", ServingStatus::NotServing).await;
        let _ = stopped.wait_for(|s| *s).await;
    };
    let served = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, signal)
        .await;
    follow.abort();
    if let Err(e) = served {
        tracing::warn!("the gRPC health server stopped: {e}");
    }
}

/// Keep the statuses current: one watcher per component, one aggregator.
async fn follow(mut reporter: HealthReporter, shared: Arc<Shared>) {
    // (component, Some((healthy, counts as serving for "")) or None once it is removed)
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Option<(bool, bool)>)>();
    let mut watched: HashSet<String> = HashSet::new();
    let mut overall: HashMap<String, bool> = HashMap::new();
    let mut reloads = shared.reloaded.subscribe();
    let mut rescan = true;
    loop {
        if std::mem::take(&mut rescan) {
            for h in shared.monitor.health_summary() {
                if watched.insert(h.name.to_string()) {
                    spawn_watcher(&shared, h.name.to_string(), tx.clone());
                }
            }
        }
        tokio::select! {
            Some((name, update)) = rx.recv() => {
                match update {
                    Some((healthy, ok)) => {
                        reporter.set_service_status(&name, status(healthy)).await;
                        overall.insert(name, ok);
                    }
                    None => {
                        reporter.clear_service_status(&name).await;
                        overall.remove(&name);
                        watched.remove(&name);
                        rescan = true; // a reload may have registered the name again
                    }
                }
                let serving = !*shared.shutdown.borrow() && overall.values().all(|ok| *ok);
                reporter.set_service_status("", status(serving)).await;
            }
            r = reloads.changed() => match r {
                Ok(()) => rescan = true,
                Err(_) => return,
            },
        }
    }
}

fn spawn_watcher(
    shared: &Arc<Shared>,
    name: String,
    tx: mpsc::UnboundedSender<(String, Option<(bool, bool)>)>,
) {
    let Some(mut rx) = shared.monitor.watch(&name) else { return };
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let now = {
                let h = rx.borrow_and_update();
                (h.healthy, crate::api::serving_ok(&shared, &h))
            };
            if last != Some(now) {
                last = Some(now);
                if tx.send((name.clone(), Some(now))).is_err() {
                    return;
                }
            }
            if rx.changed().await.is_err() {
                let _ = tx.send((name, None));
                return;
            }
        }
    });
}
