"""Fixtures several test files share."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: torch's thread pool only adds overhead, and a lot of it on a busy shared CPU.
    A test module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
