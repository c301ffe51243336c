# Broken on purpose: importing the settings fails, so `scrapy list` (and addversion.json) fails.
raise Exception("This should break the `scrapy list` command")
