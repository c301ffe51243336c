"""Collections and Frontiers with the real python-scrapinghub client against a scrapyd-rs
(tests/cloud_collections.rs starts it with project "1" deployed): the examples of the client's
Overview chapter (sections Collections and Frontiers), the methods of its API reference, and
the error cases.

    python scrapinghub_collections.py BASE_URL

Prints "ok" when every check passed; an assertion error otherwise.
"""

import sys
import time
from contextlib import closing

from scrapinghub import BadRequest, NotFound, ScrapinghubClient, ValueTooLarge

BASE = sys.argv[1]


def client_for(use_msgpack):
    return ScrapinghubClient(
        "0123456789abcdef",
        dash_endpoint=f"{BASE}/api/",
        endpoint=f"{BASE}/storage/",
        use_msgpack=use_msgpack,
    )


client = client_for(True)
project = client.get_project(1)
assert client._hsclient.use_msgpack, "the test venv must have msgpack installed"


def raises(exc, f, *args, **kwargs):
    try:
        f(*args, **kwargs)
    except exc:
        return
    raise AssertionError(f"{exc.__name__} expected from {f.__name__}{args}")


def wait(what, predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def mkitem():
    return dict(field1="value1", field2=["value2a", "value2b"], field3=3, field4={"v4k": "v4v"})


# ---------------------------------------------------------------------------------------------
# Collections: the Overview example, word for word.
collections = project.collections
foo_store = collections.get_store("foo_store")
foo_store.set({"_key": "002d050ee3ff6192dcbecc4e4b4457d7", "value": "1447221694537"})
assert foo_store.count() == 1
assert foo_store.get("002d050ee3ff6192dcbecc4e4b4457d7") == {"value": "1447221694537"}
assert list(foo_store.iter()) == [
    {"_key": "002d050ee3ff6192dcbecc4e4b4457d7", "value": "1447221694537"}
], list(foo_store.iter())
assert list(foo_store.iter(key=["002d050ee3ff6192dcbecc4e4b4457d7", "blah"])) == [
    {"_key": "002d050ee3ff6192dcbecc4e4b4457d7", "value": "1447221694537"}
]
foo_store.delete("002d050ee3ff6192dcbecc4e4b4457d7")
assert foo_store.count() == 0

# The Collection class docstring's examples.
foo_store.set({"_key": "002d050ee3ff6192dcbecc4e4b4457d7", "value": "1447221694537"})
assert list(foo_store.iter(count=1)) == [
    {"_key": "002d050ee3ff6192dcbecc4e4b4457d7", "value": "1447221694537"}
]
keys = foo_store.iter(nodata=True, meta=["_key"])
assert next(keys) == {"_key": "002d050ee3ff6192dcbecc4e4b4457d7"}
assert foo_store.list(key=["002d050ee3ff6192dcbecc4e4b4457d7", "blah"]) == [
    {"_key": "002d050ee3ff6192dcbecc4e4b4457d7", "value": "1447221694537"}
]

# Every type: set, get (JSON and msgpack), delete, NotFound; they show in list().
for use_msgpack in (True, False):
    cols = client_for(use_msgpack).get_project(1).collections
    item = mkitem()
    for col in [cols.get_store("c"), cols.get_cached_store("c"), cols.get_versioned_store("c"),
                cols.get_versioned_cached_store("c")] + [cols.get(t, "cb") for t in ("s", "vs", "cs", "vcs")]:
        col.set(dict(item, _key="insert_test_key"))
        assert col.get("insert_test_key") == item, col.get("insert_test_key")
        col.delete("insert_test_key")
        raises(NotFound, col.get, "insert_test_key")
        raises(NotFound, col.get, "does_not_exist")
listed = collections.list()
for t in ("s", "cs", "vs", "vcs"):
    assert {"name": "c", "type": t} in listed, listed
assert {"name": "foo_store", "type": "s"} in listed, listed
assert list(collections.iter()) == listed

# A versioned store answers with the newest version.
versioned = collections.get_versioned_store("versions")
for i in range(5):
    versioned.set({"_key": "k", "i": i})
assert versioned.get("k") == {"i": 4}
assert versioned.count() == 1

# Writers (identity at the client level, gzip at the hubstorage level), scans with prefix,
# filter, start, count; bulk delete from a generator.
for use_msgpack in (True, False):
    col = client_for(use_msgpack).get_project(1).collections.get_store(f"scan_{int(use_msgpack)}")
    item = mkitem()
    with closing(col.create_writer()) as writer:
        for i in range(20):
            item["_key"] = last_key = "post_scan_test%d" % i
            item["counter"] = i
            writer.write(item)
    del item["_key"]
    assert col.get(last_key) == item
    assert col.get("post_scan_test2")["counter"] == 2
    assert len(list(col.iter(prefix="post_scan_test1"))) == 11
    assert len(list(col.iter(filter='["counter", ">", [5]]', prefix="post_scan_test1"))) == 10
    assert len(list(col.iter(filter=[("counter", ">=", [18])]))) == 2
    assert len(list(col.iter(start="post_scan_test1"))) == 19
    assert len(list(col.iter(startafter="post_scan_test1"))) == 18
    assert col.count() == 20
    assert col.count(prefix="post_scan_test1") == 11
    assert col.count(filter='["counter", "<", [3]]') == 3
    col.delete("post_scan_test%d" % i for i in range(20))
    raises(NotFound, col.get, "post_scan_test0")
    raises(NotFound, col.get, last_key)
    assert col.count() == 0

gz = collections.get_store("gzipped")
with closing(gz._origin.create_writer()) as writer:  # content_encoding='gzip'
    for i in range(1500):
        writer.write({"_key": "k%04d" % i, "n": i})
assert gz.count() == 1500
keys = [r["_key"] for r in gz.iter()]
assert keys == sorted(keys) and len(keys) == 1500
assert [r["n"] for r in gz.iter(key=["k0007", "k1499", "nope"])] == [7, 1499]

# prefix (repeatable) and prefixcount.
pc = collections.get_store("prefixes")
for prefix in ("a", "b", "c"):
    for i in range(5):
        pc.set({"_key": f"{prefix}{i}", "v": i})
got = [r["_key"] for r in pc.iter(prefix=["a", "c"], prefixcount=2)]
assert got == ["a0", "a1", "c0", "c1"], got
assert [r["_key"] for r in pc.iter(prefix="b", prefixcount=3)] == ["b0", "b1", "b2"]
assert pc.count(prefix=["a", "b"]) == 10

# startts / endts (ms insertion times), and the _ts meta field.
tc = collections.get_store("times")
tc.set({"_key": "first", "v": 1})
(first,) = tc.list(meta=["_key", "_ts"])
assert isinstance(first["_ts"], int) and first["v"] == 1, first
wait("the server clock to pass the first write",
     lambda: client._hsclient.server_timestamp() > first["_ts"])
tc.set({"_key": "second", "v": 2})
second_ts = {r["_key"]: r["_ts"] for r in tc.list(meta=["_key", "_ts"])}["second"]
assert second_ts > first["_ts"]
assert [r["_key"] for r in tc.iter(startts=second_ts)] == ["second"]
assert [r["_key"] for r in tc.iter(endts=second_ts)] == ["first"]
assert [r["_key"] for r in tc.iter(startts=first["_ts"], endts=second_ts + 1)] == ["first", "second"]

# truncate removes every type of that name; a scan of a missing collection is empty.
for t in ("s", "vs"):
    collections.get(t, "to_truncate").set({"_key": "x"})
with closing(collections.get_store("to_truncate").create_writer()) as writer:
    for i in range(20):
        writer.write({"_key": "my_key_%d" % i, "counter": i})
assert len(list(collections.get_store("to_truncate").iter(prefix="my_key"))) == 20
collections.get_store("to_truncate").truncate()
assert list(collections.get_store("to_truncate").iter(prefix="my_key")) == []
assert list(collections.get_versioned_store("to_truncate").iter()) == []
assert not [c for c in collections.list() if c["name"] == "to_truncate"]
assert list(collections.get_store("never_written").iter()) == []
assert collections.get_store("never_written").count() == 0

# Errors.
errors = collections.get_store("errors")
raises(BadRequest, errors.set, {"foo": 42})
raises(BadRequest, errors.set, {"_key": []})
raises(ValueTooLarge, errors.set, {"_key": "large_test", "value": "x" * 1024 ** 2})
raises(ValueError, errors.get, None)
raises(ValueError, collections.get, "invalidtype", "n")
raises(ValueError, collections.get_store, "foo-bar")
assert errors.count() == 0  # nothing of a refused write was stored

# ---------------------------------------------------------------------------------------------
# Frontiers: the Overview example.
frontiers = project.frontiers
frontier = frontiers.get("test")
slot = frontier.get("example.com")
slot.queue.add([{"fp": "/some/path.html"}])
slot.flush()
assert slot.newcount == 1
assert frontier.newcount == 1
assert frontiers.newcount == 1
assert "test" in list(frontiers.iter()) and "test" in frontiers.list()
assert list(frontier.iter()) == ["example.com"] and frontier.list() == ["example.com"]

slot.fingerprints.add(["fp1", "fp2"])
slot.flush()
assert slot.newcount == 3
slot.q.add([{"fp": "/"}, {"fp": "page1.html", "p": 1, "qdata": {"depth": 1}}])
slot.flush()
assert slot.newcount == 5
reqs = list(slot.q.iter())
assert all(sorted(b.keys()) == ["id", "requests"] and isinstance(b["id"], str) for b in reqs)
assert [r for b in reqs for r in b["requests"]] == [
    ["/some/path.html", None], ["fp1", None], ["fp2", None], ["/", None], ["page1.html", {"depth": 1}]
], reqs
assert reqs[-1]["requests"] == [["page1.html", {"depth": 1}]]  # priority 1 comes last
assert slot.q.list() == reqs
assert list(slot.f.iter()) == ["/", "/some/path.html", "fp1", "fp2", "page1.html"]
assert slot.f.list() == ["/", "/some/path.html", "fp1", "fp2", "page1.html"]

# Duplicates are neither counted nor queued again.
slot.q.add([{"fp": "/"}, {"fp": "fp1"}])
slot.flush()
assert slot.newcount == 5
assert slot.q.list() == reqs

# Deleting one batch by id, then a list of them.
slot.q.delete(reqs[0]["id"])
assert slot.q.list() == reqs[1:]
slot.q.delete([b["id"] for b in reqs[1:]])
assert slot.q.list() == []
assert "example.com" in frontier.list()  # the fingerprints remain

# Another slot: big writes are cut in batches of 100; mincount returns whole batches.
other = frontier.get("other.com")
other.q.add([{"fp": "/index_%d.html" % i} for i in range(250)])
other.flush()
assert other.newcount == 250
assert frontier.newcount == 255 and frontiers.newcount == 255
assert [len(b["requests"]) for b in other.q.list()] == [100, 100, 50]
first = other.q.list(mincount=100)
assert [len(b["requests"]) for b in first] == [100]
assert [r[0] for r in first[0]["requests"]] == ["/index_%d.html" % i for i in range(100)]
assert [len(b["requests"]) for b in other.q.list(mincount=150)] == [100, 100]
other.q.delete([b["id"] for b in first])
assert [r[0] for r in other.q.list(mincount=100)[0]["requests"]][0] == "/index_100.html"
assert sorted(frontier.list()) == ["example.com", "other.com"]

# The hubstorage-level Frontier: add/read/delete with priorities.
hsf = client._hsclient.get_project(1).frontier
hsf.add("test2", "s1", [{"fp": "/low", "p": 5}, {"fp": "/high", "p": 0, "qdata": {"a": 1}}])
hsf.flush()
batches = list(hsf.read("test2", "s1"))
assert [b["requests"] for b in batches] == [[["/high", {"a": 1}]], [["/low", None]]], batches
assert batches[0]["id"][:2] == "00" and batches[1]["id"][:2] == "05"
hsf.delete("test2", "s1", [b["id"] for b in batches])
assert list(hsf.read("test2", "s1")) == []
hsf.delete_slot("test2", "s1")
hsf.close()

# Deleting a slot; flush and close.
slot.delete()
assert "example.com" not in frontier.list()
assert slot.newcount == 0
assert list(slot.q.iter()) == [] and slot.f.list() == []
frontier.flush()
frontiers.flush()
frontiers.close()
assert sorted(frontiers.list()) == ["test"], frontiers.list()

print("ok")
