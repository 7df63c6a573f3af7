#!/usr/bin/env python3
"""Status request latency of a running `hale` daemon, over the control socket and over HTTP.

  python3 bench/status_latency.py [--hale target/release/hale] [--components 1000] [--requests 2000]

Starts `hale up` with N idle components (`sleep`) and `[hale] http` on a free loopback port,
waits until every component runs, then times `GET /v1/status` (every component's full JSON)
REQUESTS times over each transport, one request per fresh connection (as `hale status` and
curl do), alternating transports so that both see the same machine. Also times
`GET /v1/components/NAME` (one component). Prints p50/p90/p99/max in milliseconds as a
Markdown table with the machine, the date and the command. Target: p99 under 10 ms at 1,000.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.path)
        self.sock = s


def get(conn: http.client.HTTPConnection, path: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    took = time.perf_counter() - t0
    conn.close()
    if resp.status != 200:
        raise SystemExit(f"GET {path}: {resp.status} {body[:200]!r}")
    return took, body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hale", default=str(ROOT / "target/release/hale"))
    ap.add_argument("--components", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()

    port = free_port()
    d = Path(tempfile.mkdtemp(prefix="hale-lat-", dir="/tmp"))
    cfg = [f'[hale]\nhttp = "127.0.0.1:{port}"\n']
    for i in range(args.components):
        cfg.append(f'[components.c{i:04}]\ncommand = ["sleep", "100000"]\n')
    (d / "hale.toml").write_text("\n".join(cfg))
    log = open(d / "out.log", "wb")
    proc = subprocess.Popen([args.hale, "up", "--no-echo", "-c", str(d / "hale.toml")],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    sock = str(d / ".hale" / "hale.sock")
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"hale exited: {(d / 'out.log').read_text()[-2000:]}")
            try:
                _, body = get(UnixHTTPConnection(sock), "/v1/status")
                comps = json.loads(body)["components"]
                if len(comps) == args.components and all(c["state"] == "running" for c in comps):
                    break
            except (OSError, ValueError, http.client.HTTPException):
                pass
            if time.time() > deadline:
                raise SystemExit("the components did not all start within 120 s")
            time.sleep(0.2)
        size = len(body)
        results: dict[str, list[float]] = {k: [] for k in
                                           ("socket /v1/status", "http /v1/status",
                                            "socket /v1/components/NAME", "http /v1/components/NAME")}
        for _ in range(20):  # warm-up
            get(UnixHTTPConnection(sock), "/v1/status")
            get(http.client.HTTPConnection("127.0.0.1", port, timeout=30), "/v1/status")
        for i in range(args.requests):
            name = f"/v1/components/c{i % args.components:04}"
            results["socket /v1/status"].append(get(UnixHTTPConnection(sock), "/v1/status")[0])
            results["http /v1/status"].append(
                get(http.client.HTTPConnection("127.0.0.1", port, timeout=30), "/v1/status")[0])
            results["socket /v1/components/NAME"].append(get(UnixHTTPConnection(sock), name)[0])
            results["http /v1/components/NAME"].append(
                get(http.client.HTTPConnection("127.0.0.1", port, timeout=30), name)[0])
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)

    cpu = "?"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"Status latency, {time.strftime('%Y-%m-%d %H:%M %Z')}, {platform.node()}: "
          f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, load {os.getloadavg()[0]:.2f}")
    print(f"`python3 bench/status_latency.py --components {args.components} --requests {args.requests}`; "
          f"full status body {size / 1024:.0f} KiB; one connection per request\n")
    print("| request | p50 ms | p90 ms | p99 ms | max ms | target p99 < 10 ms |")
    print("|---|---|---|---|---|---|")
    for k, xs in results.items():
        ms = [x * 1000 for x in xs]
        p99 = pct(ms, 99)
        print(f"| {k} | {statistics.median(ms):.2f} | {pct(ms, 90):.2f} | {p99:.2f} | {max(ms):.2f} | "
              f"{'met' if p99 < 10 else 'MISSED'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
