"""How cookies are set up: the secrets, the size cap, and the secret file's format.

The secret file is NSD's ``cookie-secret-file`` format (nsd.conf(5),
nsd-control(8) ``add_cookie_secret``): one 128-bit secret per line as 32
hexadecimal digits.  The first line is the *active* secret, which makes new
cookies; the lines after it are *staging* or retired secrets, whose cookies
are still accepted.  A rollover across an NS set is therefore three edits
of every server's file, each followed by a restart (cookies are stateless:
a restart loses nothing):

1. add the new secret as the second line everywhere (accepted, not used);
2. swap the lines everywhere (the new one makes cookies, the old is accepted);
3. an hour later (``cookie.LIFETIME``), drop the old line.

Without a file each start draws a random secret: clients simply get a fresh
cookie after a restart, and no other server accepts ours.

``read_secrets`` parses text; ``load_secrets`` is the adapter that reads the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from dnsfail.errors import DnsfailError

#: Secrets a file may hold: the active one and up to three accepted beside it (NSD
#: keeps one staging secret; more let a file carry a retired one too).  Each costs one
#: SipHash per invalid cookie, so the list stays short.
MAX_SECRETS = 4
#: Largest secret file read: four lines of 32 digits, with room for comments.
MAX_FILE_OCTETS = 4096
#: The size cap's bounds, gdnsd's for ``max_nocookie_response``: 0 (off) or 128-1024.
CAP_MIN, CAP_MAX = 128, 1024

_HEX_SECRET = re.compile(r"[0-9a-fA-F]{32}")


class SecretError(DnsfailError):
    """The cookie secret file cannot be read, or does not hold secrets in NSD's format."""


@dataclass(frozen=True)
class Secrets:
    """The 16-octet secrets, the active one first (see the module docstring)."""

    keys: tuple[bytes, ...]

    @property
    def active(self) -> bytes:
        return self.keys[0]

    @classmethod
    def random(cls) -> Secrets:
        return cls((os.urandom(16),))

    def __repr__(self) -> str:  # never a secret in a log line or a traceback
        return f"Secrets({len(self.keys)} keys)"


@dataclass(frozen=True)
class CookieSettings:
    """Cookies on or off, and the UDP size cap for clients without a valid cookie."""

    enabled: bool = True
    #: Largest UDP reply to a client that did not prove its address; 0: no cap.
    size_cap: int = 0


def read_secrets(text: str, source: str = "cookie secret file") -> Secrets:
    """The secrets in ``text`` (NSD's format), or SecretError saying what is wrong.

    Blank lines and lines starting with ``#`` are skipped.
    """
    keys: list[bytes] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not _HEX_SECRET.fullmatch(line):
            raise SecretError(f"{source}:{number}: not a 128-bit secret as 32 hexadecimal "
                              "digits")
        keys.append(bytes.fromhex(line))
    if not keys:
        raise SecretError(f"{source}: no secret (one line of 32 hexadecimal digits)")
    if len(keys) > MAX_SECRETS:
        raise SecretError(f"{source}: {len(keys)} secrets; at most {MAX_SECRETS} (the "
                          "active one first)")
    return Secrets(tuple(keys))


def load_secrets(path: str | None) -> Secrets:
    """The secrets of the file at ``path``, or a random one when None (SecretError if the
    file cannot be read or is wrong)."""
    if path is None:
        return Secrets.random()
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_FILE_OCTETS + 1)
    except OSError as exc:
        raise SecretError(f"{path}: cannot read the cookie secret file: "
                          f"{exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_OCTETS:
        raise SecretError(f"{path}: over {MAX_FILE_OCTETS} octets; not a secret file")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise SecretError(f"{path}: not text (32 hexadecimal digits a line)") from None
    return read_secrets(text, path)
