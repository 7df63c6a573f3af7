#!/usr/bin/env python3
"""Peer benchmarks: the same workloads against hale, supervisord, PM2, runit and s6, in one run.

  python3 bench/peers/run.py [--seconds 60] [--children 100,1000] [--only hale,pm2]
                             [--crash-seconds 20] [--hale target/release/hale] [--no-install]

Workloads (bench/peers/README.md says what each measures and how each peer is configured):

1. crash-to-respawn gap: one child that exits at once, restarted as fast as the peer allows.
   The child (stamp.c) appends its start and end (CLOCK_MONOTONIC) to a file; a gap is the next
   start minus the previous end. The floor is the same child run by a bare fork+exec+wait loop
   (floor.c), measured in the same run.
2. idle footprint: RSS (and PSS) summed over every process of the peer (daemon, per-service
   supervisors; never the children) and its CPU seconds per minute, while it holds N idle
   children (`sleep 100000`) for --seconds; with a 1 s liveness check per child where the peer
   has checks (only hale: tcp).
3. start and stop: a cold peer starts 100 children (until the last one has executed its first
   instruction), then stops them all gracefully (until the last one has exited, and until every
   process of the peer is gone too).

Installs the peers itself on first use (into bench/peers/.cache, and runit/s6 with apt-get), and
kills every process it started when it ends or is interrupted: it is a child subreaper, so even
daemonized peers (PM2's God daemon) stay its descendants, and every process it starts carries
HALE_PEERS_BENCH in its environment. Prints a Markdown table with the ratios hale/peer.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import select
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = HERE / ".cache"
HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SUPERVISOR_VERSION = "4.3.0"
PM2_VERSION = "7.0.4"
MARK = f"{os.getpid()}-{int(time.time())}"  # HALE_PEERS_BENCH value of this run
PEERS = ["hale", "supervisord", "pm2", "runit", "s6"]
SLEEP = os.path.realpath(shutil.which("sleep") or "/bin/sleep")


T_START = time.monotonic()


def log(*a):
    print(f"[{time.monotonic() - T_START:7.1f}s]", *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# processes: /proc readings, the tree below us, cleanup


def proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    head, rest = s.rsplit(")", 1)
    return [head.split(" (", 1)[1]] + rest.split()  # [comm, state, ppid, ...]


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = proc_stat(int(d))
        if st:
            kids.setdefault(int(st[2]), []).append(int(d))
    return kids


def descendants(root: int | None = None) -> list[int]:
    kids = children_map()
    out, todo = [], [root or os.getpid()]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def is_zombie(pid: int) -> bool:
    st = proc_stat(pid)
    return st is None or st[1] in ("Z", "X")


def cpu_ticks(pid: int, with_children: bool = True) -> int:
    st = proc_stat(pid)
    if not st:
        return 0
    # fields after comm: state(1) ppid(2) ... utime(13) stime(14) cutime(15) cstime(16)
    t = int(st[13]) + int(st[14])
    if with_children:
        t += int(st[15]) + int(st[16])
    return t


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE // 1024
    except OSError:
        return 0


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def marked_processes() -> list[int]:
    """Every process carrying this run's mark, wherever it was re-parented to."""
    out = []
    needle = f"HALE_PEERS_BENCH={MARK}".encode()
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        out.append(int(d))
            except OSError:
                pass
    return out


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_everything(grace: float = 0.0) -> list[int]:
    """SIGKILL every process this run started (descendants and marked ones), reap them, and
    return whatever is still alive afterwards (should be nothing)."""
    if grace:
        time.sleep(grace)
    for _ in range(50):
        pids = [p for p in set(descendants()) | set(marked_processes()) if not is_zombie(p)]
        if not pids:
            break
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)
        reap()
    reap()
    return [p for p in set(descendants()) | set(marked_processes()) if not is_zombie(p)]


def make_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log("warning: PR_SET_CHILD_SUBREAPER failed; daemonized peers are found by their environment")


def env_for(**extra) -> dict[str, str]:
    e = dict(os.environ)
    e["HALE_PEERS_BENCH"] = MARK
    e.update({k: str(v) for k, v in extra.items()})
    return e


