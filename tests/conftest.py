"""Suite-wide settings: one torch thread per test process (pytest-xdist runs one process per core;
more threads per process only oversubscribe the cores and slow small-tensor tests down), Ray
listening on loopback only (the variable must be set before ``import ray``), and caches that
never touch the user's ``~/.cache/evodisc``."""

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_cache_dir(tmp_path_factory) -> Path:
    """One cache directory per test process: tuned baselines are trained once and shared, as a
    user's are (a Ray cluster started by a test points its workers here too)."""
    return tmp_path_factory.getbasetemp() / "evodisc-cache"


@pytest.fixture(autouse=True)
def evodisc_cache(shared_cache_dir, monkeypatch) -> Path:
    """``$EVODISC_CACHE`` for every test: the process's shared directory."""
    monkeypatch.setenv("EVODISC_CACHE", str(shared_cache_dir))
    return shared_cache_dir


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache for this test alone, for tests of what gets computed and cached."""
    directory = tmp_path / "evodisc-cache"
    monkeypatch.setenv("EVODISC_CACHE", str(directory))
    return directory


#: ill_conditioned cut to 30 steps, as a user's task file (so that the suite's names stay
#: intact): tuning and scoring on it take seconds.
SHORT_TASK = """
import dataclasses
from fitness.tasks import load_task


def factory():
    return dataclasses.replace(load_task("ill_conditioned"), steps=30)
"""


@pytest.fixture
def short_task(tmp_path) -> str:
    """The task spec of :data:`SHORT_TASK`, written to a file of this test."""
    path = tmp_path / "short.py"
    path.write_text(SHORT_TASK)
    return f"{path}:factory"
