"""Which planner a run uses, and where the LLM planner's answers come from.

Planner names: `rule`, `llm`, or `package.module:attribute` for any other `MissionPlanner`
(a class or a no-argument factory; a factory taking one argument is given the `LLMClient`),
which is how a researcher drops in a variant without touching the harness.

`LLMSource` says where the LLM planner's client comes from: `replay` a cassette (a file, or a
directory holding `<scenario>.jsonl`), `record` to one (wrapping a live client built from a
provider and model, or a scripted client named `module:attribute`), or `live` without
recording. It is plain data, so runs can be shipped to worker processes.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from evals.realtime import RealTimeClient
from evals.variants import split_variant
from llm.base import LLMClient
from llm.errors import LLMConfigError
from llm.factory import build_client
from llm.replay import RecordingClient, ReplayClient
from reaper.errors import ConfigError
from reaper.lab import LabFile
from reaper.planners.base import MissionPlanner
from reaper.planners.budget import Budget
from reaper.planners.rules import RuleBasedPlanner

__all__ = [
    "DEFAULT_FIXTURES",
    "HYBRID_SPEC",
    "REPLAYABLE",
    "REPLAY_SEP",
    "LLMSource",
    "build_planner",
    "cassette_for",
    "display_path",
    "hybrid_available",
    "import_object",
    "replay_label",
    "split_replay",
]

DEFAULT_FIXTURES = Path(__file__).parent / "fixtures"
# The shipped cassettes are recorded in lockstep, as `reaper run --planner llm` plans.
SHIPPED_FIXTURES_LOCKSTEP = True


@dataclass(frozen=True, slots=True)
class LLMSource:
    mode: Literal["replay", "record", "live"] = "replay"
    path: Path = DEFAULT_FIXTURES
    provider: str = ""
    model: str = ""
    synthetic: bool = False
    client_factory: str = ""  # module:attribute returning an LLMClient (scripted models)
    base_url: str = ""  # a compatible server (e.g. the llama-server `eval record` started)
    model_path: str = ""  # a local model's GGUF (provider local)
    # The planner's max_tokens (part of every replay key); None: the lab's or the default, or
    # when replaying, what the cassette was recorded with.
    max_tokens: int | None = None
    # Engine lockstep for the LLM planner; None: as `reaper run --planner llm` (on), except
    # when replaying the shipped fixtures, recorded before the harness matched it.
    lockstep: bool | None = None

    def llm_lockstep(self) -> bool:
        if self.lockstep is not None:
            return self.lockstep
        shipped = self.mode == "replay" and self.path.resolve() == DEFAULT_FIXTURES.resolve()
        return not (shipped and not SHIPPED_FIXTURES_LOCKSTEP)

    def describe(self) -> str:
        if self.client_factory:
            return f"synthetic: scripted by {self.client_factory}"
        if self.mode == "live":
            return f"live {self.provider}/{self.model}"
        return f"{self.mode} {display_path(self.path)}"


# `llm+DIR` (or `hybrid+DIR`): that planner replaying DIR's cassettes, beside another
# source's (e.g. a local model's recorded answers next to the synthetic ones) in one scorecard.
REPLAY_SEP = "+"  # `llm@DIR` is a prompt variant (evals.variants)
REPLAYABLE = ("llm", "hybrid")


def split_replay(spec: str) -> tuple[str, Path | None]:
    """`llm+DIR` → ("llm", DIR), `hybrid+DIR` → ("hybrid", DIR); any other spec → (spec,
    None)."""
    base, sep, where = spec.partition(REPLAY_SEP)
    if not sep or base not in REPLAYABLE:
        return spec, None
    return base, Path(where)


def replay_label(path: Path, planner: str = "llm") -> str:
    """A scorecard label saying whose answers a cassette directory holds: `llm (synthetic)`
    or `llm (PROVIDER: MODEL)` from its cassettes' headers (ConfigError: none there)."""
    files = sorted(path.glob("*.jsonl.gz")) + sorted(path.glob("*.jsonl")) if path.is_dir() else []
    if not files:
        raise ConfigError(f"{planner}{REPLAY_SEP}{path}: no cassettes (*.jsonl[.gz]) there")
    header = _fresh_replay(files[0]).header
    if header.synthetic:
        return f"{planner} (synthetic)"
    return f"{planner} ({header.provider}: {header.model})"


def display_path(path: Path) -> str:
    """A path as a report shows it: relative to the working directory or the checkout, never
    absolute (reports are shared and committed; a home directory is no one else's business)."""
    resolved = path.resolve()
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if resolved.is_relative_to(base):
            return str(resolved.relative_to(base)) or "."
    return path.name


