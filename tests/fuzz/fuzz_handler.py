"""Coverage-guided fuzzing of ``Handler.handle`` with atheris (libFuzzer for Python).

Run for as long as you like (libFuzzer flags apply; Ctrl-C to stop)::

    pip install atheris
    python3 tests/fuzz/fuzz_handler.py -max_total_time=600

Without a corpus directory on the command line it starts from the sound
queries of ``mutate.SEEDS`` (in a temporary directory).  Give one to keep
what it finds: ``python3 tests/fuzz/fuzz_handler.py corpus/ -max_total_time=3600``.
A failing input is written to ``crash-<sha1>``; replay it with
``python3 tests/fuzz/fuzz_handler.py crash-<sha1>``.

Each input's first octet chooses the transport (bit 0: TCP) and whether the
rest is the message itself (bit 1 clear) or a program of edits to one of the
seeds (bit 1 set; the second octet picks the seed), so both raw bytes and
structure-aware mutations (tests/fuzz/mutate.py) are explored.  The rules
checked are ``mutate.check_reply``, no ERROR or traceback in the log, and a
generous time bound per message.  tests/fuzz/test_atheris.py runs this for a
few seconds in CI.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import atheris  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

with atheris.instrument_imports(include=["dnsfail"]):
    from dnsfail.dns.handler import Handler
    from dnsfail.state import Store
    from dnsfail.zonefile import load_zones

from tests.fuzz.mutate import SEEDS, captured, check_reply, mutate  # noqa: E402

#: Per message, instrumented; a message takes well under a millisecond uninstrumented.
TIME_LIMIT = 0.5

store = Store(load_zones([str(ROOT / "tests" / "data" / "zones")]))
handler = Handler(lambda: store.snapshot, identity="fuzz")


def message_of(data: bytes) -> tuple[bytes, bool]:
    """The message an input stands for, and whether it goes over TCP."""
    if not data:
        return b"", False
    mode, rest = data[0], data[1:]
    if mode & 2 and rest:
        return mutate(SEEDS[rest[0] % len(SEEDS)], rest[1:]), bool(mode & 1)
    return rest, bool(mode & 1)


def test_one_input(data: bytes) -> None:
    message, tcp = message_of(data)
    with captured() as records:
        started = time.perf_counter()
        reply = handler.handle(message, tcp, "192.0.2.7")
        took = time.perf_counter() - started
    check_reply(message, reply, tcp)
    records.check()
    assert took < TIME_LIMIT, f"{len(message)} octets took {took * 1000:.1f} ms"


def main() -> None:
    args = sys.argv[:]
    if not any(Path(a).is_dir() or Path(a).is_file() for a in args[1:] if a[:1] != "-"):
        corpus = Path(tempfile.mkdtemp(prefix="dnsfail-fuzz-"))
        for i, seed in enumerate(SEEDS):
            (corpus / f"udp-{i}").write_bytes(b"\x00" + seed)
            (corpus / f"tcp-{i}").write_bytes(b"\x01" + seed)
            (corpus / f"edit-{i}").write_bytes(bytes((2, i)))
        args.append(str(corpus))
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
