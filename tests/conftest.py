"""Shared fixtures: a headless Swift + usim session, checked for leaks on the way out."""

from __future__ import annotations

import os
import typing

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def usim_session(tmp_path: typing.Any) -> typing.Iterator[typing.Any]:
    """A fresh UsimSession (stock usim) with an in-memory document."""
    from nion_autoem.swift import quiet_collections
    from nion_autoem.swift.session import UsimSession
    from nion_autoem.swift.session import leaked_components

    holds = quiet_collections.holders()
    session = UsimSession()
    try:
        yield session
    finally:
        session.close()
    assert leaked_components() == {}, f"components left registered: {leaked_components()}"
    # every run releases its hold on full garbage collections once its results are shown (see quiet_collections)
    assert quiet_collections.holders() == holds, f"{quiet_collections.holders() - holds} run(s) never released their hold on collections"
