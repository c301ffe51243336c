# Broken on purpose: loading the spiders fails with
# ModuleNotFoundError: No module named 'importerror_nonexistent_module'.
import importerror_nonexistent_module  # noqa: F401
