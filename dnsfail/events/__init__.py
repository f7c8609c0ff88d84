"""What happened, kept and told: the event history, its live streams and the webhooks.

``events.log`` is the history (a bounded ring with a cursor; pure, no I/O);
``events.webhook`` delivers events to ``--webhook`` URLs (its own task,
never on the answer path; ``events.payload`` writes the bodies).  The HTTP
side (``GET /v1/events``, the server-sent stream) is ``control.events``.
Nothing here imports ``serve`` or ``control``.
"""
