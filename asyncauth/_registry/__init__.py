"""The registry token handshake: a sans-IO flow, the state it runs on, and a driver per client.

``challenge``, ``scope``, ``tokens``, ``target`` and ``bodies`` are pure (no sockets, no event
loop, no HTTP library): they parse what a registry says and decide what to send. ``flow`` is the
handshake itself, a generator of effects described in ``messages``; ``handshake`` keeps what was
learnt and carries out the effects that send nothing; ``auth`` (httpx, httpx2) and
``aiohttp_driver`` send the rest, each in its own library's types. CONTRIBUTING.md has the map.
"""
