# Settings of the scrapyd-rs test project: everything runs offline (only 127.0.0.1 and data: URLs).

BOT_NAME = "testproject"

SPIDER_MODULES = ["testproject.spiders"]
NEWSPIDER_MODULE = "testproject.spiders"

ROBOTSTXT_OBEY = False
LOG_LEVEL = "INFO"
TELNETCONSOLE_ENABLED = False

# Keep crawls quick and deterministic.
COOKIES_ENABLED = False
RETRY_ENABLED = False
DOWNLOAD_TIMEOUT = 10
AUTOTHROTTLE_ENABLED = False
