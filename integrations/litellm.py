"""LiteLLM: a callback that compresses the chat of the models and teams that opt in, and fails open.

Register it, then opt models in where LiteLLM keeps their configuration::

    from promptzip.integrations.litellm import PromptZipHook
    import litellm

    litellm.callbacks = [PromptZipHook(rate=0.5, deadline=2.0)]  # defaults; nothing is compressed yet
    router = litellm.Router(model_list=[
        {"model_name": "rag", "litellm_params": {"model": "openai/gpt-4o"},
         "model_info": {"promptzip": {"rate": 0.3}}},                       # opted in, with its own rate
        {"model_name": "chat", "litellm_params": {"model": "openai/gpt-4o"}},  # untouched
    ])
    await router.acompletion(model="rag", messages=messages)

**Which hook.** LiteLLM's ``async_pre_call_hook`` runs only inside the LiteLLM proxy server, before routing. The
hook that LiteLLM runs after the deployment is chosen and before the provider is called is
``async_pre_call_deployment_hook``: every async call runs it (``litellm.acompletion``, ``litellm.aresponses``,
``litellm.anthropic_messages``, ``litellm.atext_completion``, the Router's ``acompletion``, ``aresponses`` and
``aanthropic_messages``, streaming too, and the proxy, which serves them through the Router), and so does LiteLLM's
synchronous Responses handler (``litellm.responses`` and ``Router.responses``, streaming too), which runs it on a
loop of its own. That is the one hook implemented here, so a prompt is compressed exactly once on every path. A
chat's ``messages`` go to the core as they are; a Responses call (``instructions``, ``input``) and an Anthropic
Messages call (``system``, ``messages``, ``cache_control``) and a text completion (``prompt``, a raw prompt, perhaps
in a chat template) are read by the proxy's dialects for those APIs (:mod:`promptzip.integrations._dialects`), so
they go out as the proxy's ``/v1/responses``, ``/v1/messages`` and ``/v1/completions`` routes and a wrapped SDK
client send them: tool outputs cut by their structure, cache breakpoints kept. A call's ``prompt_cache_key`` names
its conversation (cache-stable history), as for a wrapped client; other conversations are recognised by their
messages. LiteLLM 1.109.1 runs no request-rewriting hook for the synchronous chat ``completion`` /
``Router.completion`` and ``text_completion`` (``async_pre_request_hook`` serves only its native Anthropic Messages
handler), so those calls go out uncompressed; use ``acompletion`` / ``atext_completion``, or decorate the function
(``promptzip.compress_call(rate=0.3)(litellm.completion)`` compresses its ``messages``,
``promptzip.compress_call(rate=0.3, arg="prompt")(litellm.text_completion)`` its ``prompt``). The hook says so
(``log_pre_api_call``, which LiteLLM runs on that path): a warning the first time for each opted-in model.

**Opting in** (absent everywhere: the request passes through untouched). ``promptzip`` may be ``true`` (the hook's
defaults), ``false`` (off), or a mapping with ``preset``, ``target``, ``budget`` (tokens), ``rate`` (the kept
fraction), ``scope`` (``all`` | ``history``), ``deadline`` (seconds) and ``disable``:

* per deployment: ``model_info: {promptzip: ...}`` in the model list (LiteLLM passes ``model_info`` through to the
  call; an unknown key under ``litellm_params`` would be sent to the provider);
* per team (proxy): ``metadata: {promptzip: ...}`` on the team, which the proxy hands to every call of its keys
  as ``user_api_key_team_metadata``;
* by name: ``PromptZipHook(models=("rag",))`` opts model groups (or deployment models) in from code.

The layers merge as hook defaults < deployment < team; ``false`` (or ``disable: true``) at any layer turns
compression off. A call may then narrow it with ``metadata={"promptzip": ...}``: ``false``, an int token budget, or
``{"budget"|"rate"|"scope"|"disable"}`` (as for the wrapped OpenAI client); it cannot pick a preset or a deadline,
since in the proxy that metadata comes from the client.

**Seeing what was dropped.** ``PromptZipHook(on_result=callback)`` calls ``callback`` with the
:class:`promptzip.Result` of each call it compressed (not of one that goes out as given), on the event loop once the
compression finished within its deadline, before the call is sent: ``Result.dropped`` is what the model does not get.
What the callback raises is not failed open: it propagates from the call as itself, and nothing is sent (a Router
retries a call that failed, as after any error, so the callback sees each try).

**Failing open.** A configuration error, a compression error (any exception: the uncompressed request would have
worked) or a compression that runs past ``deadline`` seconds (:func:`promptzip._deadline.deadline` inside the
worker thread, and the wait for it bounded by the same limit) leaves the request exactly as it was and logs a
warning on the ``promptzip.integrations.litellm`` logger. The first call of a preset also loads its models, which
can take longer than a short deadline; those calls go out uncompressed while the loading finishes.

Importing this module sets ``LITELLM_LOCAL_MODEL_COST_MAP=True`` unless it is already set: litellm otherwise
downloads its model cost map from GitHub when it is imported, and promptzip never reaches the network on its own.
"""

