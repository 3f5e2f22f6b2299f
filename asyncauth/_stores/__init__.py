"""Token stores shared beyond one process, and the fleet-wide single flight over them.

``protocol`` is the :class:`~asyncauth.TokenStore` protocol (its contract) and ``memory`` the
in-process :class:`~asyncauth.MemoryTokenStore`; ``shared`` is what every user of a store goes
through (bounded calls, one warning per outage, leases); ``redis`` is the Redis backend
(coredis, imported lazily, so the core never needs it); ``environ`` turns
``ASYNCAUTH_TOKEN_STORE`` into a store.
"""
