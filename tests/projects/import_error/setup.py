# Broken project: a spider module imports a module that does not exist.
from setuptools import find_packages, setup

setup(
    name="import_error",
    version="1.0",
    packages=find_packages(),
    entry_points={"scrapy": ["settings = import_error.settings"]},
)
