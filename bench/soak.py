#!/usr/bin/env python3
"""Soak of the `hale` binary: many components whose liveness and readiness probes flap, for
minutes, watching the daemon for growth.

  python3 bench/soak.py [--hale target/release/hale] [--seconds 600] [--components 200]
                        [--sample 10] [--warmup 60] [--seed N] [--prefill-events 3.5] [--keep]

Builds nothing: point --hale at a binary (`cargo build --release -p hale-cli` first).

What runs. N components (default 200) in one `hale up`, in four kinds by `i % 4`: a plain
`sleep`, a shell that forks a grandchild into its group, a child that ignores SIGTERM (so a
liveness kill waits for termination_grace, then SIGKILLs the group), and a child that prints a
line every 2 s (so the output pump and the per-component log files work). Every component has:

- liveness every 1 s, failure_threshold 2, on a flag file: `exec = ["test", "-f", FLAG]` for even
  components (a process per check), `file = { path = FLAG }` for odd ones (in-process);
- readiness every 1 s, failure_threshold 1: `exec = ["test", "-f", FLAG]` or
  `sh = "test -f FLAG"` alternately;
- restart policy always, backoff 100 ms to 2 s, a restart limit that is never reached.

A thread of this script flaps the flags: each component's liveness flag disappears for 3 s once
every 10-20 s (its own period and phase, from --seed), which condemns and restarts it; its
readiness flag is present 60 % of a 4-9 s cycle. With 200 components that is up to ~15
restarts and ~300 check processes a second, fewer when hale is short of CPU (probes then run
late). events.jsonl starts pre-filled with --prefill-events MiB of older events (what a
long-running daemon leaves), so that its 4 MiB rotation happens during the run.

What is measured, every --sample seconds: hale's RSS (VmRSS, and its RssAnon and RssFile parts:
the daemon pages its start-up code out, so RssFile creeps back up as code runs), fd count,
threads, CPU seconds, zombies whose parent is hale, hale's live descendants, the sum of
restart_count over the components (from the control socket), and the size of events.jsonl and
events.jsonl.1. At the end: the least-squares slopes of RSS and RssAnon (KiB/min) and of the fd
count (per min), with standard errors, over the samples after --warmup; the largest events
files seen (each must stay under 4 MiB plus a line); how long hale waited for a CPU (schedstat); events that say an exit status
was lost (a waiter that found its child already reaped by someone else); then `hale down`, the
daemon's exit code, and any process of the run left alive.

Prints Markdown (the machine, the date, the command, a table) for BENCHMARKS.md. Needs Linux
/proc and Python 3 (stdlib only). Exits 1 if a bound is broken (events files past their bound,
a lost exit status, processes left behind, the daemon not exiting 0).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent
EVENTS_MAX = 4 * 1024 * 1024  # crates/hale-cli/src/events.rs MAX_EVENTS_FILE


# ------------------------------------------------------------------------------- /proc

def proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    rest = proc_stat(pid)
    return (int(rest[11]) + int(rest[12])) / HZ if rest else 0.0


def status_field(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def all_procs() -> list[tuple[int, int, str]]:
    """(pid, ppid, state) of every process."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            rest = proc_stat(int(name))
            if rest:
                out.append((int(name), int(rest[1]), rest[0]))
    return out


def descendants(root: int, procs: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    children: dict[int, list[tuple[int, int, str]]] = {}
    for p in procs:
        children.setdefault(p[1], []).append(p)
    out, stack = [], [root]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c[0])
    return out


def has_env(pid: int, kv: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return kv in f.read().split(b"\0")
    except OSError:
        return False


# ------------------------------------------------------------------------------- the API

def api_get(sock_path: Path, path: str, timeout: float = 10.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(sock_path))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: hale\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"GET {path}: {head[:200]!r}")
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while True:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.strip(), 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return json.loads(body)


# ------------------------------------------------------------------------------- the run

