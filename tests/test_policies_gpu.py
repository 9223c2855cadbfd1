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


def test_cpu_state_keeps_training_on_cuda_and_back():
    """Optimizer state crosses devices both ways (the CUDA optimizer's step counter lives on
    the device for graph capture) and training continues without error on each side."""
    x, y = _xor(2000, 3)
    cpu = make("neural_ts", n_features=2, seed=0, hidden=16, train_steps=20, batch_size=128,
               train_every=10**9, device="cpu")
    cpu.update(x, y, np.full(len(y), 0.5)).train()
    gpu = make("neural_ts", n_features=2, seed=0, hidden=16, train_steps=20, batch_size=128,
               train_every=10**9, device="cuda")
    gpu.load_state_dict(cpu.state_dict())
    gpu.train()  # CUDA-graphed steps from a CPU-made optimizer state
    back = make("neural_ts", n_features=2, seed=0, hidden=16, train_steps=20, batch_size=128,
                train_every=10**9, device="cpu")
    back.load_state_dict(gpu.state_dict())
    back.train()
    assert np.isfinite(back.predict(x[:10, None, :])).all()


def test_graphed_training_matches_eager_training(monkeypatch):
    """The CUDA-graph path takes the same Adam steps on the same mini-batches as the eager
    loop: same seed, same data, weights equal up to float rounding."""
    import policies.neural as neural

    x, y = _xor(3000, 4)
    trained = []
    for warmup in (3, 10**9):  # 3: graphed after 3 eager steps; 10**9: eager throughout
        monkeypatch.setattr(neural, "_WARMUP", warmup)
        p = make("neural_ts", n_features=2, seed=0, hidden=16, train_steps=40, batch_size=64,
                 train_every=10**9, device="cuda")
        p.update(x, y, np.full(len(y), 0.5)).train()
        trained.append(p)
    graphed, eager = trained
    for (wg, bg), (we, be) in zip(graphed._np_weights, eager._np_weights, strict=True):
        np.testing.assert_allclose(wg, we, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bg, be, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(graphed.predict(x[:50, None, :]), eager.predict(x[:50, None, :]),
                               rtol=1e-4, atol=1e-5)
