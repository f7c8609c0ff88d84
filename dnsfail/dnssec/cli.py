"""``dnsfail dnssec keygen|ds``: make a zone's key, print what the parent needs.

    dnsfail dnssec keygen gw.example.com --keys /etc/dnsfail/keys [--algorithm ed25519]
    dnsfail dnssec ds gw.example.com --keys /etc/dnsfail/keys

``ds`` prints the DS record (SHA-256, RFC 4509) for the parent zone, then the
DNSKEY record (for parents and registries that take the key instead).
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dnssec = sub.add_parser("dnssec", help="DNSSEC keys: make one, print DS for the parent")
    actions = dnssec.add_subparsers(dest="dnssec_command", required=True)
    keygen = actions.add_parser("keygen", help="write a new signing key (CSK) for ZONE")
    keygen.add_argument("zone")
    keygen.add_argument("--keys", required=True, metavar="DIR", help="the key directory")
    keygen.add_argument("--algorithm", default="ecdsap256sha256",
                        choices=["ecdsap256sha256", "ed25519", "13", "15"],
                        help="13 ECDSAP256SHA256 (default) or 15 ED25519")
    ds = actions.add_parser("ds", help="print ZONE's DS and DNSKEY records for the parent")
    ds.add_argument("zone")
    ds.add_argument("--keys", required=True, metavar="DIR", help="the key directory")


def main(args: argparse.Namespace) -> int:
    from dnsfail.dnssec import keys  # cryptography: imported by this command alone

    try:
        if args.dnssec_command == "keygen":
            key = keys.generate(args.zone, args.keys, keys.ALGORITHM_NAMES[args.algorithm])
            print(key.path)
            return 0
        zone = args.zone.lower().rstrip(".") + "."
        found = keys.load_keys(args.keys).get(zone)
    except keys.KeyFileError as exc:
        print(f"dnsfail dnssec: {exc}", file=sys.stderr)
        return 1
    if not found:
        print(f"dnsfail dnssec: no key for {zone} in {args.keys}", file=sys.stderr)
        return 1
    for key in found:
        print(keys.ds_text(key))
    for key in found:
        print(keys.dnskey_text(key))
    return 0
