"""The control API and what an operator reads from it.

``api`` (aiohttp routes), ``auth`` and ``token`` (who may use it), ``guard`` (connection cap
and head deadline), ``status`` (the pure view model), ``metrics`` (the only prometheus-client
user) and ``port``: the ``ControlPort`` protocol that ``serve`` implements.  Nothing here
imports ``dnsfail.serve``; the server hands itself in as a ControlPort.
"""
