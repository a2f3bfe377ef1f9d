"""Write the synthetic cassette `reaper demo --planner llm` replays.

    python benchmarks/make_demo_cassette.py [--lab reaper/labs/demo.yaml]
        [--out reaper/labs/demo-llm.cassette.jsonl] [--check N]

Runs the demo lab through the real engine and simulated workers, exactly as `reaper demo`
does, with the LLM planner answering from a scripted "careful model" (reasons per task, usage
estimated from the prompt's length and priced as claude-haiku-4-5), recorded by
`RecordingClient(synthetic=True)`: the cassette's header says `synthetic: true`, and its
provider is `synthetic`. `--check N` then replays it N times and fails on a miss or an unused
entry. Re-run it whenever a prompt template, the catalog, the plan schema or the demo lab
changes: each changes the replay keys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from llm.replay import ReplayClient
from llm.testing import ScriptedClient
from llm.types import LLMRequest, LLMResponse, Usage
from reaper.config import Config
from reaper.infra.factory import open_backend
from reaper.lab import load_lab
from reaper.models import MissionState
from reaper.overseer import Overseer
from reaper.planners.llm_factory import planner_from_cli
from reaper.runtime import LocalWorkers

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("make_demo_cassette")


def _section(text: str, start: str, end: str) -> list[dict[str, Any]]:
    body = text.split(start, 1)[1].split(end, 1)[0]
    return [json.loads(line) for line in body.splitlines() if line.startswith("{")]


def _reason(host: dict[str, Any], result: dict[str, Any] | None) -> tuple[str, str] | None:
    os, stage = host["os"], host["stage"]
    failed = result is not None and result["status"] != "success"
    if host["locked"] or host["busy"] or stage == "baselined":
        return None
    if failed and result is not None:
        code = result["error_code"] or "error"
        if code == "PREREQ_MISSING":
            return f"{os}.prepare", "baseline reported missing prerequisites: install them first"
        used, limit = (int(x) for x in host["failures"].split("/"))
        if used >= limit - 1:
            return None
        return f"{os}.discover", f"{result['action']} failed ({code}): re-check the host first"
    if stage == "new":
        return f"{os}.discover", "new host: collect facts before changing anything"
    if stage == "prepared":
        return f"{os}.baseline", "prerequisites installed: apply the baseline now"
    return f"{os}.baseline", "facts collected and host healthy: apply the security baseline"


def careful_model(request: LLMRequest) -> LLMResponse:
    text = request.messages[0].text
    hosts = _section(text, "action in flight):", "## New results")
    results = {r["host_id"]: r for r in _section(text, "## New results", "## Untrusted data")}
    tasks = []
    for host in hosts:
        picked = _reason(host, results.get(host["host_id"]))
        if picked is not None:
            action, reason = picked
            tasks.append(
                {
                    "host_id": host["host_id"],
                    "action": action,
                    "params_json": "{}",
                    "reason": reason,
                }
            )
    busy = sum(1 for h in hosts if h["busy"])
    if tasks:
        note = f"{len(tasks)} task(s): advance idle hosts toward the goal"
    elif busy:
        note = f"nothing to add: waiting for {busy} task(s) in flight"
    else:
        note = "every reachable host is at the goal"
    answer = json.dumps({"tasks": tasks, "done": not tasks and not busy, "note": note})
    system = sum(len(b.text) for b in request.system) // 4
    user = sum(len(m.text) for m in request.messages) // 4
    # The system part is cached after the first call, as a provider's prompt cache would.
    first = request.metadata.get("step") == "1"
    usage = Usage(
        input_tokens=user,
        output_tokens=len(answer) // 4,
        cache_read_tokens=0 if first else system,
        cache_write_tokens=system if first else 0,
    )
    return LLMResponse(text=answer, usage=usage, latency_s=0.8 + 0.01 * len(tasks))


async def run_demo(
    lab_path: Path, *, record: Path | None = None, replay: Path | None = None
) -> MissionState:
    lab = load_lab(lab_path)
    lab = lab.model_copy(update={"planner": lab.planner.model_copy(update={"kind": "llm"})})
    config = Config()
    replayers: list[ReplayClient] = []

    def factory(state: MissionState) -> Any:
        if replay is not None:
            planner = planner_from_cli(config, state, replay=replay)
            assert isinstance(planner.client, ReplayClient)
            replayers.append(planner.client)
            return planner
        client = ScriptedClient(careful_model, provider="synthetic", model="claude-haiku-4-5")
        return planner_from_cli(config, state, record=record, client=client, synthetic=True)

    backend = open_backend("memory")
    try:
        overseer = Overseer(backend, planner_factory=factory)
        state = await overseer.create_mission(lab, "demo")
        workers = LocalWorkers(backend, seed=lab.seed)
        workers.start()
        try:
            final = await asyncio.wait_for(overseer.run_mission(state.mission_id), 120)
        finally:
            await workers.stop()
    finally:
        await backend.close()
    if replayers and replayers[-1].unused():
        raise SystemExit(f"{len(replayers[-1].unused())} cassette entries were not used")
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", type=Path, default=ROOT / "reaper/labs/demo.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "reaper/labs/demo-llm.cassette.jsonl")
    parser.add_argument("--check", type=int, default=2, help="replays to verify (0: none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.out.unlink(missing_ok=True)
    final = asyncio.run(run_demo(args.lab, record=args.out))
    print(f"recorded {args.out}: mission {final.status.value} ({final.status_reason})")
    for i in range(args.check):
        replayed = asyncio.run(run_demo(args.lab, replay=args.out))
        print(f"replay {i + 1}: {replayed.status.value} ({replayed.status_reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
