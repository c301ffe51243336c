"""Benchmark driver for scripts/bench: starts each daemon in a fresh folder and measures it.

Both daemons get the same configuration (max_proc = 1), the same egg (tests/project) and the same
Scrapy (this venv). wrk makes the HTTP load; single-client latencies are measured here.
"""

import datetime
import glob
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import requests

RS_BINARY, SEEDER, PROJECT = sys.argv[1:4]
HISTORY = int(os.environ.get("BENCH_HISTORY", "100000"))
PENDING = 2000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_egg(work):
    build = os.path.join(work, "project")
    shutil.copytree(PROJECT, build, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info"))
    subprocess.run([sys.executable, "setup.py", "-q", "bdist_egg"], cwd=build, check=True, capture_output=True)
    return glob.glob(os.path.join(build, "dist", "*.egg"))[0]


class Daemon:
    """One daemon in a fresh folder, with project `b` deployed."""

    def __init__(self, kind, extra_conf="", seed=None):
        self.kind = kind
        self.work = tempfile.mkdtemp(prefix=f"bench-{kind}-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        conf = f"[scrapyd]\nhttp_port = {self.port}\nmax_proc = 1\n{extra_conf}"
        if kind == "scrapyd-rs":
            conf += f"python = {sys.executable}\n"
            argv = [RS_BINARY]
        else:
            argv = [os.path.join(os.path.dirname(sys.executable), "scrapyd"), "--pidfile="]
        with open(os.path.join(self.work, "scrapyd.conf"), "w") as f:
            f.write(conf)
        os.makedirs(os.path.join(self.work, "logs"), exist_ok=True)
        if seed:
            seed(self)
        self.log = open(os.path.join(self.work, "daemon.log"), "w")
        self.proc = subprocess.Popen(argv, cwd=self.work, stdout=self.log, stderr=self.log,
                                     env={**os.environ, "HOME": self.work})
        self.http = requests.Session()
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.http.get(f"{self.base}/daemonstatus.json", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{kind} did not start; see {self.work}/daemon.log")
            time.sleep(0.05)
        self.egg = build_egg(self.work)
        self.deploy("b")

    def deploy(self, project, version="1"):
        with open(self.egg, "rb") as f:
            r = self.http.post(f"{self.base}/addversion.json", data={"project": project, "version": version},
                               files={"egg": f}).json()
        assert r["status"] == "ok", r

    def get(self, path):
        return self.http.get(f"{self.base}/{path}").json()

    def post(self, path, **data):
        r = self.http.post(f"{self.base}/{path}", data=data).json()
        assert r["status"] == "ok", r
        return r

    def rss_mib(self):
        """Resident memory of the daemon process alone (not its crawls)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def running(self):
        return self.get("listjobs.json")["running"]

    def wait(self, what, predicate, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.01)
        raise SystemExit(f"{self.kind}: timed out waiting for {what}")

    def hold_slot(self):
        """One slow crawl takes the only slot: everything scheduled after it stays pending."""
        self.post("schedule.json", project="b", spider="slow", jobid="holder")
        self.wait("holder running", lambda: any(e["id"] == "holder" for e in self.running()))

    def fill_queue(self, n):
        for _ in range(n):
            self.post("schedule.json", project="b", spider="echo")
        pending = self.get("daemonstatus.json")["pending"]
        assert pending == n, pending

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        subprocess.run(["pkill", "-f", self.work], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


def wrk(url, seconds=5, script=None):
    """Requests/s and p99 latency (ms) with 2 threads and 16 connections."""
    argv = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", url]
    if script:
        argv[1:1] = ["-s", script]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        print(out, file=sys.stderr)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    unit = {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    return rps, float(p99.group(1)) * unit


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def sequential(d, path, runs):
    """Latencies (ms) of `runs` requests one after another, until the last byte of the answer
    (read in 1 MiB chunks and discarded, so the client's own parsing is not counted)."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with d.http.get(f"{d.base}/{path}", stream=True) as r:
            for _chunk in r.iter_content(1 << 20):
                pass
        out.append((time.perf_counter() - t0) * 1000)
    return out


def schedule_latency(d, runs):
    latencies = []
    for _ in range(runs):
        t0 = time.perf_counter()
        job = d.post("schedule.json", project="b", spider="slow")["jobid"]
        d.wait("running", lambda: any(e["id"] == job and isinstance(e.get("pid"), int) for e in d.running()), 30)
        latencies.append((time.perf_counter() - t0) * 1000)
        d.post("cancel.json", project="b", job=job, signal="KILL")
        d.wait("stopped", lambda: not d.running())
    return statistics.median(latencies), percentile(latencies, 0.99)


def measure(d, latency_runs):
    r = {}
    r["idle RSS (MiB)"] = d.rss_mib()
    r["schedule→running p50 (ms)"], r["schedule→running p99 (ms)"] = schedule_latency(d, latency_runs)
    d.hold_slot()
    # The schedule load goes to its own project, removed afterwards in one request.
    d.deploy("load")
    script = os.path.join(d.work, "post.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = "project=load&spider=echo"\n'
                'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n')
    r["schedule req/s"], r["schedule p99 (ms)"] = wrk(f"{d.base}/schedule.json", 5, script)
    d.post("delproject.json", project="load")
    d.fill_queue(PENDING)
    r[f"listjobs ({PENDING} pending) req/s"], r[f"listjobs ({PENDING} pending) p99 (ms)"] = \
        wrk(f"{d.base}/listjobs.json", 5)
    r[f"RSS with {PENDING} pending (MiB)"] = d.rss_mib()
    # daemonstatus while uploads are processed (each lists its spiders with Python).
    stop = threading.Event()

    def uploads():
        s = requests.Session()
        i = 0
        while not stop.is_set():
            i += 1
            with open(d.egg, "rb") as f:
                s.post(f"{d.base}/addversion.json", data={"project": "up", "version": str(i)}, files={"egg": f})

    t = threading.Thread(target=uploads)
    t.start()
    time.sleep(0.5)
    r["daemonstatus during addversion p99 (ms)"] = wrk(f"{d.base}/daemonstatus.json", 5)[1]
    stop.set()
    t.join()
    # CPU per finished job: empty the queue, then 50 echo crawls back to back.
    for e in d.get("listjobs.json")["pending"]:
        d.post("cancel.json", project="b", job=e["id"])
    d.post("cancel.json", project="b", job="holder", signal="KILL")
    d.wait("idle", lambda: not d.running() and d.get("daemonstatus.json")["pending"] == 0)
    cpu0 = d.cpu_seconds()
    t0 = time.perf_counter()
    for _ in range(50):
        d.post("schedule.json", project="b", spider="echo")
    d.wait("50 crawls", lambda: d.get("daemonstatus.json")["pending"] == 0 and not d.running(), 600)
    r["50 crawls wall time (s)"] = time.perf_counter() - t0
    r["daemon CPU per job (ms)"] = (d.cpu_seconds() - cpu0) / 50 * 1000
    return r


def seed_rs(d):
    dbs = os.path.join(d.work, "dbs")
    os.makedirs(dbs)
    subprocess.run([SEEDER, dbs, str(HISTORY), "b", "echo"], check=True, capture_output=True)


def seed_scrapyd(d):
    """Through Scrapyd's own storage layer (what SqliteJobStorage.add writes)."""
    from scrapyd.sqlite import SqliteFinishedJobs

    dbs = os.path.join(d.work, "dbs")
    os.makedirs(dbs)
    jobs = SqliteFinishedJobs(os.path.join(dbs, "jobs.db"), "finished_jobs")
    jobs.conn.execute("PRAGMA synchronous = OFF")

    class Job:
        pass

    first = datetime.datetime.now() - datetime.timedelta(seconds=HISTORY + 1)
    for i in range(HISTORY):
        job = Job()
        job.project, job.spider, job.job = "b", "echo", f"{i:032x}"
        job.start_time = first + datetime.timedelta(seconds=i)
        job.end_time = job.start_time + datetime.timedelta(seconds=0.5)
        jobs.add(job)
    jobs.conn.close()


def measure_history(kind, runs):
    """A long history: HISTORY finished jobs (seeded through the daemon's storage layer)."""
    extra = f"finished_to_keep = {HISTORY}\n"
    if kind == "scrapyd":
        extra += "jobstorage = scrapyd.jobstorage.SqliteJobStorage\n"
    d = Daemon(kind, extra, seed_rs if kind == "scrapyd-rs" else seed_scrapyd)
    r = {}
    try:
        assert d.get("daemonstatus.json")["finished"] == HISTORY
        d.hold_slot()
        d.fill_queue(PENDING)
        k = f"{HISTORY // 1000}k finished"
        lat = sequential(d, "listjobs.json", runs)
        r[f"listjobs, {k}: first (ms)"] = lat[0]
        r[f"listjobs, {k}: p50 (ms)"] = statistics.median(lat[1:])
        r[f"listjobs, {k}: max (ms)"] = max(lat[1:])
        # Right after a change: a schedule (a write that is not a finished job), then a job
        # that finishes (the running one, killed; recorded as finished, the oldest pruned).
        after = []
        for _ in range(len(lat) - 1):
            d.post("schedule.json", project="b", spider="echo")
            after += sequential(d, "listjobs.json", 1)
        r[f"listjobs, {k}: after a schedule p50 (ms)"] = statistics.median(after)
        d.post("cancel.json", project="b", job="holder", signal="KILL")
        d.wait("holder finished", lambda: d.get("status.json?job=holder")["currstate"] == "finished")
        r[f"listjobs, {k}: after a finish (ms)"] = sequential(d, "listjobs.json", 1)[0]
        r[f"daemonstatus, {k}: req/s"], r[f"daemonstatus, {k}: p99 (ms)"] = \
            wrk(f"{d.base}/daemonstatus.json")
        r[f"RSS with {PENDING} pending + {k} (MiB)"] = d.rss_mib()
    finally:
        d.stop()
    return r


def side_by_side(kinds, rounds=5, seconds=3):
    """`daemonstatus.json` of idle daemons, all running at once and measured in turns: the
    median of `rounds` short wrk runs each, so that a slower spell of the machine (a shared VM)
    weighs on both columns alike instead of on whichever daemon it fell on."""
    daemons = {kind: Daemon(kind) for kind in kinds}
    runs = {kind: [] for kind in kinds}
    try:
        for kind, d in daemons.items():  # warm-up (Scrapyd gets faster over its first requests)
            wrk(f"{d.base}/daemonstatus.json", 2)
        for _ in range(rounds):
            for kind, d in daemons.items():
                runs[kind].append(wrk(f"{d.base}/daemonstatus.json", seconds))
    finally:
        for d in daemons.values():
            d.stop()
    return {kind: {"daemonstatus req/s": statistics.median(r[0] for r in runs[kind]),
                   "daemonstatus p99 (ms)": statistics.median(r[1] for r in runs[kind])}
            for kind in kinds}


def main():
    kinds = ["scrapyd-rs"]
    if not os.environ.get("BENCH_NO_SCRAPYD"):
        kinds.append("scrapyd")
    results = side_by_side(kinds)
    for kind in kinds:
        d = Daemon(kind)
        try:
            results[kind].update(measure(d, 20 if kind == "scrapyd-rs" else 6))
        finally:
            d.stop()
        results[kind].update(measure_history(kind, 11 if kind == "scrapyd-rs" else 4))
    names = {"scrapyd-rs": "scrapyd-rs", "scrapyd": "Scrapyd 1.6"}
    cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read())
    print(f"{datetime.date.today()}, {os.cpu_count()} CPUs ({cpu.group(1) if cpu else platform.machine()}), "
          f"Python {platform.python_version()}, Scrapy {__import__('scrapy').__version__}")
    print()
    print("| measure | " + " | ".join(names[k] for k in kinds) + " |" + (" ratio |" if len(kinds) == 2 else ""))
    print("|---|" + "---|" * len(kinds) + ("---|" if len(kinds) == 2 else ""))
    for key in results[kinds[0]]:
        vals = [results[k][key] for k in kinds]
        row = f"| {key} | " + " | ".join(f"{v:,.1f}" for v in vals) + " |"
        if len(vals) == 2 and vals[0] and vals[1]:
            ratio = vals[0] / vals[1] if "req/s" in key else vals[1] / vals[0]
            row += f" {ratio:,.1f}× |"
        print(row)


if __name__ == "__main__":
    main()
