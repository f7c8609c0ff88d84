"""The status page in a real browser: headless Chromium, driven by selenium, against a real
``python3 -m dnsfail serve`` probing real aiohttp sites (``python3 -m dnsfail site``).

It logs in through the form with the token (the control API has one, so even on loopback
the page wants it), sees a killed site go DOWN within one probe interval of the server's
verdict, sees a drain appear with its countdown, and keeps a screenshot: written to
``$DNSFAIL_ARTEFACTS`` when set, else the test's tmp dir; its path is printed.  A second
test loads the page at 1,000 targets and times it.

Skipped, saying why, without selenium (the test extra) or Debian's ``chromium`` and
``chromium-driver``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import ROOT, free_port
from .ctl_server import SITES, TOKEN, Ctl, wait_for

selenium = pytest.importorskip("selenium", reason="selenium is not installed (the test extra)")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(DRIVER, os.X_OK)),
    reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, chromedriver)")

#: The sites' probe interval (seconds); fall 1, so the server's verdict comes on the first
#: failed probe, and the page must show it within one more interval.
INTERVAL = 1.0


@pytest.fixture
def browser() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="dnsfail-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1100",
                f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def http_zone(port: int) -> str:
    check = (f"healthcheck: {{port: {port}, protocol: HTTP, path: /health}}\n"
             f"    dnsfail:\n      healthcheck: {{fall: 1, interval: {INTERVAL}, rise: 1, "
             "timeout: 0.5}")
    return f"""\
'':
  type: NS
  value: ns1.ctl.test.
api:
  dynamic:
    pools:
      eu: {{fallback: us, values: [{{value: {SITES[0]}}}, {{value: {SITES[1]}}}]}}
      us: {{values: [{{value: {SITES[2]}}}]}}
    rules:
    - pool: eu
  octodns:
    {check}
  ttl: 30
  type: A
  values: [192.0.2.99]
ns1:
  type: A
  value: 192.0.2.1
