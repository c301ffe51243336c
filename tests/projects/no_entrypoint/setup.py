# Broken project: the egg has no `scrapy` entry point, so Scrapyd's runner cannot find the
# settings module (AttributeError). The project itself is fine (`scrapy list` works here).
from setuptools import find_packages, setup

setup(
    name="no_entrypoint",
    version="1.0",
    packages=find_packages(),
)
