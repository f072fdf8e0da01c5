"""Test-wide settings: one intra-op thread per test process.

The models under test are tiny; on a shared 2-core machine several threads per process only
contend with each other (measured: tests/nn/test_streams.py 52 s with default threads, 15 s with
one), and a single thread makes CPU results reproducible run to run.
"""

import torch

torch.set_num_threads(1)
