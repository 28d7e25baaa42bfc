"""The gRPC settings of a config: ``server.grpc_port`` and ``protocol: grpc`` versions,
refused with the key and the value when wrong."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from rollwise.config import parse_config
from rollwise.errors import ConfigError
from rollwise.server.app import create_app

BASE = Path("/srv/models")


def config(server: dict[str, Any] | None = None, **version: Any) -> dict[str, Any]:
    versions: dict[str, Any] = {"v1": {"backend": "fake", "label": 1}}
    if version:
        versions["v2"] = {"backend": "http", **version}
    return {
        "store": "sqlite:///state/rollwise.db",
        "server": server or {},
        "models": {"iris": {"stable": "v1", "versions": versions}},
    }


def test_the_grpc_port_is_off_unless_set() -> None:
    assert parse_config(config(), base_dir=BASE, environ={}).server.grpc_port is None
    parsed = parse_config(config({"port": 8080, "grpc_port": 8081}), base_dir=BASE, environ={})
    assert parsed.server.grpc_port == 8081


@pytest.mark.parametrize(
    ("server", "says"),
    [
        pytest.param(
            {"port": 8080, "grpc_port": 8080},
            "grpc_port = 8080 is also the HTTP port (port): give gRPC a port of its own",
            id="the HTTP port",
        ),
        pytest.param({"grpc_port": "8081"}, "server.grpc_port = '8081'", id="text"),
        pytest.param({"grpc_port": True}, "server.grpc_port = True", id="a boolean"),
        pytest.param({"grpc_port": 0}, "greater than or equal to 1", id="zero"),
        pytest.param({"grpc_port": 70000}, "less than or equal to 65535", id="too large"),
    ],
)
def test_a_bad_grpc_port_is_refused(server: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(config(server), base_dir=BASE, environ={})
    assert says in str(refused.value)


@pytest.mark.parametrize(
    "url",
    ["grpc://127.0.0.1:8001", "http://triton:8001", "grpc://[::1]:8001"],
)
def test_a_grpc_version_parses(url: str) -> None:
    parsed = parse_config(
        config(url=url, protocol="grpc", model="iris", timeout_s=2, headers={"X-Api-Key": "k"}),
        base_dir=BASE,
        environ={},
    )
    assert parsed.models["iris"].versions["v2"].options["protocol"] == "grpc"


@pytest.mark.parametrize(
    ("version", "says"),
    [
        pytest.param(
            {"url": "grpc://h:1", "protocol": "thrift"},
            "models.iris.versions.v2.protocol: must be one of rest, grpc",
            id="unknown protocol",
        ),
        pytest.param(
            {"url": "grpc://h", "protocol": "grpc"},
            "models.iris.versions.v2.url: give the port of the gRPC endpoint",
            id="no port",
        ),
        pytest.param(
            {"url": "grpcs://h:1", "protocol": "grpc"},
            "models.iris.versions.v2.url: must be a URL like grpc://host:8001; TLS is not "
            "supported yet",
            id="tls",
        ),
        pytest.param(
            {"url": "grpc://h:1/v2", "protocol": "grpc"},
            "a gRPC address is a host and a port, with no path",
            id="a path",
        ),
        pytest.param(
            {"url": "grpc://h:1", "protocol": "grpc", "max_connections": 8},
            "models.iris.versions.v2.max_connections: only for protocol: rest",
            id="pool options",
        ),
        pytest.param(
            {"url": "grpc://h:1", "protocol": "grpc", "headers": {"grpc-timeout": "1S"}},
            "models.iris.versions.v2.headers.grpc-timeout: gRPC sets this header itself",
            id="a reserved header",
        ),
        pytest.param(
            {"url": "grpc://h:1", "protocol": "grpc", "headers": {"X Key": "k"}},
            "models.iris.versions.v2.headers.X Key: a gRPC metadata name is letters",
            id="a bad header name",
        ),
    ],
)
def test_a_bad_grpc_version_is_refused(version: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(config(**version), base_dir=BASE, environ={})
    assert says in str(refused.value)


def test_without_grpcio_a_grpc_setting_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes the import fail as on a machine without grpcio.
    monkeypatch.setitem(sys.modules, "grpc.aio", None)
    with pytest.raises(ConfigError) as refused:
        parse_config(config(url="grpc://h:1", protocol="grpc"), base_dir=BASE, environ={})
    assert (
        "models.iris.versions.v2.protocol: grpc needs grpcio and protobuf>=6.31.1: "
        "pip install 'rollwise[grpc]'"
    ) in str(refused.value)
    gateway = parse_config(config({"grpc_port": 8081}), base_dir=BASE, environ={})
    with pytest.raises(ConfigError, match=r"server.grpc_port needs grpcio .*rollwise\[grpc\]"):
        create_app(gateway, insecure_dev=True)
