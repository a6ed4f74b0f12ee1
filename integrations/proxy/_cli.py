"""``promptzip proxy``: the command-line front of the proxy.

``promptzip.cli`` calls :func:`add_proxy_command` with its sub-parsers; ``python -m promptzip.integrations.proxy``
runs the same command on its own through :func:`main`. Heavy imports (starlette, uvicorn, httpx) happen in the
handler only, so ``promptzip --help`` stays fast.

The command warms up before it serves (``--no-warmup``, or ``warmup = false`` in the config file, turns it off):
it loads the default route's preset and runs one small compression (:func:`warm_up`), then says it is ready and
how many seconds that took, so the first request does not pay the model loading (several seconds). The settings'
``warmup`` stays on for the app as well, whose own warm-up then finds the models loaded.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from promptzip.integrations.proxy._settings import ProxySettings

__all__ = ["WARMUP_QUESTION", "WARMUP_TEXT", "add_proxy_command", "main", "warm_up"]

WARMUP_TEXT = (
    "The proxy loads its models when it starts. It answers requests once they are loaded. "
    "A request that arrives later does not wait for them."
)
WARMUP_QUESTION = "When does the proxy load its models?"
_NO_LIMIT = "none"


def add_proxy_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``proxy`` to an ``argparse`` sub-parser group; the handler is ``args.func(args, out, err) -> int``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "proxy",
        help="serve an OpenAI/Anthropic-compatible proxy that compresses chat requests",
        description="Serve a proxy on HOST:PORT that compresses /v1/chat/completions, /v1/messages (Anthropic), "
        "/v1/responses and /v1/completions (raw prompts) requests and forwards every /v1/* request to UPSTREAM (the "
        "base URL an SDK would use, with its /v1).",
    )
    p.add_argument("--upstream", help="upstream base URL, e.g. https://api.openai.com/v1 (required unless in --config)")
    p.add_argument("--host", help="address to bind (default: 127.0.0.1; use 0.0.0.0 only behind your own auth)")
    p.add_argument("--port", type=int, help="port to bind (default: 8787)")
    p.add_argument("--cache", help="cache URL: redis://host:6379/0 (shared by replicas), sqlite:///path, memory, none")
    p.add_argument("--config", help="JSON or TOML settings file (per-route defaults, timeouts, limits)")
    _add_compression_options(p)
    _add_limits(p)
    p.add_argument(
        "--tenant-header",
        help="a header naming a configured tenant, set by a gateway in front that strips clients' own (default: "
        "none; tenants are found by API-key digest, see the config file's [tenants])",
    )
    p.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="load the default preset's models and run one compression before serving (default: on; --no-warmup "
        "serves at once and loads them on the first request)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="level of the proxy's log on stderr (default: info, which shows one line per request; no content)",
    )
    p.set_defaults(func=run_proxy)
    return p


def _add_compression_options(p: argparse.ArgumentParser) -> None:
    """What a chat is compressed with by default, and what a request may ask for."""
    p.add_argument("-p", "--preset", help="default compression preset (default: fast)")
    p.add_argument("-t", "--target", help="default target tokenizer (default: gpt-4o)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("-b", "--budget", type=int, help="default budget in tokens for a chat")
    group.add_argument("-r", "--rate", type=float, help="default kept fraction (default: 0.5)")
    p.add_argument("--min-tokens", type=int, help="chats smaller than this are forwarded as they are (default: 1024)")
    p.add_argument(
        "--fail-mode",
        choices=["open", "closed"],
        help="on a compressor failure: forward the original (open, default) or answer an error (closed)",
    )
    p.add_argument(
        "--scope",
        choices=["all", "history"],
        help="what a chat's compression may touch: the context in every message (all, default) or earlier turns "
        "only (history); a request's x-promptzip-scope header overrides it",
    )
    p.add_argument(
        "--allow-preset",
        action="append",
        dest="allowed_presets",
        metavar="PRESET",
        help="a preset x-promptzip-preset may name (repeat it; default: only the presets configured)",
    )
    p.add_argument(
        "--report-dropped",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="name in each compressed answer's x-promptzip-dropped header an expand id that holds what the model did "
        "not get (GET /v1/promptzip/expand/{id}, same API key; default: off)",
    )


def _add_limits(p: argparse.ArgumentParser) -> None:
    """Timeouts, body sizes, client connections and (:func:`_add_compression_limits`) the compression slots: what no
    client may exceed."""
    p.add_argument("--timeout", type=float, help="seconds to wait for the upstream's answer (default: 600)")
    p.add_argument("--connect-timeout", type=float, help="seconds to connect to the upstream (default: 5)")
    p.add_argument(
        "--max-body-bytes", type=int, help="largest request body the proxy reads to compress it (default: 10 MiB)"
    )
    p.add_argument(
        "--max-buffered-bytes",
        type=int,
        help="request bodies the proxy holds in memory, all requests together; a body that does not fit is answered "
        "503 + retry-after (default: 160 MiB; at least --max-body-bytes)",
    )
    p.add_argument(
        "--max-forward-bytes",
        type=_byte_limit,
        metavar="BYTES",
        help="largest request body forwarded unread, as it arrives (routes not compressed, uploads too large to "
        "read); 'none' leaves it to the upstream (default: 512 MiB)",
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds a whole request body may take to arrive, plus 1 s per --min-body-rate bytes received; past "
        "it: 408 and the connection is closed (default: 300)",
    )
    p.add_argument(
        "--min-body-rate",
        type=int,
        metavar="BYTES",
        help="bytes per second a request body earns past --body-timeout, so a large upload on a slow link gets "
        "through (default: 16384)",
    )
    p.add_argument(
        "--min-send-rate",
        type=int,
        metavar="BYTES",
        help="bytes per second a client must take of an answer while the proxy waits on it; one that takes less "
        "over --send-timeout is dropped (default: 512)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds a client has to send a request's headers, from connecting or from the previous answer; past "
        "it the connection is closed (default: 10)",
    )
    p.add_argument(
        "--send-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds a client may take none of an answer (under --min-send-rate bytes a second) while the proxy "
        "waits on it before the connection is dropped, so a client that stops reading cannot hold its upstream "
        "connection (default: 60)",
    )
    p.add_argument(
        "--max-client-connections",
        type=_count_limit,
        metavar="N",
        help="client connections open at once; one more gets 503 + retry-after and is closed; 'none': no cap "
        "(default: 1024)",
    )
    p.add_argument(
        "--max-connections-per-client",
        type=_count_limit,
        metavar="N",
        help="client connections open at once from one address, so that one client cannot take them all; not "
        "behind a load balancer, where every client has its address; 'none': no cap (default: none)",
    )
    _add_compression_limits(p)


def _add_compression_limits(p: argparse.ArgumentParser) -> None:
    """The compression slots: how long one chat may take, how many may wait, and in whose turn."""
    p.add_argument(
        "--compression-deadline",
        type=float,
        help="seconds one chat's compression may take; past it the chat fails open or closed (default: 10)",
    )
    p.add_argument(
        "--compression-queue",
        type=int,
        help="compressions that may run or wait at once; one more is answered 503 + retry-after (default: 16)",
    )
    p.add_argument(
        "--fair-queue",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="take waiting compressions and requests waiting for an upstream connection in turns by client (tenant, "
        "else API key), and when the compression queue is full shed the newest of the client holding the most; "
        "--no-fair-queue: by arrival, the newcomer refused (default: on)",
    )


def _byte_limit(value: str, what: str = "a number of bytes") -> int | str:
    """A number of bytes, or ``"none"`` (no limit of the proxy's own)."""
    if value.strip().lower() == _NO_LIMIT:
        return _NO_LIMIT
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what} or {_NO_LIMIT!r}: {value!r}") from None


