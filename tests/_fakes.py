"""Small resolvers for tests where the chain is not what is under test."""

from __future__ import annotations

from asyncauth import Credential, Resource


class Fixed:
    """A resolver that always answers the same credential."""

    name = "fixed"

    def __init__(self, credential: Credential) -> None:
        self.credential = credential

    async def resolve(self, resource: Resource) -> Credential | None:
        return self.credential
