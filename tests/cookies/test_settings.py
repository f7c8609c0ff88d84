"""cookies.settings: NSD's secret file format, read and refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnsfail.cookies.settings import (
    MAX_FILE_OCTETS,
    SecretError,
    Secrets,
    load_secrets,
    read_secrets,
)

A = "e5e973e5a6b2a43f48e7dc849e37bfcf"
B = "DD3BDF9344B678B185A6F5CB60FCA715"


@pytest.mark.parametrize(("text", "keys"), [
    (f"{A}\n", (A,)),
    (f"{A}", (A,)),
    (f"# active first\n{A}\n\n{B}\n", (A, B.lower())),
    (f"  {A}  \r\n{B}\r\n", (A, B.lower())),
])
def test_secret_files_read(text: str, keys: tuple[str, ...]) -> None:
    assert read_secrets(text).keys == tuple(bytes.fromhex(k) for k in keys)


@pytest.mark.parametrize(("text", "why"), [
    ("", "no secret"),
    ("# nothing\n\n", "no secret"),
    (A[:-1] + "\n", ":1: not a 128-bit secret"),
    (A + "0\n", ":1: not a 128-bit secret"),
    (f"{A}\nnot hex at all, but 32 chars!!\n", ":2: not a 128-bit secret"),
    (f"0x{A[2:]}\n", ":1: not a 128-bit secret"),
    ((A + "\n") * 5, "at most 4"),
])
def test_bad_secret_files_are_refused(text: str, why: str) -> None:
    with pytest.raises(SecretError, match=why):
        read_secrets(text, "f")


def test_the_file_adapter(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(f"{A}\n{B}\n")
    assert load_secrets(str(path)).active == bytes.fromhex(A)
    with pytest.raises(SecretError, match="cannot read"):
        load_secrets(str(tmp_path / "missing"))
    path.write_bytes(b"\xff" * 40)
    with pytest.raises(SecretError, match="not text"):
        load_secrets(str(path))
    path.write_text(A + "\n" + " " * MAX_FILE_OCTETS)
    with pytest.raises(SecretError, match="over"):
        load_secrets(str(path))


def test_without_a_file_each_start_draws_a_secret() -> None:
    one, two = load_secrets(None), load_secrets(None)
    assert len(one.active) == 16
    assert one.active != two.active


def test_secrets_never_show_in_logs() -> None:
    secrets = Secrets((bytes.fromhex(A),))
    assert A not in repr(secrets)
    assert A not in str(secrets)
