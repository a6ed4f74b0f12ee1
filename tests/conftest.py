"""Shared fixtures: an isolated cache folder, offline model hubs, and one real model stack per session."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Before anything imports promptzip's cache: tests never touch the user's cache, and never the network.
os.environ.setdefault("PROMPTZIP_CACHE_DIR", tempfile.mkdtemp(prefix="promptzip-test-cache-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import promptzip as pz

ARTICLE = """The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named \
after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889.

Locally nicknamed "La dame de fer", it was constructed as the centrepiece of the 1889 World's Fair. Although \
initially criticised by some of France's leading artists and intellectuals for its design, it has since become a \
global cultural icon of France.

The tower is 330 metres (1,083 ft) tall, about the same height as an 81-storey building, and the tallest structure \
in Paris. Its base is square, measuring 125 metres (410 ft) on each side.

The tower has three levels for visitors, with restaurants on the first and second levels. The top level's upper \
platform is 276 m (906 ft) above the ground, the highest observation deck accessible to the public in the European \
Union.

Bananas are elongated, edible fruit produced by several kinds of large herbaceous flowering plants. In some \
countries, bananas used for cooking may be called plantains. The fruit is variable in size, color and firmness.

The 2024 Summer Olympics were held in Paris from 26 July to 11 August 2024. Beach volleyball was played in a \
temporary stadium at the foot of the tower."""


@pytest.fixture(autouse=True)
def _torch_threads_kept() -> Iterator[None]:
    """Each test leaves torch's thread count as it found it: a training run or an eval called in process sets the
    count for the whole process, and one such test once left every later model test on one thread (twice as slow)."""
    import sys

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def article() -> str:
    return ARTICLE


@pytest.fixture(scope="session")
def fast() -> pz.Zipper:
    """The real ``fast`` stack (packaged MiniLM + BM25), loaded once per session, with an in-memory cache."""
    return pz.Zipper.from_preset("fast", target="gpt-4o", cache="memory")


@pytest.fixture(scope="session")
def gpt4o() -> pz.Tokenizer:
    return pz.get_tokenizer("gpt-4o")


@pytest.fixture(scope="session")
def bm25() -> pz.Zipper:
    """A cheap stack with no model: BM25 relevance + extractive selection (nothing below any relevance floor is
    dropped), for tests of the doors rather than of the models."""
    from promptzip.compressors.extractive import ExtractiveCompressor
    from promptzip.retrievers.sparse import BM25Scorer

    return pz.Zipper(ExtractiveCompressor(BM25Scorer(), min_relevance=None), target="gpt-4o", name="bm25")


@pytest.fixture(scope="session")
def o200k() -> pz.Tokenizer:
    return pz.get_tokenizer("o200k_base")


@pytest.fixture(scope="module")
def upstream() -> Iterator[Any]:
    """A recording fake upstream (``FakeUpstream``) on 127.0.0.1, one per test module."""
    from promptzip.integrations.proxy.testing import FakeUpstream

    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def live(upstream: Any) -> Iterator[str]:
    """The proxy under uvicorn on 127.0.0.1 (a free port; the model-free BM25 stack, the tests' default settings)
    in front of ``upstream``, one per test module; a module may define its own."""
    from proxy_helpers import bm25, settings

    from promptzip.integrations.proxy import create_app
    from promptzip.integrations.proxy.testing import live_server

    with live_server(create_app(settings(upstream.url), zipper_factory=bm25)) as url:
        yield url


@pytest.fixture
def failing(upstream: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A proxy whose compressor always raises, with ``fail_mode`` the test's parameter (``indirect=True``), in
    front of ``upstream``: how a batch fails open or closed request by request."""
    from proxy_helpers import exploding, settings

    from promptzip.integrations.proxy import create_app
    from promptzip.integrations.proxy.testing import live_server

    app = create_app(settings(upstream.url, fail_mode=request.param), zipper_factory=exploding(RuntimeError("boom")))
    with live_server(app) as url:
        yield url


def require_data(*names: str) -> None:
    """Skip the calling test when an eval data set is not fetched, but fail it in CI, where `make data` fetches
    every one it can: there only a set whose pinned release was withdrawn from its registry skips, with that
    reason (``data.unavailable_reason``)."""
    from promptzip.evals import data

    missing = [name for name in names if not data.available(name)]
    if not missing:
        return
    reasons = {name: data.unavailable_reason(name) for name in missing}
    fetchable = [name for name, reason in reasons.items() if reason is None]
    if fetchable and os.environ.get("CI"):
        pytest.fail(f"eval data missing in CI ({', '.join(fetchable)}): `make data` should have fetched it")
    if fetchable:
        pytest.skip(f"data not fetched ({', '.join(fetchable)}): run `make data`")
    by_reason: dict[str, list[str]] = {}
    for name, reason in reasons.items():
        by_reason.setdefault(str(reason), []).append(name)
    pytest.skip("; ".join(f"data cannot be fetched ({', '.join(n)}): {r}" for r, n in by_reason.items()))


# ------------------------------------------------------------------------------------------------- the wheel
def copy_source(dest: Path) -> Path:
    """A clean copy of the source tree: a stale ``build/`` in the checkout must not leak into the wheel."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    top_level = {".git", ".venv", "build", "dist", ".hypothesis", ".stamps", "tests"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n == "__pycache__" or n.endswith((".egg-info", "_cache"))}
        return skip | (top_level & set(names) if Path(folder) == root else set())

    shutil.copytree(root, dest, ignore=ignore)
    return dest


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built once per session (``pip wheel``, no build isolation) from a clean copy of the source."""
    import subprocess
    import sys

    base = tmp_path_factory.mktemp("wheel")
    src, dist = copy_source(base / "src"), base / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), "."],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (built,) = dist.glob("promptzip-*.whl")
    return built


# ------------------------------------------------------------------------------------------------- redis
@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real redis-server (``redis_helpers.RedisServer``), one per test module."""
    from redis_helpers import redis_server_in

    server = redis_server_in(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    """A redis-server this test may kill."""
    from redis_helpers import redis_server_in

    server = redis_server_in(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


# ------------------------------------------------------------------------------------------------- the CLI
def run_cli(*argv: str, out: Any = None) -> tuple[int, str, str]:
    """``promptzip ARGV`` in-process: the exit code, standard output and standard error (``out``: a stream of the
    caller's, a fake terminal say, for standard output)."""
    import io

    from promptzip.cli import main

    out = out if out is not None else io.StringIO()
    err = io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def doc(tmp_path: Path, article: str) -> Path:
    """The test article as a UTF-8 file."""
    path = tmp_path / "tower.txt"
    path.write_text(article, encoding="utf-8")
    return path
