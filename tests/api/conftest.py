"""Fixtures for the control-plane tests: an in-process app and a real uvicorn server."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from api.app import create_app
from orchestrator.settings import Settings
from tests.api.helpers import LOOPBACK_PEER, Server, TestClient, auth, make_token, with_api
from tests.conftest import assert_nothing_left


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Starlette's TestClient warns that it wants httpx2; the test client itself is fine.
    for item in items:
        if "tests/api/" in item.nodeid:
            item.add_marker(pytest.mark.filterwarnings("ignore::starlette.exceptions.StarletteDeprecationWarning"))


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return with_api(settings)


@pytest.fixture
def app_client(api_settings: Settings) -> Iterator[TestClient]:
    """The real app in-process, with a token for tenant ``alpha`` already in its headers."""
    token = make_token(api_settings, "alpha")
    with TestClient(create_app(api_settings), client=LOOPBACK_PEER, headers=auth(token)) as client:
        yield client
    assert_nothing_left(api_settings)


@pytest.fixture
def server(api_settings: Settings) -> Iterator[Server]:
    srv = Server(api_settings)
    yield srv
    srv.kill(signal.SIGTERM)
