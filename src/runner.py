"""scrapyd-rs runner: run a Scrapy command for one project version.

Written out by the daemon at start-up and run as ``python runner.py <scrapy command> ...``.
Environment contract (the same as Scrapyd's runner, plus one variable):

* ``SCRAPYD_RS_EGG``: absolute path of the project's egg, or unset for a project that
  is configured in ``[settings]`` and found through ``scrapy.cfg``.
* ``SCRAPY_PROJECT``: the project name; ``SCRAPYD_EGG_VERSION``: the egg's version.
* ``SCRAPY_SETTINGS_MODULE``: taken from the egg's ``[scrapy] settings`` entry point
  unless already set.

The egg is put on ``sys.path`` (eggs are importable zip files); ``pkg_resources`` is not used.
"""

import configparser
import os
import sys
import zipfile


class BadEggError(Exception):
    pass


def settings_module(egg_path):
    """Return the module named by the egg's ``[scrapy] settings`` entry point."""
    try:
        with zipfile.ZipFile(egg_path) as egg:
            try:
                text = egg.read("EGG-INFO/entry_points.txt").decode("utf-8")
            except KeyError:
                raise BadEggError(
                    "the egg has no EGG-INFO/entry_points.txt: build it with "
                    "entry_points={'scrapy': ['settings = <package>.settings']}"
                )
    except (OSError, zipfile.BadZipFile) as e:
        raise BadEggError(f"{egg_path}: {e}")
    parser = configparser.ConfigParser()
    parser.read_string(text)
    if not parser.has_option("scrapy", "settings"):
        raise BadEggError(
            "the egg has no 'settings' entry point in group 'scrapy': build it with "
            "entry_points={'scrapy': ['settings = <package>.settings']}"
        )
    value = parser.get("scrapy", "settings")
    return value.split(":", 1)[0].split("[", 1)[0].strip()


def main():
    # Behave like ``python -m``: the working directory, not this file's folder, leads sys.path.
    sys.path[0] = os.getcwd()
    egg = os.environ.get("SCRAPYD_RS_EGG")
    if egg:
        try:
            module = settings_module(egg)
        except BadEggError as e:
            sys.stderr.write(f"BadEggError: {e}\n")
            sys.exit(1)
        sys.path.insert(0, egg)
        os.environ.setdefault("SCRAPY_SETTINGS_MODULE", module)
    from scrapy.cmdline import execute

    execute(["scrapy", *sys.argv[1:]])


if __name__ == "__main__":
    main()
