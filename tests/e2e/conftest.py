"""What the end-to-end modules share: the CLI's environment and an operator's client for
the module's own ``gateway`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rollwise.client import Client
from support.gateway import OPERATOR, GatewayProcess


@pytest.fixture
def env(gateway: GatewayProcess) -> dict[str, str]:
    """``rollwise`` as an operator against this module's gateway."""
    return {"ROLLWISE_URL": gateway.url, "ROLLWISE_TOKEN": OPERATOR}


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[Client]:
    with Client(gateway.url, OPERATOR) as ops:
        yield ops
