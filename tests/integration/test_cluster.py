"""Three real instances, three real sites, real partitions: network namespaces and veth pairs.

Layout (made by the test, as root; skipped with the reason where ``ip netns`` fails)::

    dnsfail-cl-<pid>-hub   bridge 10.213.0.1/24, sites a/b/c at 10.213.0.11-13 (``dnsfail site``)
    dnsfail-cl-<pid>-n1    ns1 at 10.213.0.2 (DNS :15420, control :15430), veth to the bridge
    dnsfail-cl-<pid>-n2    ns2 at 10.213.0.3
    dnsfail-cl-<pid>-n3    ns3 at 10.213.0.4

A partition is a blackhole route inside one instance's namespace: to a site's address (that
instance loses its path to the site) or to its peers' addresses (it loses every peer).  The
test asks from the hub namespace with dig and curl.  ns2 and ns3 run with a wall clock 3 s
behind and 4 s ahead (DNSFAIL_TEST_CLOCK_SKEW, test only): every case below holds with it.
Timing: interval 0.5 s, timeout 0.3 s, rise 2, fall 2.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import KeptOutput

#: Namespace names and the ports inside them; the environment may move them (parallel runs).
PREFIX = f"{os.environ.get('DNSFAIL_TEST_NETNS_PREFIX', 'dnsfail-cl')}-{os.getpid()}"
HUB = f"{PREFIX}-hub"
NET = "10.213.0"
SITES = {"a": f"{NET}.11", "b": f"{NET}.12", "c": f"{NET}.13"}
SITE_PORT = int(os.environ.get("DNSFAIL_TEST_PORT_BASE", "15410")) + 1
DNS_PORT, CONTROL_PORT = SITE_PORT + 9, SITE_PORT + 19
INTERVAL, TIMEOUT, FALL = 0.5, 0.3, 2
TOKEN = "cluster-test-token"
SKEW = {"ns1": 0.0, "ns2": -3.0, "ns3": 4.0}
ROOT = Path(__file__).resolve().parents[2]


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=20)


def in_hub(*cmd: str) -> subprocess.CompletedProcess[str]:
    return run("ip", "netns", "exec", HUB, *cmd, check=False)


def netns_reason() -> str | None:
    if sys.platform != "linux" or shutil.which("ip") is None:
        return "needs Linux with iproute2 (ip netns)"
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns add)"
    for tool in ("dig", "curl"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    probe = f"{PREFIX}-probe"
    made = run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    run("ip", "netns", "del", probe, check=False)
    return None


class Proc(KeptOutput):
    """A process run inside a namespace, its output kept for assertions (across restarts)."""

    def __init__(self, ns: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args, self.ns, self.env = args, ns, env or {}
        self.lines: list[str] = []
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, "-m", "dnsfail", *self.args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        self.keep_output()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.token = tmp / "token"
        self.token.write_text(TOKEN + "\n")
        self.names = ["ns1", "ns2", "ns3"]
        self.addr = {name: f"{NET}.{i + 2}" for i, name in enumerate(self.names)}
        self.ns = {name: f"{PREFIX}-n{i + 1}" for i, name in enumerate(self.names)}
        self.sites: dict[str, Proc] = {}
        self.servers: dict[str, Proc] = {}
        zones = tmp / "zones"
        zones.mkdir()
        (zones / "drill.test.yaml").write_text(yaml.safe_dump(zone(), sort_keys=False))
        self.zones = zones

    def url(self, name: str) -> str:
        return f"http://{self.addr[name]}:{CONTROL_PORT}"

    def serve_args(self, name: str, token: Path | None = None) -> list[str]:
        args = ["serve", str(self.zones), "--listen", f"{self.addr[name]}:{DNS_PORT}",
                "--control", f"{self.addr[name]}:{CONTROL_PORT}", "--identity", name,
                "--control-token-file", str(token or self.token),
                "--state-file", str(self.tmp / f"{name}-state.json")]
        for peer in self.names:  # the same list everywhere, its own URL included
            args += ["--peer", self.url(peer)]
        return args

    def start(self, name: str, token: Path | None = None) -> Proc:
        env = {"DNSFAIL_TEST_CLOCK_SKEW": str(SKEW[name])}
        self.servers[name] = Proc(self.ns[name], self.serve_args(name, token), env)
        return self.servers[name]

    # --- asking, from the hub namespace --------------------------------------------------

    def answer(self, name: str) -> set[str]:
        out = in_hub("dig", "+short", "+time=1", "+tries=1", f"@{self.addr[name]}", "-p",
                     str(DNS_PORT), "api.drill.test", "A")
        return {line for line in out.stdout.split() if line and not line.startswith(";")}

    def epoch(self, name: str) -> str:
        out = in_hub("dig", "+short", "+time=1", "+tries=1", f"@{self.addr[name]}", "-p",
                     str(DNS_PORT), "epoch.dnsfail", "CH", "TXT")
        return out.stdout.strip().strip('"')

    def http(self, name: str, path: str, body: str | None = None) -> tuple[int, Any]:
        cmd = ["curl", "-s", "-m", "3", "-w", "\n%{http_code}", "-H",
               f"Authorization: Bearer {TOKEN}"]
        if body is not None:
            cmd += ["-H", "Content-Type: application/json", "--data-binary", body]
        out = in_hub(*cmd, f"{self.url(name)}{path}")
        text, _, code = out.stdout.rpartition("\n")
        try:
            return int(code or 0), json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            return int(code or 0), text

    def status(self, name: str) -> dict[str, Any]:
        code, body = self.http(name, "/v1/status")
        return body if code == 200 and isinstance(body, dict) else {}

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return in_hub(sys.executable, "-m", "dnsfail", *args, "--token-file", str(self.token))

    def cut(self, name: str, *addresses: str, restore: bool = False) -> None:
        for address in addresses:
            run("ip", "netns", "exec", self.ns[name], "ip", "route",
                "del" if restore else "add", "blackhole", f"{address}/32", check=not restore)

    def close(self) -> None:
        for proc in [*self.servers.values(), *self.sites.values()]:
            proc.stop()


def zone() -> dict[str, Any]:
    return {
        "": {"type": "NS", "values": ["ns1.drill.test."]},
        "ns1": {"type": "A", "value": "192.0.2.1"},
        "api": {
            "type": "A", "ttl": 30, "values": ["192.0.2.99"],
            "octodns": {
                "healthcheck": {"host": "api.drill.test", "path": "/health",
                                "port": SITE_PORT, "protocol": "HTTP"},
                "dnsfail": {"healthcheck": {"interval": INTERVAL, "timeout": TIMEOUT,
                                            "rise": 2, "fall": FALL}},
            },
            "dynamic": {"pools": {"p": {"values": [{"value": a} for a in SITES.values()]}},
                        "rules": [{"pool": "p"}]},
        },
    }


def setup_network(c: Cluster) -> None:
    run("ip", "netns", "add", HUB)
    hub = ["ip", "netns", "exec", HUB]
    run(*hub, "ip", "link", "set", "lo", "up")
    run(*hub, "ip", "link", "add", "br0", "type", "bridge")
    run(*hub, "ip", "addr", "add", f"{NET}.1/24", "dev", "br0")
    for address in SITES.values():
        run(*hub, "ip", "addr", "add", f"{address}/24", "dev", "br0")
    run(*hub, "ip", "link", "set", "br0", "up")
    for i, name in enumerate(c.names, start=1):
        ns = c.ns[name]
        run("ip", "netns", "add", ns)
        run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        run("ip", "link", "add", f"dcl{os.getpid() % 10000}a{i}", "netns", ns, "type", "veth",
            "peer", "name", f"dcl{os.getpid() % 10000}b{i}", "netns", HUB)
        run("ip", "netns", "exec", ns, "ip", "link", "set", f"dcl{os.getpid() % 10000}a{i}",
            "name", "eth0")
        run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{c.addr[name]}/24", "dev", "eth0")
        run("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
        run(*hub, "ip", "link", "set", f"dcl{os.getpid() % 10000}b{i}", "master", "br0")
        run(*hub, "ip", "link", "set", f"dcl{os.getpid() % 10000}b{i}", "up")


def teardown_network(c: Cluster) -> None:
    for ns in [*c.ns.values(), HUB]:
        run("ip", "netns", "del", ns, check=False)


def wait(what: str, check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:g}s: {what}")


def hold(what: str, check: Callable[[], bool], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert check(), what
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = netns_reason()
    if reason is not None:
        pytest.skip(reason)
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        setup_network(c)
        for name, address in SITES.items():
            c.sites[name] = Proc(HUB, ["site", f"{address}:{SITE_PORT}", "--name", name])
        for name in c.names:
            c.start(name)
        wait("three instances answer with every site", lambda: all(
            c.answer(n) == set(SITES.values()) for n in c.names), 20)
        wait("every instance hears all three", lambda: all(
            c.status(n).get("cluster", {}).get("heard") == 3 for n in c.names), 10)
        yield c
    finally:
        c.close()
        teardown_network(c)


def epochs(c: Cluster) -> set[str]:
    return {c.epoch(n) for n in c.names}


def test_self_in_the_peer_list_is_detected_and_epochs_agree(cluster: Cluster) -> None:
    c = cluster
    for name in c.names:
        facts = c.status(name)["cluster"]
        assert facts["configured"] == 3, facts
        assert facts["self_urls"] == [c.url(name)]
    wait("epochs agree", lambda: len(epochs(c)) == 1 and "" not in epochs(c), 5)


def test_clock_skew_does_not_make_votes_stale(cluster: Cluster) -> None:
    """ns3's wall clock is 4 s ahead, ns2's 3 s behind; votes are judged by age alone."""
    c = cluster
    peers = {p["instance"]: p for p in c.status("ns1")["cluster"]["peers"]}
    assert abs(peers["ns3"]["clock_offset"] - 4.0) < 1.0
    assert abs(peers["ns2"]["clock_offset"] + 3.0) < 1.0
    window = 3 * INTERVAL + TIMEOUT
    votes = c.status("ns1")["cluster"]["votes"][f"{SITES['a']}:{SITE_PORT}"]
    assert {v["instance"] for v in votes} == {"ns1", "ns2", "ns3"}
    assert all(v["age"] <= window for v in votes), votes
    # Both offsets are past half the window (0.9 s): warned once per peer, and exported.
    assert c.status("ns1")["cluster"]["clock_offset_bound"] == pytest.approx(window / 2)
    for name in ("ns2", "ns3"):
        warned = [ln for ln in c.servers["ns1"].lines
                  if "its clock is" in ln and c.url(name) in ln]
        assert len(warned) == 1, warned
    assert "(ns3): its clock is +" in c.servers["ns1"].log
    _, metrics = c.http("ns1", "/metrics")
    offsets = {line.split('"')[1]: float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith("dnsfail_cluster_peer_clock_offset_seconds{")}
    assert set(offsets) == {c.url("ns2"), c.url("ns3")}, offsets
    assert abs(offsets[c.url("ns3")] - 4.0) < 1.0
    assert abs(offsets[c.url("ns2")] + 3.0) < 1.0


def test_a_site_dead_for_everyone_is_withdrawn_everywhere_in_time(cluster: Cluster) -> None:
    c = cluster
    bound = FALL * INTERVAL + TIMEOUT + INTERVAL + 1.0
    c.sites["a"].stop()
    start = time.monotonic()
    want = {SITES["b"], SITES["c"]}
    wait("all withdraw site a", lambda: all(c.answer(n) == want for n in c.names), bound + 3)
    took = time.monotonic() - start
    assert took <= bound + 0.5, f"withdrawn after {took:.2f}s, bound {bound:.2f}s"  # dig cost
    wait("epochs agree", lambda: len(epochs(c)) == 1, 3)
    c.sites["a"].start()
    wait("site a back everywhere", lambda: all(
        c.answer(n) == set(SITES.values()) for n in c.names), 10)


def test_one_instance_losing_one_site_withdraws_it_nowhere(cluster: Cluster) -> None:
    c = cluster
    target = f"{SITES['b']}:{SITE_PORT}"

    def ns3_votes_down() -> bool:
        votes = c.status("ns3")["cluster"]["votes"].get(target, [])
        return any(v["instance"] == "ns3" and v["state"] == "down" for v in votes)

    c.cut("ns3", SITES["b"])
    try:
        wait("ns3's own vote on site b is DOWN", ns3_votes_down, 5)
        hold("no instance withdraws site b", lambda: all(
            SITES["b"] in c.answer(n) for n in c.names), 2.0)
        assert len(epochs(c)) == 1
        code, text = c.http("ns3", "/v1/explain?name=api.drill.test")
        assert code == 200
        assert "UP (1 of 3 fresh votes: ns1 UP" in text, text
        assert "ns3 DOWN" in text
        out = c.ctl("explain", "api.drill.test", "--control", f"{c.addr['ns3']}:{CONTROL_PORT}")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("server ns3 (pid "), out.stdout
        line = next(x for x in out.stdout.splitlines() if x.strip().startswith(SITES["b"]))
        assert "UP (1 of 3 fresh votes: ns1 UP" in line, out.stdout
        assert "ns3 DOWN" in line
    finally:
        c.cut("ns3", SITES["b"], restore=True)


def test_an_instance_cut_from_every_peer_withdraws_nothing_and_is_degraded(
        cluster: Cluster) -> None:
    c = cluster
    others = [c.addr["ns1"], c.addr["ns2"]]
    c.cut("ns3", *others, SITES["c"])  # alone, and its own path to site c broken too
    try:
        degraded_after = 10 * INTERVAL
        wait("ns3 reports degraded in /readyz", lambda: (
            c.http("ns3", "/readyz")[1] or {}).get("cluster", {}).get("degraded") is True,
            degraded_after + 5)
        assert SITES["c"] in c.answer("ns3"), "ns3 withdrew site c on its own vote"
        _, metrics = c.http("ns3", "/metrics")
        assert "dnsfail_cluster_degraded 1.0" in metrics
        assert f'dnsfail_cluster_peer_reachable{{peer="{c.url("ns1")}"}} 0.0' in metrics
        facts = c.status("ns3")["cluster"]
        assert facts["degraded_since"] is not None
        assert all(SITES["c"] in c.answer(n) for n in ("ns1", "ns2"))
    finally:
        c.cut("ns3", *others, SITES["c"], restore=True)
    wait("ns3 regains quorum", lambda: c.status("ns3")["cluster"]["degraded"] is False, 10)
    wait("epochs agree", lambda: len(epochs(c)) == 1, 5)


def test_a_drain_made_while_ns3_is_down_reaches_it_when_it_returns(cluster: Cluster) -> None:
    c = cluster
    c.servers["ns3"].stop()
    out = c.ctl("drain", SITES["a"], "--for", "10m", "--reason", "cluster test",
                "--control", f"{c.addr['ns1']}:{CONTROL_PORT}")
    assert out.returncode == 0, out.stderr
    assert f"applied on 2/3 instances; not answered: {c.url('ns3')}" in out.stdout
    want = {SITES["b"], SITES["c"]}
    assert c.answer("ns1") == want
    assert c.answer("ns2") == want
    c.start("ns3")
    wait("ns3 applies the drain it missed", lambda: c.answer("ns3") == want, 15)
    wait("epochs agree", lambda: len(epochs(c)) == 1, 5)
    out = c.ctl("undrain", SITES["a"], "--control", f"{c.addr['ns2']}:{CONTROL_PORT}")
    assert out.returncode == 0, out.stderr
    assert "applied on 3/3 instances" in out.stdout
    wait("undrained everywhere", lambda: all(
        c.answer(n) == set(SITES.values()) for n in c.names), 5)
    table = c.ctl("status", "--cluster", "--control", f"{c.addr['ns3']}:{CONTROL_PORT}")
    assert table.returncode == 0, table.stdout + table.stderr
    assert "3/3 instances answered; epochs agree" in table.stdout


def test_a_replayed_message_is_refused_and_logged(cluster: Cluster) -> None:
    c = cluster
    code, message = c.http("ns1", "/v1/cluster/votes")
    assert code == 200
    raw = json.dumps(message)
    first = c.http("ns2", "/v1/cluster/push", raw)[0]
    again = c.http("ns2", "/v1/cluster/push", raw)
    assert again[0] == 409, again
    assert first in (200, 409)
    wait("ns2 logs the replay", lambda: "replayed or reordered" in c.servers["ns2"].log, 3)
    assert c.status("ns2")["cluster"]["rejected"].get("replayed or reordered", 0) >= 1


def test_a_peer_with_a_wrong_token_is_ignored_and_logged(cluster: Cluster) -> None:
    c = cluster
    wrong = c.tmp / "wrong-token"
    wrong.write_text("not-the-token\n")
    c.servers["ns3"].stop()
    mark = len(c.servers["ns1"].lines)
    c.start("ns3", token=wrong)
    wait("ns1 logs the refusal once", lambda: any(
        "unauthorized" in line and c.url("ns3") in line
        for line in c.servers["ns1"].lines[mark:]), 10)
    time.sleep(1.0)
    lines = [ln for ln in c.servers["ns1"].lines[mark:]
             if "unauthorized" in ln and c.url("ns3") in ln]
    assert len(lines) == 1, lines
    for _ in range(5):  # more wrong-token requests from ns3's address, as its pulls are
        run("ip", "netns", "exec", c.ns["ns3"], "curl", "-s", "-m", "2", "-H",
            "Authorization: Bearer not-the-token", f"{c.url('ns1')}/v1/cluster/votes",
            check=False)
    refused = [ln for ln in c.servers["ns1"].lines[mark:]
               if "control: refused" in ln and f"from {c.addr['ns3']}:" in ln]
    assert len(refused) == 1, refused  # the first is logged, the rest only counted
    assert "wrong bearer token" in refused[0]
    peers = {p["url"]: p for p in c.status("ns1")["cluster"]["peers"]}
    assert peers[c.url("ns3")]["reachable"] is False
    c.servers["ns3"].stop()
    c.start("ns3")
    wait("ns3 heard again", lambda: c.status("ns1")["cluster"]["heard"] == 3, 10)


def test_a_restart_with_every_peer_down_restores_drains_from_its_own_files(
        cluster: Cluster) -> None:
    """The state file gives the drains back, the cluster file their origins and the undrain
    tombstones (which the state file cannot hold): ns1 restarts alone, nobody to ask."""
    c = cluster
    ns2 = f"{c.addr['ns2']}:{CONTROL_PORT}"
    out = c.ctl("drain", SITES["a"], "--for", "10m", "--reason", "restart test", "--control", ns2)
    assert "applied on 3/3 instances" in out.stdout, out.stdout + out.stderr
    out = c.ctl("drain", SITES["b"], "--for", "10m", "--reason", "undone", "--control", ns2)
    assert out.returncode == 0, out.stderr
    out = c.ctl("undrain", SITES["b"], "--control", ns2)
    assert "applied on 3/3 instances" in out.stdout, out.stdout + out.stderr
    want = {SITES["b"], SITES["c"]}
    wait("ns1 took both from ns2", lambda: c.answer("ns1") == want, 5)
    try:
        for name in c.names:
            c.servers[name].stop()
        c.start("ns1")
        wait("ns1 ready again, alone", lambda: c.http("ns1", "/readyz")[0] == 200, 20)
        assert c.answer("ns1") == want, "the drain made through ns2 was not restored"
        facts = c.status("ns1")
        assert [o["selector"] for o in facts["overrides"]] == [SITES["a"]]
        assert facts["cluster"]["heard"] == 1
        _, message = c.http("ns1", "/v1/cluster/votes")
        records = {r["selector"]: r for r in message["drains"]}
        assert records[SITES["a"]]["origin"] == "ns2"
        assert records[SITES["a"]]["reason"] == "restart test"
        assert records[SITES["b"]]["state"] == "removed", records  # the tombstone survived
        assert records[SITES["b"]]["origin"] == "ns2"
    finally:
        for name in ("ns2", "ns3"):
            c.start(name)
        if c.servers["ns1"].proc.poll() is not None:
            c.start("ns1")
        wait("every instance hears all three", lambda: all(
            c.status(n).get("cluster", {}).get("heard") == 3 for n in c.names), 20)
    out = c.ctl("undrain", SITES["a"], "--control", f"{c.addr['ns1']}:{CONTROL_PORT}")
    assert "applied on 3/3 instances" in out.stdout, out.stdout + out.stderr
    wait("undrained everywhere", lambda: all(
        c.answer(n) == set(SITES.values()) for n in c.names), 10)
