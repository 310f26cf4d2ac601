"""The hostile tests, gathered in one place: the threat model of README.md exercised.

Every test below this folder plays an attacker: someone with a copy of (or write access to) the
data directory who deletes, rewrites, truncates or rolls back what is stored there; or a
signed-in user who probes what the server tells them (enumeration, deny reasons), sends input
built to break a parser (nested JSON), or forges fields the server owns (attachments). Each
test must fail on the code the attack defeats. They all carry the ``attack`` marker, so
``pytest -m attack`` runs the whole threat model and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.attack)
