"""`helped`: yields one item with what `helperlib.answer()` says (and where helperlib is)."""

import helperlib
import scrapy


class HelpedSpider(scrapy.Spider):
    name = "helped"

    async def start(self):
        yield scrapy.Request("data:,helped", callback=self.parse, dont_filter=True)

    def parse(self, response):
        yield {"answer": helperlib.answer()}
