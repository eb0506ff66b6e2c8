"""Suite-wide settings: one torch thread per test process (pytest-xdist runs one process per core;
more threads per process only oversubscribe the cores and slow small-tensor tests down)."""

import torch

torch.set_num_threads(1)
