"""Several instances, one view: health votes with a quorum, drains on every instance, an epoch.

Pure core: ``quorum`` (votes, freshness, the rule, degraded), ``drainset``
(replicated drains, last writer wins), ``messages`` (the peer message, bounded),
``epoch`` (the agreement hash).  Adapters: ``node`` (this instance's votes and
its peers' state), ``exchange`` (the HTTP pull/push over the control API),
``daemon`` (the wiring into ``serve.app``).
"""
