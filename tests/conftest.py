"""Shared fixtures: a real ``dnsfail serve`` process on loopback, and a DNS client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest
from hypothesis import settings as hypothesis_settings

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"

# Hypothesis' default 200 ms deadline measures the machine, not the code: on a loaded CI
# runner one example of a correct test can take longer.  Properties, not timings, are tested.
hypothesis_settings.register_profile("dnsfail", deadline=None)
hypothesis_settings.load_profile("dnsfail")


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port: int = u.getsockname()[1]
            with socket.socket(family, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


class KeptOutput:
    """A child process whose output (stdout and stderr together) is read by a thread into
    ``lines``, for assertions on its log."""

    proc: subprocess.Popen[bytes]
    lines: list[str]

    def keep_output(self) -> None:
        """Start reading ``proc``'s output onto ``lines`` (kept across a restart)."""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


class DnsfailProcess(KeptOutput):
    """``python -m dnsfail serve`` as a child process; its log is kept for assertions."""

    def __init__(self, args: list[str], host: str = "127.0.0.1", port: int | None = None,
                 extra_listen: list[str] | None = None,
                 env: dict[str, str | None] | None = None,
                 preexec_fn: Callable[[], None] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        listen = [f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"]
        cmd = [sys.executable, "-m", "dnsfail", "serve", *args]
        if not any(a in ("--control", "--no-control") for a in args):
            # A busy control address fails the start (issue 17); tests that want the API
            # give it an address of their own, so parallel runs never meet on 8053.
            cmd.append("--no-control")
        for item in listen + (extra_listen or []):
            cmd += ["--listen", item]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            # No test keeps drains in the machine's default state file (/var/lib/dnsfail as
            # root): a test that wants one passes --state-file or DNSFAIL_STATE_FILE.
            # None in ``env`` unsets a variable.
            env={k: v for k, v in {**os.environ, "PYTHONUNBUFFERED": "1",
                                   "DNSFAIL_STATE_FILE": "", **(env or {})}.items()
                 if v is not None},
            preexec_fn=preexec_fn,
        )
        self.lines = []
        self.keep_output()

    def wait_for_log(self, text: str, timeout: float = 15.0, start: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[start:]:
                if text in line:
                    return line
            if self.proc.poll() is not None and text not in self.log:
                break
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not logged; log so far:\n{self.log}")

    def wait_ready(self) -> DnsfailProcess:
        self.wait_for_log("listening on")
        return self

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode

    def query(self, qname: str, qtype: str = "A", *, tcp: bool = False, timeout: float = 2.0,
              **kwargs: object) -> dns.message.Message:
        message = dns.message.make_query(qname, qtype, **kwargs)  # type: ignore[arg-type]
        if tcp:
            return dns.query.tcp(message, self.host, port=self.port, timeout=timeout)
        return dns.query.udp(message, self.host, port=self.port, timeout=timeout,
                             ignore_trailing=False)


def largest_query() -> bytes:
    """A 65,535-octet query: one question and an OPT whose padding (RFC 7830) fills the rest.

    Built by hand: dnspython will not render a message this size.
    """
    head = bytearray(dns.message.make_query("api.gw.test.", "A", use_edns=False).to_wire())
    head[10:12] = (1).to_bytes(2, "big")  # ARCOUNT: the OPT
    pad = 65535 - len(head) - 11 - 4  # the OPT's fixed part, the option's code and length
    opt = (b"\0" + (41).to_bytes(2, "big") + (1232).to_bytes(2, "big") + bytes(4)
           + (4 + pad).to_bytes(2, "big") + (12).to_bytes(2, "big") + pad.to_bytes(2, "big"))
    wire = bytes(head) + opt + bytes(pad)
    assert len(wire) == 65535
    return wire


@pytest.fixture(scope="module")
def test_server() -> Iterator[DnsfailProcess]:
    """dnsfail serving tests/data/zones on a free loopback port, for the whole module."""
    server = DnsfailProcess([str(DATA / "zones"), "--identity", "ns-test-1"]).wait_ready()
    yield server
    server.stop()
