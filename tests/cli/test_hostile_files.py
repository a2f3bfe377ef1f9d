"""Hostile files: a few KB of YAML aliases ("billion laughs") or thousands of nested lists in a
lab, an inventory, a scenario, a cassette, a tape, eval results or a config file end in one
line on stderr and exit 2, quickly and in bounded memory (the child runs under an
address-space cap), never in a traceback, a RecursionError or a machine out of memory."""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

import pytest
import yaml

from reaper.errors import ConfigError
from reaper.safeload import FileLimitError, Limits, load_json, load_yaml, read_limited
from tests.missions import PYTHON, cli_env

# Python, pydantic, rich and the SDKs map a few hundred MB of address space; the fix needs
# well under this cap (measured: passes at 256 MB), while before it a billion-laughs lab ran
# for minutes towards GBs and 3,000 nested lists ended in a RecursionError traceback.
ADDRESS_SPACE = 768 * 1024 * 1024
TIMEOUT_S = 30  # generous for a loaded CI machine; each run takes about a second


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _laughs(indent: str) -> list[str]:
    lines = [f'{indent}a0: &a0 "lol"']
    for i in range(1, 10):
        refs = ", ".join(f"*a{i - 1}" for _ in range(9))
        lines.append(f"{indent}a{i}: &a{i} [{refs}]")
    return lines


DEEP = "[" * 3000 + "]" * 3000
LAB_HEAD = "schema_version: 1\nhosts:\n  - host_id: h1\n    os: linux\n    sim:\n      facts:\n"


def _files(tmp: Path) -> dict[str, Path]:
    files = {
        "lab-laughs.yaml": LAB_HEAD + "\n".join(_laughs("        ")) + "\n",
        "lab-deep.yaml": LAB_HEAD + f"        x: {DEEP}\n",
        "inv-laughs.yaml": "all:\n  vars:\n"
        + "\n".join(_laughs("    "))
        + "\n  hosts:\n    web1: {}\n",
        "inv-deep.yaml": f"all:\n  vars:\n    x: {DEEP}\n  hosts:\n    web1: {{}}\n",
        "ok.yaml": "schema_version: 1\nhosts:\n  - {host_id: h1, os: linux, transport: sim}\n",
        "scenario-laughs.yaml": "name: s\nlab:\n  hosts: []\n  x:\n"
        + "\n".join(_laughs("    "))
        + "\n",
        "deep.cassette.jsonl": json.dumps(
            {
                "type": "header",
                "schema_version": 1,
                "synthetic": True,
                "provider": "replay",
                "model": "m",
            }
        )
        + '\n{"type": "entry", "key": "k", "summary": "s", "request": {"a": '
        + DEEP
        + '}, "response": {}}\n',
        "deep.toml": f"x = {DEEP}\n",
        "deep.results.jsonl": f'{{"schema_version": 1, "x": {DEEP}}}\n',
        "range.ini": "[web]\nweb[1:999999999] ansible_user=x\n[db]\ndb[1:9]-[1:99999]\n",
        "deep.tape.jsonl": '{"type": "header", "mission_id": "m", "initial_state": {"a": '
        + DEEP
        + "}}\n",
    }
    out = {}
    for name, text in files.items():
        (tmp / name).write_text(text)
        out[name] = tmp / name
    return out


