"""The one compiled part: ``dnsfail.serve._datagrams`` (recvmmsg/sendmmsg and the exact-bytes
cache for the UDP listener, Linux only).  It is optional: without a C compiler or Python's
headers the build of it fails quietly, ``pip install`` still succeeds, and the listener
uses its pure-Python drain (README, *Compiled datagram path*).  Everything else is in
pyproject.toml."""

import sys

from setuptools import Extension, setup

extensions = []
if sys.platform.startswith("linux") and sys.implementation.name == "cpython":
    extensions.append(Extension("dnsfail.serve._datagrams", ["dnsfail/serve/_datagrams.c"],
                                optional=True, extra_compile_args=["-O2"]))
setup(ext_modules=extensions)
