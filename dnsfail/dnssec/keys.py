"""Key files: BIND's ``K<zone>+<alg>+<tag>.private`` / ``.key`` pair, read and written.

The format (BIND 9 ``dnssec-keygen``, private key format v1.3) is what Knot's
``keymgr import-bind`` and BIND's own tools read, so a key made here can be
carried to another signer and back::

    Kgw.example.com.+013+12345.private   mode 0600: Algorithm, PrivateKey (base64)
    Kgw.example.com.+013+12345.key       the DNSKEY record, for people and tools

dnsfail reads the ``.private`` file alone (the public key is derived from it);
every key file of a zone in the directory is published in its DNSKEY RRset and
signs (so a second key is a double-signature rollover, RFC 6781 section 4.1.4).
Every key is a combined signing key (CSK): flags 257, ZONE and SEP.  BIND's
timing fields (Publish, Activate, ...) are written for BIND's sake and ignored.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from dnsfail.dnssec import crypto
from dnsfail.dnssec.records import DNSKEY_FLAGS_CSK, dnskey, ds, key_tag
from dnsfail.errors import DnsfailError

#: Largest key file read: a real one is ~200 octets; anything bigger is not a key.
KEY_FILE_LIMIT = 16384
#: Key files read from one directory, at most: a directory of millions of files must not
#: stall the start.
KEY_FILES_LIMIT = 1024
#: Keys one zone may have: every key signs every RRset, so this bounds the signatures one
#: query costs.  A rollover needs two (an algorithm rollover, two per algorithm).
KEYS_PER_ZONE_LIMIT = 8
_FILE = re.compile(r"^K(.+)\+(\d{3})\+(\d{5})\.private$")
ALGORITHM_NAMES = {"ecdsap256sha256": crypto.ECDSAP256SHA256, "ed25519": crypto.ED25519,
                   "13": crypto.ECDSAP256SHA256, "15": crypto.ED25519}


class KeyFileError(DnsfailError):
    """A key directory or file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Key:
    """One zone's signing key: its DNSKEY RDATA, tag, and the loaded private key."""

    zone: str
    algorithm: int
    tag: int
    rdata: bytes
    private: crypto.PrivateKey
    path: str = ""

    def ds_rdata(self) -> bytes:
        return ds(self.zone, self.rdata, self.algorithm)


def _absolute(zone: str) -> str:
    zone = zone.strip().lower()
    return zone if zone.endswith(".") else zone + "."


def file_stem(zone: str, algorithm: int, tag: int) -> str:
    return f"K{_absolute(zone)}+{algorithm:03d}+{tag:05d}"


def make_key(zone: str, algorithm: int, private: bytes, path: str = "") -> Key:
    loaded = crypto.PrivateKey(algorithm, private)
    rdata = dnskey(DNSKEY_FLAGS_CSK, algorithm, loaded.public)
    return Key(_absolute(zone), algorithm, key_tag(rdata), rdata, loaded, path)


