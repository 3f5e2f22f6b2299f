"""The registry token handshake: sans-IO challenge, scope and token layers, and the httpx auth.

``challenge``, ``scope`` and ``tokens`` are pure and synchronous (no sockets, no event loop, no
httpx): they parse what a registry says and decide what to send, so they are tested and fuzzed
in isolation. The async pieces (token cache with single-flight, ``RegistryAuth``) build on them.
"""