from __future__ import annotations

import os

# Before litellm is imported (see the module docstring); a value the user set is kept.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from litellm.integrations.custom_logger import CustomLogger
from litellm.types.utils import CallTypes

from promptzip._cache import Cache
from promptzip._deadline import deadline as time_limit
from promptzip._errors import ConfigError, PromptZipError
from promptzip._pipeline import Zipper
from promptzip._types import Budget, Result
from promptzip.integrations._calls import CallOptions, Compression, call_context, check_on_result, check_scope, report
from promptzip.integrations._dialects import AnthropicMessages, Completions, Dialect, OpenAIResponses

__all__ = ["KEY", "CallPlan", "PromptZipHook"]

KEY: Final = "promptzip"
_KEYS: Final = ("preset", "target", "budget", "rate", "scope", "deadline", "disable")
_CALL_KEYS: Final = ("budget", "rate", "scope", "disable")
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What one call is compressed with, once its layers are merged (:meth:`PromptZipHook.plan`)."""

    preset: str
    target: str
    spec: Budget
    scope: str
    deadline: float


class PromptZipHook(CustomLogger):
    """Compresses the prompt of the async chat, Responses (sync too) and Anthropic Messages calls that opt in (see the
    module docstring).

    ``preset``, ``budget`` / ``rate`` (default ``rate=0.5``), ``scope``, ``deadline`` (seconds; 10, the proxy's
    default) and ``target`` (the tokenizer that counts) are the defaults that opted-in calls start from; ``models``
    opts model groups in by name; ``cache`` is the promptzip cache (a URL or a Cache); ``zippers`` maps preset names
    to ready Zippers (otherwise each preset is built with ``Zipper.from_preset`` on first use, and shared);
    ``on_result`` is called with the Result of each call that was compressed, before it is sent (see the module
    docstring).
    """

    def __init__(
        self,
        *,
        preset: str = "fast",
        budget: Budget | int | None = None,
        rate: float | None = None,
        scope: str = "all",
        deadline: float = 10.0,
        target: str = "gpt-4o",
        models: Iterable[str] = (),
        cache: str | Cache | None = None,
        zippers: Mapping[str, Zipper] | None = None,
        on_result: Callable[[Result], object] | None = None,
    ) -> None:
        super().__init__()
        if budget is None and rate is None:
            rate = 0.5
        spec = Budget.coerce(budget, rate=rate)
        self.defaults = CallPlan(
            _name(preset, "preset"), _name(target, "target"), spec, check_scope(scope), _seconds(deadline, "deadline")
        )
        if isinstance(models, str) or not isinstance(models, Iterable):
            raise ConfigError(f"models must be a list of model names, not {type(models).__name__}")
        self.models = frozenset(_name(m, "models") for m in models)
        self.on_result = check_on_result(on_result)
        if cache is not None and not isinstance(cache, str | Cache):
            raise ConfigError(f"cache must be a cache URL, a Cache or None, not {type(cache).__name__}")
        self._cache = cache
        self._zippers = _zippers(zippers)
        self._compressions: dict[tuple[str, str], Compression] = {}
        self._lock = threading.Lock()
        self._sync_warned: set[str] = set()  # the models whose sync completion() was said to go uncompressed

    def __repr__(self) -> str:
        return f"PromptZipHook(defaults={self.defaults!r}, models={sorted(self.models)!r})"

    async def async_pre_call_deployment_hook(
        self, kwargs: dict[str, object], call_type: CallTypes | None
    ) -> dict[str, Any] | None:
        """The request with its prompt compressed when it opts in; ``None`` (LiteLLM's "unchanged") otherwise, and
        whenever compression fails or runs past its deadline."""
        door = _DOORS.get(call_type) if call_type is not None else None
        if door is None or not kwargs.get(door.prompt):
            return None
        plan: CallPlan | None = None
        try:
            plan = self.plan(kwargs)
            if plan is None:
                return None
            compression = self._compression(plan.preset, plan.target)
            work = asyncio.to_thread(_compress, door, compression, kwargs, plan)
            out, result = await asyncio.wait_for(work, timeout=plan.deadline)
        # Fail open on any error: the request would have worked uncompressed, so compression must never be why
        # it fails. Each failure is logged, with its traceback when it is not one of promptzip's own errors.
        except Exception as exc:
            _warn(kwargs, plan, exc)
            return None
        # Outside the deadline and the fail-open: the callback sees only what is sent, and may stop it.
        report(self.on_result, result)
        return out

    def log_pre_api_call(self, model: object, messages: object, kwargs: dict[str, Any]) -> None:
        """Says so when an opted-in synchronous chat ``completion`` goes out uncompressed (LiteLLM runs no hook that
        could rewrite it, see the module docstring): a warning the first time for each model, then debug lines, so
        that a user who opted a model in sees why its sync calls are not smaller. Never raises: it only logs."""
        if not isinstance(kwargs, Mapping) or kwargs.get("call_type") not in _UNHOOKED:
            return
        call, args = _UNHOOKED[kwargs["call_type"]]
        params = _mapping(kwargs.get("litellm_params"))
        name = str(kwargs.get("model") or model)
        provider = kwargs.get("custom_llm_provider")
        names = [name, f"{provider}/{name}"] if isinstance(provider, str) and provider else [name]
        if isinstance(provider, str) and provider.startswith("text-completion-"):  # how the user named it: openai/…
            names.append(f"{provider.removeprefix('text-completion-')}/{name}")
        layers = {"model_info": params.get("model_info"), "metadata": params.get("metadata")}
        try:
            opted = any(self.plan({"model": n, **layers}) for n in names)
        except PromptZipError:  # a broken layer opts in all the same: what the async doors would warn about
            opted = True
        if not opted:
            return
        group = _mapping(params.get("metadata")).get("model_group") or name
        with self._lock:
            first = group not in self._sync_warned
            self._sync_warned.add(str(group))
        logger.log(
            logging.WARNING if first else logging.DEBUG,
            "promptzip: LiteLLM runs no hook for a synchronous %s(), so the call to %r goes uncompressed; "
            "use a%s(), or decorate it: promptzip.compress_call(%s)(litellm.%s)",
            call,
            group,
            call,
            args,
            call,
        )

    def plan(self, kwargs: Mapping[str, object]) -> CallPlan | None:
        """What a call with these LiteLLM ``kwargs`` is compressed with, or ``None`` when it is not opted in (or
        is turned off). Raises :class:`~promptzip.ConfigError` / :class:`~promptzip.BudgetError` for a bad layer."""
        if not isinstance(kwargs, Mapping):
            raise ConfigError(f"plan takes a call's keyword arguments as a mapping, not {type(kwargs).__name__}")
        metadata = _mapping(kwargs.get("metadata")) or _mapping(kwargs.get("litellm_metadata"))
        model_info = _mapping(kwargs.get("model_info")) or _mapping(metadata.get("model_info"))
        team = _mapping(metadata.get("user_api_key_team_metadata"))
        layers = [(f"model_info.{KEY}", model_info.get(KEY)), (f"team metadata {KEY}", team.get(KEY))]
        names = (metadata.get("model_group"), kwargs.get("model"))
        opted = any(isinstance(n, str) and n in self.models for n in names)
        plan: CallPlan | None = self.defaults
        for where, value in layers:
            layer = _layer(value, where)
            if layer is False:
                return None
            if layer is True:
                opted = True
            elif layer is not None and plan is not None:
                opted = True
                plan = _apply(plan, layer, where)
        if not opted or plan is None:
            return None
        call = CallOptions.parse(metadata.get(KEY))
        if not call.enabled:
            return None
        return replace(plan, spec=call.spec or plan.spec, scope=call.scope or plan.scope)

    def _compression(self, preset: str, target: str) -> Compression:
        """One Compression (and so one Zipper) per preset and target, built on first use and shared."""
        with self._lock:
            compression = self._compressions.get((preset, target))
            if compression is None:
                compression = Compression(
                    budget=self.defaults.spec,
                    rate=None,
                    target=target,
                    preset=preset,
                    cache=self._cache,
                    zipper=self._zippers.get(preset),
                    scope=self.defaults.scope,
                )
                self._compressions[(preset, target)] = compression
            return compression


# ---------------------------------------------------------------------------------------------------- the calls
@dataclass(frozen=True, slots=True)
class _Door:
    """One kind of LiteLLM call: the keyword that holds its prompt (a call without it is left alone) and, for the
    calls whose API is not a chat, the proxy's dialect for that API with the keywords it reads."""

    prompt: str
    dialect: Dialect | None = None
    keys: tuple[str, ...] = ()


_CHAT = _Door("messages")
_RESPONSES = _Door("input", OpenAIResponses(), ("instructions", "input"))
_ANTHROPIC = _Door("messages", AnthropicMessages(), ("system", "messages", "cache_control"))
_TEXT = _Door("prompt", Completions(), ("prompt", "echo"))
# The synchronous calls LiteLLM runs no rewriting hook for (log_pre_api_call says so): the function, and the
# compress_call arguments that compress its prompt.
_UNHOOKED: Final = {
    CallTypes.completion.value: ("completion", "rate=..."),
    CallTypes.text_completion.value: ("text_completion", 'rate=..., arg="prompt"'),
}
_DOORS: Final[Mapping[CallTypes, _Door]] = {
    CallTypes.acompletion: _CHAT,
    CallTypes.completion: _CHAT,
    CallTypes.aresponses: _RESPONSES,
    CallTypes.responses: _RESPONSES,
    CallTypes.anthropic_messages: _ANTHROPIC,
    CallTypes.aanthropic_messages: _ANTHROPIC,
    CallTypes.atext_completion: _TEXT,
}


def _compress(
    door: _Door,
    compression: Compression,
    kwargs: Mapping[str, Any],
    plan: CallPlan,
) -> tuple[dict[str, Any], Result | None]:
    """The call's keyword arguments with its prompt compressed, its conversation named and priced by the
    deployment's own arguments (:func:`~promptzip.integrations._calls.call_context`), and the Result of that
    compression (``None``: sent as given), which the hook reports. Runs in a worker thread: the deadline is per
    thread, so it is set here, around the work it limits."""
    options: dict[str, Any] = {"spec": plan.spec, "scope": plan.scope, **call_context(kwargs)}
    seen: list[Result] = []
    with time_limit(plan.deadline):
        mine = compression.reporting(seen.append)  # this call's Result, from the Compression calls share
        if door.dialect is not None:
            out = mine.call(door.dialect, kwargs, door.keys, **options)
        else:
            messages = mine.chat(kwargs["messages"], **options)
            out = {**kwargs, "messages": [dict(m) if isinstance(m, Mapping) else m for m in messages]}
    return out, seen[-1] if seen else None


# ---------------------------------------------------------------------------------------------------- helpers


def _apply(plan: CallPlan, layer: Mapping[str, Any], where: str) -> CallPlan | None:
    """``plan`` with one layer's settings; ``None`` when the layer turns compression off."""
    call = CallOptions.parse({k: v for k, v in layer.items() if k in _CALL_KEYS})
    if not call.enabled:
        return None
    return CallPlan(
        _name(layer["preset"], f"{where}.preset") if "preset" in layer else plan.preset,
        _name(layer["target"], f"{where}.target") if "target" in layer else plan.target,
        call.spec or plan.spec,
        call.scope or plan.scope,
        _seconds(layer["deadline"], f"{where}.deadline") if "deadline" in layer else plan.deadline,
    )


def _layer(value: object, where: str) -> bool | Mapping[str, Any] | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in _KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; the keys are {', '.join(_KEYS)}")
        return value
    raise ConfigError(f"{where} must be true, false or a mapping of {', '.join(_KEYS)}; not {type(value).__name__}")


def _zippers(value: object) -> dict[str, Zipper]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"zippers must map preset names to promptzip.Zippers, not {type(value).__name__}")
    for name, zipper in value.items():
        if not isinstance(zipper, Zipper):
            raise ConfigError(f"zippers[{name!r}] must be a promptzip.Zipper, not {type(zipper).__name__}")
    return dict(value)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _name(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty str, got {value!r}")
    return value


def _seconds(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or math.isinf(value):
        raise ConfigError(f"{where} must be a positive number of seconds, got {value!r}")
    return float(value)


def _warn(kwargs: Mapping[str, object], plan: CallPlan | None, exc: Exception) -> None:
    model = _mapping(kwargs.get("metadata")).get("model_group") or kwargs.get("model")
    if isinstance(exc, TimeoutError) and plan is not None:  # DeadlineExceeded, or the wait for the thread
        reason = f"compression ran past its {plan.deadline:g} s deadline"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    logger.warning(
        "promptzip: %s; the call to %r goes uncompressed",
        reason,
        model,
        exc_info=not isinstance(exc, PromptZipError | TimeoutError),
    )