def config_text(n: int, flags: Path, run: str) -> str:
    test = shutil.which("test") or "/usr/bin/test"
    sleep = shutil.which("sleep") or "/bin/sleep"
    parts = []
    for i in range(n):
        name = f"s{i:03}"
        live, ready = flags / f"live-{i}", flags / f"ready-{i}"
        kind = i % 4
        if kind == 0:
            program = f'command = ["{sleep}", "1000000"]'
        elif kind == 1:
            program = 'shell = "sleep 1000000 & exec sleep 1000000"'
        elif kind == 2:
            program = "shell = \"trap '' TERM; exec sleep 1000000\""
        else:
            program = 'shell = "while :; do echo \\"tick $(date +%s)\\"; sleep 2; done"'
        if i % 2 == 0:
            liveness = f'exec = ["{test}", "-f", "{live}"]'
        else:
            liveness = f'file = {{ path = "{live}", max_age = "24h" }}'
        if i % 4 < 2:
            readiness = f'exec = ["{test}", "-f", "{ready}"]'
        else:
            readiness = f'sh = "test -f {ready}"'
        parts.append(f"""[components.{name}]
{program}
env = {{ SOAK_RUN = "{run}" }}
stop_timeout = "1s"

[components.{name}.restart]
policy = "always"
initial_backoff = "100ms"
max_backoff = "2s"
multiplier = 2.0
max_restarts = 1000000
window = "1m"
min_uptime = "5s"

[components.{name}.liveness]
{liveness}
period = "1s"
timeout = "1s"
failure_threshold = 2
termination_grace = "500ms"

[components.{name}.readiness]
{readiness}
period = "1s"
timeout = "1s"
failure_threshold = 1
""")
    return "\n".join(parts)


class Flapper(threading.Thread):
    """Creates and removes the flag files on each component's own schedule."""

    def __init__(self, n: int, flags: Path, seed: int):
        super().__init__(daemon=True)
        rnd = random.Random(seed)
        self.flags, self.n = flags, n
        self.live = [(rnd.uniform(10, 20), rnd.uniform(0, 20)) for _ in range(n)]
        self.ready = [(rnd.uniform(4, 9), rnd.uniform(0, 9)) for _ in range(n)]
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def want(self, i: int, t: float) -> tuple[bool, bool]:
        lp, lph = self.live[i]
        rp, rph = self.ready[i]
        live = (t + lph) % lp >= 3.0
        ready = (t + rph) % rp < 0.6 * rp
        return live, ready

    def apply(self, t: float):
        for i in range(self.n):
            for path, on in zip((self.flags / f"live-{i}", self.flags / f"ready-{i}"), self.want(i, t)):
                if on and not path.exists():
                    path.touch()
                elif not on and path.exists():
                    path.unlink(missing_ok=True)

    def run(self):
        while not self.stop.wait(0.25):
            self.apply(time.monotonic() - self.t0)


def slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope of ys over xs and its standard error (0, 0 with fewer than three
    points)."""
    n = len(xs)
    if n < 3:
        return 0.0, 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if not sxx:
        return 0.0, 0.0
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    resid = sum((y - my - b * (x - mx)) ** 2 for x, y in zip(xs, ys))
    return b, (resid / (n - 2) / sxx) ** 0.5


def schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) from /proc/PID/schedstat."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            run, wait, _ = f.read().split()
        return int(run) / 1e9, int(wait) / 1e9
    except (OSError, ValueError):
        return 0.0, 0.0


def prefill_events(path: Path, size: int):
    """Older events as a long-running daemon would have left them, so that the rotation
    happens during the run."""
    line = json.dumps({"at": "2026-01-01T00:00:00.000Z", "component": "prefill", "from": "running",
                       "incarnation": 1, "reason": "an older event, written by bench/soak.py " + "x" * 80,
                       "to": "running"}) + "\n"
    with open(path, "w") as f:
        f.write(line * (size // len(line)))


def lost_statuses(state: Path) -> int:
    """Events whose reason says an exit status was lost (a waiter that found its child already
    reaped: the probe's "could not wait for it", the driver's exit code -1)."""
    n = 0
    for name in ("events.jsonl.1", "events.jsonl"):
        try:
            with open(state / name) as f:
                for line in f:
                    if "could not wait" in line or "code -1" in line:
                        n += 1
        except OSError:
            pass
    return n


def file_size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def dir_size(p: Path) -> int:
    total = 0
    for root, _, files in os.walk(p):
        for f in files:
            total += file_size(Path(root) / f)
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hale", default=str(ROOT / "target/release/hale"))
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--components", type=int, default=200)
    ap.add_argument("--sample", type=float, default=10, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=60, help="seconds left out of the slopes")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--prefill-events", type=float, default=3.5, metavar="MIB",
                    help="start with an events.jsonl this large, so that it rotates during the run")
    ap.add_argument("--keep", action="store_true", help="keep the run's directory")
    a = ap.parse_args()
    hale = str(Path(a.hale).resolve())
    if not os.access(hale, os.X_OK):
        print(f"no executable at {hale}; run `cargo build --release -p hale-cli` first", file=sys.stderr)
        return 2
    seed = a.seed if a.seed is not None else int(time.time())

    work = Path(tempfile.mkdtemp(prefix="hale-soak-", dir="/tmp"))
    flags = work / "flags"
    flags.mkdir()
    run = work.name
    cfg = work / "hale.toml"
    cfg.write_text(config_text(a.components, flags, run))
    state = work / ".hale"
    sock = state / "hale.sock"
    if a.prefill_events > 0:
        state.mkdir()
        prefill_events(state / "events.jsonl", int(a.prefill_events * 1048576))
    flapper = Flapper(a.components, flags, seed)
    for i in range(a.components):  # everything healthy until the soak starts
        (flags / f"live-{i}").touch()
        (flags / f"ready-{i}").touch()

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = open(work / "daemon.out", "wb")
    daemon = subprocess.Popen([hale, "up", "-c", str(cfg)], stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True,
                              env={**os.environ, "NO_COLOR": "1"})
    pid = daemon.pid
    problems: list[str] = []
    samples: list[dict] = []
    sched0 = sched1 = (0.0, 0.0)
    try:
        deadline = time.monotonic() + 120
        while True:
            if daemon.poll() is not None:
                raise RuntimeError(f"hale exited with {daemon.returncode}: "
                                   f"{(work / 'daemon.out').read_text()[-2000:]}")
            try:
                comps = api_get(sock, "/v1/status")["components"]
                if len(comps) == a.components and all(c["pid"] for c in comps):
                    break
            except (OSError, RuntimeError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the components did not all start within 120 s")
            time.sleep(0.5)
        flapper.t0 = time.monotonic()
        flapper.start()
        t0 = time.monotonic()
        cpu0 = cpu_seconds(pid)
        sched0 = schedstat(pid)
        print(f"soak: {a.components} components, {a.seconds:.0f} s, seed {seed}, hale pid {pid}, "
              f"dir {work}", file=sys.stderr, flush=True)
        next_at = t0
        while True:
            now = time.monotonic()
            procs = all_procs()
            desc = descendants(pid, procs)
            try:
                comps = api_get(sock, "/v1/status")["components"]
                restarts = sum(c["restart_count"] for c in comps)
                failed = sum(1 for c in comps if c["state"] == "failed")
                ready = sum(1 for c in comps if c["ready"])
            except (OSError, RuntimeError, ValueError) as e:
                problems.append(f"status at {now - t0:.0f} s: {e}")
                restarts = failed = ready = -1
            s = {
                "t": now - t0,
                "rss": status_field(pid, "VmRSS:"),
                "anon": status_field(pid, "RssAnon:"),
                "file": status_field(pid, "RssFile:"),
                "hwm": status_field(pid, "VmHWM:"),
                "fds": fd_count(pid),
                "threads": status_field(pid, "Threads:"),
                "cpu": cpu_seconds(pid) - cpu0,
                "zombies": sum(1 for p in procs if p[1] == pid and p[2] == "Z"),
                "desc": sum(1 for p in desc if p[2] != "Z"),
                "restarts": restarts,
                "failed": failed,
                "ready": ready,
                "events": file_size(state / "events.jsonl"),
                "events1": file_size(state / "events.jsonl.1"),
                "logs": dir_size(state / "logs"),
            }
            samples.append(s)
            print(f"  t={s['t']:6.0f}s rss={s['rss']} KiB (anon {s['anon']}, file {s['file']}) fds={s['fds']} thr={s['threads']} "
                  f"cpu={s['cpu']:.1f}s zombies={s['zombies']} desc={s['desc']} "
                  f"restarts={s['restarts']} ready={s['ready']} failed={s['failed']} "
                  f"events={s['events']}+{s['events1']} logs={s['logs']}", file=sys.stderr, flush=True)
            if daemon.poll() is not None:
                problems.append(f"hale exited during the soak with {daemon.returncode}")
                break
            if now - t0 >= a.seconds:
                sched1 = schedstat(pid)
                break
            next_at += a.sample
            time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        flapper.stop.set()
        lost = lost_statuses(state)
        t_down = time.monotonic()
        down = subprocess.run([hale, "down", "-c", str(cfg)], capture_output=True, text=True, timeout=120)
        try:
            code = daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(pid, signal.SIGKILL)
            code = daemon.wait()
            problems.append("the daemon did not exit within 60 s of `hale down`")
        down_s = time.monotonic() - t_down
        out.close()
        time.sleep(1)
        kv = f"SOAK_RUN={run}".encode()
        left = [p for p, _, st in all_procs() if st != "Z" and has_env(p, kv)]
        if left:
            problems.append(f"{len(left)} processes of the run alive after `hale down`: {left[:20]}")
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        if down.returncode != 0 or code != 0:
            problems.append(f"`hale down` exited {down.returncode} ({down.stderr.strip()[:200]}), "
                            f"the daemon {code}")

    # ------------------------------------------------------------------- the report
    tail = [s for s in samples if s["t"] >= a.warmup] or samples
    mins = [s["t"] / 60 for s in tail]
    rss_slope, rss_se = slope(mins, [s["rss"] for s in tail])
    anon_slope, anon_se = slope(mins, [s["anon"] for s in tail])
    fd_slope, fd_se = slope(mins, [s["fds"] for s in tail])
    ev_max = max((s["events"] for s in samples), default=0)
    ev1_max = max((s["events1"] for s in samples), default=0)
    rotated = ev1_max > 0
    if lost:
        problems.append(f"{lost} events say an exit status was lost")
    if ev_max > EVENTS_MAX + 4096 or ev1_max > EVENTS_MAX + 4096:
        problems.append(f"an events file passed its bound: {ev_max} / {ev1_max} bytes")
    last, first = samples[-1], tail[0]
    elapsed = last["t"]
    print(f"## Soak, {started}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}; seed {seed}")
    print(f"command: python3 bench/soak.py {' '.join(sys.argv[1:])}\n")
    print("| t (s) | RSS KiB | of which anon / file | fds | threads | hale CPU s | zombies | descendants | restarts | ready | events.jsonl + .1 (KiB) | logs KiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    step = max(1, round(60 / a.sample))
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    for s in shown:
        print(f"| {s['t']:.0f} | {s['rss']} | {s['anon']} / {s['file']} | {s['fds']} | {s['threads']} | {s['cpu']:.1f} | {s['zombies']} | "
              f"{s['desc']} | {s['restarts']} | {s['ready']} | {s['events'] // 1024} + {s['events1'] // 1024} | "
              f"{s['logs'] // 1024} |")
    print()
    restarts = last["restarts"] - samples[0]["restarts"]
    print("| measure | value |\n|---|---|")
    print(f"| samples (every {a.sample:.0f} s), used for the slopes (after {a.warmup:.0f} s) | {len(samples)}, {len(tail)} |")
    print(f"| RSS slope (least squares, +- standard error) | **{rss_slope:+.1f} +- {rss_se:.1f} KiB/min** "
          f"({first['rss']} -> {last['rss']} KiB; "
          f"min {min(s['rss'] for s in tail)}, max {max(s['rss'] for s in tail)}; VmHWM {last['hwm']} KiB) |")
    print(f"| RssAnon slope (the heap and stacks; RssFile is code paged back in) | **{anon_slope:+.1f} +- "
          f"{anon_se:.1f} KiB/min** ({first['anon']} -> {last['anon']} KiB; min {min(s['anon'] for s in tail)}, "
          f"max {max(s['anon'] for s in tail)}) |")
    print(f"| fd slope (least squares, +- standard error) | **{fd_slope:+.2f} +- {fd_se:.2f} fds/min** "
          f"({first['fds']} -> {last['fds']}; "
          f"min {min(s['fds'] for s in tail)}, max {max(s['fds'] for s in tail)}) |")
    print(f"| restarts (liveness kills answered) | {restarts} in {elapsed:.0f} s ({restarts / max(elapsed, 1):.1f}/s); "
          f"components failed at the end: {last['failed']} |")
    print(f"| hale CPU | {last['cpu']:.1f} s in {elapsed:.0f} s ({last['cpu'] / max(elapsed, 1) * 100:.1f} % of a core) |")
    if sched1 != (0.0, 0.0):
        ran, waited = sched1[0] - sched0[0], sched1[1] - sched0[1]
        print(f"| hale runnable but waiting for a CPU (schedstat) | {waited:.1f} s, against {ran:.1f} s on a CPU |")
    print(f"| exit statuses lost (\"could not wait\", exit code -1 in events) | {lost} |")
    print(f"| zombies of hale's at a sample, max | {max(s['zombies'] for s in samples)} |")
    print(f"| largest events.jsonl / events.jsonl.1 | {ev_max / 1048576:.2f} / {ev1_max / 1048576:.2f} MiB "
          f"({'rotated' if rotated else 'never rotated'}; bound 4 MiB each) |")
    print(f"| logs directory at the end | {last['logs'] / 1048576:.2f} MiB |")
    print(f"| `hale down` | {down_s:.1f} s, daemon exit {code} |")
    print()
    if problems:
        print("problems:\n" + "\n".join(f"- {p}" for p in problems))
    if a.keep or problems:
        print(f"(run directory kept: {work})", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
