"""deploy/: the Prometheus rules and the Grafana dashboard, against a real Prometheus.

* ``promtool check rules`` accepts the shipped rules, and ``promtool test rules``
  runs ``rules_test.yml``: each alert fires on its input series after its ``for``;
* the dashboard parses, every panel uses the ``$datasource`` variable, and every
  metric a panel names is one a running ``dnsfail serve`` exports (a real scrape);
* a real Prometheus (Debian's ``prometheus``, its own temp config and data dir,
  1 s scrapes, on 127.0.0.1) scrapes a real ``dnsfail serve`` probing two real
  aiohttp sites (``dnsfail site``) with the shipped rules loaded; every panel's
  query evaluates, and when one site is killed Prometheus's HTTP API sees the
  target go down and ``DnsfailTargetDown`` go pending.

Skipped, with the reason, where promtool or prometheus is not installed (Debian
package ``prometheus``; .ci/run installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import ROOT, DnsfailProcess, free_port

RULES = ROOT / "deploy" / "prometheus" / "dnsfail-rules.yml"
RULES_TEST = Path(__file__).with_name("rules_test.yml")
DASHBOARD = ROOT / "deploy" / "grafana" / "dnsfail-dashboard.json"

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed "
                                    "(Debian package prometheus)")
needs_prometheus = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed "
                                      "(Debian package prometheus)")

#: Metrics the dashboard and rules use that a standalone server does not export: the cluster
#: view exists only with ``--peer``.  Checked against the scrape when it has them.
ELSEWHERE = {"dnsfail_cluster_degraded"}
#: Names in a query that are not metric names: functions, keywords, Prometheus's own ``up``.
_NOT_METRICS = {"up", "sum", "by", "without", "rate", "increase", "histogram_quantile",
                "time", "or", "and", "le"}
SITES = ("127.0.0.71", "127.0.0.72")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    done = _run(str(PROMTOOL), "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_every_alert_has_a_unit_test() -> None:
    """``promtool test rules``: each alert fires (and stays quiet) where it should."""
    done = _run(str(PROMTOOL), "test", "rules", str(RULES_TEST))
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = set(re.findall(r"^\s+- alert: (\w+)$", RULES.read_text(), re.M))
    tested = set(re.findall(r"alertname: (\w+)", RULES_TEST.read_text()))
    assert alerts
    assert alerts <= tested, f"alerts without a unit test: {alerts - tested}"


def dashboard_queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        exprs += [t["expr"] for t in panel["targets"]]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    return exprs


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (the label values and names left out)."""
    bare = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^]]*\]', " ", expr)
    bare = re.sub(r"\b(by|without) \([^)]*\)", " ", bare)
    return {n for n in re.findall(r"\b[a-z_][a-z0-9_]*\b", bare) if n not in _NOT_METRICS}


def test_dashboard_parses_and_names_metrics() -> None:
    exprs = dashboard_queries()
    names = set().union(*map(metric_names, exprs))
    assert "dnsfail_target_state" in names
    assert "dnsfail_queries_total" in names
    assert all(n.startswith("dnsfail_") for n in names), names


def exported_names(text: str) -> set[str]:
    """Every series name a scrape can have, from its ``# TYPE`` lines and samples."""
    out = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            out.add(name)
            if kind == "histogram":
                out |= {name + "_bucket", name + "_sum", name + "_count"}
        elif line and not line.startswith("#"):
            out.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return out


# --- a real Prometheus scraping a real dnsfail ------------------------------------------------


def _common_port(hosts: tuple[str, ...]) -> int:
    for port in range(15700, 15800):
        try:
            for host in hosts:
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port of 15700-15799 free on the sites' addresses")


def _zone(port: int) -> str:
    return f"""\
'':
  type: NS
  value: ns1.prom.test.
api:
  dynamic:
    pools:
      one: {{fallback: two, values: [{{value: {SITES[0]}}}]}}
      two: {{values: [{{value: {SITES[1]}}}]}}
    rules:
    - pool: one
  octodns:
    dnsfail:
      healthcheck: {{fall: 2, interval: 0.5, rise: 1, timeout: 0.4}}
    healthcheck: {{path: /health, port: {port}, protocol: HTTP}}
  ttl: 30
  type: A
  values: [192.0.2.99]
ns1:
  type: A
  value: 192.0.2.1
"""


