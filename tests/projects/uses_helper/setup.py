# A Scrapy project whose spider module imports `helperlib`, which is not installed: it lists and
# crawls only with helperlib's egg on sys.path (an extra egg of the project).
from setuptools import find_packages, setup

setup(
    name="uses_helper",
    version="1.0",
    packages=find_packages(),
    entry_points={"scrapy": ["settings = uses_helper.settings"]},
)
