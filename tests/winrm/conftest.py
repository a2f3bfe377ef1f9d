"""Fixtures for the WinRM tests: a test CA (trustme) and a local WS-Management endpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from reaper.agents.transports.winrm import WinRMTransport
from reaper.models import HostConnection, WinRMSettings
from tests.winrm.wsman_server import WsmanServer

USER = "labadmin"
PASSWORD = "S3cret-pa55!"
PASSWORD_ENV = "REAPER_TEST_WINRM_PASSWORD"


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pki") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture
def make_server(server_cert: trustme.LeafCert) -> Iterator[Callable[..., WsmanServer]]:
    started: list[WsmanServer] = []

    def make(*, tls: bool = True, cert: trustme.LeafCert | None = None, **kw: Any) -> WsmanServer:
        import ssl

        ctx = None
        if tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            (cert or server_cert).configure_cert(ctx)
        srv = WsmanServer(users={USER: PASSWORD}, tls=ctx, **kw).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def connection(srv: WsmanServer | None, *, port: int | None = None, **winrm: Any) -> HostConnection:
    settings = {"scheme": "https" if srv is None or srv.tls else "http", "auth": "basic", **winrm}
    return HostConnection(
        transport="winrm",
        address="127.0.0.1",
        port=port if port is not None else (srv.port if srv else None),
        user=USER,
        password_env=PASSWORD_ENV,
        connect_timeout_s=5,
        winrm=WinRMSettings(**settings),
    )


@pytest.fixture
async def transport() -> Any:
    t = WinRMTransport(environ={PASSWORD_ENV: PASSWORD}, operation_timeout_s=5, max_workers=4)
    yield t
    await t.close()