def _count_limit(value: str) -> int | str:
    """A number of connections, or ``"none"``."""
    return _byte_limit(value, "a number")


def warm_up(settings: ProxySettings) -> tuple[str, str]:
    """Load the models of the preset the proxy's first route uses (the one the app warms up) and run one small
    compression with it; return that ``(preset, target)``. Models are shared by the whole process, so the app's
    Zippers find them loaded."""
    from promptzip._pipeline import Zipper
    from promptzip._types import Budget

    route = settings.routes[next(iter(settings.routes))]
    preset, target = route.preset or settings.preset, route.target or settings.target
    zipper = Zipper.from_preset(preset, target=target, cache="memory")
    zipper.compress(WARMUP_TEXT, question=WARMUP_QUESTION, budget=Budget(rate=0.5))
    return preset, target


def run_proxy(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from promptzip.integrations.proxy._app import serve
    from promptzip.integrations.proxy._settings import load_settings

    started = time.perf_counter()
    timeouts = {
        "read": args.timeout,
        "connect": args.connect_timeout,
        "body": args.body_timeout,
        "headers": args.header_timeout,
        "send": args.send_timeout,
    }
    limits = ("max_forward_bytes", "max_client_connections", "max_connections_per_client")
    unlimited = {k: None for k in limits if getattr(args, k) == _NO_LIMIT}
    settings = load_settings(
        args.config,
        defaults={"warmup": True},
        upstream=args.upstream,
        host=args.host,
        port=args.port,
        cache=args.cache,
        preset=args.preset,
        target=args.target,
        budget=args.budget,
        rate=args.rate,
        min_tokens=args.min_tokens,
        fail_mode=args.fail_mode,
        scope=args.scope,
        max_body_bytes=args.max_body_bytes,
        max_buffered_bytes=args.max_buffered_bytes,
        max_forward_bytes=None if args.max_forward_bytes == _NO_LIMIT else args.max_forward_bytes,
        min_body_rate=args.min_body_rate,
        min_send_rate=args.min_send_rate,
        max_client_connections=None if args.max_client_connections == _NO_LIMIT else args.max_client_connections,
        max_connections_per_client=(
            None if args.max_connections_per_client == _NO_LIMIT else args.max_connections_per_client
        ),
        tenant_header=args.tenant_header,
        compression_deadline=args.compression_deadline,
        compression_queue=args.compression_queue,
        fair_queue=args.fair_queue,
        allowed_presets=tuple(args.allowed_presets) if args.allowed_presets else None,
        warmup=args.warmup,
        report_dropped=args.report_dropped,
        timeouts={k: v for k, v in timeouts.items() if v is not None} or None,
    )
    if unlimited:  # an override of None means "not given" to load_settings
        settings = settings.model_copy(update=unlimited)
    err.write(f"promptzip proxy: http://{settings.host}:{settings.port}/v1 → {settings.upstream}\n")
    if settings.warmup:
        err.write("promptzip proxy: warming up (--no-warmup skips this)\n")
        err.flush()
        preset, target = warm_up(settings)
        err.write(
            f"promptzip proxy: ready in {time.perf_counter() - started:.2f} s (preset {preset!r}, target {target!r}: "
            "models loaded, one compression run)\n"
        )
    else:
        err.write("promptzip proxy: no warm-up; the first request loads the models\n")
    err.flush()
    serve(settings, log_level=args.log_level)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``proxy`` as a program of its own (what ``python -m promptzip.integrations.proxy`` does)."""
    from promptzip._errors import PromptZipError

    command = add_proxy_command(argparse.ArgumentParser().add_subparsers())
    command.prog = "python -m promptzip.integrations.proxy"
    args = command.parse_args(argv)
    try:
        return run_proxy(args, sys.stdout, sys.stderr)
    except PromptZipError as exc:
        sys.stderr.write(f"promptzip proxy: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