def _site(host: str, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "dnsfail", "site", f"{host}:{port}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            text=True)


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read().decode()
    return json.loads(body) if body.lstrip().startswith("{") else body


def _poll(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


class Prom:
    """A Prometheus process on 127.0.0.1 and its HTTP API."""

    def __init__(self, work: Path, target: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = work / "prometheus.yml"
        config.write_text(f"""\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES}
scrape_configs:
  - job_name: dnsfail
    scrape_timeout: 900ms
    static_configs:
      - targets: ['{target}']
""")
        self.log = (work / "prometheus.log").open("w")
        assert PROMETHEUS is not None
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        data = _get(url)
        assert data["status"] == "success", data
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def alerts(self, name: str) -> list[dict[str, Any]]:
        data = _get(f"{self.base}/api/v1/alerts")
        return [a for a in data["data"]["alerts"] if a["labels"]["alertname"] == name]

    def stop(self) -> None:
        _stop(self.proc)
        self.log.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Prom, dict[str, subprocess.Popen[str]], int, str]]:
    """Two sites, a dnsfail probing them and a Prometheus scraping it; all stopped after."""
    port = _common_port(SITES)
    sites = {host: _site(host, port) for host in SITES}
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "prom.test.yaml").write_text(_zone(port))
    control = free_port()
    server: DnsfailProcess | None = None
    prom: Prom | None = None
    try:
        for host in SITES:
            _poll(lambda h=host: _get(f"http://{h}:{port}/health"), 15, f"site {host}")
        server = DnsfailProcess([str(zones), "--control", f"127.0.0.1:{control}",
                                 "--state-file", "", "--identity", "prom-test"]).wait_ready()
        prom = Prom(tmp_path, f"127.0.0.1:{control}")
        yield prom, sites, port, f"http://127.0.0.1:{control}"
    finally:
        if prom is not None:
            prom.stop()
        if server is not None:
            server.stop()
        for proc in sites.values():
            _stop(proc)


@needs_prometheus
def test_prometheus_sees_a_killed_site_go_down(
    stack: tuple[Prom, dict[str, subprocess.Popen[str]], int, str], tmp_path: Path,
) -> None:
    prom, sites, port, control = stack
    one, two = (f"{host}:{port}" for host in SITES)
    _poll(lambda: [r for r in prom.query('up{job="dnsfail"} == 1')], 30, "first scrape")
    up = 'dnsfail_target_state{state="up"} == 1'
    _poll(lambda: len(prom.query(up)) == 2, 15, "both targets up in Prometheus")
    assert prom.query('dnsfail_build_info == 1')
    assert prom.query('dnsfail_ready == 1')
    assert prom.query("dnsfail_last_reload_successful == 1")

    # Every panel's query is valid PromQL over these series (the API answers "success").
    for expr in dashboard_queries():
        prom.query(expr.replace("$instance", ".*").replace("$__rate_interval", "1m"))
    rules = _get(f"{prom.base}/api/v1/rules")["data"]["groups"]
    loaded = {r["name"] for g in rules for r in g["rules"]}
    assert {"DnsfailTargetDown", "DnsfailRecordOnBackup", "DnsfailReloadFailing"} <= loaded

    _stop(sites[SITES[0]])  # the first site dies
    got = _poll(lambda: prom.query(f'dnsfail_target_state{{state="down",target="{one}"}} == 1'),
                20, f"{one} down in Prometheus")
    assert got[0]["metric"]["instance"].startswith("127.0.0.1:")
    assert not prom.query(f'dnsfail_target_state{{state="down",target="{two}"}} == 1')
    alert = _poll(lambda: prom.alerts("DnsfailTargetDown"), 15, "DnsfailTargetDown pending")
    assert alert[0]["labels"]["target"] == one
    assert alert[0]["state"] in ("pending", "firing")

    # A rejected reload: the gauge drops to 0 and DnsfailReloadFailing goes pending.
    (tmp_path / "zones" / "prom.test.yaml").write_text("api: {type: A, value: 300.1.2.3}\n")
    req = urllib.request.Request(control + "/v1/reload", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 422
    _poll(lambda: prom.query("dnsfail_last_reload_successful == 0"), 15, "reload failure seen")
    assert prom.query("dnsfail_reloads_total{result=\"error\"} == 1")
    alert = _poll(lambda: prom.alerts("DnsfailReloadFailing"), 15, "DnsfailReloadFailing")
    assert alert[0]["state"] == "pending"


@needs_prometheus
def test_dashboard_metrics_are_exported(tmp_path: Path) -> None:
    """Every metric a panel or rule names is in a real ``/metrics`` scrape (RRL on, so its
    families exist), but for ``ELSEWHERE``'s, which other parts of the issue add."""
    control = free_port()
    server = DnsfailProcess([str(ROOT / "tests" / "data" / "zones"), "--control",
                             f"127.0.0.1:{control}", "--state-file", "", "--rrl-rate", "100"])
    try:
        server.wait_ready()
        text = _get(f"http://127.0.0.1:{control}/metrics")
    finally:
        server.stop()
    exported = exported_names(text)
    rules = re.findall(r"expr: (.+(?:\n {10}.+)*)", RULES.read_text())
    used = set().union(*map(metric_names, [*dashboard_queries(), *rules]))
    missing = used - exported - (ELSEWHERE - exported)
    assert not missing, f"named by the dashboard or rules but not exported: {sorted(missing)}"
    assert "_created" not in text
