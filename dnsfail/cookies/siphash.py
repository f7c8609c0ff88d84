"""SipHash-2-4, the keyed hash of RFC 9018 server cookies: the one importer of ``siphashc``.

Why a library: SipHash is 64-bit arithmetic on four state words, which
costs tens of microseconds a message in pure Python; ``siphashc`` is the
reference C implementation behind one call (about 0.1 us for a cookie's
32 octets), shipped as one abi3 wheel for every CPython from 3.10.
"""

from __future__ import annotations

from siphashc import siphash

#: SipHash takes a 128-bit key (Aumasson and Bernstein, "SipHash", section 2).
KEY_LEN = 16


def siphash24(key: bytes, message: bytes) -> bytes:
    """The 8-octet SipHash-2-4 of ``message`` under ``key``, in the byte order of the
    reference implementation's output (the 64-bit value little-endian), which RFC 9018
    section 4.4 puts in the cookie as it comes."""
    if len(key) != KEY_LEN:
        raise ValueError(f"a SipHash key is {KEY_LEN} octets, not {len(key)}")
    value: int = siphash(key, message)
    return value.to_bytes(8, "little")
