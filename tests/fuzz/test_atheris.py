"""A short coverage-guided run of tests/fuzz/fuzz_handler.py, when atheris is installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("fuzz_handler.py")
#: Seconds of fuzzing in CI; a long run is the documented command in the harness.
CI_SECONDS = 10


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (pip install atheris; Linux x86_64 wheels)")
def test_fuzz_handler_briefly(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(HARNESS), f"-max_total_time={CI_SECONDS}", "-timeout=5",
         "-rss_limit_mb=1024"],
        cwd=tmp_path, capture_output=True, text=True, timeout=CI_SECONDS + 120,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Done" in run.stderr
    assert not list(tmp_path.glob("crash-*"))
