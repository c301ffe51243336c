"""`slow`: keeps running for spider argument `seconds` (default 300; fractions allowed) without
any network access, by downloading one `data:` URL every 0.5 s, so it can be cancelled while
running. It yields one item (`{"started": true, "pid": ...}`) from the first response. The first
SIGINT (or SIGTERM) shuts it down cleanly, with exit status 0. With spider argument
`until_file`, it also finishes (normally) as soon as that file exists: a test decides when.
With `child_pid_file`, it starts a long `sleep` (as a spider may start a browser) and writes
that grandchild's pid to the file."""

import os
import subprocess
import time

import scrapy


class SlowSpider(scrapy.Spider):
    name = "slow"
    custom_settings = {
        "DOWNLOAD_DELAY": 0.5,
        "RANDOMIZE_DOWNLOAD_DELAY": False,
        "CONCURRENT_REQUESTS": 1,
    }

    def __init__(self, *args, seconds="300", until_file=None, child_pid_file=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds = float(seconds)
        self.until_file = until_file
        if child_pid_file:
            self.child = subprocess.Popen(["sleep", "600"])
            with open(child_pid_file + ".tmp", "w") as f:
                f.write(str(self.child.pid))
            os.replace(child_pid_file + ".tmp", child_pid_file)
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
