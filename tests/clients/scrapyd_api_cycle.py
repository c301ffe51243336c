"""A full deploy → schedule → crawl → logs/items → cancel → delete cycle through the unmodified
python-scrapyd-api client (as ScrapydWeb-style tools use Scrapyd).

Usage: python scrapyd_api_cycle.py DAEMON_URL EGG_PATH SITE_URL
Exits non-zero (an AssertionError) on the first difference.
"""

import sys
import time
import urllib.request

from scrapyd_api import ScrapydAPI

daemon, egg_path, site = sys.argv[1:4]
api = ScrapydAPI(daemon)


def wait(what, predicate, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


with open(egg_path, "rb") as egg:
    spiders = api.add_version("cycle", "1.0", egg)
assert spiders == 4, spiders
assert api.list_projects() == ["cycle"], api.list_projects()
assert api.list_versions("cycle") == ["1.0"], api.list_versions("cycle")
assert api.list_spiders("cycle") == ["echo", "fail", "site", "slow"], api.list_spiders("cycle")

job = api.schedule("cycle", "site", settings={"DOWNLOAD_DELAY": "0"}, url=site)
assert len(job) == 32, job
wait("site finished", lambda: api.job_status("cycle", job) == "finished")
jobs = api.list_jobs("cycle")
entry = next(e for e in jobs["finished"] if e["id"] == job)
log = urllib.request.urlopen(daemon + entry["log_url"]).read().decode()
assert "Spider closed (finished)" in log, log[-500:]
items = urllib.request.urlopen(daemon + entry["items_url"]).read().decode().splitlines()
assert len(items) >= 3, items

slow = api.schedule("cycle", "slow")
wait("slow running", lambda: api.job_status("cycle", slow) == "running")
assert api.cancel("cycle", slow) == "running"
wait("slow finished", lambda: api.job_status("cycle", slow) == "finished")

api.delete_version("cycle", "1.0")
assert api.list_projects() == [], api.list_projects()
print("python-scrapyd-api cycle: ok")
