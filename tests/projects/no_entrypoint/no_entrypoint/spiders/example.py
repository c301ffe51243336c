import scrapy


class ExampleSpider(scrapy.Spider):
    name = "example"

    async def start(self):
        yield scrapy.Request("data:,example", callback=self.parse, dont_filter=True)

    def parse(self, response):
        yield {"spider": self.name}
