"""The neural policy on a CUDA device (skipped where torch sees none, as on CI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policies import make

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _xor(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2))
    return x, (x[:, 0] * x[:, 1] > 0).astype(float)


def test_trains_on_cuda_and_resumes_exactly_on_the_cpu():
    x, y = _xor(4000, 0)
    gpu = make("neural_ts", n_features=2, seed=0, hidden=32, train_steps=300, batch_size=256,
               train_every=10**9, device="cuda")
    assert gpu.torch_device.startswith("cuda")
    gpu.update(x, y, np.full(len(y), 0.5)).train()
    test_x, test_y = _xor(1000, 1)
    accuracy = np.mean((gpu.predict(test_x[:, None, :])[:, 0] > 0.5) == test_y)
    assert accuracy > 0.85, accuracy
    cpu = make("neural_ts", n_features=2, seed=5, hidden=32, train_steps=300, batch_size=256,
               train_every=10**9, device="cpu")
    cpu.load_state_dict(gpu.state_dict())
    phi = np.random.default_rng(2).uniform(-1, 1, size=(8, 6, 2))
    np.testing.assert_array_equal(gpu.act(phi), cpu.act(phi))


def test_auto_picks_cuda_when_present():
    assert make("neural_ts", n_features=2, device="auto").torch_device.startswith("cuda")