def wait_until(pred, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def workload_pids(kinds: tuple[str, ...]) -> list[int]:
    return [p for p in descendants() if exe(p) in kinds and not is_zombie(p)]


class ExitWatch:
    """pidfds opened before a stop, so that no exit is missed; wait() gives, per group, the
    monotonic time at which its last process exited."""

    def __init__(self):
        self.fds: dict[int, str] = {}
        self.last: dict[str, float] = {}
        self.poller = select.poll()

    def add(self, pids: list[int], group: str):
        self.last.setdefault(group, time.monotonic())
        for p in pids:
            try:
                fd = os.pidfd_open(p)
            except OSError:
                continue  # already gone
            self.fds[fd] = group
            self.poller.register(fd, select.POLLIN)

    def wait(self, timeout: float) -> dict[str, float | None]:
        deadline = time.monotonic() + timeout
        try:
            while self.fds:
                left = deadline - time.monotonic()
                if left <= 0:
                    for g in set(self.fds.values()):
                        self.last[g] = None
                    break
                for fd, _ in self.poller.poll(min(left, 1.0) * 1000):
                    self.last[self.fds[fd]] = time.monotonic()
                    self.poller.unregister(fd)
                    os.close(fd)
                    del self.fds[fd]
                reap()
        finally:
            for fd in self.fds:
                os.close(fd)
            self.fds = {}
        return self.last


# ---------------------------------------------------------------------------------------------
# installation


def run_quiet(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def build_helpers() -> tuple[str, str]:
    bindir = CACHE / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("stamp", "floor"):
        src, dst = HERE / f"{name}.c", bindir / name
        if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
            r = run_quiet(["cc", "-O2", "-o", dst, src])
            if r.returncode:
                raise RuntimeError(f"cc {src}: {r.stderr}")
        out.append(os.path.realpath(dst))
    return out[0], out[1]


def apt_install(pkg: str) -> str | None:
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        return f"not root and no sudo: run `apt-get install -y {pkg}`"
    env = env_for(DEBIAN_FRONTEND="noninteractive")
    cmd = sudo + ["apt-get", "install", "-y", "--no-install-recommends", pkg]
    r = run_quiet(cmd, env=env)
    if r.returncode:
        run_quiet(sudo + ["apt-get", "update"], env=env)
        r = run_quiet(cmd, env=env)
    return None if r.returncode == 0 else f"apt-get install {pkg}: {r.stderr.strip()[-300:]}"


def install(peer: str, allowed: bool = True) -> str | None:
    """Make `peer` available; None when it is, else why not."""
    present = {"supervisord": (CACHE / "venv/bin/supervisord").exists(),
               "pm2": (CACHE / "npm/node_modules/.bin/pm2").exists(),
               "runit": bool(shutil.which("runsvdir")), "s6": bool(shutil.which("s6-svscan"))}[peer]
    if present:
        return None
    if not allowed:
        return "not installed (--no-install)"
    if peer == "supervisord":
        venv = CACHE / "venv"
        if not (venv / "bin" / "supervisord").exists():
            r = run_quiet([sys.executable, "-m", "venv", venv])
            if r.returncode:
                return f"python -m venv: {r.stderr.strip()[-300:]}"
            r = run_quiet([venv / "bin" / "pip", "install", "-q", f"supervisor=={SUPERVISOR_VERSION}"])
            if r.returncode:
                return f"pip install supervisor: {r.stderr.strip()[-300:]}"
    elif peer == "pm2":
        if not (CACHE / "npm" / "node_modules" / ".bin" / "pm2").exists():
            if not shutil.which("npm"):
                return "npm not found (Node.js is needed for PM2)"
            r = run_quiet(["npm", "install", "--prefix", CACHE / "npm", "--no-audit", "--no-fund",
                           f"pm2@{PM2_VERSION}"])
            if r.returncode:
                return f"npm install pm2: {r.stderr.strip()[-300:]}"
    elif peer == "runit":
        if not shutil.which("runsvdir"):
            return apt_install("runit")
    elif peer == "s6":
        if not shutil.which("s6-svscan"):
            return apt_install("s6")
    return None


def version(peer: str, hale: str) -> str:
    try:
        if peer == "hale":
            return run_quiet([hale, "--version"]).stdout.strip()
        if peer == "supervisord":
            return "supervisor " + run_quiet([CACHE / "venv/bin/supervisord", "--version"]).stdout.strip()
        if peer == "pm2":  # `pm2 --version` would start a daemon
            pj = json.loads((CACHE / "npm/node_modules/pm2/package.json").read_text())
            return f"pm2 {pj['version']} (node {run_quiet(['node', '--version']).stdout.strip()})"
        if peer in ("runit", "s6"):
            return peer + " " + run_quiet(["dpkg-query", "-W", "-f", "${Version}", peer]).stdout.strip()
    except (OSError, ValueError, KeyError):
        pass
    return peer


# ---------------------------------------------------------------------------------------------
# peers: each starts a set of services from a cold start and stops them all


class Svc:
    """One service: argv to run and environment additions (STAMP_FILE, STAMP_HOLD)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None):
        self.name, self.argv, self.env = name, argv, env or {}


class Peer:
    name = "?"
    has_checks = False

    def __init__(self, hale: str):
        self.hale = hale
        self.dir = Path(tempfile.mkdtemp(prefix=f"peers-{self.name}-", dir="/tmp"))
        self.out = open(self.dir / "supervisor.out", "wb")
        self.procs: list[subprocess.Popen] = []

    def popen(self, cmd, env=None, **kw) -> subprocess.Popen:
        p = subprocess.Popen([str(c) for c in cmd], stdout=self.out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env or env_for(), cwd=self.dir, **kw)
        self.procs.append(p)
        return p

    def start(self, svcs: list[Svc], check_port: int | None = None):
        raise NotImplementedError

    def stop_cmd(self) -> subprocess.Popen | None:
        """Begin the peer's own graceful stop of everything (returns at once)."""
        raise NotImplementedError

    def close(self):
        """Stop gracefully (bounded), then make sure nothing of ours is left."""
        try:
            p = self.stop_cmd()
            if p:
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pass
            for q in self.procs:
                try:
                    q.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
        except Exception as e:  # noqa: BLE001 - the kill below is what matters
            log(f"  {self.name}: graceful stop failed: {e}")
        left = kill_everything()
        if left:
            log(f"  WARNING: still alive after SIGKILL: {left}")
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def tail(self) -> str:
        try:
            return (self.dir / "supervisor.out").read_text(errors="replace")[-1500:]
        except OSError:
            return ""


class Hale(Peer):
    name = "hale"
    has_checks = True

    def start(self, svcs, check_port=None):
        parts = ["[hale]\nstate_dir = \"state\"\n"]
        for s in svcs:
            argv = ", ".join(json.dumps(a) for a in s.argv)
            env = ", ".join(f"{k} = {json.dumps(v)}" for k, v in s.env.items())
            parts.append(f"[components.{s.name}]\ncommand = [{argv}]\nenv = {{ {env} }}\n"
                         "[components." + s.name + ".restart]\npolicy = \"always\"\n"
                         "initial_backoff = \"0s\"\nmax_backoff = \"0s\"\nmax_restarts = 4000000000\n"
                         "window = \"1ms\"\n")
            if check_port:
                parts.append(f"[components.{s.name}.liveness]\ntcp = \"127.0.0.1:{check_port}\"\n"
                             "period = \"1s\"\ntimeout = \"1s\"\n")
        self.cfg = self.dir / "hale.toml"
        self.cfg.write_text("\n".join(parts))
        self.popen([self.hale, "up", "-c", self.cfg])

    def stop_cmd(self):
        if not self.procs or self.procs[0].poll() is not None:
            return None
        return self.popen([self.hale, "down", "-c", self.cfg])


class Supervisord(Peer):
    name = "supervisord"

    def start(self, svcs, check_port=None):
        d = self.dir
        (d / "logs").mkdir()
        conf = [f"""[supervisord]
nodaemon=true
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}/logs
minfds={max(1024, 5 * len(svcs) + 64)}
minprocs={max(200, len(svcs) + 64)}
[unix_http_server]
file={d}/supervisor.sock
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{d}/supervisor.sock
"""]
        for s in svcs:
            env = ",".join(f'{k}="{v}"' for k, v in s.env.items())
            conf.append(f"[program:{s.name}]\ncommand={' '.join(s.argv)}\nautostart=true\n"
                        "autorestart=true\nstartsecs=0\nstartretries=1000000\nstopwaitsecs=10\n"
                        + (f"environment={env}\n" if env else ""))
        self.cfg = d / "supervisord.conf"
        self.cfg.write_text("\n".join(conf))
        self.popen([CACHE / "venv/bin/supervisord", "-c", self.cfg])

    def stop_cmd(self):
        p = self.procs[0] if self.procs else None
        if p and p.poll() is None:
            p.send_signal(signal.SIGTERM)  # supervisord stops every program, then exits
        return None


class PM2(Peer):
    name = "pm2"

    def pm2(self, *args) -> subprocess.Popen:
        return self.popen([CACHE / "npm/node_modules/.bin/pm2", *args],
                          env=env_for(PM2_HOME=self.dir / "home"))

    def start(self, svcs, check_port=None):
        apps = [{"name": s.name, "script": s.argv[0], "args": s.argv[1:], "interpreter": "none",
                 "exec_mode": "fork", "autorestart": True, "restart_delay": 0, "min_uptime": 100,
                 "max_restarts": 1000000000, "vizion": False, "env": dict(s.env)}
                for s in svcs]
        self.cfg = self.dir / "ecosystem.config.json"
        self.cfg.write_text(json.dumps({"apps": apps}))
        self.started = True
        self.pm2("start", self.cfg)  # spawns the God daemon, which outlives this client

    def stop_cmd(self):
        if not getattr(self, "started", False):
            return None
        self.started = False
        return self.pm2("kill")  # stops every app, then the daemon


class Runit(Peer):
    name = "runit"

    def start(self, svcs, check_port=None):
        self.svdir = self.dir / "service"
        self.svdir.mkdir()
        for s in svcs:
            sd = self.svdir / s.name
            sd.mkdir()
            run = sd / "run"
            if len(s.argv) == 1:  # the stamp child: run it as ./run itself, no shell in between
                os.symlink(s.argv[0], run)
            else:
                run.write_text("#!/bin/sh\nexec " + " ".join(s.argv) + "\n")
                run.chmod(0o755)
        env = {}
        for s in svcs:
            env.update(s.env)  # runsv passes its environment on; all services share it here
        # runsvdir does not act on a service directory modified within the current second (it
        # looks again a second later): date the freshly written one back, as one written at
        # install time would be, so that runit's start time does not include that second.
        past = time.time() - 5
        for d in [self.svdir, *self.svdir.iterdir()]:
            os.utime(d, (past, past))
        self.popen(["runsvdir", self.svdir], env=env_for(**env))

    def stop_cmd(self):
        if not self.procs or self.procs[0].poll() is not None:
            return None
        # runit's own shutdown (as its stage 3 does): bring every service down, then tell runsvdir
        # to end its runsv processes (SIGHUP) once that is done.
        sv = subprocess.list2cmdline(["sv", "-w", "60", "down"] + [str(p) for p in sorted(self.svdir.iterdir())])
        return self.popen(["sh", "-c", f"{sv} >/dev/null; kill -HUP {self.procs[0].pid}"])


class S6(Peer):
    name = "s6"

    def start(self, svcs, check_port=None):
        self.scandir = self.dir / "scan"
        self.scandir.mkdir()
        for s in svcs:
            sd = self.scandir / s.name
            sd.mkdir()
            run = sd / "run"
            if len(s.argv) == 1:
                os.symlink(s.argv[0], run)
            else:
                run.write_text("#!/bin/sh\nexec " + " ".join(s.argv) + "\n")
                run.chmod(0o755)
        env = {}
        for s in svcs:
            env.update(s.env)
        self.popen(["s6-svscan", "-c", str(max(500, 2 * len(svcs) + 10)), self.scandir],
                   env=env_for(**env))

    def stop_cmd(self):
        if not self.procs or self.procs[0].poll() is not None:
            return None
        # -t: SIGTERM to every s6-supervise (which brings its service down, then exits); then
        # s6-svscan exits.
        return self.popen(["s6-svscanctl", "-t", self.scandir])


CLASSES = {"hale": Hale, "supervisord": Supervisord, "pm2": PM2, "runit": Runit, "s6": S6}


# ---------------------------------------------------------------------------------------------
# workloads


def read_stamps(path: Path) -> list[tuple[int, int]]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for ln in lines:
        parts = ln.split()
        if len(parts) == 2:
            out.append((int(parts[0]), int(parts[1])))
    return out


def gaps_ms(recs: list[tuple[int, int]]) -> list[float]:
    recs = sorted(recs)
    return [(recs[i + 1][0] - recs[i][1]) / 1e6 for i in range(len(recs) - 1)]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))]


