"""Keys re-read on reload, by a real ``dnsfail serve --dnssec-keys`` (one process, and with
``--workers 2``): a key added to the directory is published and signs after SIGHUP, a broken
key file is a rejected reload that keeps the last good keys (a clear line, no traceback), a
key removed stops being published after ``POST /v1/reload``, and ``--watch`` picks up a new
key by itself."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import dns.rdatatype
import pytest

from dnsfail.dnssec import keys
from dnsfail.dnssec.records import key_tag

from ..conftest import DnsfailProcess, free_port

ZONE = "rekey.test"
TEXT = "'':\n  type: NS\n  value: ns1.rekey.test.\nns1:\n  type: A\n  value: 192.0.2.53\n" \
       "www:\n  type: A\n  value: 192.0.2.80\n"


def tags(server: DnsfailProcess) -> tuple[set[int], set[int]]:
    """(DNSKEY key tags, key tags of the RRSIGs over www's A) as the server answers now."""
    keyset = server.query(f"{ZONE}.", "DNSKEY", want_dnssec=True)
    published = {key_tag(rd.to_wire()) for r in keyset.answer
                 if r.rdtype == dns.rdatatype.DNSKEY for rd in r}
    data = server.query(f"www.{ZONE}.", "A", want_dnssec=True)
    signing = {rd.key_tag for r in data.answer if r.rdtype == dns.rdatatype.RRSIG for rd in r}
    return published, signing


def until(server: DnsfailProcess, want: set[int], timeout: float = 15) -> None:
    """Poll until every one of several answers (any worker's) shows exactly ``want``."""
    deadline = time.monotonic() + timeout
    seen: tuple[set[int], set[int]] = (set(), set())
    while time.monotonic() < deadline:
        if all((seen := tags(server)) == (want, want) for _ in range(8)):
            return
        time.sleep(0.05)
    raise AssertionError(f"keys {seen}, not {want}; log:\n{server.log}")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_keys_follow_the_directory_on_reload(tmp_path: Path, workers: str) -> None:
    zones, keydir = tmp_path / "zones", tmp_path / "keys"
    zones.mkdir()
    (zones / f"{ZONE}.yaml").write_text(TEXT)
    first = keys.generate(ZONE, str(keydir))
    control = free_port()
    server = DnsfailProcess([str(zones), "--dnssec-keys", str(keydir), "--workers", workers,
                             "--control", f"127.0.0.1:{control}", "--state-file", ""]
                            ).wait_ready()
    try:
        until(server, {first.tag})
        second = keys.generate(ZONE, str(keydir), 15)
        mark = len(server.lines)
        server.signal(signal.SIGHUP)
        server.wait_for_log("reload done", start=mark)
        until(server, {first.tag, second.tag})  # a rollover's double signature

        broken = keydir / f"K{ZONE}.+013+00001.private"
        broken.write_text("Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\n"
                          "PrivateKey: bm90IGEga2V5\n")
        broken.chmod(0o600)
        mark = len(server.lines)
        server.signal(signal.SIGHUP)
        line = server.wait_for_log("still signing with the previous keys", start=mark)
        assert broken.name in line
        until(server, {first.tag, second.tag})

        broken.unlink()
        for suffix in (".private", ".key"):
            Path(first.path).with_suffix(suffix).unlink()
        request = urllib.request.Request(f"http://127.0.0.1:{control}/v1/reload", data=b"{}",
                                         method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read()).get("ok", True)
        until(server, {second.tag})
    finally:
        server.stop()
    assert "Traceback" not in server.log


def test_watch_picks_up_a_new_key(tmp_path: Path) -> None:
    zones, keydir = tmp_path / "zones", tmp_path / "keys"
    zones.mkdir()
    (zones / f"{ZONE}.yaml").write_text(TEXT)
    first = keys.generate(ZONE, str(keydir))
    server = DnsfailProcess([str(zones), "--dnssec-keys", str(keydir), "--watch",
                             "--control", "off", "--state-file", ""]).wait_ready()
    try:
        until(server, {first.tag})
        second = keys.generate(ZONE, str(keydir))
        until(server, {first.tag, second.tag})
    finally:
        server.stop()
    assert "Traceback" not in server.log
