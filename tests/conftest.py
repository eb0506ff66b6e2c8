"""Suite-wide settings: one torch thread per test process (pytest-xdist runs one process per core;
more threads per process only oversubscribe the cores and slow small-tensor tests down), and Ray
listening on loopback only (the variable must be set before ``import ray``)."""

import os

import torch

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
torch.set_num_threads(1)
