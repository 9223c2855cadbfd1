"""Neural-linear Thompson sampling: an MLP representation with a Bayesian linear head."""

from __future__ import annotations

import io

import numpy as np
import torch

from policies import kernels
from policies.base import PickledByState, Policy, check_param
from policies.forgetting import DRIFT_FACTOR, forgotten, make_forgetting, weights_after
from policies.thompson import inverse_and_root, psd_root, win_probabilities
from policies.torchnet import pick_device, seeded_mlp

_WARMUP = 3  # eager Adam steps before a CUDA graph is captured


class NeuralTS(PickledByState, Policy):
    """Neural-linear Thompson sampling (Riquelme et al., 2018): torch MLP, Bayesian head.

    An MLP (two ReLU layers of width ``hidden``) maps features to ``h``; a Bayesian linear
    head on ``h`` gives win probabilities as :class:`~policies.lints.LinTS`'s. Each record
    updates the head; every ``train_every`` records the MLP takes ``train_steps`` Adam steps
    on ``batch_size`` records drawn (by forgetting weight) from a replay buffer of the latest
    ``buffer_size``, then the head is refit. Decisions run the MLP in numpy.

    Parameters
    ----------
    hidden
        Width of the two hidden layers (and of ``h``).
    lr, train_steps, batch_size, train_every, buffer_size
        Training of the representation.
    l2
        Prior precision of the linear head.
    half_life, drift_factor, drift_period
        Forgetting, as :class:`~policies.linear.LinearPolicy`'s (``half_life`` None: never);
        a shorter default half-life, as the head's errors are noisier (its representation
        moves with each retraining), so its detector fires less readily.
    v, n_draws, epsilon
        Posterior scale, draws per decision and uniform floor, as LinTS's.
    device
        ``"auto"`` (CUDA when torch sees it), ``"cpu"`` or ``"cuda"``.

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

    _params = ("n_features", "seed", "hidden", "lr", "train_steps", "batch_size", "train_every",
               "buffer_size", "l2", "half_life", "drift_factor", "drift_period", "v", "n_draws",
               "epsilon", "device")
    # the torch modules and the optimizer travel as bytes (see state_dict)
    _state = ("_x", "_y", "_filled", "_pos", "_since_train", "_a", "_a_inv", "_b", "_theta",
              "_stamp", "_forget")

    def __init__(self, n_features: int, seed: int | None = 0, hidden: int = 32, lr: float = 3e-3,
                 train_steps: int = 50, batch_size: int = 256, train_every: int = 256,
                 buffer_size: int = 20_000, l2: float = 1.0,
                 half_life: float | None = 1000.0, drift_factor: float = DRIFT_FACTOR,
                 drift_period: int | None = None, v: float = 0.3, n_draws: int = 64,
                 epsilon: float = 0.01, device: str = "auto"):
        super().__init__(n_features, seed)
        for name, value in (("hidden", hidden), ("train_steps", train_steps),
                            ("batch_size", batch_size), ("train_every", train_every),
                            ("buffer_size", buffer_size), ("n_draws", n_draws)):
            check_param(name, value, low=1, integer=True)
        for name, value in (("lr", lr), ("l2", l2), ("v", v)):
            check_param(name, value, low=0.0, low_open=True)
        check_param("epsilon", epsilon, low=0.0, high=1.0, low_open=True)
        self._torch_device = pick_device(device)
        self.hidden, self.lr, self.train_steps = hidden, lr, train_steps
        self.batch_size, self.train_every, self.buffer_size = batch_size, train_every, buffer_size
        self.l2, self.v, self.n_draws, self.epsilon, self.device = l2, v, n_draws, epsilon, device
        self.half_life, self.drift_factor, self.drift_period = half_life, drift_factor, drift_period
        self._forget = make_forgetting(hidden, half_life, None, drift_factor, drift_period)
        self._net = seeded_mlp(n_features, hidden, int(self._rng.integers(2**62)),
                               self._torch_device)
        # capturable: the step counter lives on the device, so CUDA graphs can hold the step
        self._opt = torch.optim.Adam(self._net.parameters(), lr=lr,
                                     capturable=self._torch_device.type == "cuda")
        self._x = np.zeros((0, n_features))  # replay ring buffer, grown on demand
        self._y = np.zeros(0)
        self._stamp = np.zeros(0)  # the forgetting clock when each record was learned
        self._filled = self._pos = self._since_train = 0
        self._a = np.eye(hidden) * float(l2)
        self._a_inv = np.eye(hidden) / float(l2)
        self._b, self._theta = np.zeros(hidden), np.zeros(hidden)
        self._after_load()

    @property
    def torch_device(self) -> str:
        """Where the representation trains (``"cuda"`` or ``"cpu"``)."""
        return str(self._torch_device)

    def _after_load(self) -> None:
        """Copy the MLP's weights for numpy decisions; drop the head's cached root."""
        layers = [m for m in self._net if isinstance(m, torch.nn.Linear)][:2]
        self._np_weights = [(m.weight.detach().cpu().numpy().T.copy(),
                             m.bias.detach().cpu().numpy().copy()) for m in layers]
        self._chol = None
        if len(self._stamp) != len(self._y):  # a state saved before forgetting: equal weights
            self._stamp = np.zeros(len(self._y))

    def features(self, x: np.ndarray) -> np.ndarray:
        """The representation ``h`` (..., hidden) of features x (..., D), float64."""
        h = np.asarray(x, dtype=np.float32)
        for w, bias in self._np_weights:
            h = np.maximum(h @ w + bias, 0.0)
        return h.astype(np.float64)

    def predict(self, phi: np.ndarray) -> np.ndarray:
        """Posterior mean reward of each candidate, shape ``phi.shape[:-1]``."""
        return self.features(phi) @ self._theta

    def _act(self, phi: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return win_probabilities(self.features(phi), mask, self._a_inv, self._b, self._theta,
                                 self._posterior_root, self.v, self.n_draws, self.epsilon,
                                 self._rng)

    def _posterior_root(self) -> np.ndarray:
        """A square root of the head's ``A^-1`` for a batch's draws, once per version."""
        if self._chol is None:
            self._chol = psd_root(self._a_inv)
        return self._chol

    def _update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> None:
        h = self.features(phi)
        f, n = self._forget, len(rewards)
        if f is None:  # every factor 1
            rates, stamps = (np.ones(n), np.zeros(n), np.zeros(n, np.int64)), None
        else:  # each record's forgetting; the head's errors to the detector
            rates = f.schedule(h, rewards, self._theta, self._a_inv, self.l2 * self.hidden)
            stamps = f.clock + np.log(weights_after(rates[0]))
        self._remember(phi, rewards, stamps)
        self._since_train += n
        if self._since_train >= self.train_every:
            self._since_train = 0
            self.train()
            return
        # the head learns the records on the current representation: one record by
        # ridge_step (O(hidden^2)), a mini-batch by a refit
        if n == 1:
            lam, refresh, j = (r[0].item() for r in rates)
            kernels.ridge_step(self._a, self._a_inv, self._b, h[0], float(rewards[0]), lam,
                               refresh, j)
            self._chol = None
        else:
            self._a, self._b = forgotten(self._a, self._b, h, rewards, *rates)
            self._a = (self._a + self._a.T) * 0.5
            self._a_inv, self._chol = inverse_and_root(self._a)
        self._theta = self._a_inv @ self._b

    def _remember(self, x: np.ndarray, y: np.ndarray, stamps: np.ndarray | None) -> None:
        n, cap = len(y), self.buffer_size
        if n >= cap:
            x, y, n = x[-cap:], y[-cap:], cap
            stamps = None if stamps is None else stamps[-cap:]
        if len(self._y) < min(cap, self._filled + n):  # grow (doubling) up to buffer_size
            size = min(cap, max(2 * len(self._y), self._filled + n, 64))
            self._x = np.concatenate([self._x, np.zeros((size - len(self._y), self.n_features))])
            self._stamp = np.concatenate([self._stamp, np.zeros(size - len(self._y))])
            self._y = np.concatenate([self._y, np.zeros(size - len(self._y))])
        idx = (self._pos + np.arange(n)) % cap
        self._x[idx] = x
        self._y[idx] = y
        if stamps is not None:
            self._stamp[idx] = stamps
        self._pos = (self._pos + n) % cap
        self._filled = min(cap, self._filled + n)

    def train(self) -> NeuralTS:
        """Retrain the representation on the replay buffer, refit the head; returns ``self``."""
        n = self._filled
        if n == 0:
            return self
        dev = self._torch_device
        x = torch.as_tensor(self._x[:n], dtype=torch.float32, device=dev)
        y = torch.as_tensor(self._y[:n], dtype=torch.float32, device=dev)
        gen = torch.Generator().manual_seed(int(self._rng.integers(2**62)))
        size = min(self.batch_size, n)
        weights = None
        if self._forget is not None:  # recent records weigh more, in training and the head
            weights = np.exp(self._stamp[:n] - self._forget.clock)
            picks = torch.multinomial(torch.as_tensor(weights), self.train_steps * size,
                                      replacement=True, generator=gen)
            picks = picks.view(self.train_steps, size).to(dev)
        else:
            picks = torch.randint(n, (self.train_steps, size), generator=gen).to(dev)
        if dev.type == "cuda" and self.train_steps > _WARMUP:
            self._train_graphed(x, y, picks)
        else:
            for idx in picks:
                self._step(x, y, idx)
        with torch.no_grad():  # refit the head where the network lives (one pass, float64 sums)
            h = self._net[:4](x).double()
            hw = h if weights is None else h * torch.as_tensor(weights, device=dev)[:, None]
            hth, hty = (hw.T @ h).cpu().numpy(), (hw.T @ y.double()).cpu().numpy()
        self._a = self.l2 * np.eye(self.hidden) + hth
        self._a = (self._a + self._a.T) * 0.5
        self._b = hty
        self._after_load()  # the new weights for decisions
        self._a_inv, self._chol = inverse_and_root(self._a)
        self._theta = self._a_inv @ self._b
        return self

    def _loss(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return torch.mean((self._net(x[idx]).squeeze(-1) - y[idx]) ** 2)

    def _step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> None:
        self._opt.zero_grad(set_to_none=True)
        self._loss(x, y, idx).backward()
        self._opt.step()

    def _train_graphed(self, x: torch.Tensor, y: torch.Tensor, picks: torch.Tensor) -> None:
        """The same Adam steps replayed from one captured CUDA graph (a small network's
        step is a few dozen kernel launches, which cost more than the maths)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # capture needs warmed-up kernels and optimizer state
            for idx in picks[:_WARMUP]:
                self._step(x, y, idx)
        torch.cuda.current_stream().wait_stream(side)
        static_idx = picks[_WARMUP].clone()
        graph = torch.cuda.CUDAGraph()
        self._opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):  # recorded, not run
            self._loss(x, y, static_idx).backward()
            self._opt.step()
        for idx in picks[_WARMUP:]:
            static_idx.copy_(idx)
            graph.replay()
        self._opt.zero_grad(set_to_none=True)  # let go of the graph's gradient buffers
        del graph

    def state_dict(self) -> dict:
        sd = super().state_dict()
        buf = io.BytesIO()
        torch.save({"net": self._net.state_dict(), "opt": self._opt.state_dict()}, buf)
        sd["torch"] = buf.getvalue()
        return sd

    def load_state_dict(self, state: dict) -> NeuralTS:
        if not isinstance(state, dict) or "torch" not in state:
            raise ValueError("state: must be a dict from NeuralTS.state_dict()")
        blob = torch.load(io.BytesIO(state["torch"]), map_location=self._torch_device)
        self._net.load_state_dict(blob["net"])
        self._opt.load_state_dict(blob["opt"])
        on_cuda = self._torch_device.type == "cuda"  # the state may come from the other device
        for group in self._opt.param_groups:
            group["capturable"] = on_cuda
        for st in self._opt.state.values():
            if "step" in st:
                st["step"] = st["step"].to(self._torch_device, torch.float32)
        return super().load_state_dict(state)  # ends with _after_load: weights copied

