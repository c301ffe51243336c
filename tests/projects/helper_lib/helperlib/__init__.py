"""A library that a Scrapy project imports from its extra eggs."""


def answer():
    return f"answered by helperlib from {__file__}"
