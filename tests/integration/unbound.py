"""Unbound, the resolver the DNSSEC and resolver-in-front tests put before dnsfail: where it
is installed, the part of its configuration every one of them shares, and starting it until
it answers (test_dnssec, test_dnssec_flood, test_dnssec_ds, test_resolver_in_front).

Every Unbound here listens and sends on 127.0.0.1 only, refuses every name outside the
test's zones (``local-zone: "." refuse``) and runs in the foreground under the test.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query

UNBOUND = shutil.which("unbound") or (
    "/usr/sbin/unbound" if Path("/usr/sbin/unbound").exists() else None)
#: Seconds a started Unbound has to answer its first question.
START_TIMEOUT = 10.0


def server_clause(tmp: Path, port: int, pidfile: str = "unbound.pid") -> str:
    """The opening of a ``server:`` clause: loopback only, in the foreground, files in
    ``tmp``; each test adds its modules, zones and anchors after it."""
    return textwrap.dedent(f"""\
        server:
          interface: 127.0.0.1@{port}
          port: {port}
          outgoing-interface: 127.0.0.1
          do-ip6: no
          do-daemonize: no
          username: ""
          chroot: ""
          directory: "{tmp}"
          pidfile: "{tmp}/{pidfile}"
          use-syslog: no
          logfile: ""
          do-not-query-localhost: no
          access-control: 127.0.0.0/8 allow
        """)


def launch(conf: Path, port: int, probe: str,
           capture_errors: bool = False) -> subprocess.Popen[bytes]:
    """Unbound on ``conf``, once it answers ``probe`` (an A question) on ``port``; the
    caller stops it.  If it does not answer within START_TIMEOUT it is killed and the test
    fails, with what it wrote to stderr when ``capture_errors``."""
    assert UNBOUND is not None
    process = subprocess.Popen(
        [UNBOUND, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if capture_errors else subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            dns.query.udp(dns.message.make_query(probe, "A"), "127.0.0.1", port=port,
                          timeout=0.5)
            return process
        except (dns.exception.Timeout, OSError):
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                _, err = process.communicate(timeout=5)
                raise AssertionError("unbound did not answer"
                                     + (f": {err.decode()}" if err else "")) from None
