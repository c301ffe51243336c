"""Soak test driver for scrapyd-rs; see scripts/soak."""

import concurrent.futures
import glob
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import requests

BINARY, PROJECT = sys.argv[1], sys.argv[2]
SCHEDULES, CLIENTS, CRAWLS = 1000, 16, 8


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait(what, predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out: {what}")


def main():
    work = tempfile.mkdtemp(prefix="scrapyd-rs-soak-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(os.path.join(work, "scrapyd.conf"), "w") as f:
        f.write(
            f"[scrapyd]\nhttp_port = {port}\nmax_proc = {CRAWLS}\nfinished_to_keep = 5000\n"
            f"python = {sys.executable}\nnode_name = soak\n"
        )
    build = os.path.join(work, "project")
    shutil.copytree(PROJECT, build, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info"))
    subprocess.run([sys.executable, "setup.py", "-q", "bdist_egg"], cwd=build, check=True, capture_output=True)
    egg = glob.glob(os.path.join(build, "dist", "*.egg"))[0]

    log = open(os.path.join(work, "daemon.log"), "w")
    daemon = subprocess.Popen([BINARY], cwd=work, stdout=log, stderr=log, env={**os.environ, "HOME": work})
    try:
        wait("daemon", lambda: _ok(base))
        idle_rss = rss_kib(daemon.pid)
        http = requests.Session()
        with open(egg, "rb") as f:
            r = http.post(f"{base}/addversion.json", data={"project": "soak", "version": "1"}, files={"egg": f}).json()
        assert r["status"] == "ok", r

        crawls = [
            http.post(f"{base}/schedule.json", data={"project": "soak", "spider": "slow", "seconds": "600"}).json()["jobid"]
            for _ in range(CRAWLS)
        ]
        wait("8 crawls running", lambda: len(http.get(f"{base}/listjobs.json").json()["running"]) == CRAWLS)

        stop = threading.Event()
        poll_latencies, rss_samples = [], []

        def poll():
            s = requests.Session()
            while not stop.is_set():
                t0 = time.perf_counter()
                v = s.get(f"{base}/listjobs.json").json()
                poll_latencies.append(time.perf_counter() - t0)
                assert v["status"] == "ok"
                ids = [e["id"] for e in v["pending"]] + [e["id"] for e in v["running"]]
                assert len(ids) == len(set(ids)), "a job listed twice"
                rss_samples.append(rss_kib(daemon.pid))

        poller = threading.Thread(target=poll)
        poller.start()

        def client(n):
            s = requests.Session()
            ids, latencies = [], []
            for i in range(SCHEDULES // CLIENTS + (1 if n < SCHEDULES % CLIENTS else 0)):
                t0 = time.perf_counter()
                v = s.post(f"{base}/schedule.json", data={"project": "soak", "spider": "echo", "n": str(i)}).json()
                latencies.append(time.perf_counter() - t0)
                assert v["status"] == "ok", v
                ids.append(v["jobid"])
            return ids, latencies

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(client, range(CLIENTS)))
        schedule_time = time.perf_counter() - t0
        scheduled = [j for ids, _ in results for j in ids]
        schedule_latencies = [l for _, ls in results for l in ls]
        assert len(scheduled) == SCHEDULES and len(set(scheduled)) == SCHEDULES
        status = http.get(f"{base}/daemonstatus.json").json()
        assert status["pending"] == SCHEDULES and status["running"] == CRAWLS, status
        loaded_rss = rss_kib(daemon.pid)

        # Cancel all: pending first (so no echo starts), then the running crawls.
        t0 = time.perf_counter()
        prev = {}
        for job in scheduled + crawls:
            prev[job] = http.post(f"{base}/cancel.json", data={"project": "soak", "job": job}).json()["prevstate"]
        wait("all stopped", lambda: http.get(f"{base}/daemonstatus.json").json()["running"] == 0)
        cancel_time = time.perf_counter() - t0
        stop.set()
        poller.join()

        # Accounting: every job exactly once — cancelled while pending, or finished.
        jobs = http.get(f"{base}/listjobs.json").json()
        finished = [e["id"] for e in jobs["finished"]]
        assert len(finished) == len(set(finished)), "a job finished twice"
        for job in scheduled + crawls:
            in_finished = job in set(finished)
            assert (prev[job] == "pending") != in_finished, (job, prev[job], in_finished)
        assert jobs["pending"] == [] and jobs["running"] == []
        cancelled_pending = sum(1 for j in scheduled if prev[j] == "pending")

        ms = lambda xs, q: 1000 * sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]
        print(f"schedules: {SCHEDULES} from {CLIENTS} clients in {schedule_time:.2f} s "
              f"({SCHEDULES / schedule_time:.0f}/s), latency p50 {ms(schedule_latencies, .5):.1f} ms, "
              f"p99 {ms(schedule_latencies, .99):.1f} ms")
        print(f"listjobs while loaded: {len(poll_latencies)} polls, p50 {ms(poll_latencies, .5):.1f} ms, "
              f"p99 {ms(poll_latencies, .99):.1f} ms")
        print(f"cancel-all: {len(prev)} cancels, all stopped in {cancel_time:.2f} s; "
              f"{cancelled_pending} cancelled while pending, {len(finished)} finished; every job accounted once")
        print(f"RSS: idle {idle_rss / 1024:.1f} MiB, with {SCHEDULES} pending + {CRAWLS} running "
              f"{loaded_rss / 1024:.1f} MiB, max while polling {max(rss_samples) / 1024:.1f} MiB, "
              f"after {rss_kib(daemon.pid) / 1024:.1f} MiB")
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


def _ok(base):
    try:
        return requests.get(f"{base}/daemonstatus.json", timeout=1).ok
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main()
