"""The examples of python-scrapinghub's "Legacy clients" chapter (scrapinghub.Connection and
scrapinghub.HubstorageClient), run with the real, unmodified client against a scrapyd-rs that
tests/cloud_legacy.rs started with project "3" deployed (the test project, version r1), a
local site, and max_proc = 2. Then the gaps the current client (ScrapinghubClient) hit.

    python scrapinghub_legacy.py BASE_URL SITE_URL

Prints "ok" when every check passed; an assertion error otherwise.
"""

import itertools
import re
import sys
import time

from scrapinghub import Connection, HubstorageClient, ScrapinghubClient
from scrapinghub.client.exceptions import BadRequest
from scrapinghub.legacy import APIError

BASE, SITE = sys.argv[1:3]
KEY = "0123456789abcdef"
P = 3
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?")


def wait(what, predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------------------------------------
# scrapinghub.Connection

conn = Connection(KEY, url=f"{BASE}/api/")
assert repr(conn) == f"Connection('{KEY}')"
assert conn.project_ids() == [P], conn.project_ids()
project = conn[P]
assert project.id == P

spiders = project.spiders()
assert sorted(s["id"] for s in spiders) == ["echo", "fail", "site", "slow"], spiders
assert all(s["type"] == "manual" and s["version"] == "r1" for s in spiders), spiders

site_id = project.schedule("site", url=SITE)
echo_id = project.schedule("echo", arg1="val1")
assert re.fullmatch(r"3/\d+/\d+", site_id) and site_id != echo_id, (site_id, echo_id)


def info(job_id):
    job = project.job(job_id)
    return job.info if job is not None else None


for job_id in (site_id, echo_id):
    wait(f"{job_id} to finish", lambda: (info(job_id) or {}).get("state") == "finished")

jobs = project.jobs(state="finished")
listed = [x.id for x in jobs]
assert sorted(listed) == sorted([site_id, echo_id]), listed
# Newest first: the job that finished last comes first.
times = [info(j)["updated_time"] for j in listed]
assert times == sorted(times, reverse=True), times

job = project.job(site_id)
assert job.id == site_id
assert job.info["spider"] == "site", job.info
assert ISO.fullmatch(job.info["started_time"]) and ISO.fullmatch(job.info["updated_time"]), job.info
assert job.info["tags"] == [], job.info
assert job.info["state"] == "finished" and job.info["close_reason"] == "finished", job.info
assert job.info["spider_args"] == {"url": SITE}, job.info
assert job.info["items_scraped"] == 3 and job.info["fields_count"]["url"] == 3, job.info
assert job.info["fields_count"]["title"] == 3, job.info
assert job.info["responses_received"] == 3 and job.info["errors_count"] == 0, job.info
assert job.info["logs"] > 5 and job.info["priority"] == 2 and job.info["version"] == "r1", job.info
assert isinstance(job.info["elapsed"], int), job.info

items = list(job.items())
assert sorted(i["url"] for i in items) == sorted([SITE, SITE + "page/1", SITE + "page/2"]), items
assert list(job.items(offset=1)) == items[1:]
assert list(job.items(offset=1, count=1)) == items[1:2]
assert list(job.items(offset=3)) == []
assert [i["_key"] for i in job.items(meta=["_key"])] == [f"{site_id}/{n}" for n in range(3)]

log = list(job.log())
assert log and all(set(e) == {"logLevel", "message", "time"} for e in log), log[:3]
assert all(ISO.fullmatch(e["time"]) for e in log), log[:3]
assert any("Spider closed (finished)" in e["message"] for e in log), log
assert list(job.log(offset=2, count=3)) == log[2:5]
assert all(e["logLevel"] >= 30 for e in job.log(level="WARNING"))

# Tags, one job and a JobSet.
assert job.update(add_tag="consumed") == 1
assert project.job(site_id).info["tags"] == ["consumed"]
assert project.jobs(state="finished").update(add_tag="consumed") == 2
assert project.jobs(state="finished", lacks_tag="consumed").count() == 0
assert project.jobs(has_tag="consumed").count() == 2
assert project.jobs(spider="echo").count() == 1
# count() is the total of the filter: its own count and offset do not change it.
assert project.jobs(state="finished", count=1).count() == 2
assert len(list(project.jobs(state="finished", count=1))) == 1
assert [j.id for j in project.jobs(state="finished", offset=1)] == listed[1:]
assert project.jobs(state="finished").update(remove_tag="consumed") == 2
assert project.job(site_id).info["tags"] == []

# A report, kept with the job and shown in its metadata.
job.add_report("qa", "all good")
hc = HubstorageClient(auth=KEY, endpoint=f"{BASE}/storage/")
reports = hc.get_job(site_id).metadata["reports"]
assert reports["qa"]["content"] == "all good" and reports["qa"]["content_type"] == "text/plain", reports

# Stopping a running job, then a JobSet of them.
slow_id = project.schedule("slow", seconds="300")
wait("the slow job to run", lambda: info(slow_id)["state"] == "running")
assert project.job(slow_id).stop() is True
wait("the slow job to stop", lambda: info(slow_id)["state"] == "finished")
assert info(slow_id)["close_reason"] == "cancelled", info(slow_id)
more = [project.schedule("slow", seconds="300", n=str(n)) for n in range(2)]
wait("both slow jobs to run", lambda: all(info(j)["state"] == "running" for j in more))
project.jobs(spider="slow", state=["pending", "running"]).stop()
wait("both slow jobs to stop", lambda: all(info(j)["state"] == "finished" for j in more))
assert project.jobs(spider="slow", state=["pending", "running"]).count() == 0

# Deleting a job, then a JobSet.
assert project.job(echo_id).delete() == 1
assert project.job(echo_id) is None
project.jobs(spider="slow").delete()
assert project.jobs(spider="slow").count() == 0
assert project.jobs(state=["pending", "running", "finished", "deleted"]).count() == 1

# Portia's calls are gone, and say so.
try:
    project.autoscraping_spider_properties("site")
    raise AssertionError("APIError expected")
except APIError as e:
    assert "Portia" in str(e), e
raw = project.autoscraping_project_slybot().read()
assert b"Portia" in raw and b'"status": "error"' in raw, raw

# A long stream, read back exactly from any offset (the legacy client resumes a broken read by
# offset).
pushed = hc.push_job(P, "external-writer", state="running")
writer = hc.get_job(pushed.key)
for n in range(2500):
    writer.items.write({"n": n})
writer.close_writers()
long_job = project.job(pushed.key)
assert long_job.info["state"] == "running" and long_job.info["items_scraped"] == 2500, long_job.info
all_items = list(long_job.items())
assert [i["n"] for i in all_items] == list(range(2500))
head = list(itertools.islice(long_job.items(), 1234))
assert head + list(long_job.items(offset=1234)) == all_items
assert list(long_job.items(offset=2000, count=-100)) == all_items[2400:]
assert list(long_job.items(count=-1)) == all_items[-1:]

# ------------------------------------------------------------------------------------------------
# scrapinghub.HubstorageClient

ts = hc.server_timestamp()
assert abs(ts - time.time() * 1000) < 60_000, ts

hp = hc.get_project(P)
assert hp.settings["botgroups"] == []
summary = hp.jobsummary()
assert summary["project"] == P and {"pending", "running", "finished", "has_capacity"} <= set(summary), summary

site_spider = hp.ids.spider("site")
assert site_spider == int(site_id.split("/")[1]), site_spider
last = list(hp.spiders.lastjobsummary(count=3))
assert [s["key"] for s in last if s["spider"] == "site"] == [site_id], last
assert [s["key"] for s in hp.spiders.lastjobsummary(spiderid=str(site_spider))] == [site_id]

hjob = hc.get_job(site_id)
assert hjob.key == site_id and hjob.metadata["state"] == "finished"
assert hjob.metadata["version"] == "r1"
assert hjob.metadata["scrapystats"]["item_scraped_count"] == 3, hjob.metadata["scrapystats"]


def state_of(key):
    return hc.get_job(key).metadata["state"]


# A pushed job of a deployed spider runs here, with its priority and arguments.
p1 = hc.push_job(projectid=P, spidername="echo")
p2 = hp.push_job(spidername="echo", priority=4)
assert p2.metadata["priority"] == 4
p3 = hp.push_job(spidername="echo", spider_args={"arg1": "foo", "arg2": "bar"})
for key in (p1.key, p2.key, p3.key):
    wait(f"pushed job {key} to finish", lambda: state_of(key) == "finished")
    assert hc.get_job(key).metadata["close_reason"] == "finished", hc.get_job(key).metadata
echoed = next(hc.get_job(p3.key).items.iter_values())
assert echoed["args"]["arg1"] == "foo" and echoed["args"]["arg2"] == "bar", echoed

# Cancelling a running job, then deleting it.
running = hp.push_job(spidername="slow", spider_args={"seconds": "300"})
wait("the pushed slow job to run", lambda: state_of(running.key) == "running")
running.request_cancel()
wait("the pushed slow job to stop", lambda: state_of(running.key) == "finished")
meta = hc.get_job(running.key).metadata
assert meta["cancelled_by"] and meta["close_reason"] == "cancelled", dict(meta)
running.purged()
assert hc.get_job(running.key).metadata["state"] == "deleted"

# Anything can be stored in metadata.
p1.update_metadata({"tags": "obsolete"})
assert hc.get_job(p1.key).metadata["tags"] == "obsolete"

# Jobs of the project.
listed = list(hp.jobq.list())
keys = [j["key"] for j in listed]
assert p3.key in keys and site_id in keys, keys
assert [j["ts"] for j in listed] == sorted((j["ts"] for j in listed), reverse=True), listed
assert next(hp.jobq.list()).get("spider", "missing") != "missing"
with_meta = next(hp.jobq.list(jobmeta=["scheduled_by"]))
assert with_meta.get("scheduled_by", "missing") != "missing", with_meta
assert with_meta.get("spider", "missing") == "missing", with_meta
assert [j["key"] for j in hp.jobq.list(start=1)] == keys[1:]
p2_meta = hc.get_job(p2.key).metadata
p2_meta["tags"] = ["new"]
p2_meta.save()
assert [j["key"] for j in hp.jobq.list(has_tag=["new", "verified"], lacks_tag="obsolete")] == [p2.key]
echo_jobs = list(hp.jobq.list(spider="echo", state="finished", count=3))
assert len(echo_jobs) == 3 and all(j["spider"] == "echo" for j in echo_jobs), echo_jobs

# Items, logs, and the metadata of many jobs.
assert [i["url"] for i in hjob.items.iter_values()] == [i["url"] for i in items]
assert len(list(hjob.logs.iter_values(count=10))) == 10
metas = list(hp.jobs.list())
assert {m["_key"] for m in metas} >= {p1.key, p2.key, p3.key, site_id}, metas
assert {m["_key"] for m in hp.jobs.list(str(site_spider))} == {site_id}

# Collections.
collections = hp.collections
foo_store = collections.new_store("foo_store")
foo_store.set({"_key": "002d050ee3ff6192dcbecc4e4b4457d7", "value": "1447221694537"})
assert foo_store.count() == 1
assert foo_store.get("002d050ee3ff6192dcbecc4e4b4457d7") == {"value": "1447221694537"}
assert list(foo_store.iter_values()) == [{"_key": "002d050ee3ff6192dcbecc4e4b4457d7", "value": "1447221694537"}]
assert list(foo_store.iter_values(key=["002d050ee3ff6192dcbecc4e4b4457d7", "blah"])) == [
    {"_key": "002d050ee3ff6192dcbecc4e4b4457d7", "value": "1447221694537"}
]
foo_store.delete("002d050ee3ff6192dcbecc4e4b4457d7")
assert foo_store.count() == 0

# Frontier.
frontier = hp.frontier
frontier.add("test", "example.com", [{"fp": "/some/path.html"}])
frontier.flush()
assert frontier.newcount == 1
frontier.add("test", "example.com", [{"fp": "/"}, {"fp": "page1.html", "p": 1, "qdata": {"depth": 1}}])
frontier.flush()
assert frontier.newcount == 3, frontier.newcount
batches = list(frontier.read("test", "example.com"))
fps = [r[0] for b in batches for r in b["requests"]]
assert sorted(fps) == ["/", "/some/path.html", "page1.html"], batches
frontier.delete("test", "example.com", batches[0]["id"])
assert len(list(frontier.read("test", "example.com"))) == len(batches) - 1
frontier.delete_slot("test", "example.com")
assert list(frontier.read("test", "example.com")) == []
frontier.close()

# ------------------------------------------------------------------------------------------------
# Gaps the current client hit

client = ScrapinghubClient(KEY, dash_endpoint=f"{BASE}/api/", endpoint=f"{BASE}/storage/")
cproject = client.get_project(P)

# startts / endts on items and samples.
cproject.spiders.get("timed-writer", create=1)  # a spider of an external runner
timed = cproject.jobs.run("timed-writer", meta={"state": "running"})
timed_writer = client.get_job(timed.key)
timed_writer.items.write({"batch": 1})
timed_writer.samples.write([1, 1, 1, 1])
timed_writer.items.flush()
timed_writer.samples.flush()
first = client._hsclient.server_timestamp()
wait("the server clock to move on", lambda: client._hsclient.server_timestamp() > first)
after = client._hsclient.server_timestamp()
timed_writer.items.write({"batch": 2})
timed_writer.samples.write([2, 2, 2, 2])
timed_writer.items.close()
timed_writer.samples.close()
assert [i["batch"] for i in timed_writer.items.list()] == [1, 2]
assert [i["batch"] for i in timed_writer.items.list(startts=after)] == [2]
assert [i["batch"] for i in timed_writer.items.list(endts=after)] == [1]
assert [s[1] for s in timed_writer.samples.list(startts=after)] == [2]

# projects.summary(state=…)
assert {s["project"] for s in client.projects.summary(state="finished")} == {P}
assert {s["project"] for s in client.projects.summary()} == {P}  # the running "timed-writer"
timed.finish()
client.get_job(pushed.key).finish()  # the other external job still running
assert client.projects.summary() == []
try:
    client.projects.summary(state="done")
    raise AssertionError("BadRequest expected")
except BadRequest:
    pass

print("ok")
