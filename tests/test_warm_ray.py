"""The index-time warm-up on Ray Data (``promptzip warm --ray``): a local Ray cluster of 2 CPUs started here, an
actor pool warming a small corpus into a real Redis (SQLite when ``redis-server`` is absent), and a Zipper on that
cache then compressing the corpus with no encoder pass over its sentences.

Without Ray the module skips with the reason, except under CI (``CI`` set), where the ``ray`` extra is installed
(the Makefile's ``EXTRAS``) and a missing Ray fails."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

try:
    import ray
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("ray is not installed (pip install 'promptzip[ray]')", allow_module_level=True)

import promptzip as pz
from promptzip._cache import decode_array
from promptzip._errors import ConfigError
from promptzip._split import chunk_source, sentence_spans
from promptzip._warm_ray import RayWarmReport, warm_on_ray
from promptzip.cli import main as cli
from promptzip.evals._redis_server import redis_server

SOTU = (resources.files("promptzip") / "_sample" / "sotu.txt").read_text(encoding="utf-8")
QUESTION = "What did the President propose to make college more affordable?"


# -- a real cache every Ray worker reaches ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server on a free port, persistence off (as ``tests/test_redis_cache.py`` starts it); a SQLite file
    when the binary is absent (that module fails in CI without it)."""
    folder = tmp_path_factory.mktemp("warm-ray-cache")
    with redis_server(folder) as port:
        yield f"sqlite:///{folder / 'cache.db'}" if port is None else f"redis://127.0.0.1:{port}/0?timeout=5"


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A local cluster of 2 CPUs. Ray puts the driver's working directory first on the workers' sys.path, and the
    checkout's promptzip/ folder would shadow the installed package there: it is started from a temporary one."""
    with contextlib.chdir(tmp_path_factory.mktemp("ray-driver")):
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("warm-ray-corpus")
    paragraphs = SOTU.split("\n\n")
    quarter = len(paragraphs) // 4
    for i in range(4):
        part = paragraphs[i * quarter : (i + 1) * quarter if i < 3 else len(paragraphs)]
        (folder / f"part{i}.txt").write_text("\n\n".join(part), encoding="utf-8")
    (folder / "blob.txt").write_bytes(b"\x00\x01\x02 not text")
    (folder / "notes.md").write_text("Not matched by the glob.", encoding="utf-8")
    return folder


# -- counting encoder passes and cache misses (as tests/test_warm.py does) -----------------------------------------
class _Counting:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from promptzip.retrievers.dense import DenseScorer

        self.passes = 0
        for name in ("_encode", "_missing_states"):
            monkeypatch.setattr(DenseScorer, name, self._wrap(getattr(DenseScorer, name)))

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.passes += 1
            return original(*args, **kwargs)

        return counted


def _record(get_many: Callable[[list[str]], dict[str, bytes]], keys: list[str], missed: list[str]) -> dict[str, bytes]:
    found = get_many(list(keys))
    missed.extend(k for k in dict.fromkeys(keys) if k not in found)
    return found


# -- the tests ---------------------------------------------------------------------------------------------------
def test_bad_options_fail_before_ray_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not shared"):
        warm_on_ray(texts=["x"], cache_url="memory")
    with pytest.raises(ConfigError, match="workers"):
        warm_on_ray(texts=["x"], cache_url=f"sqlite:///{tmp_path / 'c.db'}", workers=0)
    with pytest.raises(ConfigError):
        warm_on_ray(texts=["x"], cache_url=f"sqlite:///{tmp_path / 'c.db'}", preset="no-such-preset")
    with pytest.raises(ConfigError, match="unknown cache scheme"):
        warm_on_ray(texts=["x"], cache_url=f"sqlit:///{tmp_path / 'c.db'}")
    assert warm_on_ray(cache_url=f"sqlite:///{tmp_path / 'c.db'}").chunks == 0  # nothing to do: no cluster
    assert not ray.is_initialized()
    err = io.StringIO()
    assert cli(["warm", str(tmp_path), "--workers", "2"], stdout=io.StringIO(), stderr=err) == 2
    assert "go with --ray" in err.getvalue()
    assert cli(["warm", str(tmp_path), "--ray"], stdout=io.StringIO(), stderr=err) == 2
    assert "needs --cache" in err.getvalue()


