"""Job data throughput of scrapyd-rs's Scrapy Cloud API, with the real `scrapinghub` client:
writes ITEMS items to one job through the client's batch writer, then reads them back with
`job.items.iter()` in msgpack and JSON modes, sampling the daemon's memory meanwhile.

    python bench_jobdata.py BINARY [ITEMS]     (run by scripts/bench)
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import requests
from scrapinghub import ScrapinghubClient

BINARY = sys.argv[1]
ITEMS = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    work = tempfile.mkdtemp(prefix="bench-jobdata-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(os.path.join(work, "scrapyd.conf"), "w") as f:
        f.write(f"[scrapyd]\nhttp_port = {port}\npython = {sys.executable}\n")
    log = open(os.path.join(work, "daemon.log"), "w")
    proc = subprocess.Popen([BINARY], cwd=work, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/daemonstatus.json", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        # A project "1" without spiders; the job is pushed for an external runner and its items
        # are written through the storage API, as a runner's batch writer does.
        egg_dir = os.path.join(work, "egg")
        os.makedirs(os.path.join(egg_dir, "p", "spiders"))
        for name, text in [("setup.py", "from setuptools import setup\nsetup(name='p', packages=['p', 'p.spiders'],"
                                        " entry_points={'scrapy': ['settings = p.settings']})\n"),
                           ("p/__init__.py", ""), ("p/spiders/__init__.py", ""),
                           ("p/settings.py", "SPIDER_MODULES = ['p.spiders']\n")]:
            with open(os.path.join(egg_dir, name), "w") as f:
                f.write(text)
        subprocess.run([sys.executable, "setup.py", "-q", "bdist_egg", "-d", "dist"], cwd=egg_dir, check=True,
                       capture_output=True)
        egg = os.path.join(egg_dir, "dist", os.listdir(os.path.join(egg_dir, "dist"))[0])
        with open(egg, "rb") as f:
            r = requests.post(f"{base}/addversion.json", data={"project": "1", "version": "1"}, files={"egg": f})
        assert r.json()["status"] == "ok", r.text
        client = ScrapinghubClient("bench", dash_endpoint=f"{base}/api/", endpoint=f"{base}/storage/")
        project = client.get_project(1)
        project.spiders.get("bench", create=1)
        key = project.jobs.run("bench", meta={"state": "running"}).key
        job = client.get_job(key)
        t0 = time.perf_counter()
        for i in range(ITEMS):
            job.items.write({"n": i, "title": f"item number {i}", "url": f"https://example.com/{i}"})
        job.items.flush()
        job.items.close()
        write = time.perf_counter() - t0
        count = job.items.stats()["totals"]["input_values"]
        assert count == ITEMS, count
        results = [("items written (batch writer)", ITEMS / write, "items/s")]
        for mode in ("msgpack", "json"):
            client._hsclient.use_msgpack = mode == "msgpack"
            idle = rss_mib(proc.pid)
            peak = [idle]
            done = threading.Event()

            def sample():
                while not done.is_set():
                    peak[0] = max(peak[0], rss_mib(proc.pid))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample)
            sampler.start()
            t0 = time.perf_counter()
            n = sum(1 for _ in job.items.iter())
            elapsed = time.perf_counter() - t0
            done.set()
            sampler.join()
            assert n == ITEMS, n
            results.append((f"job.items.iter(), {mode}", ITEMS / elapsed, "items/s"))
            results.append((f"daemon RSS before → peak while reading ({mode})", f"{idle:.1f} → {peak[0]:.1f}", "MiB"))
        t0 = time.perf_counter()
        for _ in range(100):
            job.items.stats()
        results.append(("items.stats()", (time.perf_counter() - t0) * 10, "ms"))
        print(f"\n{ITEMS:,} items in one job:\n")
        print("| measure | scrapyd-rs | unit |\n|---|---|---|")
        for name, value, unit in results:
            shown = f"{value:,.0f}" if isinstance(value, float) and unit == "items/s" else (
                f"{value:.2f}" if isinstance(value, float) else value)
            print(f"| {name} | {shown} | {unit} |")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
