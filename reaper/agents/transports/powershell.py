"""PowerShell text for WinRM: quoting, parameter passing and the -EncodedCommand line.

Values never reach PowerShell as code. A script is a fixed text with a `param(...)` block; its
parameters travel as one base64-encoded JSON blob inside a single-quoted literal (the base64
alphabet has no quote, `$` or backtick), which a fixed wrapper decodes with `ConvertFrom-Json`
and splats onto the script block. The whole wrapper is then sent the way pywinrm's `run_ps`
does: UTF-16LE, base64, `powershell.exe -EncodedCommand`, so no shell on either side parses it.
Data that must stay off the command line (a password, a file's content) goes on stdin instead,
read by the wrapper into `$reaperStdin`.
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_COMMAND_LINE",
    "POWERSHELL_ARGS",
    "POWERSHELL_EXE",
    "clean_clixml",
    "encode_command",
    "params_blob",
    "ps_quote",
    "wrap_script",
]

POWERSHELL_EXE = "powershell.exe"
POWERSHELL_ARGS = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")
# CreateProcess caps a command line at 32767 characters; WinRM runs ours without cmd.exe
# (WINRS_SKIP_CMD_SHELL), so cmd.exe's 8191 limit does not apply. Keep a margin.
MAX_COMMAND_LINE = 32000

# PowerShell treats the typographic single quotes as quote characters too, so a value holding
# one of them would close a literal quoted with the ASCII quote unless it is doubled as well.
_SINGLE_QUOTES = re.compile("['\u2018\u2019\u201a\u201b]")

# The shell is opened with code page 65001 already; setting the console encoding as well can
# fail where no console is attached, and that must not fail the script.
_WRAPPER_HEAD = """$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
try {{ [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false }} catch {{ }}
$reaperJson = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String('{blob}'))
$reaperArgs = @{{}}
(ConvertFrom-Json $reaperJson).PSObject.Properties |
  ForEach-Object {{ $reaperArgs[$_.Name] = $_.Value }}
try {{
$reaperOut = & {{
"""
# Output is written by the wrapper, not by PowerShell's formatter, so a long JSON line is
# never wrapped at the console width; errors go to stderr as text rather than CLIXML.
_WRAPPER_TAIL = """
}} @reaperArgs
foreach ($o in @($reaperOut)) {{
if ($o -is [string]) {{ [Console]::Out.WriteLine($o) }}
else {{ [Console]::Out.Write(($o | Out-String)) }}
}}
}} catch {{
[Console]::Error.WriteLine(($_ | Out-String))
exit 1
}}
exit 0
"""


def ps_quote(value: str) -> str:
    """`value` as a PowerShell single-quoted literal: every quote character doubled."""
    return "'" + _SINGLE_QUOTES.sub(lambda m: m.group(0) * 2, value) + "'"


def params_blob(params: Mapping[str, Any]) -> str:
    """The parameters as base64 of UTF-8 JSON: only [A-Za-z0-9+/=], safe inside quotes."""
    raw = json.dumps(dict(params), ensure_ascii=False, separators=(",", ":"))
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


# Data that must not be on the command line (secrets, file content) comes on stdin, read at
# the top level where `$input` is the process's stdin, and kept in a variable the script reads:
# never bound to a parameter, so module logging's parameter bindings never record it.
_STDIN_LINE = '$reaperStdin = (@($input) -join "`n")\n'


def wrap_script(script: str, params: Mapping[str, Any], *, stdin: bool = False) -> str:
    """The full PowerShell text: decode the parameters, run `script` with them splatted
    (`stdin`: read the process's stdin into `$reaperStdin` first)."""
    # str.format only on our fixed text; the script is concatenated, never formatted.
    head = _WRAPPER_HEAD.format(blob=params_blob(params))
    if stdin:
        head = _STDIN_LINE + head
    return head + script.strip("\n") + _WRAPPER_TAIL.format()


def encode_command(text: str) -> list[str]:
    """Arguments for `powershell.exe`, the text as -EncodedCommand (base64 of UTF-16LE)."""
    encoded = base64.b64encode(text.encode("utf-16-le")).decode("ascii")
    return [*POWERSHELL_ARGS, "-EncodedCommand", encoded]


def clean_clixml(stderr: bytes) -> str:
    """stderr as text; PowerShell sometimes serialises its error stream as CLIXML."""
    text = stderr.decode("utf-8", errors="replace")
    if not text.startswith("#< CLIXML"):
        return text
    body = text.partition("\n")[2]
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return text
    lines = [
        (node.text or "").replace("_x000D__x000A_", "\n")
        for node in root.iter()
        if node.tag.rsplit("}", 1)[-1] == "S" and node.get("S") == "Error"
    ]
    return "".join(lines).strip() or text
