# Like the setup.py that scrapyd-deploy generates, with a fixed name.
from setuptools import find_packages, setup

setup(
    name="testproject",
    version="1.0",
    packages=find_packages(),
    entry_points={"scrapy": ["settings = testproject.settings"]},
)
