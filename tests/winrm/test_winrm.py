"""The WinRM transport against a local WS-Management endpoint: pywinrm's real protocol code."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest
import trustme

from reaper.agents.base import Command
from reaper.agents.transports.powershell import ps_quote
from reaper.agents.transports.winrm import WinRMTransport
from reaper.errors import TransportError
from tests.winrm.conftest import PASSWORD, PASSWORD_ENV, USER, connection
from tests.winrm.wsman_server import Call, Reply, WsmanServer

ServerFactory = Callable[..., WsmanServer]
ECHO = "# test: echo"
ECHO_SCRIPT = f"{ECHO}\nparam($Value)\n$Value"


def echo(call: Call) -> Reply:
    return Reply(stdout=str(call.params.get("Value", "")) + "\r\n")


async def test_https_basic_runs_a_script_with_the_test_ca(
    make_server: ServerFactory, transport: WinRMTransport, ca_file: Any
) -> None:
    srv = make_server()
    srv.on(ECHO, echo)
    shell = await transport.session("win1", connection(srv, ca_file=str(ca_file)))
    result = await shell.run(Command(script=ECHO_SCRIPT, params={"Value": "héllo"}))
    assert (result.exit_code, result.stdout.strip()) == (0, "héllo")
    assert srv.actions() == ["Create", "Command", "Receive", "Signal"]
    assert {r.auth for r in srv.requests} == {"basic"}
    call = srv.calls()[0]
    assert call.command_line.startswith("powershell.exe -NoProfile -NonInteractive")
    assert ECHO_SCRIPT.splitlines()[1] in call.script


async def test_one_shell_is_reused_and_deleted_on_close(
    make_server: ServerFactory, ca_file: Any
) -> None:
    srv = make_server()
    srv.on(ECHO, echo)
    t = WinRMTransport(environ={PASSWORD_ENV: PASSWORD}, operation_timeout_s=5)
    conn = connection(srv, ca_file=str(ca_file))
    for i in range(4):
        shell = await t.session("win1", conn)
        result = await shell.run(Command(script=ECHO_SCRIPT, params={"Value": i}))
        assert result.stdout.strip() == str(i)
    await t.close()
    actions = srv.actions()
    assert actions.count("Create") == 1
    assert actions.count("Command") == 4
    assert actions[-1] == "Delete"
    assert len({r.shell_id for r in srv.requests if r.action == "Command"}) == 1


async def test_params_arrive_as_data_never_as_code(
    make_server: ServerFactory, transport: WinRMTransport, ca_file: Any
) -> None:
    evil = "'; Remove-Item C:\\ -Recurse; '"
    sub = "$(Remove-Item C:\\ -Recurse -Force)"
    quotes = '\u2019; Stop-Computer; \u2018 " `$x ${env:PATH} @(1)'
    seen: list[dict[str, Any]] = []

    def handler(call: Call) -> Reply:
        seen.append(call.params)
        return Reply(stdout="ok")

    srv = make_server()
    srv.on(ECHO, handler)
    shell = await transport.session("win1", connection(srv, ca_file=str(ca_file)))
    params = {"Name": evil, "Expr": sub, "Quotes": quotes, "List": [evil, sub]}
    await shell.run(Command(script=ECHO_SCRIPT, params=params))
    assert seen == [params]
    script = srv.calls()[0].script
    for value in (evil, sub, quotes, "Remove-Item", "Stop-Computer"):
        assert value not in script  # only inside the base64 blob
    # The script text itself is exactly the wrapper around our fixed script.
    assert "param($Value)" in script


def test_ps_quote_doubles_every_single_quote_kind() -> None:
    assert ps_quote("it's") == "'it''s'"
    assert ps_quote("a\u2019b\u2018c") == "'a\u2019\u2019b\u2018\u2018c'"
    assert ps_quote('$(x) `n "') == "'$(x) `n \"'"


async def test_plain_http_basic_is_refused_unless_allowed(
    make_server: ServerFactory, transport: WinRMTransport
) -> None:
    srv = make_server(tls=False)
    srv.on(ECHO, echo)
    with pytest.raises(TransportError) as err:
        await transport.session("win1", connection(srv))
    assert (err.value.error_code, err.value.retriable) == ("INSECURE_TRANSPORT", False)
    assert "allow_unencrypted" in str(err.value)
    assert srv.requests == []  # refused before any packet left

    shell = await transport.session("win1", connection(srv, allow_unencrypted=True))
    result = await shell.run(Command(script=ECHO_SCRIPT, params={"Value": "plain"}))
    assert result.stdout.strip() == "plain"


async def test_ntlm_over_http_without_encryption_is_refused(transport: WinRMTransport) -> None:
    with pytest.raises(TransportError) as err:
        await transport.session(
            "win1", connection(None, port=1, scheme="http", auth="ntlm", message_encryption="never")
        )
    assert err.value.error_code == "INSECURE_TRANSPORT"


@pytest.mark.parametrize("trust", ["other_ca", "system_bundle"])
async def test_untrusted_certificate_is_refused_and_nothing_runs(
    make_server: ServerFactory, transport: WinRMTransport, trust: str, tmp_path: Any
) -> None:
    srv = make_server()
    srv.on(ECHO, echo)
    ca_file = None
    if trust == "other_ca":
        ca_file = tmp_path / "other.pem"
        trustme.CA().cert_pem.write_to_path(str(ca_file))
    with pytest.raises(TransportError) as err:
        await transport.session("win1", connection(srv, ca_file=str(ca_file) if ca_file else None))
    assert (err.value.error_code, err.value.retriable) == ("CERT_INVALID", False)
    assert srv.requests == []  # not one HTTP request got through the handshake
    assert srv.tls_failed.wait(5)  # the client hung up during the handshake


async def test_server_cert_from_another_ca_is_refused(
    make_server: ServerFactory, transport: WinRMTransport, ca_file: Any
) -> None:
    rogue = trustme.CA().issue_cert("127.0.0.1")
    srv = make_server(cert=rogue)
    with pytest.raises(TransportError) as err:
        await transport.session("win1", connection(srv, ca_file=str(ca_file)))
    assert err.value.error_code == "CERT_INVALID"
    assert srv.tls_failed.wait(5)
    assert srv.requests == []


async def test_wrong_password_is_auth_failed_and_never_logged(
    make_server: ServerFactory, ca_file: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-but-secret"
    srv = make_server()
    t = WinRMTransport(environ={PASSWORD_ENV: wrong})
    try:
        with pytest.raises(TransportError) as err:
            await t.session("win1", connection(srv, ca_file=str(ca_file)))
    finally:
        await t.close()
    assert (err.value.error_code, err.value.retriable) == ("AUTH_FAILED", False)
    assert "Command" not in srv.actions()
    assert wrong not in str(err.value) and wrong not in caplog.text


async def test_missing_password_variable(make_server: ServerFactory, ca_file: Any) -> None:
    t = WinRMTransport(environ={})
    with pytest.raises(TransportError) as err:
        await t.session("win1", connection(make_server(), ca_file=str(ca_file)))
    await t.close()
    assert err.value.error_code == "CREDENTIALS_MISSING"
    assert PASSWORD_ENV in str(err.value)


async def test_server_down_is_retriable(transport: WinRMTransport, ca_file: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(TransportError) as err:
        await transport.session("win1", connection(None, port=port, ca_file=str(ca_file)))
    assert (err.value.error_code, err.value.retriable) == ("CONNECTION_REFUSED", True)


async def test_slow_and_chunked_output_is_collected(
    make_server: ServerFactory, transport: WinRMTransport, ca_file: Any
) -> None:
    body = "x" * 5000 + "END"
    srv = make_server()
    srv.on(ECHO, lambda call: Reply(stdout=body, stderr="warn", chunks=4, timeouts=2))
    shell = await transport.session("win1", connection(srv, ca_file=str(ca_file)))
    result = await shell.run(Command(script=ECHO_SCRIPT))
    assert (result.stdout, result.stderr) == (body, "warn")
    assert srv.actions().count("Receive") == 2 + 4


async def test_command_timeout_is_retriable_and_terminates(
    make_server: ServerFactory, transport: WinRMTransport, ca_file: Any
) -> None:
    srv = make_server()
    srv.on(ECHO, lambda call: Reply(stdout="never", timeouts=10**9))
    shell = await transport.session("win1", connection(srv, ca_file=str(ca_file)))
    with pytest.raises(TransportError) as err:
        await shell.run(Command(script=ECHO_SCRIPT, timeout_s=0.3))
    assert (err.value.error_code, err.value.retriable) == ("TIMEOUT", True)
    assert srv.actions()[-1] == "Signal"


async def test_nonzero_exit_is_returned_with_stderr(
    make_server: ServerFactory, transport: WinRMTransport, ca_file: Any
) -> None:
    srv = make_server()
    srv.on(ECHO, lambda call: Reply(stderr="Access is denied.", exit_code=5))
    shell = await transport.session("win1", connection(srv, ca_file=str(ca_file)))
    result = await shell.run(Command(script=ECHO_SCRIPT))
    assert (result.exit_code, result.stderr) == (5, "Access is denied.")


async def test_a_lost_shell_is_reopened(
    make_server: ServerFactory, transport: WinRMTransport, ca_file: Any
) -> None:
    srv = make_server()
    srv.on(ECHO, echo)
    conn = connection(srv, ca_file=str(ca_file))
    shell = await transport.session("win1", conn)
    await shell.run(Command(script=ECHO_SCRIPT, params={"Value": 1}))
    srv.forget_shells()  # the host restarted WinRM
    result = await (await transport.session("win1", conn)).run(
        Command(script=ECHO_SCRIPT, params={"Value": 2})
    )
    assert result.stdout.strip() == "2"
    assert srv.actions().count("Create") == 2


async def test_stdin_is_sent_once_and_read_by_the_wrapper_not_the_command_line(
    make_server: ServerFactory, transport: WinRMTransport, ca_file: Any
) -> None:
    srv = make_server()
    srv.on(ECHO, lambda call: Reply(stdout=call.stdin or str(call.params["Value"])))
    shell = await transport.session("win1", connection(srv, ca_file=str(ca_file)))
    secret = "pa55=word\u00e9"
    result = await shell.run(Command(script=ECHO_SCRIPT, params={"Value": 1}, stdin=secret))
    assert result.stdout == secret
    call = srv.calls()[-1]
    assert secret not in call.command_line and secret not in call.script
    assert "$reaperStdin = (@($input) -join" in call.script
    assert srv.actions().count("Send") == 1
    plain = await shell.run(Command(script=ECHO_SCRIPT, params={"Value": 2}))
    assert plain.stdout.strip() == "2" and "$reaperStdin" not in srv.calls()[-1].script
    assert srv.actions().count("Send") == 1


async def test_argv_commands_are_refused(
    make_server: ServerFactory, transport: WinRMTransport, ca_file: Any
) -> None:
    srv = make_server()
    shell = await transport.session("win1", connection(srv, ca_file=str(ca_file)))
    with pytest.raises(TransportError) as err:
        await shell.run(Command(argv=["whoami"]))
    assert err.value.error_code == "UNSUPPORTED_COMMAND"


@pytest.fixture
def ntlm_users(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # pyspnego's NTLM acceptor reads the accounts it accepts from this file.
    users = tmp_path / "ntlm_users"
    users.write_text(f":{USER}:{PASSWORD}\n")
    monkeypatch.setenv("NTLM_USER_FILE", str(users))


@pytest.mark.usefixtures("ntlm_users")
async def test_ntlm_over_http_encrypts_every_message(
    make_server: ServerFactory, transport: WinRMTransport
) -> None:
    srv = make_server(tls=False, ntlm=True, basic=False)
    srv.on(ECHO, echo)
    shell = await transport.session("win1", connection(srv, auth="ntlm"))
    for value in ("one", "two"):
        result = await shell.run(Command(script=ECHO_SCRIPT, params={"Value": value}))
        assert result.stdout.strip() == value
    await transport.close()
    soap = [r for r in srv.requests if r.action not in ("Unauthorized", "Empty")]
    assert [r.action for r in soap] == ["Create"] + ["Command", "Receive", "Signal"] * 2 + [
        "Delete"
    ]
    assert all(r.encrypted and r.auth == "ntlm" and r.user == USER for r in soap)


@pytest.mark.usefixtures("ntlm_users")
async def test_ntlm_wrong_password_is_auth_failed(make_server: ServerFactory) -> None:
    srv = make_server(tls=False, ntlm=True, basic=False)
    t = WinRMTransport(environ={PASSWORD_ENV: "not-it"})
    try:
        with pytest.raises(TransportError) as err:
            await t.session("win1", connection(srv, auth="ntlm"))
    finally:
        await t.close()
    assert err.value.error_code == "AUTH_FAILED"
    assert "Create" not in srv.actions()


async def test_host_down_mid_session_is_retriable_and_the_next_session_reconnects(
    make_server: ServerFactory, transport: WinRMTransport, ca_file: Any
) -> None:
    srv = make_server()
    srv.on(ECHO, echo)
    conn = connection(srv, ca_file=str(ca_file))
    shell = await transport.session("win1", conn)
    await shell.run(Command(script=ECHO_SCRIPT, params={"Value": 1}))
    srv.stop()
    with pytest.raises(TransportError) as err:
        await shell.run(Command(script=ECHO_SCRIPT, params={"Value": 2}))
    assert err.value.retriable
    assert err.value.error_code in ("CONNECTION_REFUSED", "CONNECTION_FAILED", "CONNECTION_RESET")

    back = make_server(port=srv.port)  # the host is up again, same address
    back.on(ECHO, echo)
    again = await transport.session("win1", conn)
    assert again is not shell
    result = await again.run(Command(script=ECHO_SCRIPT, params={"Value": 3}))
    assert result.stdout.strip() == "3"
    assert back.actions()[:2] == ["Create", "Command"]


async def test_hosts_run_concurrently_each_on_its_own_shell(
    make_server: ServerFactory, transport: WinRMTransport, ca_file: Any
) -> None:
    import asyncio

    srv = make_server()
    srv.on(ECHO, echo)
    conn = connection(srv, ca_file=str(ca_file))

    async def one(host: str) -> str:
        shell = await transport.session(host, conn)
        outs = [await shell.run(Command(script=ECHO_SCRIPT, params={"Value": f"{host}-{i}"}))
                for i in range(3)]  # fmt: skip
        return " ".join(o.stdout.strip() for o in outs)

    results = await asyncio.gather(*(one(f"win{n}") for n in range(5)))
    assert results == [f"win{n}-0 win{n}-1 win{n}-2" for n in range(5)]
    assert srv.actions().count("Create") == 5
    assert len({r.shell_id for r in srv.requests if r.action == "Command"}) == 5


def test_protocol_options_endpoint_and_validation() -> None:
    from reaper.agents.transports.winrm import protocol_options
    from reaper.models import HostConnection, WinRMSettings

    env = {PASSWORD_ENV: PASSWORD}
    conn = HostConnection(
        transport="winrm", address="fe80::1", user=USER, password_env=PASSWORD_ENV,
        winrm=WinRMSettings(validate_certs=False),
    )  # fmt: skip
    opts, secret = protocol_options("w", conn, env)
    assert opts["endpoint"] == "https://[fe80::1]:5986/wsman"
    assert (opts["server_cert_validation"], opts["transport"], secret) == (
        "ignore",
        "ntlm",
        PASSWORD,
    )
    assert opts["proxy"] is None and opts["read_timeout_sec"] > opts["operation_timeout_sec"]
    cert = conn.model_copy(
        update={
            "key_file": "/k.pem",
            "password_env": None,
            "winrm": WinRMSettings(auth="certificate"),
        }
    )
    opts, secret = protocol_options("w", cert, {})
    assert (opts["cert_pem"], opts["cert_key_pem"], secret) == ("/k.pem", "/k.pem", None)
    plain_cert = cert.model_copy(
        update={"winrm": WinRMSettings(auth="certificate", scheme="http", allow_unencrypted=True)}
    )
    with pytest.raises(TransportError, match="needs HTTPS"):
        protocol_options("w", plain_cert, {})
    http_ntlm = conn.model_copy(update={"winrm": WinRMSettings(scheme="http")})
    assert protocol_options("w", http_ntlm, env)[0]["endpoint"] == "http://[fe80::1]:5985/wsman"
    basic_always = conn.model_copy(
        update={"winrm": WinRMSettings(auth="basic", message_encryption="always")}
    )
    with pytest.raises(TransportError) as err:
        protocol_options("w", basic_always, env)
    assert err.value.error_code == "CONFIG_INVALID"


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("requests_credssp") is not None,
    reason="requests-credssp installed: CredSSP would be attempted for real",
)
async def test_auth_without_its_package_is_a_clear_error(
    make_server: ServerFactory, transport: WinRMTransport, ca_file: Any
) -> None:
    srv = make_server()
    with pytest.raises(TransportError) as err:
        await transport.session("win1", connection(srv, ca_file=str(ca_file), auth="credssp"))
    assert (err.value.error_code, err.value.retriable) == ("AUTH_UNSUPPORTED", False)
    assert srv.requests == []


def test_clixml_stderr_becomes_text() -> None:
    from reaper.agents.transports.powershell import clean_clixml

    clixml = (
        b"#< CLIXML\r\n"
        b'<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        b'<S S="Error">Access is denied._x000D__x000A_</S><S S="Error">At line:1</S>'
        b'<S S="progress">ignored</S></Objs>'
    )
    assert clean_clixml(clixml) == "Access is denied.\nAt line:1"
    assert clean_clixml(b"plain error") == "plain error"
    assert clean_clixml(b"#< CLIXML\r\n<not xml") == "#< CLIXML\r\n<not xml"
