"""Which files are zone files, and reading one safely: one rule for load, reload and ``--watch``.

``load_zones`` (``check``, startup, reload) and the ``--watch`` poller both
call ``discover``, so the files a reload reads are the files a watch sees.

The rule, for each path given on the command line:

* a directory is read non-recursively; its zone files are the entries named
  ``*.yaml`` or ``*.yml`` not starting with ``.`` (editor lock and swap files
  such as Emacs's ``.#zone.yaml``, often dangling symlinks, are not zones);
* every such entry must be a readable regular file (a symlink to one is
  fine).  An entry that exists but cannot be read as one (a dangling
  symlink, a symlink loop, a FIFO, a device, a directory, permission
  denied, an I/O error) is a *problem*: a reload is rejected whole and the
  zones being served stay.  Only an entry that is gone from the directory
  (unlinked: no directory entry at all) means the zone was removed on
  purpose; its zone is no longer served;
* a path that does not exist or cannot be listed is a problem;
* a file larger than ``MAX_ZONE_FILE_BYTES`` is a problem, found with
  ``fstat`` before anything is read;
* text must be UTF-8; the first invalid byte is reported at its line and column.

Nothing here blocks: files are opened with ``O_NONBLOCK`` and anything but a
regular file is refused after ``fstat``, before a read (a FIFO with no
writer would otherwise hang the loader forever).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from dnsfail.errors import Problem

__all__ = ["MAX_ZONE_FILE_BYTES", "ZoneFile", "ZoneText", "discover", "open_zone_file",
           "read_zone_file"]

#: Largest zone file read, in octets.  A 100,000-record zone in octoDNS's layout is about
#: 5 MiB; 64 MiB leaves room for far bigger zones while bounding the loader's memory
#: before anything is parsed (loading takes about 30 times the file's size in octoDNS's
#: layout, 90 times in other YAML, so up to some 2-6 GiB at the cap).
MAX_ZONE_FILE_BYTES = 64 * 1024 * 1024

_SUFFIXES = (".yaml", ".yml")


def _is_zone_name(entry: str) -> bool:
    return entry.endswith(_SUFFIXES) and not entry.startswith(".")


def discover(paths: Sequence[str]) -> tuple[list[str], list[Problem]]:
    """The zone files the paths name (de-duplicated by real path), and the problems found.

    A file named on the command line is taken whatever its name (``load_zones``
    then checks that the name is a zone name).  Nothing is opened here.
    """
    problems: list[Problem] = []
    files: list[str] = []
    seen: set[str] = set()
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            problems.append(Problem(path, 1, "(zone)", _os_reason(path, exc)))
            continue
        if stat.S_ISDIR(mode):
            try:
                entries = sorted(e for e in os.listdir(path) if _is_zone_name(e))
            except OSError as exc:
                problems.append(Problem(path, 1, "(zone)", f"cannot list: {_strerror(exc)}"))
                continue
            found = [os.path.join(path, entry) for entry in entries]
        else:
            found = [path]
        for file in found:
            real = os.path.realpath(file)
            if real not in seen:
                seen.add(real)
                files.append(file)
    return files, problems


class ZoneText(NamedTuple):
    text: str
    #: Modification time, whole seconds: the default SOA serial.
    mtime: int


def read_zone_file(path: str) -> ZoneText | Problem | None:
    """The file's text, or the problem that stops it being read, or None if it is gone.

    None only when the directory entry itself no longer exists (removed
    between listing and reading, or on purpose): see the module docstring.
    """
    opened = open_zone_file(path)
    if not isinstance(opened, ZoneFile):
        return opened
    with opened:
        return opened.text()


#: Octets read at a time by ``ZoneFile.pieces``: with the piece being read, the bound on
#: what a streamed load holds of the file (a whole entry longer than this is read whole).
PIECE_BYTES = 1 << 20
#: Where a piece may end: a line that starts a top-level key (``strict._NEXT_ENTRY_RE``);
#: not a space, newline, comment, ``-`` or CR, so that no entry, gap or CRLF is cut.
_NOT_ENTRY_START = frozenset(b" \n#-\r")


def open_zone_file(path: str) -> ZoneFile | Problem | None:
    """The open file (for ``ZoneFile.text`` or ``.pieces``), or the problem that stops
    it being read, or None if it is gone (as ``read_zone_file``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        if exc.errno == errno.ENOENT and not os.path.lexists(path):
            return None
        return Problem(path, 1, "(zone)", _os_reason(path, exc))
    problem = None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            problem = Problem(path, 1, "(zone)", f"not a regular file ({_kind(info.st_mode)})")
        elif info.st_size > MAX_ZONE_FILE_BYTES:
            problem = Problem(path, 1, "(zone)", _too_big(info.st_size))
    except OSError as exc:
        problem = Problem(path, 1, "(zone)", f"cannot read: {_strerror(exc)}")
    if problem is not None:
        os.close(fd)
        return problem
    return ZoneFile(path, fd, int(info.st_mtime))


class ZoneFile:
    """A zone file opened and checked by ``open_zone_file``; closed by ``with`` or ``close``.

    Read either whole (``text``) or in bounded pieces (``pieces``); both read from
    the start with ``pread``, so the streamed load and the general one that may follow
    it read the same file (the same inode) even if it is replaced in between.
    """

    def __init__(self, path: str, fd: int, mtime: int) -> None:
        self.path = path
        self.fd = fd
        #: Modification time, whole seconds: the default SOA serial.
        self.mtime = mtime

    def __enter__(self) -> ZoneFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def text(self) -> ZoneText | Problem:
        """The whole text, or the problem that stops it being read (too big, not UTF-8...)."""
        path = self.path
        try:
            data = _read_capped(self.fd)
        except OSError as exc:
            return Problem(path, 1, "(zone)", f"cannot read: {_strerror(exc)}")
        if data is None:
            return Problem(path, 1, "(zone)", _too_big(None))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _invalid_utf8(path, data, exc)
        return ZoneText(text, self.mtime)

    def count(self, needle: bytes) -> int:
        """Occurrences of ``needle`` in the file, read ``PIECE_BYTES`` at a time; -1 if it
        cannot be read or passes the size cap (``text`` then says why)."""
        found = offset = 0
        tail = b""
        try:
            while block := os.pread(self.fd, PIECE_BYTES, offset):
                offset += len(block)
                if offset > MAX_ZONE_FILE_BYTES:
                    return -1
                # With the last octets before the block: what straddles it is counted once
                # (``tail`` is too short to hold a whole ``needle`` counted before).
                window = tail + block
                found += window.count(needle)
                tail = window[1 - len(needle):]
        except OSError:
            return -1
        return found

    def pieces(self) -> Iterator[str | None]:
        """The text in pieces of about ``PIECE_BYTES``, each ending where a top-level entry
        does (a newline before a line that starts with a key), the last one where the file
        does; None (and no more) where the file leaves printable ASCII and newlines, grows
        past the cap or cannot be read: the caller then reads it whole with ``text``.

        Only the strict reader's subset is ever streamed (it is ASCII), so a piece is
        decoded on its own; whatever it declines is reported by the general path."""
        offset, held, searched = 0, bytearray(), 0
        try:
            while True:
                block = os.pread(self.fd, PIECE_BYTES, offset)
                offset += len(block)
                if offset > MAX_ZONE_FILE_BYTES:
                    yield None
                    return
                held += block
                cut = _last_entry_start(held, searched) if block else len(held)
                searched = max(len(held) - 1, 0)
                if cut > 0:
                    piece = held[:cut]
                    del held[:cut]
                    searched = max(searched - cut, 0)
                    if not piece.isascii():
                        yield None
                        return
                    yield piece.decode("ascii")
                if not block:
                    return
        except OSError:
            yield None


def _last_entry_start(data: bytearray, start: int) -> int:
    """Offset of the last line of ``data`` after ``start`` that starts a top-level key
    (a newline at ``start - 1`` or later before it), or 0 if there is none."""
    at = len(data) - 1
    while (at := data.rfind(b"\n", max(start - 1, 0), at)) >= 0:
        if data[at + 1] not in _NOT_ENTRY_START:
            return at + 1
    return 0


def _read_capped(fd: int) -> bytes | None:
    """Every octet of ``fd``; None if it grows past the cap while being read."""
    chunks: list[bytes] = []
    total = 0
    while chunk := os.pread(fd, 1 << 20, total):
        total += len(chunk)
        if total > MAX_ZONE_FILE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _too_big(size: int | None) -> str:
    limit = f"the limit of {MAX_ZONE_FILE_BYTES // (1024 * 1024)} MiB"
    return f"file is {size} octets, more than {limit}" if size else f"file grew past {limit}"


def _invalid_utf8(path: str, data: bytes, exc: UnicodeDecodeError) -> Problem:
    """The first invalid octet at its line and column (in characters, counted from 1)."""
    start = exc.start
    line_start = data.rfind(b"\n", 0, start) + 1
    line = data.count(b"\n", 0, start) + 1
    column = len(data[line_start:start].decode("utf-8")) + 1
    return Problem(path, line, "(zone)",
                   f"invalid UTF-8 (byte 0x{data[start]:02x} at column {column})")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def _os_reason(path: str, exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        try:
            return f"dangling symlink to {os.readlink(path)!r}"
        except OSError:  # not a symlink (or gone since)
            return "no such file or directory"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    return f"cannot read: {_strerror(exc)}"


def _strerror(exc: OSError) -> str:
    return exc.strerror or str(exc)
