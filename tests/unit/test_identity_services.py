"""The identity use cases are separate services sharing one core by composition."""

from __future__ import annotations

import dataclasses
import inspect
import typing

from secretum.identity import service_base
from secretum.identity.service import Identity


def test_each_service_stands_alone_on_the_shared_core() -> None:
    """No service inherits another (or a base of helpers): each receives the core (and the
    WebAuthn ceremonies) as constructor arguments, and names no other service."""
    hints = typing.get_type_hints(Identity)
    classes = {hints[f.name] for f in dataclasses.fields(Identity) if f.name != "core"}
    assert len(classes) == 6
    for cls in classes:
        assert cls.__mro__ == (cls, object), cls
        params = list(inspect.signature(cls).parameters)
        assert params[0] == "core" and set(params) <= {"core", "ceremonies"}, cls
        source = inspect.getsource(inspect.getmodule(cls))  # type: ignore[arg-type]
        others = {c.__name__ for c in classes} - {cls.__name__}
        assert not any(f"{name}(" in source or f": {name}" in source for name in others), cls
    assert service_base.IdentityCore.__mro__ == (service_base.IdentityCore, object)
