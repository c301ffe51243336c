"""Benchmark driver for scripts/bench: starts each daemon in a fresh folder and measures it."""

import glob
import os
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

RS_BINARY, SCRAPYD_VENV, PROJECT = sys.argv[1:4]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_egg(python, work):
    build = os.path.join(work, "project")
    shutil.copytree(PROJECT, build, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info"))
    subprocess.run([python, "setup.py", "-q", "bdist_egg"], cwd=build, check=True, capture_output=True)
    return glob.glob(os.path.join(build, "dist", "*.egg"))[0]


class Daemon:
    def __init__(self, name, argv, python, extra_conf=""):
        self.name = name
        self.work = tempfile.mkdtemp(prefix=f"bench-{name}-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        with open(os.path.join(self.work, "scrapyd.conf"), "w") as f:
            f.write(f"[scrapyd]\nhttp_port = {self.port}\nmax_proc = 1\nfinished_to_keep = 100\n{extra_conf}")
        os.makedirs(os.path.join(self.work, "logs"), exist_ok=True)
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
                raise SystemExit(f"{name} did not start; see {self.work}/daemon.log")
            time.sleep(0.05)
        self.egg = build_egg(python, self.work)
        with open(self.egg, "rb") as f:
            r = self.http.post(f"{self.base}/addversion.json", data={"project": "b", "version": "1"}, files={"egg": f}).json()
        assert r["status"] == "ok", r

    def get(self, path):
        return self.http.get(f"{self.base}/{path}").json()

    def post(self, path, **data):
        return self.http.post(f"{self.base}/{path}", data=data).json()

    def rss_mib(self):
        # The daemon process only (not its crawls).
        pid = self.proc.pid
        with open(f"/proc/{pid}/status") as f:
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
        raise SystemExit(f"{self.name}: timed out waiting for {what}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        subprocess.run(["pkill", "-f", self.work], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


def wrk(url, seconds=5, script=None):
    argv = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", url]
    if script:
        argv[1:1] = ["-s", script]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    unit = {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    return rps, float(p99.group(1)) * unit


def schedule_latency(d, runs):
    latencies = []
    for i in range(runs):
        t0 = time.perf_counter()
        job = d.post("schedule.json", project="b", spider="slow")["jobid"]
        d.wait("running", lambda: any(e["id"] == job and isinstance(e.get("pid"), int) for e in d.running()), 30)
        latencies.append((time.perf_counter() - t0) * 1000)
        d.post("cancel.json", project="b", job=job, signal="KILL")
        d.wait("stopped", lambda: not d.running())
    latencies.sort()
    return statistics.median(latencies), latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]


def measure(d, latency_runs):
    r = {}
    r["idle RSS (MiB)"] = d.rss_mib()
    r["schedule→running p50 (ms)"], r["schedule→running p99 (ms)"] = schedule_latency(d, latency_runs)
    r["daemonstatus req/s"], r["daemonstatus p99 (ms)"] = wrk(f"{d.base}/daemonstatus.json")
    # One crawl holds the only slot: every schedule stays pending.
    d.post("schedule.json", project="b", spider="slow", jobid="holder")
    d.wait("holder running", lambda: any(e["id"] == "holder" for e in d.running()))
    script = os.path.join(d.work, "post.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = "project=b&spider=echo"\n'
                'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n')
    r["schedule req/s"], r["schedule p99 (ms)"] = wrk(f"{d.base}/schedule.json", 5, script)
    pending = d.get("daemonstatus.json")["pending"]
    # Bring the queue to exactly 2 000 pending.
    if pending < 2000:
        for _ in range(2000 - pending):
            d.post("schedule.json", project="b", spider="echo")
    else:
        jobs = d.get("listjobs.json")["pending"]
        for e in jobs[2000:]:
            d.post("cancel.json", project="b", job=e["id"])
    r["pending for listjobs"] = d.get("daemonstatus.json")["pending"]
    r["listjobs (2000 pending) req/s"], r["listjobs (2000 pending) p99 (ms)"] = wrk(f"{d.base}/listjobs.json", 5)
    r["RSS with 2000 pending (MiB)"] = d.rss_mib()
    # daemonstatus while uploads are processed (spider listing runs Python).
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
    # CPU per finished job: cancel everything, then 50 echo crawls back to back.
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


def main():
    venv_python = sys.executable
    results = {}
    rs = Daemon("scrapyd-rs", [RS_BINARY], venv_python, f"python = {venv_python}\n")
    try:
        results["scrapyd-rs"] = measure(rs, 20)
    finally:
        rs.stop()
    scrapyd = os.path.join(SCRAPYD_VENV, "bin", "scrapyd")
    if os.path.exists(scrapyd):
        sd = Daemon("scrapyd", [scrapyd, "--pidfile="], os.path.join(SCRAPYD_VENV, "bin", "python"))
        try:
            results["Scrapyd 1.6"] = measure(sd, 6)
        finally:
            sd.stop()
    names = list(results)
    keys = list(results[names[0]])
    print(f"| measure | {' | '.join(names)} |" + (" ratio |" if len(names) == 2 else ""))
    print("|---|" + "---|" * len(names) + ("---|" if len(names) == 2 else ""))
    for k in keys:
        vals = [results[n][k] for n in names]
        row = f"| {k} | " + " | ".join(f"{v:,.1f}" for v in vals) + " |"
        if len(vals) == 2 and vals[0] and vals[1]:
            better_high = "req/s" in k
            ratio = vals[0] / vals[1] if better_high else vals[1] / vals[0]
            row += f" {ratio:,.1f}× |"
        print(row)


if __name__ == "__main__":
    main()
