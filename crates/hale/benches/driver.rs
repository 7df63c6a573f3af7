//! The driver under load: 1,000 external components, each with an in-process liveness probe
//! every 100 ms, for 10 s of real time. Reports probes run, hale's CPU time per probe
//! (getrusage of the whole process divided by probes), and schedule lateness: how far each run
//! started after its ideal fixed-rate tick (`first run + k * period`), p50 / p99 / max.
//!
//! Run: `cargo bench -p hale --bench driver` (a whole-process bench, not criterion).
//! `HALE_BENCH_COMPONENTS` and `HALE_BENCH_SECONDS` override the defaults.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hale::{Check, Component, External, Monitor, MonitorOptions, probe};

/// A component's first probe run and how many runs it has had.
type Runs = (Option<Instant>, u32);

fn cpu_time() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(usage.user_time()) + tv(usage.system_time())
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let components = env_or("HALE_BENCH_COMPONENTS", 1000) as usize;
    let seconds = env_or("HALE_BENCH_SECONDS", 10);
    let period = Duration::from_millis(100);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // Per component: (first run, runs so far); lateness samples in microseconds.
    let state: Arc<Vec<Mutex<Runs>>> =
        Arc::new((0..components).map(|_| Mutex::new((None, 0))).collect());
    let lateness: Arc<Mutex<Vec<u64>>> =
        Arc::new(Mutex::new(Vec::with_capacity(components * 20 * seconds as usize)));
    let (runs, cpu) = rt.block_on(async {
        let monitor = Monitor::with_options(MonitorOptions::default());
        for i in 0..components {
            let (state, lateness) = (state.clone(), lateness.clone());
            let check = probe::from_fn(move |_ctx| {
                let now = Instant::now();
                let mut s = state[i].lock().unwrap();
                match s.0 {
                    None => s.0 = Some(now),
                    Some(first) => {
                        let ideal = first + period * s.1;
                        lateness
                            .lock()
                            .unwrap()
                            .push(now.saturating_duration_since(ideal).as_micros() as u64);
                    }
                }
                s.1 += 1;
                async { Ok(String::new()) }
            });
            let c = Component::external(format!("c{i}"), External::new())
                .liveness(Check::new(check).period(period).timeout(Duration::from_secs(1)));
            monitor.register(c).await.unwrap();
        }
        // Let jitter spread the first runs over one period, then measure.
        tokio::time::sleep(Duration::from_secs(1)).await;
        lateness.lock().unwrap().clear();
        let runs0: u32 = state.iter().map(|s| s.lock().unwrap().1).sum();
        let cpu0 = cpu_time();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let runs1: u32 = state.iter().map(|s| s.lock().unwrap().1).sum();
        let cpu = cpu_time() - cpu0;
        monitor.shutdown().await.unwrap();
        (u64::from(runs1 - runs0), cpu)
    });
    let mut lat = lateness.lock().unwrap().clone();
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0);
    println!("components: {components}, period: {period:?}, measured: {seconds} s");
    println!(
        "probes run: {runs} ({:.0}/s; ideal {:.0}/s)",
        runs as f64 / seconds as f64,
        components as f64 * 10.0
    );
    println!(
        "hale CPU: {:.3} s, {:.1} us per probe",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / runs as f64
    );
    println!(
        "schedule lateness: p50 {} us, p99 {} us, max {} us ({} samples)",
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or(0),
        lat.len()
    );
}
