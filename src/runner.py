"""scrapyd-rs runner: run a Scrapy command for one project version.

Written out by the daemon at start-up and run as ``python runner.py <scrapy command> ...``.
Environment contract (the same as Scrapyd's runner, plus one variable):

* ``SCRAPYD_RS_EGG``: absolute path of the project's egg, or unset for a project that
  is configured in ``[settings]`` and found through ``scrapy.cfg``.
* ``SCRAPY_PROJECT``: the project name; ``SCRAPYD_EGG_VERSION``: the egg's version.
* ``SCRAPY_SETTINGS_MODULE``: taken from the egg's ``[scrapy] settings`` entry point
  unless already set.
* ``SCRAPYD_RS_RESULT``: for crawls, a file where the runner writes, when it exits, a JSON
  object ``{"exit_code": int, "finish_reason": str|null, "stats": {...}|null}`` (the daemon
  reads it, also for a crawl it re-adopted after a restart).
* ``SCRAPYD_RS_JOBDATA``: for crawls, the folder of the job's data for the Scrapy Cloud API.
  The runner appends one line per entry, ``@<ms> <compact JSON>``, each with one ``write()``
  on an ``O_APPEND`` file, to ``items.jl`` (items, with ``_type``), ``logs.jl`` (``time``, ``level``,
  ``message``), ``requests.jl`` (``url``, ``method``, ``status``, ``rs``, ``duration``,
  ``time``, ``fp``, ``parent``) and ``samples.jl`` (``[time, items, pages, errors]`` every
  30 s and at the end). The daemon indexes them.
* ``SCRAPYD_RS_EXTRA_EGGS``: a JSON list of the project's extra eggs (its dependencies,
  uploaded with ``eggs/add.json``), put on ``sys.path`` after the project's egg, in order.
* ``SCRAPYD_RS_NICE``: an increment for the process's nice value. The daemon sets it when it
  lists an upload's spiders, so that background work does not slow the API down.

Writes to stdout/stderr that fail (the daemon that read them is gone) are dropped instead of
raising ``BrokenPipeError`` in the crawl.

The egg is put on ``sys.path`` (eggs are importable zip files); ``pkg_resources`` is not used.
"""

import configparser
import json
import logging
import os
import sys
import zipfile

_result = {"exit_code": None, "finish_reason": None, "stats": None}


class _SafeStream:
    """A text stream whose failed writes (EPIPE once the reading daemon is gone) are dropped."""

    def __init__(self, stream):
        self._stream = stream
        self._broken = False

    def write(self, text):
        if not self._broken:
            try:
                return self._stream.write(text)
            except OSError:
                self._broken = True
        return len(text)

    def flush(self):
        if not self._broken:
            try:
                self._stream.flush()
            except OSError:
                self._broken = True

    def __getattr__(self, name):
        return getattr(self._stream, name)


class ResultRecorder:
    """Scrapy extension: keeps the finish reason and final stats for the result file."""

    def __init__(self, crawler):
        self.crawler = crawler
        from scrapy import signals

        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def spider_closed(self, spider, reason):
        _result["finish_reason"] = reason
        try:
            _result["stats"] = dict(self.crawler.stats.get_stats())
        except Exception:  # stats are a bonus, never a reason to fail
            _result["stats"] = None


def _now_ms():
    import time

    return int(time.time() * 1000)


class _Appender:
    """Appends JSON lines to one file of the job's data folder, one write() per line."""

    def __init__(self, folder, name):
        self.path = os.path.join(folder, name)
        self.fd = None

    def write(self, value):
        line = f"@{_now_ms()} " + json.dumps(value, separators=(",", ":"), default=str) + "\n"
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self.fd, line.encode("utf-8"))
        except OSError:
            pass  # job data is a bonus, never a reason to fail the crawl


class _LogRecorder(logging.Handler):
    """Logging handler writing each record as a log entry of the job."""

    def __init__(self, appender):
        super().__init__(logging.DEBUG)
        self.appender = appender

    def emit(self, record):
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            self.appender.write(
                {"time": int(record.created * 1000), "level": record.levelno,
                 "message": f"[{record.name}] {message}"}
            )
        except Exception:
            pass


_log_recorder = None