@pytest.mark.slow
def test_warm_command_with_ray_starts_and_stops_its_own_cluster(corpus: Path, tmp_path: Path) -> None:
    assert not ray.is_initialized()
    out, err = io.StringIO(), io.StringIO()
    url = f"sqlite:///{tmp_path / 'cache.db'}"  # one machine: SQLite is shared by its workers
    argv = ["warm", str(corpus / "part0.txt"), "--cache", url, "--ray", "--workers", "1", "--json"]
    assert cli(argv, stdout=out, stderr=err) == 0
    assert not ray.is_initialized()  # the cluster it started is gone
    summary = json.loads(out.getvalue())
    text = (corpus / "part0.txt").read_text(encoding="utf-8")
    chunks = chunk_source(text, "x")
    assert summary["files"] == 1
    assert summary["sentences"] == sum(len(sentence_spans(c.text)) for c in chunks if not c.protected)
    assert summary["cache_errors"] == 0
    assert [w["sentences"] for w in summary["workers"]] == [summary["sentences"]]
    assert "on 1 Ray worker(s)" in err.getvalue()
    with pz.Zipper.from_preset("fast", cache=url).cache as cache:
        assert cache.stats()["entries"] >= summary["sentences"]  # a vector per sentence, more for clauses


@pytest.mark.slow
def test_an_actor_pool_warms_the_shared_cache_and_compression_reads_only_the_question(
    local_ray: None, cache_url: str, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = [("given", "A text given directly. It is warmed too."), ("bad", "<pz keep>never closed")]
    report = warm_on_ray([corpus], texts=given, cache_url=cache_url, workers=2, batch_size=8, glob="*.txt")

    files = sorted(corpus.glob("part*.txt"))
    texts = [f.read_text(encoding="utf-8") for f in files]
    chunks = [c for t in [*texts, given[0][1]] for c in chunk_source(t, "x")]
    assert isinstance(report, RayWarmReport)
    assert report.files == 4  # the blob is skipped, the given texts are not files
    assert report.chunks == len(chunks)
    assert report.sentences == sum(len(sentence_spans(c.text)) for c in chunks if not c.protected)
    assert sorted(s.split(": ")[0] for s in report.skipped) == sorted(["bad", str((corpus / "blob.txt").resolve())])
    assert report.cache_errors == 0
    assert 1 <= len(report.workers) <= 2
    assert sum(w.batches for w in report.workers) >= len(chunks) // 8  # batches of at most 8 chunks
    for worker in report.workers:  # in the pool's processes, each with its model loaded once
        assert not worker.worker.endswith(f":{os.getpid()}")
        assert worker.load_seconds > 0
    assert sum(w.sentences for w in report.workers) == report.sentences
    assert f"on {len(report.workers)} Ray worker(s)" in report.summary()

    counting = _Counting(monkeypatch)
    zipper = pz.Zipper.from_preset("fast", cache=cache_url)  # a new stack in this process: all from the cache
    missed: list[str] = []
    get_many = zipper.cache.get_many
    monkeypatch.setattr(zipper.cache, "get_many", lambda keys: _record(get_many, keys, missed))
    monkeypatch.setattr(zipper.cache, "get", lambda key: _record(get_many, [key], missed).get(key))
    for text in texts:
        r = zipper.compress(text, question=QUESTION, budget=200)
        assert r.decision == "compressed"
        assert r.tokens_out <= 200
    assert counting.passes == 0  # no encoder pass over any sentence or clause of the corpus
    assert len(missed) == 1  # the only miss: the question's embedding, stored by the first compression
    stored = decode_array(get_many(missed)[missed[0]])
    dense = zipper.compressor.scorer.dense  # type: ignore[attr-defined]
    assert stored.shape == (384,)
    assert np.allclose(stored, dense.embed_query(QUESTION), atol=1e-5)

    pz.Zipper.from_preset("fast", cache="memory").compress(texts[0], question=QUESTION, budget=200)
    assert counting.passes > 0  # the control: without the warm-up, the encoder runs
