//! `GET /metrics`: Prometheus text, built at scrape time from the monitor's health snapshots.
//!
//! Nothing is counted twice: the library keeps cumulative counters per component (automatic
//! restarts, probe runs, failures and a duration histogram, see [`hale::ProbeStats`]) and this
//! module only encodes them with `prometheus-client`'s text encoder, so a scrape costs nothing
//! between scrapes and each check pays only for the few additions in the driver.
//!
//! Every series carries a `component` label; probe series also carry `probe`
//! (startup, liveness, readiness).

use hale::{Health, Monitor, PROBE_DURATION_BOUNDS, State};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

const STATES: [State; 6] = [
    State::Stopped,
    State::Starting,
    State::Running,
    State::Unhealthy,
    State::Restarting,
    State::Failed,
];

/// The metrics text for `monitor`'s components, in OpenMetrics text format.
pub fn render(monitor: &Monitor) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(monitor.health_summary())));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// One scrape's worth of health snapshots.
#[derive(Debug)]
struct Snapshot(Vec<Health>);

fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    all: &[Health],
    value: impl Fn(&Health) -> i64,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for h in all {
        m.encode_family(&[("component", &*h.name)])?.encode_gauge(&value(h))?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> std::fmt::Result {
        let all = &self.0;
        gauge(
            &mut enc,
            "hale_component_up",
            "1 while an instance is running (running or unhealthy)",
            all,
            |h| i64::from(matches!(h.state, State::Running | State::Unhealthy)),
        )?;
        gauge(&mut enc, "hale_component_ready", "1 while the component takes work", all, |h| {
            i64::from(h.ready)
        })?;
        gauge(&mut enc, "hale_component_healthy", "1 while running and ready", all, |h| {
            i64::from(h.healthy)
        })?;
        {
            let mut m = enc.encode_descriptor(
                "hale_component_state",
                "1 for the component's current state, 0 for the others",
                None,
                MetricType::Gauge,
            )?;
            for h in all {
                for s in STATES {
                    m.encode_family(&[("component", &*h.name), ("state", s.as_str())])?
                        .encode_gauge(&i64::from(h.state == s))?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "hale_component_restarts",
                "Automatic restarts since the daemon registered the component",
                None,
                MetricType::Counter,
            )?;
            for h in all {
                m.encode_family(&[("component", &*h.name)])?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
                    &h.restarts_total,
                    None,
                )?;
            }
        }
        gauge(
            &mut enc,
            "hale_component_restarts_in_window",
            "Restarts inside the sliding restart window",
            all,
            |h| i64::from(h.restarts_in_window),
        )?;
        gauge(&mut enc, "hale_component_incarnation", "The current instance's number", all, |h| {
            i64::try_from(h.incarnation).unwrap_or(i64::MAX)
        })?;
        {
            let mut m = enc.encode_descriptor(
                "hale_component_uptime_seconds",
                "Time since the current instance started",
                None,
                MetricType::Gauge,
            )?;
            for h in all {
                let up = h.uptime().map_or(0.0, |d| d.as_secs_f64());
                m.encode_family(&[("component", &*h.name)])?.encode_gauge(&up)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "hale_probe_duration_seconds",
                "How long each probe run took",
                None,
                MetricType::Histogram,
            )?;
            for h in all {
                for (kind, p) in &h.probes {
                    let s = &p.stats;
                    let mut buckets: Vec<(f64, u64)> =
                        PROBE_DURATION_BOUNDS.iter().copied().zip(s.buckets).collect();
                    buckets.push((f64::INFINITY, s.buckets[PROBE_DURATION_BOUNDS.len()]));
                    m.encode_family(&[("component", &*h.name), ("probe", kind.as_str())])?
                        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        s.duration_sum,
                        s.runs,
                        &buckets,
                        None,
                    )?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "hale_probe_failures",
                "Probe runs that failed",
                None,
                MetricType::Counter,
            )?;
            for h in all {
                for (kind, p) in &h.probes {
                    m.encode_family(&[("component", &*h.name), ("probe", kind.as_str())])?
                        .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
                        &p.stats.failures,
                        None,
                    )?;
                }
            }
        }
        Ok(())
    }
}
