"""Every test in this folder carries the ``badinput`` marker (``pytest -m badinput`` runs the suite)."""

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.badinput)
