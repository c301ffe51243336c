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
* ``SCRAPYD_RS_NICE``: an increment for the process's nice value. The daemon sets it when it
  lists an upload's spiders, so that background work does not slow the API down.

Writes to stdout/stderr that fail (the daemon that read them is gone) are dropped instead of
raising ``BrokenPipeError`` in the crawl.

The egg is put on ``sys.path`` (eggs are importable zip files); ``pkg_resources`` is not used.
"""

import configparser
import json
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
        os.environ.setdefault("SCRAPY_SETTINGS_MODULE", module)
    if os.environ.get("SCRAPYD_RS_RESULT"):
        from scrapy.settings import default_settings

        default_settings.EXTENSIONS_BASE = {
            **default_settings.EXTENSIONS_BASE,
            "__main__.ResultRecorder": 0,
        }
    from scrapy.cmdline import execute

    execute(["scrapy", *sys.argv[1:]])


if __name__ == "__main__":
    main()