def floor_gaps(floor: str, stamp: str, mode: str, runs: int) -> list[float]:
    d = Path(tempfile.mkdtemp(prefix="peers-floor-", dir="/tmp"))
    try:
        f = d / "stamps"
        subprocess.run([floor, mode, str(runs), stamp], env=env_for(STAMP_FILE=f), check=True)
        return gaps_ms(read_stamps(f))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def crash(peer_cls, hale: str, stamp: str, seconds: float) -> dict:
    p = peer_cls(hale)
    f = p.dir / "stamps"
    try:
        p.start([Svc("crash", [stamp], {"STAMP_FILE": str(f)})])
        # warm up: a few restarts (1-second peers: two)
        wait_until(lambda: len(read_stamps(f)) >= 3, 30, f"{p.name} to respawn the crashing child")
        n0 = len(read_stamps(f))
        time.sleep(seconds)
        recs = read_stamps(f)[n0 - 1:]
    except Exception:
        log(p.tail())
        raise
    finally:
        p.close()
    g = gaps_ms(recs)
    if not g:
        raise RuntimeError(f"{p.name}: no respawn seen in {seconds} s")
    return {"n": len(g), "median": statistics.median(g), "p95": pct(g, 0.95), "mean": statistics.fmean(g)}


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


def helper_pids(workload: tuple[str, ...]) -> list[int]:
    """Every live process of the peer: our descendants that are not workload children."""
    return [p for p in descendants() if exe(p) not in workload and not is_zombie(p)]