def recorded_seeds(path: Path, scenario: str) -> list[int]:
    """The seeds `scenario`'s cassette under `path` was recorded on ([] when there is none or
    it cannot be read: the run then reports the missing or broken cassette itself)."""
    cassette = cassette_for(path, scenario)
    if not cassette.exists():
        return []
    try:
        return _fresh_replay(cassette).recorded_seeds()
    except ConfigError:
        return []


def cassette_for(path: Path, scenario: str) -> Path:
    """A directory holds one cassette per scenario (`<scenario>.jsonl`, or gzipped as shipped:
    `.jsonl.gz`); a file serves every scenario."""
    if path.suffix and not path.is_dir():
        return path
    plain = path / f"{scenario}.jsonl"
    packed = path / f"{scenario}.jsonl.gz"
    return packed if packed.exists() and not plain.exists() else plain


def import_object(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{spec!r}: expected package.module:attribute")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {spec!r}: {exc}") from exc


# The lead's hybrid planner (rules first, the LLM for unknown failures), by name.
HYBRID_SPEC = "reaper.planners.hybrid:HybridPlanner"


def hybrid_available() -> bool:
    try:
        import_object(HYBRID_SPEC)
    except ConfigError:
        return False
    return True


_replay_cache: dict[Path, ReplayClient] = {}


def _fresh_replay(path: Path) -> ReplayClient:
    """A replay client with every answer unserved; each cassette is parsed once per process."""
    pristine = _replay_cache.get(path)
    if pristine is None:
        try:
            pristine = _replay_cache[path] = ReplayClient(path)
        except LLMConfigError as exc:
            raise ConfigError(str(exc)) from exc
    return pristine.fork()


def _client(source: LLMSource, scenario: str) -> LLMClient:
    path = cassette_for(source.path, scenario)
    if source.mode == "replay":
        if not path.exists():
            raise ConfigError(
                f"no cassette {path} for scenario {scenario!r}: record one with "
                f"`reaper eval --record {source.path}` (or python -m evals.make_fixtures)"
            )
        try:
            return _fresh_replay(path)
        except LLMConfigError as exc:
            raise ConfigError(str(exc)) from exc
    if source.client_factory:
        inner: LLMClient = import_object(source.client_factory)()
    else:
        try:
            live = build_client(
                source.provider,
                source.model,
                base_url=source.base_url or None,
                model_path=Path(source.model_path) if source.model_path else None,
                # A CPU model on a shared machine writes ~25 tokens/s: a full answer takes
                # minutes, and a call cut off by the timeout records nothing.
                timeout=LOCAL_TIMEOUT_S if source.provider == "local" else 60.0,
            )
        except LLMConfigError as exc:
            raise ConfigError(str(exc)) from exc
        # Missions run in virtual time; a provider's HTTP call must run in real time.
        inner = RealTimeClient(live)
    if source.mode == "record":
        return RecordingClient(inner, path, synthetic=source.synthetic)
    return inner


LOCAL_TIMEOUT_S = 600.0

# `reaper run`'s default (reaper.config.Config.llm_max_tokens): the replay key holds it, so the
# eval asks as a real mission does and a mission's own cassette replays here.
DEFAULT_MAX_TOKENS = 2048


def build_planner(
    name: str,
    lab: LabFile,
    *,
    seed: int,
    scenario: str,
    source: LLMSource,
    max_tokens: int | None = None,
) -> MissionPlanner:
    if name == "rule":
        return RuleBasedPlanner()
    if name == "hybrid":
        # The rules first, the LLM (built as for `llm`) for the failures they do not know.
        hybrid: Callable[..., MissionPlanner] = import_object(HYBRID_SPEC)
        llm = build_planner(
            "llm", lab, seed=seed, scenario=scenario, source=source, max_tokens=max_tokens
        )
        return hybrid(llm)
    prompts = split_variant(name)
    if name == "llm" or prompts is not None:
        from reaper.planners.llm import LLMPlanner

        budget = Budget(
            max_calls=lab.budget.calls, max_tokens=lab.budget.tokens, max_usd=lab.budget.usd
        )
        temperature = lab.planner.temperature if lab.planner.temperature is not None else 0.0
        client = _client(source, scenario)
        recorded = client.recorded_max_tokens() if isinstance(client, ReplayClient) else None
        return LLMPlanner(
            client,
            budget=budget,
            seed=seed,
            temperature=temperature,
            prompts=prompts,
            max_tokens=max_tokens
            or source.max_tokens
            or recorded
            or lab.planner.max_tokens
            or DEFAULT_MAX_TOKENS,
        )
    factory: Callable[..., MissionPlanner] = import_object(name)
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        params = []  # type: ignore[assignment]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    wants_client = any(p.default is p.empty and p.kind in positional for p in params)
    return factory(_client(source, scenario)) if wants_client else factory()
