"""`echo`: reports what Scrapyd passed to the crawl, without any network access.

It downloads one `data:` URL and yields exactly one item:

* `args`: every spider argument received (so `_job`, and `_version` when given);
* `settings`: `self.settings.get(name)` for each name in the comma-separated spider argument
  `settings_to_echo`, plus always `LOG_FILE`, `FEEDS` and `JOBDIR`;
* `env`: the environment variables `SCRAPY_PROJECT`, `SCRAPYD_EGG_VERSION` and
  `SCRAPY_SETTINGS_MODULE`, plus those named in the comma-separated spider argument
  `env_to_echo` (`null` when unset);
* `project_file`: `testproject.__file__` (inside the egg when run by Scrapyd);
* `pid`, `cwd`: the crawl process and its working directory.
"""

import json
import os

import scrapy
from scrapy.settings import BaseSettings

import testproject

ECHOED_ENV = ("SCRAPY_PROJECT", "SCRAPYD_EGG_VERSION", "SCRAPY_SETTINGS_MODULE")
ALWAYS_ECHOED_SETTINGS = ("LOG_FILE", "FEEDS", "JOBDIR")


def _jsonable(value):
    if isinstance(value, BaseSettings):
        value = value.copy_to_dict()
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


class EchoSpider(scrapy.Spider):
    name = "echo"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.received_args = dict(kwargs)

    async def start(self):
        yield scrapy.Request("data:,echo", callback=self.parse, dont_filter=True)

    def parse(self, response):
        names = [
            name.strip()
            for name in self.received_args.get("settings_to_echo", "").split(",")
            if name.strip()
        ]
        for name in ALWAYS_ECHOED_SETTINGS:
            if name not in names:
                names.append(name)
        yield {
            "spider": self.name,
            "args": self.received_args,
            "settings": {name: _jsonable(self.settings.get(name)) for name in names},
            "env": {
                name: os.environ.get(name)
                for name in (
                    *ECHOED_ENV,
                    *(n.strip() for n in self.received_args.get("env_to_echo", "").split(",") if n.strip()),
                )
            },
            "project_file": testproject.__file__,
            "pid": os.getpid(),
            "cwd": os.getcwd(),
        }
