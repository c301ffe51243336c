# These settings are fine: what is broken is setup.py (no `scrapy` entry point).
BOT_NAME = "no_entrypoint"
SPIDER_MODULES = ["no_entrypoint.spiders"]
ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
