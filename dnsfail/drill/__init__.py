"""Failure drills on one machine: ``site`` (a stand-in gateway) and ``drill``
(``python -m dnsfail.drill``, the Docker compose drill as local processes)."""
