"""``serve --workers N`` for real: worker processes share the sockets and the main health view.

The server runs as a child process with the control API (ctl_server.py and
the ``start`` fixture); its sites are plain listening sockets.  Queries come from many fresh
sockets at once (a new source port each), so the kernel hands them to
whichever process reads first; the tests then prove that every process
answered from the same health, drains and zones, that worker counts reach
``/metrics``, and that no worker outlives or is lost by the main process.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.rdatatype
import pytest

from .ctl_server import EU, QNAME, SITES, Ctl, scrape, wait_for, zone_text

WORKERS = 3


def burst(ctl: Ctl, count: int, qname: str = QNAME, sockets: int = 64) -> list[list[str]]:
    """Send ``count`` queries from ``sockets`` fresh UDP sockets at once; every A answer.

    All go out before any reply is read, so that a queue forms for the processes to
    share (whether each takes some is the kernel's choice: ``every_worker_answers``).
    A query with no reply within 5 s fails the test.
    """
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(sockets)]
    try:
        pending: dict[tuple[int, int], int] = {}
        wire = dns.message.make_query(qname, "A", use_edns=0).to_wire()
        queries = [(i % 65536).to_bytes(2, "big") + wire[2:] for i in range(count)]
        for i, query in enumerate(queries):  # made first: sent as fast as Python sends
            socks[i % sockets].sendto(query, (ctl.server.host, ctl.server.port))
            pending[(i % sockets, i % 65536)] = i
        answers: list[list[str]] = []
        deadline = time.monotonic() + 5.0
        while pending and time.monotonic() < deadline:
            ready, _, _ = select.select(socks, [], [], 0.2)
            for sock in ready:
                reply = dns.message.from_wire(sock.recv(4096))
                pending.pop((socks.index(sock), reply.id), None)
                answers.append(sorted(rd.address for rrset in reply.answer for rd in rrset
                                      if rrset.rdtype == dns.rdatatype.A))
        assert not pending, f"{len(pending)} of {count} queries unanswered"
        return answers
    finally:
        for sock in socks:
            sock.close()


def workers_in_step(ctl: Ctl) -> list[dict[str, object]]:
    """Wait until every worker runs and has applied the main process's generation."""
    state: dict[str, object] = {}

    def check() -> bool:
        nonlocal state
        _, state = ctl.get("/v1/status")
        workers = state["workers"]
        assert isinstance(workers, list)
        return len(workers) == WORKERS - 1 and all(
            w["alive"] and w["ready"] and w["generation"] == state["generation"]
            for w in workers)

    wait_for(check, 30, "workers in step with the main process")
    workers = state["workers"]
    assert isinstance(workers, list)
    return workers


def queries_counted(ctl: Ctl) -> float:
    return sum(v for (name, _), v in scrape(ctl).items() if name == "dnsfail_queries_total")


def test_every_process_answers_and_is_counted(start: Callable[..., Ctl]) -> None:
    ctl = start("--workers", str(WORKERS))
    workers = workers_in_step(ctl)
    assert {w["index"] for w in workers} == {1, 2}
    assert ctl.server.wait_for_log(f"{WORKERS} processes")
    before = queries_counted(ctl)
    answers = burst(ctl, 3000)
    assert all(a == EU for a in answers)
    # The kernel spreads one socket's queue over the processes: each worker takes some.
    every_worker_answers(ctl, dict.fromkeys(_indices(workers), 0))
    assert queries_counted(ctl) - before >= 3000
    # How each reply was found, summed over the processes: the same question in new IDs
    # is an exact hit in every process but its first two sights there.
    paths = {dict(labels)["path"]: value for (name, labels), value in scrape(ctl).items()
             if name == "dnsfail_answers_by_path_total"}
    assert sum(paths.values()) == queries_counted(ctl)
    assert paths["exact"] >= 3000 - 2 * WORKERS, paths
    assert paths["full"] >= WORKERS, paths  # the workers' own counts are in
    assert paths["keyed"] >= WORKERS, paths


def test_health_drains_and_reloads_reach_every_worker(
    start: Callable[..., Ctl], tmp_path: Path, site_port: int
) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "ctl.test.yaml").write_text(zone_text(site_port))
    ctl = start("--workers", str(WORKERS), zones=zones)
    workers_in_step(ctl)
    assert all(a == EU for a in burst(ctl, 600))

    status, _ = ctl.post("/v1/drain", {"target": SITES[0], "for": 600, "reason": "test"})
    assert status == 200
    workers_in_step(ctl)
    assert all(a == [SITES[1]] for a in burst(ctl, 600))

    (zones / "ctl.test.yaml").write_text(
        zone_text(site_port).replace("value: 192.0.2.1", "value: 192.0.2.77"))
    status, body = ctl.post("/v1/reload")
    assert status == 200, body
    workers_in_step(ctl)
    assert all(a == ["192.0.2.77"] for a in burst(ctl, 600, "ns1.ctl.test."))
    assert all(a == [SITES[1]] for a in burst(ctl, 600)), "the drain survives the reload"

    status, _ = ctl.post("/v1/undrain", {"target": SITES[0]})
    assert status == 200
    workers_in_step(ctl)
    assert all(a == EU for a in burst(ctl, 600))


