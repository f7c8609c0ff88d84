"""The server as real operators see it: queried by BIND's dig and Knot's kdig."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from ..conftest import DnsfailProcess

DIG = shutil.which("dig")
KDIG = shutil.which("kdig")
needs_dig = pytest.mark.skipif(DIG is None, reason="dig is not installed")
needs_kdig = pytest.mark.skipif(KDIG is None, reason="kdig is not installed")


def run(server: DnsfailProcess, binary: str | None, *args: str) -> str:
    assert binary is not None
    retry = "+tries=1" if binary == DIG else "+retry=0"
    done = subprocess.run(
        [binary, f"@{server.host}", "-p", str(server.port), *args, "+time=2", retry],
        capture_output=True, text=True, timeout=15, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def flags(output: str) -> set[str]:
    """The header flags of the (last) reply, from dig's "flags:" or kdig's "Flags:" line."""
    found = re.findall(r"^;; [Ff]lags: ([a-z ]*);", output, re.MULTILINE)
    assert found, output
    return set(found[-1].split())


def status(output: str) -> str:
    found = re.findall(r"status: ([A-Z]+)", output)
    assert found, output
    return found[-1]


def answers(output: str, owner: str, rtype: str) -> list[str]:
    """Rdata of the answer-section lines for ``owner``/``rtype`` (both tools' formats)."""
    pattern = rf"^{re.escape(owner)}\s+(\d+)\s+(?:IN|CH)\s+{rtype}\s+(.*)$"
    return [m.group(2) for m in re.finditer(pattern, output, re.MULTILINE | re.IGNORECASE)]


# --- dig -------------------------------------------------------------------------


@needs_dig
@pytest.mark.parametrize(
    "transport", [pytest.param([], id="udp"), pytest.param(["+tcp"], id="tcp")]
)
def test_dig_norec(test_server: DnsfailProcess, transport: list[str]) -> None:
    out = run(test_server, DIG, "api.gw.test", "A", "+norec", *transport)
    assert flags(out) == {"qr", "aa"}
    assert status(out) == "NOERROR"
    assert sorted(answers(out, "api.gw.test.", "A")) == ["192.0.2.10", "192.0.2.11"]
    assert ("(TCP)" in out) is bool(transport)
    assert "; EDNS: version: 0, flags:; udp: 1232" in out


@needs_dig
def test_dig_with_rd_gets_no_ra(test_server: DnsfailProcess) -> None:
    out = run(test_server, DIG, "api.gw.test", "A")
    assert flags(out) == {"qr", "aa", "rd"}
    assert "recursion requested but not available" in out
    assert len(answers(out, "api.gw.test.", "A")) == 2


@needs_dig
def test_dig_nxdomain(test_server: DnsfailProcess) -> None:
    out = run(test_server, DIG, "nope.gw.test", "A", "+norec")
    assert status(out) == "NXDOMAIN"
    assert flags(out) == {"qr", "aa"}
    soa = answers(out, "gw.test.", "SOA")
    assert len(soa) == 1
    assert soa[0].split()[1] == "ops.gw.test."
    assert re.search(r"^gw\.test\.\s+30\s+IN\s+SOA", out, re.MULTILINE)


@needs_dig
def test_dig_truncated_then_retries_over_tcp(test_server: DnsfailProcess) -> None:
    out = run(test_server, DIG, "big.gw.test", "TXT", "+norec", "+bufsize=512")
    assert ";; Truncated, retrying in TCP mode." in out
    assert flags(out) == {"qr", "aa"}
    assert len(answers(out, "big.gw.test.", "TXT")) == 8
    assert "(TCP)" in out


@needs_dig
@pytest.mark.parametrize("bufsize", ["+bufsize=512", "+noedns"])
def test_dig_ignore_shows_tc(test_server: DnsfailProcess, bufsize: str) -> None:
    out = run(test_server, DIG, "big.gw.test", "TXT", "+norec", bufsize, "+ignore")
    assert flags(out) == {"qr", "aa", "tc"}
    assert "ANSWER: 0," in out
    assert "QUERY: 1," in out
    assert "retrying in TCP mode" not in out


@needs_dig
def test_dig_chaos_id_server(test_server: DnsfailProcess) -> None:
    out = run(test_server, DIG, "id.server", "CH", "TXT", "+norec")
    assert status(out) == "NOERROR"
    assert answers(out, "id.server.", "TXT") == ['"ns-test-1"']


@needs_dig
def test_dig_any_is_rfc8482(test_server: DnsfailProcess) -> None:
    out = run(test_server, DIG, "api.gw.test", "ANY", "+norec", "+notcp")  # dig asks ANY on TCP
    assert status(out) == "NOERROR"
    assert answers(out, "api.gw.test.", "HINFO") == ['"RFC8482" ""']


@needs_dig
def test_dig_dnssec_ok_echoed(test_server: DnsfailProcess) -> None:
    out = run(test_server, DIG, "api.gw.test", "A", "+norec", "+dnssec")
    assert "; EDNS: version: 0, flags: do; udp: 1232" in out
    assert len(answers(out, "api.gw.test.", "A")) == 2


# --- kdig ------------------------------------------------------------------------


@needs_kdig
@pytest.mark.parametrize(
    "options",
    [
        pytest.param(["+nsid"], id="nsid"),
        pytest.param(["+cookie"], id="cookie"),
        pytest.param(["+subnet=192.0.2.0/24"], id="subnet"),
        pytest.param(["+nsid", "+cookie", "+subnet=2001:db8::/56", "+dnssec"], id="all"),
        pytest.param(["+padding=128"], id="padding"),
        pytest.param(["+nsid", "+tcp"], id="tcp"),
    ],
)
def test_kdig_options_do_not_break_answers(test_server: DnsfailProcess,
                                           options: list[str]) -> None:
    out = run(test_server, KDIG, "api.gw.test", "A", "+norec", *options)
    assert flags(out) == {"qr", "aa"}
    assert status(out) == "NOERROR"
    assert sorted(answers(out, "api.gw.test.", "A")) == ["192.0.2.10", "192.0.2.11"]
    assert "UDP size: 1232 B" in out
    if "+nsid" in options:
        assert 'NSID: 6E732D746573742D31 "ns-test-1"' in out
    for option in options:
        if option.startswith("+subnet="):
            assert f";; CLIENT-SUBNET: {option.removeprefix('+subnet=')}/0" in out


@needs_kdig
def test_kdig_chaos_id_server(test_server: DnsfailProcess) -> None:
    out = run(test_server, KDIG, "id.server", "CH", "TXT", "+norec")
    assert status(out) == "NOERROR"
    assert answers(out, "id.server.", "TXT") == ['"ns-test-1"']