def generate(zone: str, directory: str, algorithm: int = crypto.ECDSAP256SHA256) -> Key:
    """A new key for ``zone`` written to ``directory`` (created 0700 if missing): the
    ``.private`` file created with mode 0600 before any secret is written to it."""
    folder = Path(directory)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = crypto.generate(algorithm)
        key = make_key(zone, algorithm, secret)
        stem = folder / file_stem(key.zone, algorithm, key.tag)
        key = make_key(zone, algorithm, secret, f"{stem}.private")
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        fd = os.open(f"{stem}.private", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(private_text(algorithm, secret, stamp))
        Path(f"{stem}.key").write_text(
            f"; This is a combined signing key (CSK), keyid {key.tag}, for {key.zone}\n"
            f"; Created: {stamp}\n{dnskey_text(key)}\n")
    except OSError as exc:
        raise KeyFileError(f"{directory}: cannot write the key: {exc.strerror or exc}") from None
    return key


def private_text(algorithm: int, secret: bytes, stamp: str) -> str:
    """A BIND v1.3 private key file."""
    name = crypto.ALGORITHMS[algorithm]
    encoded = base64.b64encode(secret).decode()
    return (f"Private-key-format: v1.3\nAlgorithm: {algorithm} ({name})\n"
            f"PrivateKey: {encoded}\nCreated: {stamp}\nPublish: {stamp}\nActivate: {stamp}\n")


def dnskey_text(key: Key, rtype: str = "DNSKEY", ttl: int | None = None) -> str:
    """The DNSKEY (or CDNSKEY) record in presentation form (RFC 4034 section 2.2)."""
    public = base64.b64encode(key.rdata[4:]).decode()
    spaced = f"{ttl} " if ttl is not None else ""
    return f"{key.zone} {spaced}IN {rtype} {DNSKEY_FLAGS_CSK} 3 {key.algorithm} {public}"


def ds_text(key: Key, rtype: str = "DS") -> str:
    """The DS (or CDS) record, SHA-256, in presentation form (RFC 4034 section 5.3)."""
    digest = key.ds_rdata()[4:].hex().upper()
    return f"{key.zone} IN {rtype} {key.tag} {key.algorithm} 2 {digest}"


def read_key(path: Path) -> Key:
    """The key in one ``.private`` file, or KeyFileError saying what is wrong with it."""
    match = _FILE.match(path.name)
    if match is None:
        raise KeyFileError(f"{path}: not named K<zone>+<algorithm>+<tag>.private")
    zone, algorithm, tag = _absolute(match[1]), int(match[2]), int(match[3])
    try:  # O_NONBLOCK: a FIFO named like a key must not block the start in open()
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as stream:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise KeyFileError(f"{path}: not a regular file")
            raw = stream.read(KEY_FILE_LIMIT + 1)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > KEY_FILE_LIMIT:
        raise KeyFileError(f"{path}: over {KEY_FILE_LIMIT} octets, not a key file")
    fields: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        head, sep, value = line.partition(":")
        if sep:
            fields[head.strip().lower()] = value.strip()
    try:
        declared = int(fields.get("algorithm", "").split()[0])
    except (ValueError, IndexError):
        raise KeyFileError(f"{path}: no Algorithm line") from None
    if declared != algorithm:
        raise KeyFileError(f"{path}: Algorithm {declared} but the name says {algorithm}")
    if algorithm not in crypto.ALGORITHMS:
        raise KeyFileError(f"{path}: algorithm {algorithm} is not supported (13 or 15)")
    try:
        secret = base64.b64decode(fields.get("privatekey", ""), validate=True)
        key = make_key(zone, algorithm, secret, str(path))
    except (binascii.Error, ValueError) as exc:
        raise KeyFileError(f"{path}: bad PrivateKey: {exc}") from None
    if key.tag != tag:
        raise KeyFileError(f"{path}: the key's tag is {key.tag}, the name says {tag}")
    return key


def load_keys(directory: str) -> dict[str, tuple[Key, ...]]:
    """Every zone's keys in ``directory``, by zone name; KeyFileError for any bad file,
    an unreadable directory or one without keys."""
    try:
        paths = sorted(p for p in Path(directory).iterdir() if p.name.endswith(".private"))
    except OSError as exc:
        raise KeyFileError(f"{directory}: cannot read the key directory: "
                           f"{exc.strerror or exc}") from None
    if len(paths) > KEY_FILES_LIMIT:
        raise KeyFileError(f"{directory}: over {KEY_FILES_LIMIT} key files")
    out: dict[str, list[Key]] = {}
    for path in paths:
        key = read_key(path)
        zone_keys = out.setdefault(key.zone, [])
        if len(zone_keys) >= KEYS_PER_ZONE_LIMIT:
            raise KeyFileError(f"{directory}: over {KEYS_PER_ZONE_LIMIT} keys for {key.zone} "
                               "(every key signs every answer; a rollover needs two)")
        zone_keys.append(key)
    if not out:
        raise KeyFileError(f"{directory}: no K<zone>+<algorithm>+<tag>.private file")
    return {zone: tuple(keys) for zone, keys in out.items()}