CASES = {
    "lab-laughs": ["run", "lab-laughs.yaml", "--no-live"],
    "lab-deep": ["run", "lab-deep.yaml", "--no-live"],
    "inventory-laughs": ["run", "--inventory", "inv-laughs.yaml", "--no-live"],
    "inventory-deep": ["run", "--inventory", "inv-deep.yaml", "--no-live"],
    "cassette-deep": [
        "run", "ok.yaml", "--planner", "llm", "--replay", "deep.cassette.jsonl", "--no-live",
    ],
    "scenario-laughs": ["eval", "--scenarios", "scenario-laughs.yaml", "--planners", "rule"],
    "inventory-range": ["run", "--inventory", "range.ini", "--no-live"],
    "results-deep": ["eval", "compare", "deep.results.jsonl", "deep.results.jsonl"],
    "config-deep": ["status", "--config", "deep.toml"],
    "tape-deep": ["eval", "replay", "deep.tape.jsonl", "--planner", "rule"],
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_file_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    files = _files(tmp_path)
    args = [str(files[a]) if a in files else a for a in CASES[case]]
    proc = subprocess.run(
        [PYTHON, "-m", "reaper.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_env(tmp_path, REAPER_DB=str(tmp_path / "r.db")),
        preexec_fn=_cap,
        timeout=TIMEOUT_S,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr
    hostile = [files[a] for a in CASES[case] if a in files][-1]
    assert str(hostile) in lines[0], lines[0]


# -- the loader itself -----------------------------------------------------------------------


def test_ordinary_yaml_with_aliases_and_merges_loads() -> None:
    text = "base: &b {user: admin, port: 22}\nhosts:\n  - {<<: *b, host_id: a}\n  - *b\n"
    data = load_yaml(text, "lab.yaml")
    assert data["hosts"][0] == {"user": "admin", "port": 22, "host_id": "a"}
    assert data["hosts"][1] == {"user": "admin", "port": 22}


@pytest.mark.parametrize(
    ("text", "limits", "message"),
    [
        ("\n".join(_laughs("")), Limits(), "more than 2000000 nodes"),
        ("a: &a [1, *a]\n", Limits(), "recursive YAML alias"),
        (
            f"a: &a {'x' * 1000}\nb: [{', '.join(['*a'] * 100)}]\n",
            Limits(max_chars=50_000),
            "characters",
        ),
        ("x: " + "[" * 70 + "]" * 70, Limits(), "deeper than 64 levels"),
        ("x: 1\n" * 10, Limits(max_bytes=20), "over the 20-byte limit"),
        # alias depth: each level is shallow, the expansion is not
        ("a: &a [[[1]]]\nb: &b [[[*a]]]\nc: [[[*b]]]\n", Limits(max_depth=8), "deeper than 8"),
    ],
)
def test_limits_are_checked_before_building(text: str, limits: Limits, message: str) -> None:
    with pytest.raises(FileLimitError, match=message) as info:
        load_yaml(text, "f.yaml", limits)
    assert isinstance(info.value, ConfigError)
    assert str(info.value).startswith("f.yaml: refused: ") and "\n" not in str(info.value)


def test_json_depth_size_and_syntax() -> None:
    assert load_json('{"a": ["]", {"b": 1}]}', "f.json") == {"a": ["]", {"b": 1}]}
    with pytest.raises(FileLimitError, match="deeper than 64"):
        load_json(DEEP, "f.json")
    with pytest.raises(ConfigError, match=r"f\.json: invalid JSON"):
        load_json("{", "f.json")


def test_read_limited_refuses_a_big_file_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("x" * 100)
    with pytest.raises(FileLimitError, match="100 bytes is over the 50-byte limit"):
        read_limited(big, Limits(max_bytes=50))
    assert yaml.safe_load(read_limited(big)) == "x" * 100


def test_a_scenario_group_cannot_stand_for_a_billion_hosts() -> None:
    from evals.scenario import parse_scenario

    text = "name: s\nlab:\n  groups: [{prefix: h, count: 1000000000, os: linux}]\n"
    with pytest.raises(ConfigError, match="at most 100000 hosts"):
        parse_scenario(text, source="s.yaml")


def test_host_ranges_are_capped_before_they_are_expanded() -> None:
    from reaper.inventory.parse import expand_pattern

    assert len(expand_pattern("h[1:100]-[1:1000]")) == 100_000
    for pattern in ("h[1:100001]", "h[1:2]-[1:50001]", "h[0:999999999999]"):
        with pytest.raises(ValueError, match="more than 100000 hosts"):
            expand_pattern(pattern)