def test_a_dead_worker_is_restarted_and_its_counts_kept(start: Callable[..., Ctl]) -> None:
    ctl = start("--workers", str(WORKERS))
    workers = workers_in_step(ctl)
    burst(ctl, 2000)
    time.sleep(1.5)
    counted = queries_counted(ctl)
    victim = workers[0]
    os.kill(int(str(victim["pid"])), signal.SIGKILL)
    ctl.server.wait_for_log(f"worker {victim['index']} exited")

    def restarted() -> bool:
        _, state = ctl.get("/v1/status")
        w = next(w for w in state["workers"] if w["index"] == victim["index"])
        return bool(w["restarts"] == 1 and w["alive"] and w["ready"] and w["pid"] != victim["pid"])

    wait_for(restarted, 20, "the killed worker restarted")
    workers_in_step(ctl)
    assert all(a == EU for a in burst(ctl, 600))
    time.sleep(1.5)
    assert queries_counted(ctl) >= counted + 600, "counters never go backwards"
    # The new process got the listening sockets in its setup (SCM_RIGHTS) and answers on them.
    every_worker_answers(ctl, dict.fromkeys(_indices([victim]), 0))


def _indices(workers: list[dict[str, object]]) -> list[int]:
    return [int(str(w["index"])) for w in workers]


def _counts(workers: list[dict[str, object]]) -> dict[int, int]:
    """Queries each worker has answered, by index (``/v1/status``)."""
    return {int(str(w["index"])): int(str(w["queries"])) for w in workers}


def every_worker_answers(ctl: Ctl, before: dict[int, int], qname: str = QNAME,
                         answer: list[str] = EU, seconds: float = 20) -> None:
    """Wait until each worker in ``before`` (index -> its count then) has answered more.

    Which process reads a datagram of the shared socket is the kernel's choice, and the
    compiled drain keeps up with one Python sender alone, so one burst may never reach a
    given process: bursts go on (every answer checked) until each has answered some, as
    the workers report once a second, or the test fails after ``seconds``."""
    def answered() -> bool:
        _, state = ctl.get("/v1/status")
        counts = _counts(state["workers"])
        if all(counts[index] > count for index, count in before.items()):
            return True
        assert all(a == answer for a in burst(ctl, 600, qname))
        time.sleep(1.2)
        return False

    wait_for(answered, seconds, f"workers {sorted(before)} answering on the shared sockets")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_every_worker_is_a_session_of_its_own(start: Callable[..., Ctl]) -> None:
    """Signals to the daemon's session or process group reach the main process alone, and
    under Linux autogroup each answering process gets its own share of the CPUs
    (serve/workers.py, "Sessions")."""
    ctl = start("--workers", str(WORKERS))
    main_session = os.getsid(ctl.server.proc.pid)
    pids = [int(str(w["pid"])) for w in workers_in_step(ctl)]
    assert len(pids) == WORKERS - 1
    for pid in pids:
        assert os.getsid(pid) == pid, "a worker leads its own session"
        assert os.getpgid(pid) == pid, "and its own process group"
        assert os.getsid(pid) != main_session


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_no_worker_outlives_the_main_process(start: Callable[..., Ctl], signum: int) -> None:
    ctl = start("--workers", str(WORKERS))
    pids = [int(str(w["pid"])) for w in workers_in_step(ctl)]
    ctl.server.proc.send_signal(signum)
    ctl.server.proc.wait(10)
    wait_for(lambda: not any(_alive(pid) for pid in pids), 10, "workers gone")


def test_workers_answer_packed_records_of_a_reloaded_zone(
    start: Callable[..., Ctl], tmp_path: Path, site_port: int
) -> None:
    """A zone's plain A records travel to workers packed (zonefile.packed): a record new in a
    reloaded zone is answered by every process, and a big zone reaches them too."""
    zones = tmp_path / "zones"
    zones.mkdir()
    many = "".join(f"h{i:05d}:\n  type: A\n  value: 198.18.{i // 250}.{i % 250 + 1}\n"
                   for i in range(20_000))  # fmt: skip
    (zones / "ctl.test.yaml").write_text(zone_text(site_port) + many)
    ctl = start("--workers", str(WORKERS), zones=zones)
    workers_in_step(ctl)
    assert all(a == ["198.18.79.250"] for a in burst(ctl, 600, "h19999.ctl.test."))

    (zones / "ctl.test.yaml").write_text(
        zone_text(site_port) + many + "fresh:\n  type: A\n  value: 192.0.2.123\n")
    status, body = ctl.post("/v1/reload")
    assert status == 200, body
    before = _counts(workers_in_step(ctl))
    assert all(a == ["192.0.2.123"] for a in burst(ctl, 3000, "fresh.ctl.test."))
    every_worker_answers(ctl, before, "fresh.ctl.test.", ["192.0.2.123"])
