"""The control API's bearer token: read once, by the server and by its command-line client.

``dnsfail serve`` and ``dnsfail status/drain/undrain/reload`` read the token
the same way (``--control-token-file`` or else ``DNSFAIL_CONTROL_TOKEN``), so
the two cannot disagree about what a token file holds.

Standard library only: the client (``cli.ctl``) imports this module, and
must not pull in aiohttp or any server module.
"""

from __future__ import annotations

from dnsfail.errors import DnsfailError


class ControlError(DnsfailError):
    """The control API cannot be started as configured (e.g. exposed without a token)."""


def read_token(path: str | None, env: str | None) -> str | None:
    """The token from ``path`` (first line, stripped) or else ``env``; None if neither."""
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.readline().strip()
        except OSError as exc:
            raise ControlError(f"control token file {path}: {exc.strerror or exc}") from None
        if not token:
            raise ControlError(f"control token file {path} is empty")
        return token
    if env is not None and env.strip():
        return env.strip()
    return None
