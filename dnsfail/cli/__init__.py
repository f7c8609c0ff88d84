"""The command line: ``main`` (the ``dnsfail`` command), ``ctl`` (the control API's client)
and ``explain`` (one client's answer, worked out locally).

``ctl`` is a client and must reach no server module and not aiohttp (tests/test_layers.py);
``main`` imports each server part only inside the subcommand that runs it, so ``dnsfail check``
loads neither the server nor the control API.
"""
