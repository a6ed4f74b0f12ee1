"""torch's intra-op thread count for one block of work, restored after it.

``torch.set_num_threads`` is process-wide: a summarizer asked for one thread, or an evaluation run called in
process, would otherwise leave every later torch call of the process (a server's other requests, the rest of a test
session) on that many threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` torch threads and restore the count it found. ``None`` or ``0`` (or less) leaves
    the count alone, as does a process without torch; torch is imported only when a count is asked for."""
    if not threads or threads <= 0:
        yield
        return
    try:
        import torch
    except ImportError:  # the models extra brings torch; without it there is no count to set
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
