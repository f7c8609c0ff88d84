"""Key files: made with mode 0600 in BIND's format, read back, DS as dnspython makes it,
and every bad file a one-line KeyFileError."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import dns.dnssec
import dns.rdata
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import example, given
from hypothesis import strategies as st

from dnsfail.dnssec import crypto, keys
from tests.conftest import ROOT


@pytest.mark.parametrize("algorithm", [crypto.ECDSAP256SHA256, crypto.ED25519])
def test_keygen_writes_a_private_file_only_its_owner_reads(tmp_path: Path,
                                                           algorithm: int) -> None:
    key = keys.generate("Gw.Example.com", str(tmp_path / "keys"), algorithm)
    private = Path(key.path)
    assert private.name == f"Kgw.example.com.+{algorithm:03d}+{key.tag:05d}.private"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    text = private.read_text()
    assert text.startswith("Private-key-format: v1.3\n")
    assert f"Algorithm: {algorithm} (" in text
    public = private.with_suffix(".key").read_text()
    assert keys.dnskey_text(key) in public
    (loaded,) = keys.load_keys(str(tmp_path / "keys"))["gw.example.com."]
    assert (loaded.tag, loaded.rdata) == (key.tag, key.rdata)


def test_tag_and_ds_agree_with_dnspython(tmp_path: Path) -> None:
    key = keys.generate("gw.example.com", str(tmp_path))
    rdata = dns.rdata.from_text("IN", "DNSKEY", keys.dnskey_text(key).split(" DNSKEY ")[1])
    assert dns.dnssec.key_id(rdata) == key.tag  # type: ignore[arg-type]
    ds = dns.dnssec.make_ds("gw.example.com.", rdata, "SHA256")  # type: ignore[arg-type]
    assert keys.ds_text(key).split(" DS ")[1].lower() == ds.to_text().lower()


def test_signatures_verify(tmp_path: Path) -> None:
    for algorithm in (crypto.ECDSAP256SHA256, crypto.ED25519):
        key = keys.generate("z.test", str(tmp_path / str(algorithm)), algorithm)
        signature = key.private.sign(b"data")
        assert crypto.verify(algorithm, key.rdata[4:], signature, b"data")
        assert not crypto.verify(algorithm, key.rdata[4:], signature, b"datA")


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def _good(directory: Path) -> keys.Key:
    return keys.generate("z.test", str(directory))


BAD = [
    ("Kz.test.+013+00001.private", "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\n"
     "PrivateKey: !!!\n", "bad PrivateKey"),
    ("Kz.test.+013+00001.private", "Private-key-format: v1.3\n", "no Algorithm line"),
    ("Kz.test.+008+00001.private", "Algorithm: 8 (RSASHA256)\nPrivateKey: AAAA\n",
     "not supported"),
    ("Kz.test.+013+00001.private", "Algorithm: 15 (ED25519)\nPrivateKey: AAAA\n",
     "the name says 13"),
    ("Kz.test.+013+00001.private", "Algorithm: 13\nPrivateKey: "
     + base64.b64encode(b"\x01" * 31).decode() + "\n", "31 octets"),
    ("Kz.test.+013+00001.private", "Algorithm: 13\nPrivateKey: "
     + base64.b64encode(b"\xff" * 32).decode() + "\n", "not a P-256"),
    ("Kz.test.+013+00001.private", "Algorithm: 13\nPrivateKey: "
     + base64.b64encode(b"\x01" * 32).decode() + "\n", "the name says 1"),
    ("zone.private", "Algorithm: 13\n", "not named K<zone>"),
    ("Kz.test.+013+00001.private", "x" * (keys.KEY_FILE_LIMIT + 1), "not a key file"),
]


@pytest.mark.parametrize(("name", "text", "why"), BAD)
def test_bad_key_files_are_named_in_one_line(tmp_path: Path, name: str, text: str,
                                             why: str) -> None:
    _write(tmp_path, name, text)
    with pytest.raises(keys.KeyFileError, match=why) as info:
        keys.load_keys(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_an_unreadable_or_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(keys.KeyFileError, match="cannot read the key directory"):
        keys.load_keys(str(tmp_path / "missing"))
    with pytest.raises(keys.KeyFileError, match="no K<zone>"):
        keys.load_keys(str(tmp_path))
    key = _good(tmp_path)
    if os.geteuid() != 0:  # root reads anything
        os.chmod(key.path, 0)
        with pytest.raises(keys.KeyFileError, match="cannot read"):
            keys.load_keys(str(tmp_path))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dnsfail", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_the_cli_makes_a_key_and_prints_ds_and_dnskey(tmp_path: Path) -> None:
    made = _cli("dnssec", "keygen", "gw.example.com", "--keys", str(tmp_path),
                "--algorithm", "ed25519")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().endswith(".private")
    printed = _cli("dnssec", "ds", "gw.example.com.", "--keys", str(tmp_path))
    assert printed.returncode == 0
    ds_line, key_line = printed.stdout.splitlines()
    assert ds_line.startswith("gw.example.com. IN DS ")
    assert " 15 2 " in ds_line
    assert key_line.startswith("gw.example.com. IN DNSKEY 257 3 15 ")
    missing = _cli("dnssec", "ds", "other.test", "--keys", str(tmp_path))
    assert missing.returncode == 1
    assert "no key for other.test." in missing.stderr
    _write(tmp_path, "Kbad.test.+013+00001.private", "junk\n")
    broken = _cli("serve", str(ROOT / "tests" / "data" / "zones"), "--listen", "127.0.0.1:0",
                  "--control", "off", "--state-file", "", "--dnssec-keys", str(tmp_path))
    assert broken.returncode == 1
    assert "Kbad.test.+013+00001.private: no Algorithm line" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_a_key_name_on_a_fifo_or_device_is_refused_not_waited_on(tmp_path: Path) -> None:
    """A FIFO named like a key would block the start forever in open(): it is refused."""
    import threading

    os.mkfifo(tmp_path / "Kz.test.+013+00001.private")
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            keys.load_keys(str(tmp_path))
            outcome.append(None)
        except BaseException as exc:  # reported to the test thread
            outcome.append(exc)

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # unblock the stuck open() so the thread ends
        os.close(os.open(tmp_path / "Kz.test.+013+00001.private", os.O_WRONLY | os.O_NONBLOCK))
        reader.join(5)
        pytest.fail("load_keys waited on a FIFO")
    assert isinstance(outcome[0], keys.KeyFileError)
    assert "not a regular file" in str(outcome[0])
    (tmp_path / "Kz.test.+013+00001.private").unlink()
    (tmp_path / "Kz.test.+013+00002.private").symlink_to("/dev/zero")
    with pytest.raises(keys.KeyFileError, match="not a regular file"):
        keys.load_keys(str(tmp_path))


def test_more_keys_for_one_zone_than_a_rollover_needs_are_refused(tmp_path: Path) -> None:
    """Every key signs every RRset: 300 keys made one query cost ~900 signatures and ~350 ms
    of the event loop.  A rollover needs two keys (an algorithm rollover per algorithm)."""
    limit = getattr(keys, "KEYS_PER_ZONE_LIMIT", 8)
    made = 0
    while made < limit + 1:
        with contextlib.suppress(keys.KeyFileError):  # a tag collision: make another
            keys.generate("z.test", str(tmp_path))
            made += 1
    with pytest.raises(keys.KeyFileError, match=f"over {limit} keys"):
        keys.load_keys(str(tmp_path))
    for path in sorted(tmp_path.glob("*.private"))[:1]:
        path.unlink()
    assert len(keys.load_keys(str(tmp_path))["z.test."]) == limit


#: The P-256 group order: r and s of a signature lie in [1, N).
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@given(st.integers(1, _P256_N - 1), st.integers(1, _P256_N - 1))
@example(1, 1)
@example(2**255, 2**248 - 1)
@example(_P256_N - 1, 2**7)
def test_the_der_slicer_reads_any_signature_as_the_decoder_does(r: int, s: int) -> None:
    """``raw_signature`` slices DER instead of decoding it: for every r and s (short
    integers, a leading zero before a high bit) it gives r | s as 32 octets each."""
    der = encode_dss_signature(r, s)
    assert crypto.raw_signature(der) == r.to_bytes(32, "big") + s.to_bytes(32, "big")


def test_a_reread_keeps_the_signer_of_a_zone_whose_keys_did_not_change(tmp_path: Path) -> None:
    """A reload re-reads the directory: a zone with the same keys keeps its signer (and the
    signatures it has cached), a zone with a new key gets a new one, a broken file changes
    nothing (KeyFileError)."""
    from dnsfail.dnssec.setup import load_signed, reread

    keys.generate("a.test", str(tmp_path))
    keys.generate("b.test", str(tmp_path))
    path = load_signed(str(tmp_path))
    before = dict(path.zones)
    keys.generate("b.test", str(tmp_path), crypto.ED25519)
    after = reread(str(tmp_path), path.zones)
    assert after["a.test."] is before["a.test."]
    assert after["b.test."] is not before["b.test."]
    assert len(after["b.test."].signer.keys) == 2
    (tmp_path / "Ka.test.+013+00001.private").write_text("PrivateKey: AAAA\n")
    (tmp_path / "Ka.test.+013+00001.private").chmod(0o600)
    with pytest.raises(keys.KeyFileError, match=re.escape("Ka.test.+013+00001.private")):
        reread(str(tmp_path), after)
