# A plain library (not a Scrapy project), deployed as an extra egg of a project with
# `shub deploy-egg` or `eggs:` in scrapinghub.yml.
from setuptools import find_packages, setup

setup(
    name="helperlib",
    version="1.0",
    packages=find_packages(),
)
