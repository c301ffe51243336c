"""The examples of python-scrapinghub's Overview chapter, run with the real client against a
scrapyd-rs (tests/cloud.rs starts it with project "1" deployed and a local site).

    python scrapinghub_overview.py BASE_URL SITE_URL SCRAPYD_JOB_ID

Prints "ok" when every check passed; an assertion error otherwise.
"""

import sys
import time

from scrapinghub import (
    BadRequest,
    DuplicateJobError,
    NotFound,
    ScrapinghubClient,
)
from scrapinghub.client.exceptions import Forbidden

BASE, SITE, SCRAPYD_JOB = sys.argv[1:4]
client = ScrapinghubClient("0123456789abcdef", dash_endpoint=f"{BASE}/api/", endpoint=f"{BASE}/storage/")


def wait(what, predicate, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# Projects.
assert client.projects.list() == [1], client.projects.list()
project = client.get_project(1)
assert project.key == "1"

# Spiders.
names = sorted(s["id"] for s in project.spiders.list())
assert names == ["echo", "fail", "site", "slow"], names
spider = project.spiders.get("site")
assert spider.key.startswith("1/") and spider.name == "site", spider.key
try:
    project.spiders.get("no-such-spider")
    raise AssertionError("NotFound expected")
except NotFound:
    pass

# A job scheduled through Scrapyd's schedule.json is a job here too.
echo_jobs = wait(
    "the schedule.json job", lambda: list(project.jobs.iter(spider="echo", state=["pending", "running", "finished"]))
)
assert echo_jobs[0]["spider"] == "echo", echo_jobs
scrapyd_job = client.get_job(echo_jobs[0]["key"])
assert scrapyd_job.metadata.get("scrapyd_job") == SCRAPYD_JOB

# Running a job with every option.
job = spider.jobs.run(
    job_args={"url": SITE},
    job_settings={"CLOSESPIDER_PAGECOUNT": 50},
    units=1,
    priority=3,
    add_tag=["tagA", "tagB"],
    meta={"custom-data": "val1"},
)
assert job.key.startswith(spider.key + "/"), job.key
wait("the job to finish", lambda: job.metadata.get("state") == "finished")
meta = dict(job.metadata.iter())
assert meta["close_reason"] == "finished", meta
assert meta["spider"] == "site" and meta["priority"] == 3 and meta["units"] == 1, meta
assert meta["tags"] == ["tagA", "tagB"] and meta["custom-data"] == "val1", meta
assert meta["spider_args"] == {"url": SITE}, meta
assert meta["version"] == "r1", meta
assert meta["job_settings"] == {"CLOSESPIDER_PAGECOUNT": 50}, meta
for field in ("pending_time", "running_time", "finished_time"):
    assert isinstance(meta[field], int), (field, meta)
stats = job.metadata.get("scrapystats")
assert stats["item_scraped_count"] >= 3, stats

# Job data.
items = list(job.items.iter())
assert len(items) == stats["item_scraped_count"], (len(items), stats)
assert all("title" in i for i in items), items
assert job.items.stats()["totals"]["input_values"] == len(items)
assert list(job.items.iter(count=1, offset=1)) == items[1:2]
chunks = list(job.items.list_iter(chunksize=2))
assert [i for c in chunks for i in c] == items
logs = list(job.logs.iter())
assert any("Spider closed (finished)" in entry["message"] for entry in logs), logs[-5:]
assert all({"level", "message", "time"} <= set(entry) for entry in logs)
assert all(entry["level"] >= 30 for entry in job.logs.iter(level="WARNING"))
requests = list(job.requests.iter())
assert requests and requests[0]["status"] == 200 and requests[0]["method"] == "GET", requests[:2]
assert all(len(r["fp"]) == 40 for r in requests)
assert any("parent" in r for r in requests), requests
samples = list(job.samples.iter())
assert samples and samples[-1][1] == len(items), samples

# Jobs collection: count, iter (filters, jobmeta, pagination), summary, iter_last.
assert spider.jobs.count() == 1
assert project.jobs.count(state="finished") == 2
keys = [j["key"] for j in project.jobs.iter(has_tag=["tagA", "nope"], lacks_tag="tagC")]
assert keys == [job.key], keys
assert [j["key"] for j in project.jobs.iter(lacks_tag="tagA")] == [scrapyd_job.key]
summary = next(project.jobs.iter(jobmeta=["custom-data"]))
assert summary["custom-data"] == "val1" and "spider" not in summary, summary
assert [j["key"] for j in project.jobs.iter(count=1, start=1)] == [scrapyd_job.key]
first = next(spider.jobs.iter())
assert first["key"] == job.key and first["items"] == len(items), first
summaries = {s["name"]: s for s in spider.jobs.summary()}
assert summaries["finished"]["count"] == 1 and summaries["pending"]["count"] == 0, summaries
last = list(project.jobs.iter_last())
assert sorted(j["key"] for j in last) == sorted([job.key, scrapyd_job.key]), last

# Tags.
job.update_tags(add=["consumed"], remove=["tagB"])
assert job.metadata.get("tags") == ["tagA", "consumed"], job.metadata.get("tags")
assert spider.jobs.update_tags(add=["all"]) == 1
assert "all" in job.metadata.get("tags")
spider.update_tags(add=["spidertag"])
assert spider.list_tags() == ["spidertag"]

# Metadata get/set/update/delete.
job.metadata.set("note", {"a": 1})
assert job.metadata.get("note") == {"a": 1}
job.metadata.update({"note": 2, "other": "x"})
assert job.metadata.get("note") == 2 and job.metadata.get("other") == "x"
job.metadata.delete("other")
assert job.metadata.get("other") is None

# Duplicates, cancel of a running job, cancel of a pending one.
slow = project.jobs.run("slow", job_args={"seconds": "60"})
try:
    project.jobs.run("slow", job_args={"seconds": "60"})
    raise AssertionError("DuplicateJobError expected")
except DuplicateJobError:
    pass
wait("the slow job to run", lambda: slow.metadata.get("state") == "running")
queued = project.jobs.run("slow", job_args={"seconds": "61"})
assert queued.metadata.get("state") == "pending"
assert project.jobs.cancel([queued.key]) == {"count": 1}
assert queued.metadata.get("state") == "finished" and queued.metadata.get("close_reason") == "cancelled"
summary = client.projects.summary()
assert summary and summary[0]["project"] == 1 and summary[0]["running"] == 1, summary
slow.cancel()
wait("the slow job to stop", lambda: slow.metadata.get("state") == "finished")
assert slow.metadata.get("close_reason") in ("cancelled", "shutdown"), slow.metadata.get("close_reason")

# Errors.
try:
    project.jobs.run("no-such-spider")
    raise AssertionError("BadRequest expected")
except BadRequest:
    pass
try:
    client.get_job("1/99/99").metadata.get("state")
    raise AssertionError("NotFound expected")
except NotFound:
    pass

# The environment and settings given to run() reach the crawl.
envjob = project.jobs.run(
    "echo",
    job_args={"env_to_echo": "MY_VAR", "settings_to_echo": "MY_SETTING"},
    environment={"MY_VAR": "hello"},
    job_settings={"MY_SETTING": "x"},
)
wait("the echo job to finish", lambda: envjob.metadata.get("state") == "finished")
echoed = next(envjob.items.iter())
assert echoed["env"]["MY_VAR"] == "hello" and echoed["settings"]["MY_SETTING"] == "x", echoed
assert envjob.metadata.get("environment") == {"MY_VAR": "hello"}

# Project activity log.
events = list(project.activity.iter(count=3, meta="_ts"))
assert len(events) == 3 and all(isinstance(e["_ts"], int) for e in events), events
assert events[0] == {"event": "job:completed", "job": envjob.key, "user": "jobrunner", "_ts": events[0]["_ts"]}, events
kinds = {e["event"] for e in project.activity.list()}
assert {"job:scheduled", "job:started", "job:completed", "job:cancelled"} <= kinds, kinds
project.activity.add([{"event": "job:completed", "job": job.key, "user": "john"}])
assert project.activity.list()[0] == {"event": "job:completed", "job": job.key, "user": "john"}

# Project settings: a new project's have the keys clients read, empty.
assert project.settings.list() == [("botgroups", [])]
project.settings.set("job_runtime_limit", 20)
assert project.settings.get("job_runtime_limit") == 20
project.settings.update({"default_job_units": 1, "job_runtime_limit": 24})
assert sorted(project.settings.list()) == [("botgroups", []), ("default_job_units", 1), ("job_runtime_limit", 24)]
project.settings.delete("default_job_units")
assert sorted(project.settings.list()) == [("botgroups", []), ("job_runtime_limit", 24)]

try:
    project.jobs.cancel(count=5)
    raise AssertionError("Forbidden expected")
except Forbidden:
    pass

# Deleting a job.
job.delete()
assert job.metadata.get("state") == "deleted"

print("ok")