def footprint(peer_cls, hale: str, n: int, check_port: int | None, seconds: float) -> dict:
    p = peer_cls(hale)
    try:
        t_start = time.monotonic()
        p.start([Svc(f"s{i}", [SLEEP, "100000"]) for i in range(n)], check_port)
        wait_until(lambda: len(workload_pids((SLEEP,))) >= n, 900, f"{p.name}: {n} children running",
                   step=1.0)
        ramp = time.monotonic() - t_start
        time.sleep(5)  # let start-up settle (first checks, allocator, pm2's first monitoring pass)
        pids = helper_pids((SLEEP,))
        kids = len(workload_pids((SLEEP,)))
        cpu0 = {q: cpu_ticks(q) for q in pids}
        t0 = time.monotonic()
        rss = []
        while True:
            rss.append(sum(rss_kib(q) for q in pids))
            left = seconds - (time.monotonic() - t0)
            if left <= 0:
                break
            time.sleep(min(5.0, left))
        elapsed = time.monotonic() - t0
        pss = sum(pss_kib(q) for q in pids)
        later = helper_pids((SLEEP,))
        ticks = sum(cpu_ticks(q) - cpu0[q] for q in pids if q in later) + \
            sum(cpu_ticks(q) for q in later if q not in cpu0)
        names = sorted({(proc_stat(q) or ["?"])[0] for q in later})
    except Exception:
        log(p.tail())
        raise
    finally:
        p.close()
    cpu = ticks / HZ
    return {"n": n, "checks": bool(check_port), "ramp_s": ramp, "procs": len(later), "names": names, "kids": kids,
            "rss_mib": max(rss) / 1024, "pss_mib": pss / 1024, "cpu_per_min": cpu * 60 / elapsed,
            "cpu_per_check_us": (cpu * 1e6 / (n * elapsed)) if check_port else None}