"""


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[tuple[Path, dict[str, subprocess.Popen[bytes]]]]:
    port = free_port(SITES[0])
    procs = {host: subprocess.Popen(
        [sys.executable, "-m", "dnsfail", "site", f"{host}:{port}", "--name", host],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for host in SITES}
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "ctl.test.yaml").write_text(http_zone(port))
    for host in SITES:
        wait_for(lambda h=host: _answers(f"http://{h}:{port}/health"), 15, f"site {host}")
    yield zones, procs
    for proc in procs.values():
        proc.terminate()
        proc.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def artefact(tmp_path: Path, name: str) -> Path:
    where = os.environ.get("DNSFAIL_ARTEFACTS")
    folder = Path(where) if where else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def rows(driver: Any, table: str) -> list[dict[str, str]]:
    """The rows of a table as their data- attributes (read in the page: one round trip)."""
    found: list[dict[str, str]] = driver.execute_script(
        "return [...document.getElementById(arguments[0]).children].map("
        "r => Object.assign({}, r.dataset, {text: r.textContent, hidden: "
        "r.classList.contains('hidden') ? 'yes' : ''}))", table)
    return found


def until(driver: Any, check: Callable[[], bool], timeout: float, what: str) -> float:
    try:
        return wait_for(check, timeout, what)
    except AssertionError:
        logs = "\n".join(str(e) for e in driver.get_log("browser"))
        raise AssertionError(f"{what}: not after {timeout}s; browser log:\n{logs}") from None


def login(driver: Any, ctl: Ctl) -> None:
    driver.get(f"{ctl.base}/")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.ID, "login-button").click()
    until(driver, lambda: driver.execute_script("return document.body.dataset.generation")
          is not None, 15, "the page rendered")


def test_the_page_sees_a_site_go_down_and_a_drain_appear(
        start: Callable[..., Ctl], sites: tuple[Path, dict[str, subprocess.Popen[bytes]]],
        browser: Any, tmp_path: Path) -> None:
    zones, procs = sites
    ctl = start(token=TOKEN, zones=zones)
    login(browser, ctl)
    assert browser.current_url == f"{ctl.base}/"  # no token in the URL
    assert TOKEN not in browser.current_url
    until(browser, lambda: [r["state"] for r in rows(browser, "targets")] == ["up"] * 3, 10,
          "three targets UP")
    [record] = rows(browser, "records")
    assert record["serving"] == "pools"
    until(browser, lambda: browser.find_element(By.ID, "live").text == "live", 10,
          "the live stream")

    killed = f"{SITES[0]}:"
    procs[SITES[0]].terminate()
    procs[SITES[0]].wait(timeout=10)
    gone = time.time()
    until(browser, lambda: any(r["target"].startswith(killed) and r["state"] == "down"
                               for r in rows(browser, "targets")), 10, "the killed site DOWN")
    seen = time.time()
    [event] = [e for e in ctl.get("/v1/events")[1]["events"] if e["kind"] == "transition"]
    print(f"\nkilled -> DOWN on the page: {seen - gone:.2f}s; server verdict -> page: "
          f"{seen - event['at']:.2f}s (probe interval {INTERVAL:g}s)")
    assert seen - event["at"] <= INTERVAL, "the page lagged the server by a probe interval"
    assert seen - gone <= 2 * INTERVAL * 1.1 + 0.5
    problems = browser.find_element(By.ID, "problems").text
    assert f"target {SITES[0]}" in problems
    assert "DOWN" in problems

    code, _ = ctl.post("/v1/drain", {"target": SITES[1], "for": "10m", "reason": "browser drill",
                                     "by": "selenium"})
    assert code == 200
    until(browser, lambda: any(r.get("selector") == SITES[1] for r in rows(browser, "drains")),
          5, "the drain in the page")
    [drain] = [r for r in rows(browser, "drains") if r.get("selector") == SITES[1]]
    assert "browser drill" in drain["text"]
    assert "selenium" in drain["text"]
    assert "in 9m" in drain["text"] or "in 10m" in drain["text"]
    until(browser, lambda: [r["serving"] for r in rows(browser, "records")] == ["fallback"], 5,
          "the record on its fallback")

    # The filter box: one target's row stays.
    browser.find_element(By.ID, "filter").send_keys(SITES[2])
    shown = [r["target"] for r in rows(browser, "targets") if not r["hidden"]]
    assert [t.split(":")[0] for t in shown] == [SITES[2]]
    browser.find_element(By.ID, "filter").clear()
    browser.execute_script("document.getElementById('filter').dispatchEvent(new Event('input'))")

    shot = artefact(tmp_path, "status-page.png")
    assert browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors  # a CSP violation or a script error is SEVERE


def big_zone(n: int, port: int) -> str:
    lines = ["'':", "  type: NS", "  value: ns1.big.test.", "ns1:", "  type: A",
             "  value: 192.0.2.1"]
    for i in range(n):
        a, b = divmod(i, 250)
        lines += [f"r{i}:", "  dynamic:", "    pools:",
                  f"      p: {{values: [{{value: 127.1.{a}.{b + 1}}}]}}",
                  "    rules:", "    - pool: p",
                  "  octodns:", f"    healthcheck: {{port: {port}, protocol: TCP}}",
                  "  ttl: 30", "  type: A", "  values: [192.0.2.99]"]
    return "\n".join(lines) + "\n"


def test_the_page_at_1000_targets(start: Callable[..., Ctl], browser: Any,
                                  tmp_path: Path) -> None:
    zones = tmp_path / "big"
    zones.mkdir()
    (zones / "big.test.yaml").write_text(big_zone(1000, free_port()))  # nothing listens
    ctl = start(zones=zones)
    started = time.perf_counter()
    browser.get(f"{ctl.base}/")
    until(browser, lambda: len(rows(browser, "targets")) == 1000, 30, "1,000 target rows")
    loaded = time.perf_counter() - started
    timing = browser.execute_script(
        "return {render: window.dnsfailRenderMs, first: window.dnsfailFirstRender}")
    size = len(json.dumps(ctl.get("/v1/status")[1]))
    print(f"\n1,000 targets: first render done {timing['first'] / 1000:.2f}s after navigation "
          f"start (the page's clock), seen by the test after {loaded:.2f}s; one render "
          f"{timing['render']:.0f} ms; /v1/status {size / 1024:.0f} KiB")
    assert loaded < 10
    assert len(rows(browser, "records")) == 1000
    states = [r["state"] for r in rows(browser, "targets")]
    assert set(states) == {"down"}
    started = time.perf_counter()
    browser.find_element(By.ID, "filter").send_keys("127.1.3.200:")
    shown = [r for r in rows(browser, "targets") if not r["hidden"]]
    print(f"filter over 2,000+ rows: {(time.perf_counter() - started) * 1000:.0f} ms")
    assert [r["target"].split(":")[0] for r in shown] == ["127.1.3.200"]
    shot = artefact(tmp_path, "status-page-1000.png")
    assert browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
