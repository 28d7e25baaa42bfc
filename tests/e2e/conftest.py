"""What the end-to-end modules share: the CLI's environment and an operator's client for
the module's own ``gateway`` fixture, and for the dashboard's tests a browser and the
folder their screenshots go to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rollwise.client import Client
from support.browser import artifacts_folder, launched_chromium
from support.gateway import OPERATOR, GatewayProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture
def env(gateway: GatewayProcess) -> dict[str, str]:
    """``rollwise`` as an operator against this module's gateway."""
    return {"ROLLWISE_URL": gateway.url, "ROLLWISE_TOKEN": OPERATOR}


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[Client]:
    with Client(gateway.url, OPERATOR) as ops:
        yield ops


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless (skipped without it, except under ``CI=true``)."""
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where the test's screenshots go."""
    return artifacts_folder(tmp_path)
