"""The cluster section of scripts/bench: three scrapyd-rs nodes (max_proc = 1 each) on one
PostgreSQL, next to one scrapyd-rs on SQLite, on the same machine in one run. PostgreSQL is
Debian's, started here in a temporary folder on a free port (as `nobody` when run as root).

Usage (scripts/bench runs it): bench_cluster.py RS_BINARY SEEDER PROJECT
"""

import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import bench  # the single-node driver: Daemon, wrk, sequential, schedule_latency

HISTORY = bench.HISTORY


class Postgres:
    """A throwaway PostgreSQL server with one database per `database()` call."""

    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise SystemExit("PostgreSQL's server binaries are needed: apt-get install postgresql")
        self.bin = os.path.dirname(bins[-1])
        self.dir = tempfile.mkdtemp(prefix="bench-postgres-")
        os.chmod(self.dir, 0o777)
        self.data = os.path.join(self.dir, "data")
        self.port = bench.free_port()
        self.as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.getuid() == 0 else []
        subprocess.run(self.as_user + [f"{self.bin}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                                       "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
        self.proc = subprocess.Popen(self.as_user + [f"{self.bin}/postgres", "-D", self.data, "-p", str(self.port),
                                                     "-k", self.dir, "-c", "listen_addresses=127.0.0.1",
                                                     "-c", "max_connections=200", "-c", "fsync=on"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while subprocess.run([f"{self.bin}/pg_isready", "-h", "127.0.0.1", "-p", str(self.port)],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("PostgreSQL did not start")
            time.sleep(0.1)
        self.n = 0

    def database(self):
        self.n += 1
        name = f"bench{self.n}"
        subprocess.run([f"{self.bin}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q", "-c",
                        f"CREATE DATABASE {name}"], check=True, capture_output=True)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def nodes(url, n, extra=""):
    return [bench.Daemon("scrapyd-rs", f"database_url = {url}\nnode_name = n{i}\n{extra}")
            for i in range(n)]


def hold_slots(d, n):
    """`n` slow crawls take the cluster's `n` slots: everything scheduled after them waits."""
    for i in range(n):
        d.post("schedule.json", project="b", spider="slow", jobid=f"holder{i}")
    d.wait("holders running", lambda: len(d.running()) == n)


def schedule_load(targets, seconds=5):
    """wrk on `schedule.json` of every target at once; total requests/s and the worst p99."""
    results = [None] * len(targets)

    def run(i, d):
        script = os.path.join(d.work, "post.lua")
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\nwrk.body = "project=load&spider=echo"\n'
                    'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n')
        results[i] = bench.wrk(f"{d.base}/schedule.json", seconds, script)

    threads = [threading.Thread(target=run, args=(i, d)) for i, d in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(r[0] for r in results), max(r[1] for r in results)


def listjobs_with_history(d, runs=11):
    lat = bench.sequential(d, "listjobs.json", runs)
    return statistics.median(lat[1:])


def main():
    rows = {}
    pg = Postgres()
    try:
        # One node on SQLite: the reference column.
        d = bench.Daemon("scrapyd-rs")
        try:
            rows["schedule→running p50 (ms)"] = [bench.schedule_latency(d, 20)[0]]
            hold_slots(d, 1)
            d.deploy("load")
            rows["schedule req/s through one node"] = [schedule_load([d])[0]]
            rows["schedule req/s through every node"] = [rows["schedule req/s through one node"][0]]
        finally:
            d.stop()
        # Three nodes on one PostgreSQL.
        cluster = nodes(pg.database(), 3)
        try:
            first = cluster[0]
            rows["schedule→running p50 (ms)"].append(bench.schedule_latency(first, 20)[0])
            hold_slots(first, 3)
            first.deploy("load")
            rows["schedule req/s through one node"].append(schedule_load([first])[0])
            first.post("delproject.json", project="load")
            first.deploy("load")
            rows["schedule req/s through every node"].append(schedule_load(cluster)[0])
            first.post("delproject.json", project="load")
        finally:
            for d in cluster:
                d.stop()
        # A long history: HISTORY finished jobs seeded through the storage layer, then listed.
        k = f"listjobs, {HISTORY // 1000}k finished, p50 (ms)"
        d = bench.Daemon("scrapyd-rs", f"finished_to_keep = {HISTORY}\n", bench.seed_rs)
        try:
            rows[k] = [listjobs_with_history(d)]
        finally:
            d.stop()
        url = pg.database()
        subprocess.run([bench.SEEDER, url, str(HISTORY), "b", "echo"], check=True, capture_output=True)
        d = bench.Daemon("scrapyd-rs", f"database_url = {url}\nnode_name = n0\nfinished_to_keep = {HISTORY}\n")
        try:
            rows[k].append(listjobs_with_history(d))
        finally:
            d.stop()
    finally:
        pg.stop()
    print()
    print("Cluster: one node on SQLite, and three nodes (max_proc = 1 each) on one PostgreSQL "
          f"({os.path.basename(os.path.dirname(pg.bin))}), same machine")
    print()
    print("| measure | 1 node, SQLite | 3 nodes, PostgreSQL |")
    print("|---|---|---|")
    for key, (one, three) in rows.items():
        print(f"| {key} | {one:,.1f} | {three:,.1f} |")


if __name__ == "__main__":
    main()
