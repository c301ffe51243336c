"""`fail`: its callback raises, so the crawl logs a spider error but still finishes normally
(finish reason `finished`, exit status 0). With spider argument `exit=1` it raises in `__init__`
instead, so `scrapy crawl` exits with status 1."""

import scrapy


class FailSpider(scrapy.Spider):
    name = "fail"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if kwargs.get("exit", "0") not in ("", "0"):
            raise RuntimeError("fail spider: failing on purpose in __init__ (exit=1)")

    async def start(self):
        yield scrapy.Request("data:,fail", callback=self.parse, dont_filter=True)

    def parse(self, response):
        raise ValueError("fail spider: failing on purpose in the callback")
