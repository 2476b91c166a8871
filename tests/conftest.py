"""Shared test setup: the ditto cache lives in the test session's temp folder unless set."""

import os
import tempfile

os.environ.setdefault("DITTO_CACHE_DIR", os.path.join(tempfile.gettempdir(), "ditto-test-cache"))
