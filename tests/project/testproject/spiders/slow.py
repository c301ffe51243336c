"""`slow`: keeps running for spider argument `seconds` (default 300; fractions allowed) without
any network access, by downloading one `data:` URL every 0.5 s, so it can be cancelled while
running. It yields one item (`{"started": true, "pid": ...}`) from the first response. The first
SIGINT (or SIGTERM) shuts it down cleanly, with exit status 0. With spider argument
`until_file`, it also finishes (normally) as soon as that file exists: a test decides when."""

import os
import time

import scrapy


class SlowSpider(scrapy.Spider):
    name = "slow"
    custom_settings = {
        "DOWNLOAD_DELAY": 0.5,
        "RANDOMIZE_DOWNLOAD_DELAY": False,
        "CONCURRENT_REQUESTS": 1,
    }

    def __init__(self, *args, seconds="300", until_file=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds = float(seconds)
        self.until_file = until_file
        self.deadline = None
        self.ticks = 0

    async def start(self):
        self.deadline = time.monotonic() + self.seconds
        yield self.next_tick()

    def next_tick(self):
        self.ticks += 1
        return scrapy.Request(f"data:,tick{self.ticks}", callback=self.parse, dont_filter=True)

    def parse(self, response):
        if self.ticks == 1:
            # Tests wait for this line: the engine is running, a SIGINT now is a clean stop.
            self.logger.info("slow spider: first tick")
            yield {"started": True, "pid": os.getpid()}
        released = self.until_file is not None and os.path.exists(self.until_file)
        if time.monotonic() < self.deadline and not released:
            yield self.next_tick()
        else:
            self.logger.info("slow spider: done after %d ticks", self.ticks)
