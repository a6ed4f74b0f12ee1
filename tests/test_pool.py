"""One bounded pool of shared Zippers behind every door that builds one on first use."""

from __future__ import annotations

import threading

import promptzip as pz
from promptzip._pool import ZipperPool, shared_pool, shared_zipper
from promptzip.compressors.extractive import ExtractiveCompressor
from promptzip.testing import KeywordScorer


def _zipper() -> pz.Zipper:
    return pz.Zipper(ExtractiveCompressor(KeywordScorer()))


def test_the_pool_is_bounded_and_keeps_the_most_recently_used() -> None:
    pool = ZipperPool(max_size=2)
    a = pool.get("a", _zipper)
    pool.get("b", _zipper)
    assert pool.get("a", _zipper) is a  # a hit refreshes a
    pool.get("c", _zipper)  # evicts b, the least recently used
    assert len(pool) == 2
    assert pool.peek("b") is None
    assert pool.peek("a") is a


def test_concurrent_builds_of_one_key_hand_everyone_the_same_zipper() -> None:
    pool = ZipperPool()
    gate = threading.Barrier(4)
    got: list[pz.Zipper] = []

    def build() -> pz.Zipper:
        return _zipper()

    def worker() -> None:
        gate.wait()
        got.append(pool.get("k", build))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(z) for z in got}) == 1


def test_the_top_level_functions_and_the_integrations_share_the_process_pool() -> None:
    from promptzip.integrations._calls import Compression

    shared_pool.clear()
    pz.compress("The tower is 330 m tall.", question="How tall?", budget=50, cache="memory")
    first = shared_zipper("fast", "gpt-4o", "memory")
    assert len(shared_pool) == 1
    wrapped = Compression(budget=50, rate=None, target="gpt-4o", preset="fast", cache="memory", zipper=None)
    assert wrapped.zipper is first
