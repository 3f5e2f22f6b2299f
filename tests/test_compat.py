"""Old module paths still import, warn, and hand out the same objects."""

from __future__ import annotations

import importlib

import pytest

import asyncauth
from asyncauth._compat import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_import_and_point_to_the_new_home(old: str) -> None:
    module = importlib.import_module(old)
    new = importlib.import_module(MOVED[old])
    public = [name for name in asyncauth.__all__ if hasattr(new, name)]
    for name in public:
        with pytest.warns(DeprecationWarning, match=f"asyncauth.{name}"):
            assert getattr(module, name) is getattr(asyncauth, name)


def test_documented_old_imports_keep_working() -> None:
    with pytest.warns(DeprecationWarning, match="deprecated"):
        from asyncauth.sources.dockerconfig import DockerConfigResolver
    assert DockerConfigResolver is asyncauth.DockerConfigResolver
    with pytest.warns(DeprecationWarning, match="deprecated"):
        from asyncauth.registry.auth import RegistryAuth
    assert RegistryAuth is asyncauth.RegistryAuth


def test_a_name_that_never_existed_is_an_attribute_error() -> None:
    module = importlib.import_module("asyncauth.chain")
    with pytest.warns(DeprecationWarning, match="deprecated"), pytest.raises(AttributeError):
        module.NoSuchThing  # noqa: B018
