BOT_NAME = "import_error"
SPIDER_MODULES = ["import_error.spiders"]
ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
