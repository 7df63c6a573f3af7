#!/usr/bin/env python3
"""Whole-process benchmarks of the `hale` binary, measured side by side in one run.

  python3 bench/supervisor.py [--hale target/release/hale] [--seconds 30] [--quick]

1. Crash-to-respawn: hale supervises `/bin/true` with zero backoff; the cycle time (exit to the
   next exit) is total time / restarts. The floor is the same child run by a bare
   fork+exec+wait loop in this script's own C-free way: `os.posix_spawn` + `waitpid`, timed over
   the same number of runs. hale's overhead per respawn = cycle - floor.
2. Footprint: hale's RSS (VmRSS of the daemon) and CPU seconds (utime+stime from /proc) while it
   holds N idle children (`sleep`), N = 100 and 1000, with and without a 1 s tcp liveness probe
   each (all against one local listener started by this script).

Prints a Markdown table with the machine, the date and the command. Needs Linux /proc.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / HZ


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Daemon:
    def __init__(self, hale: str, config: str):
        self.dir = Path(tempfile.mkdtemp(prefix="hb-", dir="/tmp"))
        self.cfg = self.dir / "hale.toml"
        self.cfg.write_text(config)
        self.hale = hale
        self.log = open(self.dir / "out.log", "wb")
        self.proc = subprocess.Popen([hale, "up", "-c", str(self.cfg)], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def cli(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([self.hale, *args, "-c", str(self.cfg)], capture_output=True, text=True,
                              timeout=60)

    def status(self) -> list[dict]:
        r = self.cli("status", "--json")
        if r.returncode != 0:
            return []
        return json.loads(r.stdout)["components"]

    def wait(self, pred, timeout=120.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hale exited: {(self.dir / 'out.log').read_text()[-2000:]}")
            comps = self.status()
            if comps and pred(comps):
                return comps
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}")

    def close(self):
        try:
            self.cli("down")
        except subprocess.TimeoutExpired:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def floor_cycle(child: str, runs: int) -> float:
    """Seconds per fork+exec+wait of `child`, run directly."""
    t0 = time.perf_counter()
    for _ in range(runs):
        pid = os.posix_spawn(child, [child], os.environ)
        os.waitpid(pid, 0)
    return (time.perf_counter() - t0) / runs


def respawn(hale: str, seconds: float) -> dict:
    child = shutil.which("true") or "/bin/true"
    config = f"""
[components.crash]
command = ["{child}"]
[components.crash.restart]
policy = "always"
initial_backoff = "0s"
max_backoff = "0s"
max_restarts = 4000000000
window = "1ms"
"""
    d = Daemon(hale, config)
    try:
        d.wait(lambda c: c[0]["restart_count"] > 100, 30, "restarts")
        r0, t0 = d.status()[0]["restart_count"], time.perf_counter()
        time.sleep(seconds)
        r1, t1 = d.status()[0]["restart_count"], time.perf_counter()
        cpu = cpu_seconds(d.proc.pid)
    finally:
        d.close()
    cycle = (t1 - t0) / max(r1 - r0, 1)
    floor = floor_cycle(child, max(200, min(r1 - r0, 5000)))
    return {"restarts": r1 - r0, "cycle_ms": cycle * 1e3, "floor_ms": floor * 1e3,
            "overhead_ms": (cycle - floor) * 1e3, "cpu_s": cpu}


def listener() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4096)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                return
    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def footprint(hale: str, n: int, probe_port: int | None, seconds: float) -> dict:
    sleep = shutil.which("sleep") or "/bin/sleep"
    parts = []
    for i in range(n):
        parts.append(f'[components.s{i}]\ncommand = ["{sleep}", "100000"]\n')
        if probe_port:
            parts.append(f'[components.s{i}.liveness]\ntcp = "127.0.0.1:{probe_port}"\nperiod = "1s"\n'
                         f'timeout = "1s"\n')
    d = Daemon(hale, "\n".join(parts))
    try:
        d.wait(lambda c: len(c) == n and all(x["state"] == "running" for x in c), 300, "all running")
        time.sleep(3)  # let start-up settle (first probes, allocator)
        cpu0, t0 = cpu_seconds(d.proc.pid), time.monotonic()
        samples = []
        while time.monotonic() - t0 < seconds:
            samples.append(rss_kib(d.proc.pid))
            time.sleep(1)
        cpu = cpu_seconds(d.proc.pid) - cpu0
        elapsed = time.monotonic() - t0
        probes = n * elapsed if probe_port else 0
    finally:
        d.close()
    return {"n": n, "probe": bool(probe_port), "rss_mib": max(samples) / 1024,
            "cpu_per_min": cpu * 60 / elapsed, "cpu_per_check_ms": (cpu * 1e3 / probes) if probes else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hale", default=str(ROOT / "target/release/hale"))
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--quick", action="store_true", help="100 children only, 10 s windows")
    a = ap.parse_args()
    secs = 10 if a.quick else a.seconds
    print(f"# hale whole-process benchmarks, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"command: python3 bench/supervisor.py {' '.join(sys.argv[1:])}\n")
    r = respawn(a.hale, min(secs, 10))
    print("| crash-to-respawn (zero backoff, /bin/true) | value |\n|---|---|")
    print(f"| hale cycle (exit to next exit), mean over {r['restarts']} restarts | {r['cycle_ms']:.3f} ms |")
    print(f"| bare fork+exec+wait floor (posix_spawn + waitpid) | {r['floor_ms']:.3f} ms |")
    print(f"| hale overhead per respawn | {r['overhead_ms']:.3f} ms |")
    print()
    srv, port = listener()
    print("| children | 1 s tcp liveness each | hale RSS (max) | hale CPU s/min | hale CPU per check |")
    print("|---|---|---|---|---|")
    sizes = [100] if a.quick else [100, 1000]
    for n in sizes:
        for p in (None, port):
            f = footprint(a.hale, n, p, secs)
            per = f"{f['cpu_per_check_ms']:.3f} ms" if f["cpu_per_check_ms"] is not None else "-"
            print(f"| {n} | {'yes' if p else 'no'} | {f['rss_mib']:.1f} MiB | {f['cpu_per_min']:.3f} | {per} |",
                  flush=True)
    srv.close()


if __name__ == "__main__":
    main()
