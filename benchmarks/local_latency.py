"""Latency of the `local` provider (llama-server + a GGUF) on this machine.

    PYTHONPATH=. python benchmarks/local_latency.py [--model-path GGUF]
        [--prompt-chars 4500] [--rounds 2]

Sends the LLM planner's real demo request, its system prompt cut to --prompt-chars, with the
plan schema: one cold call (fresh server, empty prompt cache), then warm calls whose user
message differs (the system prefix is reused from the cache). Prints llama-server's own
timings: prompt tokens evaluated and cached, ms per prompt and per output token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from llm.llama_server import LlamaServer, default_binary, default_model
from llm.testing import ScriptedClient
from llm.types import LLMRequest, Message
from reaper.planners.llm import LLMPlanner
from tests.planners.support import demo_state

_DONE = '{"tasks": [], "done": true, "note": "x"}'


def _request(chars: int) -> LLMRequest:
    scripted = ScriptedClient([_DONE])
    asyncio.run(LLMPlanner(scripted).initial_tasks(demo_state()))
    request = scripted.requests[0]
    system = [b.model_copy(update={"text": b.text[:chars]}) for b in request.system]
    return request.model_copy(update={"system": system})


def _call(url: str, request: LLMRequest, max_tokens: int) -> tuple[float, dict[str, Any]]:
    body = {
        "messages": [{"role": "system", "content": "\n\n".join(b.text for b in request.system)}]
        + [{"role": m.role, "content": m.text} for m in request.messages],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "cache_prompt": True,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "plan", "schema": request.json_schema, "strict": True},
        },
    }
    data = json.dumps(body).encode()
    post = urllib.request.Request(url + "/v1/chat/completions", data=data, method="POST")
    post.add_header("content-type", "application/json")
    started = time.perf_counter()
    with urllib.request.urlopen(post, timeout=600) as reply:
        answer: dict[str, Any] = json.load(reply)
    return time.perf_counter() - started, answer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-path", type=Path, default=default_model())
    p.add_argument("--prompt-chars", type=int, default=4500)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    request = _request(args.prompt_chars)
    server = LlamaServer(default_binary(), args.model_path)
    started = time.perf_counter()
    url = server.start()
    out = sys.stdout
    out.write(f"server start {time.perf_counter() - started:.2f} s\n")
    try:
        for n in range(args.rounds + 1):
            label = "cold" if n == 0 else f"warm{n}"
            text = request.messages[-1].text + ("" if n == 0 else f"\n(step {n + 1})")
            variant = request.model_copy(update={"messages": [Message(role="user", text=text)]})
            wall, answer = _call(url, variant, args.max_tokens)
            t = answer["timings"]
            out.write(
                f"{label}: {wall:.2f} s wall; prompt {t['prompt_n']} evaluated + "
                f"{t.get('cache_n', 0)} cached in {t['prompt_ms']:.0f} ms "
                f"({t['prompt_per_token_ms']:.1f} ms/token); {t['predicted_n']} output tokens, "
                f"{t['predicted_per_token_ms']:.1f} ms/token; "
                f"finish {answer['choices'][0]['finish_reason']}\n"
            )
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
