BOT_NAME = "uses_helper"
SPIDER_MODULES = ["uses_helper.spiders"]
ROBOTSTXT_OBEY = False
TELNETCONSOLE_ENABLED = False
LOG_LEVEL = "INFO"