def start_stop(peer_cls, hale: str, stamp: str, n: int) -> dict:
    p = peer_cls(hale)
    f = p.dir / "stamps"
    try:
        t0 = time.monotonic_ns()
        p.start([Svc(f"s{i}", [stamp], {"STAMP_FILE": str(f), "STAMP_HOLD": "1"}) for i in range(n)])
        wait_until(lambda: len(read_stamps(f)) >= n, 600, f"{p.name}: {n} children started", step=0.01)
        recs = read_stamps(f)
        started = (max(r[0] for r in recs[:n]) - t0) / 1e9
        time.sleep(2)
        kids = workload_pids((stamp,))
        helpers = helper_pids((stamp,))
        if len(kids) != n:
            raise RuntimeError(f"{p.name}: {len(kids)} children alive, want {n}")
        watch = ExitWatch()
        watch.add(kids, "kids")
        watch.add(helpers, "all")
        t1 = time.monotonic()
        cmd = p.stop_cmd()
        if cmd:
            watch.add([cmd.pid], "all")
        done = watch.wait(120)
        done_kids = done["kids"]
        done_all = None if done_kids is None or done["all"] is None else max(done_kids, done["all"])
        respawned = len(workload_pids((stamp,)))
    except Exception:
        log(p.tail())
        raise
    finally:
        p.close()
    return {"start_s": started, "stop_kids_s": (done_kids - t1) if done_kids else None,
            "stop_all_s": (done_all - t1) if done_all else None, "respawned": respawned}


