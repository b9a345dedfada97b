"""Debian's Chromium for the browser tests: where it is, and what a test does without it (skips;
fails under CI, which sets ``EXPLAINERS_REQUIRE_BROWSER``)."""
import os

import pytest

CHROMIUM = "/usr/bin/chromium"


def require_chromium() -> None:
    """Skip (or, under CI, fail) the calling test or fixture unless Chromium and playwright are here."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("EXPLAINERS_REQUIRE_BROWSER"):
            pytest.fail(f"Debian's chromium is not installed at {CHROMIUM}")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright")