class JobDataRecorder:
    """Scrapy extension: records the job's items, requests and stats samples (logs come from
    the handler installed at start-up) in SCRAPYD_RS_JOBDATA."""

    def __init__(self, crawler, folder):
        from scrapy import signals

        self.crawler = crawler
        self.items = _Appender(folder, "items.jl")
        self.requests = _Appender(folder, "requests.jl")
        self.samples = _Appender(folder, "samples.jl")
        self.request_count = 0
        self.loop = None
        if _log_recorder is not None:
            _log_recorder.setLevel(crawler.settings.get("LOG_LEVEL") or "DEBUG")
        crawler.signals.connect(self.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(self.response_received, signal=signals.response_received)
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler):
        from scrapy.exceptions import NotConfigured

        folder = os.environ.get("SCRAPYD_RS_JOBDATA")
        if not folder:
            raise NotConfigured
        return cls(crawler, folder)

    def item_scraped(self, item, response, spider):
        try:
            from itemadapter import ItemAdapter

            data = ItemAdapter(item).asdict()
        except Exception:
            data = dict(item) if isinstance(item, dict) else {"value": repr(item)}
        data["_type"] = type(item).__name__
        self.items.write(data)

    def response_received(self, response, request, spider):
        number = self.request_count
        self.request_count += 1
        request.meta["_scrapyd_rs_request"] = number
        try:
            fp = self.crawler.request_fingerprinter.fingerprint(request).hex()
        except Exception:
            fp = None
        entry = {
            "url": response.url,
            "method": request.method,
            "status": response.status,
            "rs": len(response.body),
            "duration": int(float(request.meta.get("download_latency") or 0) * 1000),
            "time": _now_ms(),
        }
        if fp:
            entry["fp"] = fp
        parent = request.meta.get("_scrapyd_rs_parent")
        if parent is not None:
            entry["parent"] = parent
        self.requests.write(entry)

    def sample(self):
        stats = self.crawler.stats
        self.samples.write([
            _now_ms(),
            stats.get_value("item_scraped_count", 0),
            stats.get_value("response_received_count", 0),
            stats.get_value("log_count/ERROR", 0),
        ])

    def spider_opened(self, spider):
        from twisted.internet import task

        self.loop = task.LoopingCall(self.sample)
        self.loop.start(30, now=False)

    def spider_closed(self, spider, reason):
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.sample()


class RequestParents:
    """Spider middleware: marks each request with the number of the response it came from."""

    def process_spider_output(self, response, result, spider):
        parent = response.meta.get("_scrapyd_rs_request")
        for r in result:
            if parent is not None and hasattr(r, "meta") and hasattr(r, "dont_filter"):
                r.meta.setdefault("_scrapyd_rs_parent", parent)
            yield r

    async def process_spider_output_async(self, response, result, spider):
        parent = response.meta.get("_scrapyd_rs_request")
        async for r in result:
            if parent is not None and hasattr(r, "meta") and hasattr(r, "dont_filter"):
                r.meta.setdefault("_scrapyd_rs_parent", parent)
            yield r


def _write_result(path):
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(_result, f, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        sys.stderr.write(f"scrapyd-rs runner: cannot write {path}: {e}\n")


class BadEggError(Exception):
    pass


def settings_module(egg_path):
    """Return the module named by the egg's ``[scrapy] settings`` entry point."""
    try:
        with zipfile.ZipFile(egg_path) as egg:
            try:
                text = egg.read("EGG-INFO/entry_points.txt").decode("utf-8")
            except KeyError:
                raise BadEggError(
                    "the egg has no EGG-INFO/entry_points.txt: build it with "
                    "entry_points={'scrapy': ['settings = <package>.settings']}"
                )
    except (OSError, zipfile.BadZipFile) as e:
        raise BadEggError(f"{egg_path}: {e}")
    parser = configparser.ConfigParser()
    parser.read_string(text)
    if not parser.has_option("scrapy", "settings"):
        raise BadEggError(
            "the egg has no 'settings' entry point in group 'scrapy': build it with "
            "entry_points={'scrapy': ['settings = <package>.settings']}"
        )
    value = parser.get("scrapy", "settings")
    return value.split(":", 1)[0].split("[", 1)[0].strip()


def main():
    # Behave like ``python -m``: the working directory, not this file's folder, leads sys.path.
    sys.path[0] = os.getcwd()
    sys.stdout = _SafeStream(sys.stdout)
    sys.stderr = _SafeStream(sys.stderr)
    result_path = os.environ.get("SCRAPYD_RS_RESULT")
    code = 1
    try:
        run()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        raise
    finally:
        # Also when interrupted during start-up, so the daemon always learns the exit code.
        if result_path:
            _result["exit_code"] = code
            _write_result(result_path)


def run():
    nice = os.environ.pop("SCRAPYD_RS_NICE", None)
    if nice:
        os.nice(int(nice))
    egg = os.environ.get("SCRAPYD_RS_EGG")
    if egg:
        try:
            module = settings_module(egg)
        except BadEggError as e:
            sys.stderr.write(f"BadEggError: {e}\n")
            sys.exit(1)
        sys.path.insert(0, egg)
        extra = os.environ.pop("SCRAPYD_RS_EXTRA_EGGS", None)
        if extra:
            for i, path in enumerate(json.loads(extra)):
                sys.path.insert(1 + i, path)
        os.environ.setdefault("SCRAPY_SETTINGS_MODULE", module)
    if os.environ.get("SCRAPYD_RS_RESULT"):
        from scrapy.settings import default_settings

        default_settings.EXTENSIONS_BASE = {
            **default_settings.EXTENSIONS_BASE,
            "__main__.ResultRecorder": 0,
        }
    folder = os.environ.get("SCRAPYD_RS_JOBDATA")
    if folder:
        global _log_recorder
        from scrapy.settings import default_settings

        default_settings.EXTENSIONS_BASE = {
            **default_settings.EXTENSIONS_BASE,
            "__main__.JobDataRecorder": 0,
        }
        default_settings.SPIDER_MIDDLEWARES_BASE = {
            **default_settings.SPIDER_MIDDLEWARES_BASE,
            "__main__.RequestParents": 0,
        }
        _log_recorder = _LogRecorder(_Appender(folder, "logs.jl"))
        logging.getLogger().addHandler(_log_recorder)
    from scrapy.cmdline import execute

    execute(["scrapy", *sys.argv[1:]])


if __name__ == "__main__":
    main()
