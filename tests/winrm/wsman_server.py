"""A local WS-Management endpoint, so pywinrm's real protocol code runs end to end in tests.

It answers the SOAP exchanges pywinrm sends (Create shell, Command, Send, Receive, Signal, Delete)
over HTTP or HTTPS on 127.0.0.1, checks Basic auth (401 otherwise) and, when asked, NTLM with
WinRM message encryption through pyspnego's acceptor. A Command's `-EncodedCommand` is decoded
(UTF-16LE) and so is the base64 JSON parameter blob Reaper's wrapper carries; the first
registered handler whose marker occurs in the script answers it, at the first Receive (so
it sees the stdin a Send carried). Every request is recorded.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import socket
import ssl
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.winrm.wsman_ntlm import ENCRYPTED, ntlm_unwrap, ntlm_wrap

__all__ = ["Call", "Recorded", "Reply", "WsmanServer"]

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
}
_SHELL_NS = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
_DONE = f"{_SHELL_NS}/CommandState/Done"
_RUNNING = f"{_SHELL_NS}/CommandState/Running"
_BLOB = re.compile(r"FromBase64String\('([A-Za-z0-9+/=]*)'\)")
OPERATION_TIMEOUT = 2150858793
SHELL_NOT_FOUND = 2150858843


@dataclass
class Call:
    """A command as the endpoint saw it."""

    script: str  # the decoded -EncodedCommand text
    params: dict[str, Any]  # the decoded parameter blob
    command_line: str
    shell_id: str
    stdin: str = ""  # what the client sent with Send (decoded), before the first Receive


@dataclass
class Reply:
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    chunks: int = 1  # stdout spread over this many Receive answers
    timeouts: int = 0  # Receive answers "operation timed out" this many times first


@dataclass
class Recorded:
    action: str  # Create, Command, Receive, Signal, Delete, Unauthorized, Empty
    user: str | None = None
    auth: str = "none"  # basic | ntlm | none
    encrypted: bool = False
    shell_id: str | None = None
    call: Call | None = None


Handler = Callable[[Call], Reply]


@dataclass
class _Running:
    call: Call
    reply: Reply | None = None  # answered at the first Receive, once stdin has arrived
    chunks: list[bytes] = field(default_factory=list)
    timeouts: int = 0


@dataclass
class _State:
    shells: set[str] = field(default_factory=set)
    commands: dict[str, _Running] = field(default_factory=dict)


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:w="{NS["w"]}" '
        f'xmlns:rsp="{NS["rsp"]}" xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer">'
        f"<s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
        f"<a:RelatesTo>{relates_to}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def _fault(relates_to: str, code: int, reason: str) -> bytes:
    body = (
        "<s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{reason}</s:Text></s:Reason><s:Detail>'
        '<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" '
        f'Code="{code}" Machine="127.0.0.1"><f:Message>{reason}</f:Message></f:WSManFault>'
        "</s:Detail></s:Fault>"
    )
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


def decode_command(command_line: str) -> tuple[str, dict[str, Any]]:
    """(script, params) from a `powershell.exe ... -EncodedCommand B64` line."""
    words = command_line.split()
    lowered = [w.lower() for w in words]
    if "-encodedcommand" not in lowered:
        return command_line, {}
    encoded = words[lowered.index("-encodedcommand") + 1]
    script = base64.b64decode(encoded).decode("utf-16-le")
    match = _BLOB.search(script)
    params = json.loads(base64.b64decode(match.group(1))) if match else {}
    return script, params


class WsmanServer:
    """`with WsmanServer(users={"admin": "pw"}, tls=ctx) as srv:` then point pywinrm at
    `srv.url`. `srv.on(marker, handler)` routes commands whose script contains `marker`."""

    def __init__(
        self,
        *,
        users: Mapping[str, str],
        tls: ssl.SSLContext | None = None,
        ntlm: bool = False,
        basic: bool = True,
        port: int = 0,
    ) -> None:
        self.users = dict(users)
        self.tls = tls
        self.ntlm = ntlm
        self.basic = basic
        self._port = port
        self.requests: list[Recorded] = []
        self.tls_failures = 0
        self.tls_failed = threading.Event()  # set when a client aborted the TLS handshake
        self._handlers: list[tuple[str, Handler]] = []
        self._state = _State()
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- test API -------------------------------------------------------------------------
    def on(self, marker: str, handler: Handler) -> None:
        self._handlers.append((marker, handler))

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/wsman"

    def actions(self) -> list[str]:
        with self._lock:
            return [r.action for r in self.requests]

    def calls(self) -> list[Call]:
        with self._lock:
            return [r.call for r in self.requests if r.call is not None]

    def forget_shells(self) -> None:
        """Drop every shell, as a host does after an idle timeout or a service restart."""
        with self._lock:
            self._state.shells.clear()

    def start(self) -> WsmanServer:
        self._httpd = _Server(("127.0.0.1", self._port), _RequestHandler, self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.drop_connections()  # as a host going down does
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> WsmanServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- protocol -------------------------------------------------------------------------
    def record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    def answer(self, body: bytes, rec: Recorded) -> tuple[int, bytes]:
        """(HTTP status, SOAP reply) for one decrypted request body."""
        root = ET.fromstring(body)
        action = root.findtext("s:Header/a:Action", "", NS).rsplit("/", 1)[-1]
        msg_id = root.findtext("s:Header/a:MessageID", "", NS)
        shell_id = root.findtext("s:Header/w:SelectorSet/w:Selector[@Name='ShellId']", None, NS)
        rec.action, rec.shell_id = action, shell_id
        with self._lock:
            if action == "Create":
                sid = str(uuid.uuid4()).upper()
                self._state.shells.add(sid)
                created = (
                    f"<x:ResourceCreated><a:Address>{self.url}</a:Address><a:ReferenceParameters>"
                    f'<w:SelectorSet><w:Selector Name="ShellId">{sid}</w:Selector></w:SelectorSet>'
                    f"</a:ReferenceParameters></x:ResourceCreated>"
                )
                return 200, _envelope("CreateResponse", msg_id, created)
            if shell_id not in self._state.shells:
                return 500, _fault(msg_id, SHELL_NOT_FOUND, f"shell {shell_id} was not found")
            if action == "Delete":
                self._state.shells.discard(shell_id)
                return 200, _envelope("DeleteResponse", msg_id, "")
            if action == "Signal":
                cid = root.find("s:Body/rsp:Signal", NS)
                self._state.commands.pop(cid.get("CommandId", "") if cid is not None else "", None)
                return 200, _envelope("SignalResponse", msg_id, "<rsp:SignalResponse/>")
            if action == "Send":
                return self._send_input(root, msg_id)
        if action == "Receive":
            return self._receive(root, msg_id)
        if action == "Command":
            return self._command(root, msg_id, shell_id, rec)
        return 500, _fault(msg_id, 1, f"unsupported action {action}")

    def _command(
        self, root: ET.Element, msg_id: str, shell_id: str, rec: Recorded
    ) -> tuple[int, bytes]:
        command = root.findtext("s:Body/rsp:CommandLine/rsp:Command", "", NS)
        arguments = root.findtext("s:Body/rsp:CommandLine/rsp:Arguments", "", NS)
        line = f"{command} {arguments}".strip()
        script, params = decode_command(line)
        call = Call(script=script, params=params, command_line=line, shell_id=shell_id)
        rec.call = call
        cid = str(uuid.uuid4()).upper()
        with self._lock:
            self._state.commands[cid] = _Running(call)
        body = f"<rsp:CommandResponse><rsp:CommandId>{cid}</rsp:CommandId></rsp:CommandResponse>"
        return 200, _envelope("CommandResponse", msg_id, body)

    def _send_input(self, root: ET.Element, msg_id: str) -> tuple[int, bytes]:
        stream = root.find("s:Body/rsp:Send/rsp:Stream", NS)
        cid = stream.get("CommandId", "") if stream is not None else ""
        running = self._state.commands.get(cid)
        if running is None or stream is None:
            return 500, _fault(msg_id, 1, f"command {cid} unknown")
        running.call.stdin += base64.b64decode(stream.text or "").decode("utf-8")
        return 200, _envelope("SendResponse", msg_id, "<rsp:SendResponse/>")

    def _answer(self, running: _Running) -> Reply:
        call = running.call
        handler = next((h for marker, h in self._handlers if marker in call.script), None)
        reply = handler(call) if handler else Reply(stderr="no handler for script", exit_code=1)
        out = reply.stdout.encode("utf-8")
        n = max(1, reply.chunks)
        size = -(-len(out) // n) or 1
        running.chunks = [out[i : i + size] for i in range(0, len(out), size)] or [b""]
        running.timeouts = reply.timeouts
        return reply

    def _receive(self, root: ET.Element, msg_id: str) -> tuple[int, bytes]:
        stream = root.find("s:Body/rsp:Receive/rsp:DesiredStream", NS)
        cid = stream.get("CommandId", "") if stream is not None else ""
        with self._lock:
            running = self._state.commands.get(cid)
        if running is None:
            return 500, _fault(msg_id, 1, f"command {cid} unknown")
        if running.reply is None:  # outside the lock: a handler may block on a test's event
            running.reply = self._answer(running)
        reply = running.reply
        if running.timeouts > 0:
            running.timeouts -= 1
            return 500, _fault(msg_id, OPERATION_TIMEOUT, "operation timed out")
        chunk = running.chunks.pop(0)
        done = not running.chunks
        parts = [f'<rsp:Stream Name="stdout" CommandId="{cid}">{base64.b64encode(chunk).decode()}'
                 "</rsp:Stream>"]  # fmt: skip
        if done:
            err = base64.b64encode(reply.stderr.encode()).decode()
            parts.append(f'<rsp:Stream Name="stderr" CommandId="{cid}">{err}</rsp:Stream>')
            parts.append(
                f'<rsp:CommandState CommandId="{cid}" State="{_DONE}">'
                f"<rsp:ExitCode>{reply.exit_code}</rsp:ExitCode></rsp:CommandState>"
            )
        else:
            parts.append(f'<rsp:CommandState CommandId="{cid}" State="{_RUNNING}"/>')
        body = f"<rsp:ReceiveResponse>{''.join(parts)}</rsp:ReceiveResponse>"
        return 200, _envelope("ReceiveResponse", msg_id, body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # pywinrm keeps connections alive; don't wait for them on close

    def __init__(self, addr: tuple[str, int], handler: type, wsman: WsmanServer) -> None:
        self.wsman = wsman
        self.connections: list[socket.socket] = []
        super().__init__(addr, handler)

    def drop_connections(self) -> None:
        for sock in self.connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        # Headers and body go out in two writes: without NODELAY, Nagle and the client's
        # delayed ACK add ~40 ms to every exchange.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.wsman.tls is not None:
            # Handshake in the request thread (setup), not in the accept loop.
            sock = self.wsman.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self.connections.append(sock)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that drops the connection (or rejects our certificate) is not news


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                self.server.wsman.tls_failures += 1
                self.server.wsman.tls_failed.set()
                raise
        super().setup()
        self._ntlm: Any = None  # per-connection NTLM context (NTLM authenticates connections)
        self._ntlm_user: str | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Type" not in (headers or {}):
            self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _challenge(self) -> dict[str, str]:
        schemes = (["Negotiate"] if self.server.wsman.ntlm else []) + (
            ['Basic realm="WSMAN"'] if self.server.wsman.basic else []
        )
        return {"WWW-Authenticate": ", ".join(schemes)}

    def do_POST(self) -> None:
        wsman = self.server.wsman
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() in ("negotiate", "ntlm") and wsman.ntlm:
            self._ntlm_step(scheme, token, body)
            return
        rec = Recorded(action="Unauthorized")
        if self._ntlm is not None and self._ntlm.complete and not auth:
            rec.auth, rec.user = "ntlm", self._ntlm_user
        elif scheme.lower() == "basic" and wsman.basic:
            try:
                user, _, password = base64.b64decode(token).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", None
            if wsman.users.get(user) == password:
                rec.auth, rec.user = "basic", user
        if rec.auth == "none":
            wsman.record(rec)
            self._send(401, b"", self._challenge())
            return
        self._serve(body, rec)

    def _serve(self, body: bytes, rec: Recorded) -> None:
        wsman = self.server.wsman
        ctype = self.headers.get("Content-Type", "")
        if ENCRYPTED in ctype:
            body = ntlm_unwrap(self._ntlm, body)
            rec.encrypted = True
        elif rec.auth == "ntlm" and body:
            rec.action = "Unencrypted"
            wsman.record(rec)
            self._send(400, b"NTLM over HTTP must be encrypted")
            return
        if not body:  # pywinrm's empty POST that sets up encryption
            rec.action = "Empty"
            wsman.record(rec)
            self._send(200, b"")
            return
        status, reply = wsman.answer(body, rec)
        wsman.record(rec)
        if rec.encrypted:
            payload, ctype = ntlm_wrap(self._ntlm, reply)
            self._send(status, payload, {"Content-Type": ctype})
        else:
            self._send(status, reply)

    # -- NTLM (pyspnego acceptor; credentials from NTLM_USER_FILE) ------------------------
    def _ntlm_step(self, scheme: str, token: str, body: bytes) -> None:
        import spnego

        if self._ntlm is None or self._ntlm.complete:
            self._ntlm = spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)
        try:
            out = self._ntlm.step(base64.b64decode(token))
        except spnego.exceptions.SpnegoError:
            self._ntlm = None
            self.server.wsman.record(Recorded(action="Unauthorized"))
            self._send(401, b"", self._challenge())
            return
        if not self._ntlm.complete:
            self._send(401, b"", {"WWW-Authenticate": f"{scheme} {base64.b64encode(out).decode()}"})
            return
        self._ntlm_user = str(self._ntlm.client_principal)
        self._serve(body, Recorded(action="?", auth="ntlm", user=self._ntlm_user))