# ---------------------------------------------------------------------------------------------
# report


def fmt(v, unit="", digits=1):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}{unit}"


def ratio(h, x):
    if h is None or x is None:
        return ""
    if x == 0:
        return " (hale/x: -)" if h == 0 else " (hale/x: inf)"
    return f" (hale/x: {h / x:.2g})"


def machine_lines() -> list[str]:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    return [f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')} ({time.strftime('%H:%M UTC', time.gmtime())})",
            f"machine: {os.cpu_count()} cores, {cpu}, Linux {platform.release()}, {platform.machine()}",
            f"load average at start (1, 5, 15 min): {load}"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60, help="idle hold per footprint row (default 60)")
    ap.add_argument("--crash-seconds", type=float, default=20, help="crash-loop window per peer (default 20)")
    ap.add_argument("--children", default="100,1000", help="idle children counts (default 100,1000)")
    ap.add_argument("--start-children", type=int, default=100, help="children for start/stop (default 100)")
    ap.add_argument("--only", default="", help="comma-separated peers to run (hale,supervisord,pm2,runit,s6); "
                    "include hale for ratios")
    ap.add_argument("--hale", default=str(ROOT / "target/release/hale"))
    ap.add_argument("--no-install", action="store_true", help="skip peers that are not installed")
    ap.add_argument("--json", help="also write the raw results to this file")
    a = ap.parse_args()

    peers = [x.strip() for x in a.only.split(",") if x.strip()] or PEERS
    for x in peers:
        if x not in CLASSES:
            ap.error(f"unknown peer {x!r}: one of {', '.join(PEERS)}")
    sizes = [int(x) for x in a.children.split(",") if x.strip()]
    if "hale" in peers and not os.access(a.hale, os.X_OK):
        ap.error(f"{a.hale} not found: build it with `cargo build --release -p hale-cli`")

    header = machine_lines()
    cmdline = "python3 bench/peers/run.py " + " ".join(sys.argv[1:])
    nice = os.nice(0)
    for h in header:
        log(h)
    make_subreaper()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: `cmd &` ignores it
        signal.signal(sig, on_signal)

    res: dict = {"peers": {}, "skipped": {}}
    srv = None
    try:
        stamp, floor = build_helpers()
        ok = []
        for x in peers:
            why = None if x == "hale" else install(x, allowed=not a.no_install)
            if why:
                res["skipped"][x] = why
                log(f"{x}: skipped: {why}")
            else:
                ok.append(x)
        versions = {x: version(x, a.hale) for x in ok}
        for x in ok:
            log(f"{x}: {versions[x]}")

        # 1. crash-to-respawn, with the floor measured before and after
        log("floor (fork+exec+wait, posix_spawn+wait), 3000 runs each ...")
        fl = {"fork": floor_gaps(floor, stamp, "fork", 3000), "spawn": floor_gaps(floor, stamp, "spawn", 3000)}
        for x in ok:
            log(f"{x}: crash loop for {a.crash_seconds:.0f} s ...")
            try:
                res["peers"].setdefault(x, {})["crash"] = crash(CLASSES[x], a.hale, stamp, a.crash_seconds)
                log(f"  {res['peers'][x]['crash']}")
            except Exception as e:  # noqa: BLE001
                res["peers"].setdefault(x, {})["crash_error"] = str(e)
                log(f"  failed: {e}")
        fl["fork"] += floor_gaps(floor, stamp, "fork", 3000)
        fl["spawn"] += floor_gaps(floor, stamp, "spawn", 3000)
        res["floor"] = {m: {"n": len(g), "median": statistics.median(g), "p95": pct(g, 0.95)} for m, g in fl.items()}
        log(f"floor: {res['floor']}")

        # 2. idle footprint
        srv, port = listener()
        for n in sizes:
            for x in ok:
                for checks in ([False, True] if CLASSES[x].has_checks else [False]):
                    log(f"{x}: {n} idle children{' with 1 s tcp checks' if checks else ''}, {a.seconds:.0f} s ...")
                    try:
                        r = footprint(CLASSES[x], a.hale, n, port if checks else None, a.seconds)
                        res["peers"][x][f"idle{n}{'c' if checks else ''}"] = r
                        log(f"  {r}")
                    except Exception as e:  # noqa: BLE001
                        res["peers"][x][f"idle{n}{'c' if checks else ''}_error"] = str(e)
                        log(f"  failed: {e}")

        # 3. start and stop
        for x in ok:
            log(f"{x}: start and stop {a.start_children} children ...")
            try:
                r = start_stop(CLASSES[x], a.hale, stamp, a.start_children)
                res["peers"][x]["startstop"] = r
                log(f"  {r}")
            except Exception as e:  # noqa: BLE001
                res["peers"][x]["startstop_error"] = str(e)
                log(f"  failed: {e}")
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        interrupted = True
    else:
        interrupted = False
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the cleanup finish
        if srv:
            srv.close()
        left = kill_everything()
        log("cleanup: " + (f"STILL ALIVE {left}" if left else "no process of this run is left"))
    if interrupted:
        sys.exit(130)

    res["header"] = header
    res["command"] = cmdline
    res["versions"] = versions
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    report(res, ok, sizes, a, nice, versions, header, cmdline)


