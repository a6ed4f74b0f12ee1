"""torch_threads: a block's own torch thread count, and the process's count restored after it."""

from __future__ import annotations

import pytest

from promptzip._torch_threads import torch_threads

torch = pytest.importorskip("torch")


def test_the_block_runs_on_its_count_and_the_count_it_found_comes_back() -> None:
    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_the_count_comes_back_when_the_block_fails() -> None:
    before = torch.get_num_threads()
    with pytest.raises(KeyError), torch_threads(before + 1):
        raise KeyError("x")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("threads", [None, 0, -1])
def test_no_count_leaves_the_process_alone(threads: int | None) -> None:
    before = torch.get_num_threads()
    with torch_threads(threads):
        assert torch.get_num_threads() == before
    assert torch.get_num_threads() == before
