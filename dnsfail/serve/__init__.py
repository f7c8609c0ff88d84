"""The running server: lifecycle, listeners, probes, workers, drains and reloads.

The adapters around the pure core: ``app`` (lifecycle only), ``wiring`` (the one build of the
answer path), ``server`` (UDP and TCP), ``probe``, ``workers``, ``drains``, ``reload`` and
``fds`` (the descriptor budget).  asyncio, sockets and aiohttp live here and in ``control``.
"""