def report(res, ok, sizes, a, nice, versions, header, cmdline):
    P = res["peers"]
    others = [x for x in ok if x != "hale"]
    fl = res["floor"]
    floor_med = min(fl["fork"]["median"], fl["spawn"]["median"])
    print("# hale vs peers, side by side\n")
    for h in header:
        print(f"- {h}")
    print(f"- command: `{'nice -n ' + str(nice) + ' ' if nice else ''}{cmdline}`")
    print("- versions: " + "; ".join(versions[x] for x in ok))
    for x, why in res["skipped"].items():
        print(f"- {x} not run: {why}")
    print()
    cols = ["workload", "floor"] + ok + ["target"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))

    def row(label, fl_cell, getter, unit, digits, target="", ratios=True):
        hv = getter("hale") if "hale" in ok else None
        cells = []
        for x in ok:
            v = getter(x)
            if isinstance(v, str):
                cells.append(v)
                continue
            c = fmt(v, unit, digits)
            if ratios and x != "hale" and isinstance(hv, (int, float)) and v is not None:
                c += ratio(hv, v)
            cells.append(c)
        print("| " + " | ".join([label, fl_cell] + cells + [target]) + " |")

    def g(x, *keys):
        d = P.get(x, {})
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d

    # respawn rows
    hmed = g("hale", "crash", "median")
    over = None if hmed is None else hmed - floor_med
    t1 = "" if over is None else f"hale within 2 ms of the floor: {'met' if over <= 2 else 'missed'} (+{over:.2f} ms)"
    row("crash-to-respawn gap, median", f"{fl['fork']['median']:.2f} ms (fork) / {fl['spawn']['median']:.2f} ms (spawn)",
        lambda x: g(x, "crash", "median"), " ms", 2, t1)
    row("crash-to-respawn gap, p95", f"{fl['fork']['p95']:.2f} / {fl['spawn']['p95']:.2f} ms",
        lambda x: g(x, "crash", "p95"), " ms", 2)
    row("gaps measured", f"{fl['fork']['n']} / {fl['spawn']['n']}", lambda x: str(g(x, "crash", "n") or "-"), "", 0,
        ratios=False)
    row("respawn overhead over the floor (median)", "0", lambda x: None if g(x, "crash", "median") is None
        else g(x, "crash", "median") - floor_med, " ms", 2)

    for n in sizes:
        rss = {x: g(x, f"idle{n}", "rss_mib") for x in ok}
        peer_rss = [v for x, v in rss.items() if x != "hale" and v is not None]
        t = ""
        if rss.get("hale") is not None and peer_rss:
            t = f"hale below every peer: {'met' if rss['hale'] < min(peer_rss) else 'missed'}"
        row(f"RSS, {n:,} idle children (sum over the peer's processes)", "", lambda x: g(x, f"idle{n}", "rss_mib"),
            " MiB", 1, t)
        row(f"PSS, {n:,} idle children", "", lambda x: g(x, f"idle{n}", "pss_mib"), " MiB", 1)
        row(f"processes of the peer, {n:,} children", "", lambda x: str(g(x, f"idle{n}", "procs") or "-"), "", 0,
            ratios=False)
        row(f"CPU s/min, {n:,} idle children", "", lambda x: g(x, f"idle{n}", "cpu_per_min"), "", 3)
        row(f"cold start until all {n:,} idle children exist (1 s polling)", "",
            lambda x: g(x, f"idle{n}", "ramp_s"), " s", 0)
        hc = g("hale", f"idle{n}c", "cpu_per_min")
        checkers = [x for x in others if CLASSES[x].has_checks]
        t = "no peer has built-in checks: nothing to compare" if not checkers else ""
        nochk = "no built-in check"
        row(f"RSS, {n:,} children, 1 s check each", "", lambda x: g(x, f"idle{n}c", "rss_mib") if
            CLASSES[x].has_checks else nochk, " MiB", 1)
        row(f"CPU s/min, {n:,} children, 1 s check each", "", lambda x: hc if x == "hale" else nochk, "", 3, t)
        row(f"CPU per check, {n:,} children", "", lambda x: g(x, f"idle{n}c", "cpu_per_check_us")
            if x == "hale" else "-", " us", 0)

    m = a.start_children
    row(f"start {m} children (cold, until the last has run)", "", lambda x: g(x, "startstop", "start_s"), " s", 3)
    row(f"stop {m} gracefully (until the last child exited)", "", lambda x: g(x, "startstop", "stop_kids_s"), " s", 3)
    row(f"stop {m}, until the peer's processes are gone too", "", lambda x: g(x, "startstop", "stop_all_s"), " s", 3)
    print()
    print("(hale/x: R) is hale's value divided by that peer's: below 1, hale is lower (better).")
    errs = [(x, k, v) for x in ok for k, v in P.get(x, {}).items() if k.endswith("_error")]
    for x, k, v in errs:
        print(f"- {x} {k[:-6]} failed: {v}")
    for n in sizes:
        names = {x: g(x, f"idle{n}", "names") for x in ok}
        print(f"- processes summed at {n}: " + "; ".join(f"{x}: {', '.join(v or [])}" for x, v in names.items()))


if __name__ == "__main__":
    main()
