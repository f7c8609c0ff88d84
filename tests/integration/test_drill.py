"""The local failure drill (``python -m dnsfail.drill``) end to end, as CI runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ..conftest import ROOT


@pytest.mark.slow
def test_local_drill_passes() -> None:
    """Two instances, three sites: stop eu, both move to us; restore; drain and undrain.

    Uses instance addresses of its own (127.0.0.26/27) so that a developer's drill on
    the default 127.0.0.21/22 does not collide with it; the sites are the example
    zone's 127.0.0.11-13:8080.
    """
    result = subprocess.run(
        [sys.executable, "-m", "dnsfail.drill", "--ns", "127.0.0.26", "127.0.0.27"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count("127.0.0.12 after") == 2  # both instances withdrew eu
    assert "ns1: drained; next answer 127.0.0.12" in out
    assert "ns2: undrained; next answer 127.0.0.11" in out
    assert out.rstrip().endswith("drill passed")
