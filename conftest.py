"""Load the ditto pytest plugin for this checkout (also when it is not pip-installed)."""

pytest_plugins = ["harness.pytest_plugin"]
