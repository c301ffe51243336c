# Spiders of the scrapyd-rs test project. Every spider accepts **kwargs, because Scrapyd passes
# `_job` (and `_version` when given) as spider arguments.
