"""Building the LLM planner from the CLI's config, the lab's planner spec and its budget.

Precedence for each setting: the lab file's ``planner`` section (as stored in
``MissionState.settings["planner"]``) gives the mission's own choice, config/env/flags
(``Config.llm_*``) override it, and a replay cassette overrides both provider and model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm.base import LLMClient
from llm.errors import LLMConfigError
from llm.gguf import check_gguf
from llm.pricing import DEFAULT_PRICES
from reaper.errors import ConfigError
from reaper.models import MissionState
from reaper.planners.budget import Budget
from reaper.planners.llm import LLMPlanner, build_llm_planner
from reaper.secrets import register_host_secrets

__all__ = ["planner_from_cli"]


def planner_from_cli(
    config: Any,
    state: MissionState,
    *,
    replay: str | Path | None = None,
    record: str | Path | None = None,
    secrets: tuple[str, ...] = (),
    client: LLMClient | None = None,
    synthetic: bool = False,
) -> LLMPlanner:
    """``config`` is ``reaper.config.Config`` (duck-typed: only ``llm_*`` and ``prices`` are
    read). ``client`` and ``synthetic`` are for synthetic cassettes (a scripted model
    recorded as such). Raises ``ConfigError`` with one clear line (missing key, SDK, model
    or cassette). Every secret the mission's hosts reference (and every other value this
    process knows, e.g. an inventory's inline passwords) is masked in the prompt and in a
    recorded cassette."""
    secrets = (*secrets, *register_host_secrets(h.connection for h in state.hosts.values()))
    spec: dict[str, Any] = dict(state.settings.get("planner") or {})
    limits: dict[str, Any] = dict(state.settings.get("budget") or {})
    provider = config.llm_provider or spec.get("provider") or ("replay" if replay else "")
    if client is not None:
        provider = provider or client.provider
    model = config.llm_model or spec.get("model") or ""
    if not replay and not provider:
        raise ConfigError(
            "the llm planner needs a provider: --provider anthropic|openai|openai-compatible|local "
            "(or REAPER_LLM_PROVIDER), or --replay CASSETTE"
        )
    model_path = _model_path(getattr(config, "llm_model_path", None), provider)
    temperature = config.llm_temperature
    if temperature is None:
        temperature = spec.get("temperature", 0.0)
    try:
        return build_llm_planner(
            provider=provider,
            model=model,
            base_url=config.llm_base_url or spec.get("base_url"),
            model_path=model_path,
            replay=Path(replay) if replay else None,
            record=Path(record) if record else None,
            budget=Budget(
                max_calls=limits.get("calls"),
                max_tokens=limits.get("tokens"),
                max_usd=limits.get("usd"),
            ),
            prices=DEFAULT_PRICES.with_overrides(config.prices or {}),
            timeout=config.llm_timeout_s,
            max_retries=config.llm_max_retries,
            temperature=temperature,
            max_tokens=spec.get("max_tokens") or config.llm_max_tokens,
            seed=int(state.settings.get("seed", 0)),
            secrets=secrets,
            client=client,
            synthetic=synthetic,
        )
    except LLMConfigError as exc:
        raise ConfigError(str(exc)) from exc


def _model_path(value: str | None, provider: str) -> Path | None:
    """`--model-path`, checked to be a GGUF file, and only with `--provider local`."""
    if not value:
        return None
    if provider != "local":
        raise ConfigError(f"--model-path is for --provider local (not {provider or 'none'})")
    try:
        return check_gguf(Path(value).expanduser())
    except LLMConfigError as exc:
        raise ConfigError(str(exc)) from exc
