"""The one module that uses ``cryptography``: key generation, public keys, signatures.

Algorithms (RFC 8624 section 3.1 "MUST"/"RECOMMENDED" for signing):

* 13, ECDSAP256SHA256 (RFC 6605): the private key is the 32-octet scalar,
  the DNSKEY public key the 64 octets Q.x | Q.y, a signature r | s (64 octets);
* 15, ED25519 (RFC 8080): the private key is the 32-octet seed, the public
  key 32 octets, a signature 64 octets.

The private key octets are what BIND's ``PrivateKey:`` field holds (base64), so
key files are interchangeable with BIND's and Knot's ``keymgr import-bind``.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

ECDSAP256SHA256 = 13
ED25519 = 15
ALGORITHMS = {ECDSAP256SHA256: "ECDSAP256SHA256", ED25519: "ED25519"}
PRIVATE_LEN = 32
_ECDSA = ec.ECDSA(hashes.SHA256())


class KeyMaterialError(ValueError):
    """Private key octets that are not a key of the algorithm."""


def generate(algorithm: int) -> bytes:
    """A new private key's octets."""
    if algorithm == ECDSAP256SHA256:
        return ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value.to_bytes(
            PRIVATE_LEN, "big")
    if algorithm == ED25519:
        from cryptography.hazmat.primitives import serialization

        return ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())
    raise KeyMaterialError(f"algorithm {algorithm} is not supported (13 or 15)")


class PrivateKey:
    """A loaded private key: ``sign`` gives the DNSSEC wire form of a signature."""

    def __init__(self, algorithm: int, private: bytes) -> None:
        if len(private) != PRIVATE_LEN:
            raise KeyMaterialError(f"private key is {len(private)} octets, not {PRIVATE_LEN}")
        self.algorithm = algorithm
        self._ec: ec.EllipticCurvePrivateKey | None = None
        self._ed: ed25519.Ed25519PrivateKey | None = None
        if algorithm == ECDSAP256SHA256:
            scalar = int.from_bytes(private, "big")
            try:
                self._ec = ec.derive_private_key(scalar, ec.SECP256R1())
            except ValueError as exc:
                raise KeyMaterialError(f"not a P-256 private key: {exc}") from None
            numbers = self._ec.public_key().public_numbers()
            self.public = numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
        elif algorithm == ED25519:
            from cryptography.hazmat.primitives import serialization

            self._ed = ed25519.Ed25519PrivateKey.from_private_bytes(private)
            self.public = self._ed.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        else:
            raise KeyMaterialError(f"algorithm {algorithm} is not supported (13 or 15)")

    def sign(self, data: bytes) -> bytes:
        """The signature of ``data`` (RFC 6605 section 4: r | s, 32 octets each)."""
        if self._ec is not None:
            return raw_signature(self._ec.sign(data, _ECDSA))
        assert self._ed is not None
        return self._ed.sign(data)


def raw_signature(der: bytes) -> bytes:
    """A P-256 signature's DER form (``SEQUENCE { INTEGER r, INTEGER s }``, RFC 3279
    2.2.3) as RFC 6605's r | s, each 32 octets, by slicing: OpenSSL's DER is minimal (a
    leading zero only before a high bit) and r, s < n < 2**256 need one length octet, so
    the octets are ``30 L 02 Lr r 02 Ls s``.  ``decode_dss_signature`` gives the same, as
    integers, for about 9 microseconds more a signature (a flood of new names pays one a
    name); anything not of that form goes through it."""
    r_len = der[3] if len(der) > 8 else 0
    s_len = der[5 + r_len] if len(der) > 5 + r_len else 0
    if (r_len == 0 or der[0] != 0x30 or der[1] != len(der) - 2 or der[2] != 0x02 or r_len > 33
            or s_len > 33 or der[4 + r_len] != 0x02 or 6 + r_len + s_len != len(der)):
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    r_octets = der[4 : 4 + r_len]
    s_octets = der[6 + r_len :]
    return r_octets[-32:].rjust(32, b"\x00") + s_octets[-32:].rjust(32, b"\x00")


def verify(algorithm: int, public: bytes, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` over ``data`` checks against ``public`` (for tests and
    ``dnsfail dnssec``'s self-check; validators are the real judges)."""
    try:
        if algorithm == ECDSAP256SHA256:
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + public)
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                       int.from_bytes(signature[32:], "big"))
            key.verify(der, data, _ECDSA)
        elif algorithm == ED25519:
            ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True
