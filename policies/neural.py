"""Neural-linear Thompson sampling: an MLP representation with a Bayesian linear head."""

from __future__ import annotations

import io

import numpy as np
import torch

from policies.base import Policy, check_param, mix_uniform


class NeuralTS(Policy):
    """Neural-linear Thompson sampling (Riquelme et al., 2018), trained with torch.

    An MLP maps each candidate's features to a representation ``h``; a Bayesian linear
    regression on ``h`` gives a posterior over rewards, and win probabilities are estimated
    from ``n_draws`` posterior draws (as in :class:`~policies.lints.LinTS`). Every
    ``train_every`` updates the MLP is retrained for ``epochs`` passes over a replay buffer in
    mini-batches (on the GPU when torch sees one), and the linear head is refit on the new
    representation of the buffer.

    Parameters
    ----------
    hidden
        Width of the two hidden layers (and of ``h``).
    buffer_size
        Most recent records kept for training.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.

    Examples
    --------
    >>> import numpy as np
    >>> p = NeuralTS(n_features=3, hidden=8, train_every=16, seed=0)
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((64, 3))
    >>> _ = p.update(x, x[:, 0], np.full(64, 0.5))
    >>> probs = p.act(rng.random((2, 5, 3)))
    >>> probs.shape, bool(np.allclose(probs.sum(axis=1), 1.0))
    ((2, 5), True)
    """

    _params = ("n_features", "seed", "hidden", "lr", "epochs", "batch_size", "train_every",
               "buffer_size", "l2", "v", "n_draws", "epsilon", "device")

    def __init__(self, n_features: int, seed: int | None = 0, hidden: int = 32, lr: float = 3e-3,
                 epochs: int = 2, batch_size: int = 256, train_every: int = 256,
                 buffer_size: int = 20_000, l2: float = 1.0, v: float = 0.3, n_draws: int = 128,
                 epsilon: float = 0.01, device: str = "auto"):
        super().__init__(n_features, seed)
        for name, value in (("hidden", hidden), ("epochs", epochs), ("batch_size", batch_size),
                            ("train_every", train_every), ("buffer_size", buffer_size),
                            ("n_draws", n_draws)):
            check_param(name, value, low=1, integer=True)
        for name, value in (("lr", lr), ("l2", l2), ("v", v)):
            check_param(name, value, low=0.0, low_open=True)
        check_param("epsilon", epsilon, low=0.0, high=1.0, low_open=True)
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device: must be 'auto', 'cpu' or 'cuda' (got {device!r})")
        self.hidden, self.lr, self.epochs, self.batch_size = hidden, lr, epochs, batch_size
        self.train_every, self.buffer_size, self.l2, self.v = train_every, buffer_size, l2, v
        self.n_draws, self.epsilon, self.device = n_draws, epsilon, device
        self._torch_device = torch.device(
            "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
        gen = torch.Generator().manual_seed(0 if seed is None else seed)
        self._net = torch.nn.Sequential(
            torch.nn.Linear(n_features, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU())
        self._out = torch.nn.Linear(hidden, 1)
        with torch.no_grad():
            for p in (*self._net.parameters(), *self._out.parameters()):
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / max(1, p.shape[-1])) ** 0.5)
        self._net.to(self._torch_device)
        self._out.to(self._torch_device)
        self._opt = torch.optim.Adam([*self._net.parameters(), *self._out.parameters()], lr=lr)
        self._x = np.zeros((0, n_features))
        self._y = np.zeros(0)
        self._since_train = 0
        self._a_inv = np.eye(hidden) / l2
        self._b = np.zeros(hidden)
        self._theta = np.zeros(hidden)
        self._chol = None

    @property
    def torch_device(self) -> str:
        return str(self._torch_device)

    def _features(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.as_tensor(x, dtype=torch.float32, device=self._torch_device)
            return self._net(t).double().cpu().numpy()

    def _act(self, phi: np.ndarray, mask: np.ndarray) -> np.ndarray:
        b, k, d = phi.shape
        h = self._features(phi.reshape(-1, d)).reshape(b, k, self.hidden)
        if self._chol is None:
            self._chol = np.linalg.cholesky(self._a_inv + 1e-12 * np.eye(self.hidden))
        z = self._rng.standard_normal((self.n_draws, self.hidden))
        thetas = self._theta + self.v * z @ self._chol.T
        scores = h @ thetas.T
        scores[~mask] = -np.inf
        winners = scores.argmax(axis=1)
        counts = np.zeros((b, k))
        np.add.at(counts, (np.repeat(np.arange(b), self.n_draws), winners.ravel()), 1.0)
        return mix_uniform(counts / self.n_draws, mask, self.epsilon)

    def _update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> None:
        self._x = np.concatenate([self._x, phi])[-self.buffer_size:]
        self._y = np.concatenate([self._y, rewards])[-self.buffer_size:]
        self._since_train += len(rewards)
        if self._since_train >= self.train_every:
            self._since_train = 0
            self.train()
        else:  # cheap Bayesian update of the head on the current representation
            h = self._features(phi)
            ax = self._a_inv @ h.T
            self._a_inv = self._a_inv - ax @ np.linalg.solve(np.eye(len(h)) + h @ ax, ax.T)
            self._b = self._b + h.T @ rewards
            self._theta = self._a_inv @ self._b
            self._chol = None

    def train(self) -> NeuralTS:
        """Retrain the representation on the buffer, then refit the linear head."""
        x = torch.as_tensor(self._x, dtype=torch.float32, device=self._torch_device)
        y = torch.as_tensor(self._y, dtype=torch.float32, device=self._torch_device)
        gen = torch.Generator().manual_seed(int(self._rng.integers(2**31)))
        for _ in range(self.epochs):
            order = torch.randperm(len(x), generator=gen).to(self._torch_device)
            for start in range(0, len(x), self.batch_size):
                idx = order[start:start + self.batch_size]
                pred = self._out(self._net(x[idx])).squeeze(-1)
                loss = torch.mean((pred - y[idx]) ** 2)
                self._opt.zero_grad()
                loss.backward()
                self._opt.step()
        h = self._features(self._x)
        self._a_inv = np.linalg.inv(self.l2 * np.eye(self.hidden) + h.T @ h)
        self._b = h.T @ self._y
        self._theta = self._a_inv @ self._b
        self._chol = None
        return self

    # torch modules and the optimizer go through state_dict / pickling as bytes
    _state = ("_x", "_y", "_since_train", "_a_inv", "_b", "_theta")

    def state_dict(self) -> dict:
        sd = super().state_dict()
        buf = io.BytesIO()
        torch.save({"net": self._net.state_dict(), "out": self._out.state_dict(),
                    "opt": self._opt.state_dict()}, buf)
        sd["torch"] = buf.getvalue()
        return sd

    def load_state_dict(self, state: dict) -> NeuralTS:
        super().load_state_dict(state)
        blob = torch.load(io.BytesIO(state["torch"]), map_location=self._torch_device)
        self._net.load_state_dict(blob["net"])
        self._out.load_state_dict(blob["out"])
        self._opt.load_state_dict(blob["opt"])
        self._chol = None
        return self

    def __getstate__(self):
        return self.state_dict()

    def __setstate__(self, state):
        self.__init__(**state["params"])
        self.load_state_dict(state)
