"""`site`: crawls the page given as spider argument `url` and the pages it links to on the same
host (port included), yielding one `{"url", "title"}` item per page."""

from urllib.parse import urlparse

import scrapy


class SiteSpider(scrapy.Spider):
    name = "site"

    def __init__(self, *args, url=None, **kwargs):
        super().__init__(*args, **kwargs)
        if not url:
            raise ValueError("the site spider needs a start page: -a url=http://127.0.0.1:<port>/")
        self.start_url = url
        self.host = urlparse(url).netloc

    async def start(self):
        yield scrapy.Request(self.start_url, callback=self.parse)

    def parse(self, response):
        yield {
            "url": response.url,
            "title": (response.css("title::text").get() or "").strip(),
        }
        for href in response.css("a::attr(href)").getall():
            link = response.urljoin(href)
            if urlparse(link).netloc == self.host:
                yield scrapy.Request(link, callback=self.parse)
