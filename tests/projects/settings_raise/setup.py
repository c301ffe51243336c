# Broken project: its settings module raises on import.
from setuptools import find_packages, setup

setup(
    name="settings_raise",
    version="1.0",
    packages=find_packages(),
    entry_points={"scrapy": ["settings = settings_raise.settings"]},
)
