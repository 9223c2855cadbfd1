"""SlateQ: Q-learning of long-term value over action-dependent features, in torch."""

from __future__ import annotations

import numpy as np

from policies.base import (
    PickledByState,
    Policy,
    as_float_array,
    check_mask,
    check_param,
    greedy_mix,
    mix_uniform,
)


class SlateQ(PickledByState, Policy):
    """Double Q-learning over (state, item) features, with SlateQ's slate decomposition.

    A bandit maximizes today's reward; SlateQ maximizes the session's discounted return
    ``r_t + gamma r_{t+1} + ...`` (Ie et al., 2019). Each candidate's action-dependent
    features (the user's state crossed with the item) go through a Q-network (an MLP, two
    ReLU layers of width ``hidden``); decisions are a softmax of the Q-values at
    ``temperature`` mixed with a uniform floor ``epsilon`` (``temperature=0``: greedy), and
    those are the probabilities :meth:`act` reports, so the engine samples from exactly them.

    Learning is off-policy Q-learning from a replay buffer of the latest ``buffer_size``
    transitions ``(x, r, candidates', mask', done)``: every ``train_every`` transitions,
    ``train_steps`` Adam steps on mini-batches of ``batch_size`` minimize the Huber error of
    ``Q(x)`` against the double-Q target ``r + gamma (1 - done) Q_target(x'_a*)``, ``a*`` the
    online network's best next candidate, then move the target network ``tau`` of the way to
    the online one (Polyak). ``gamma=0`` is the myopic twin (a neural greedy bandit).
    Propensities are accepted for the contract; Q-learning is off-policy and needs none.

    With ``slate_size`` L > 1, SlateQ's decomposition: the value of a slate is the sum of
    item-wise values, each slot's record carries its own reward and ``1/L`` of the next
    state's value, and that value is the target network's sum over the online network's top
    L next candidates (the greedy slate, which the engine's sequential slot sampling from
    :meth:`act`'s probabilities follows). L = 1 is plain double DQN.

    :meth:`update` learns records as terminal transitions (a bandit's loop: nothing follows);
    :meth:`learn_transitions` takes the next decision's candidates and whether the session
    ended. Training runs on the GPU when torch sees one (``device="auto"``; steps after the
    first three replay one captured CUDA graph, as in :class:`~policies.neural.NeuralTS`),
    on the CPU otherwise; decisions run the MLP in numpy on a copy of the weights taken after
    each training (torch's per-call overhead would cost more than a whole decision).

    Parameters
    ----------
    gamma
        Discount in [0, 1).
    hidden
        Width of the two hidden layers.
    lr, batch_size, train_steps, train_every, buffer_size
        Training (see above).
    tau
        Polyak rate of the target network in (0, 1] (1: a copy after every step).
    temperature
        Softmax temperature of the Q-values (0: greedy, ties split).
    epsilon
        Uniform floor: every valid candidate gets at least ``epsilon / K``.
    slate_size
        L, the slots the engine fills per decision.
    device
        ``"auto"`` (CUDA when torch sees it), ``"cpu"`` or ``"cuda"``.

    Examples
    --------
    >>> import numpy as np
    >>> p = SlateQ(n_features=2, gamma=0.9, seed=0)
    >>> phi = np.array([[[1.0, 0.0], [0.0, 1.0]]])   # one decision, two candidates
    >>> _ = p.learn_transitions(phi[:, 0], [1.0], [0.5], phi, None, [True])
    >>> probs = p.act(phi)
    >>> probs.shape, bool(probs.min() >= p.epsilon / 2)
    ((1, 2), True)
    """

    _params = ("n_features", "seed", "gamma", "hidden", "lr", "batch_size", "train_steps",
               "train_every", "buffer_size", "tau", "temperature", "epsilon", "slate_size",
               "device")
    # the networks and the optimizer travel as bytes (see state_dict)
    _state = ("_x", "_r", "_done", "_nx", "_nmask", "_filled", "_pos", "_since_train",
              "_train_count")

    def __init__(self, n_features: int, seed: int | None = 0, gamma: float = 0.9,
                 hidden: int = 32, lr: float = 1e-3, batch_size: int = 64,
                 train_steps: int = 16, train_every: int = 64, buffer_size: int = 10_000,
                 tau: float = 0.05, temperature: float = 0.005, epsilon: float = 0.05,
                 slate_size: int = 1, device: str = "auto"):
        super().__init__(n_features, seed)
        check_param("gamma", gamma, low=0.0)
        if gamma >= 1.0:
            raise ValueError(f"gamma: must be < 1.0 (got {gamma!r})")
        for name, value in (("hidden", hidden), ("batch_size", batch_size),
                            ("train_steps", train_steps), ("train_every", train_every),
                            ("buffer_size", buffer_size), ("slate_size", slate_size)):
            check_param(name, value, low=1, integer=True)
        check_param("lr", lr, low=0.0, low_open=True)
        check_param("tau", tau, low=0.0, high=1.0, low_open=True)
        check_param("temperature", temperature, low=0.0)
        check_param("epsilon", epsilon, low=0.0, high=1.0)
        if epsilon == 0.0 and temperature == 0.0:
            raise ValueError("epsilon: must be > 0 when temperature is 0, or a greedy policy "
                             "would report certain choices (got 0.0)")
        from policies.qlearner import QLearner  # torch, only when built
        from policies.torchnet import pick_device

        self.gamma, self.hidden, self.lr, self.batch_size = gamma, hidden, lr, batch_size
        self.train_steps, self.train_every, self.buffer_size = train_steps, train_every, buffer_size
        self.tau, self.temperature, self.epsilon = tau, temperature, epsilon
        self.slate_size, self.device = slate_size, device
        self._torch_device = pick_device(device)
        self._learner = QLearner(n_features, hidden, lr, float(gamma), float(tau), slate_size,
                                 self._torch_device, int(self._rng.integers(2**62)))
        self._x = np.zeros((0, n_features), np.float32)  # replay ring, grown on demand
        self._r = np.zeros(0, np.float32)
        self._done = np.zeros(0, np.float32)
        self._nx = np.zeros((0, 1, n_features), np.float32)  # next candidates, K padded
        self._nmask = np.zeros((0, 1), bool)
        self._filled = self._pos = self._since_train = self._train_count = 0
        self._next = None  # next-state arrays of the transitions being learned
        self._after_load()

    @property
    def torch_device(self) -> str:
        """Where the Q-network trains (``"cuda"`` or ``"cpu"``)."""
        return str(self._torch_device)

    @property
    def train_count(self) -> int:
        """Trainings so far (each is ``train_steps`` Adam steps)."""
        return self._train_count

    def _after_load(self) -> None:
        self._np_weights = self._learner.weights()

    # ---- values and decisions --------------------------------------------------------
    def q_values(self, phi: np.ndarray, target: bool = False) -> np.ndarray:
        """Q-value of each candidate (``phi.shape[:-1]``), float64: the online network, or
        the target network with ``target=True``."""
        weights = self._learner.weights(target=True) if target else self._np_weights
        h = np.asarray(phi, dtype=np.float32)
        for w, b in weights[:-1]:
            h = np.maximum(h @ w + b, 0.0)
        w, b = weights[-1]
        return (h @ w + b)[..., 0].astype(np.float64)

    def _act(self, phi: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        q = self.q_values(phi)
        if self.temperature == 0.0:
            return greedy_mix(q, mask, self.epsilon)
        z = q / self.temperature
        if mask is not None:
            z = np.where(mask, z, -np.inf)
        z -= z.max(axis=1, keepdims=True)
        probs = np.exp(z)
        probs /= probs.sum(axis=1, keepdims=True)
        return mix_uniform(probs, mask, self.epsilon) if self.epsilon else probs

    # ---- learning --------------------------------------------------------------------
    def learn_transitions(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray,
                          next_phi: np.ndarray, next_mask: np.ndarray | None,
                          done: np.ndarray) -> SlateQ:
        """Learn N transitions; returns ``self``. Inputs are never modified.

        Parameters
        ----------
        phi
            (N, D) features of the chosen candidates (one row per shown slot with slates).
        rewards
            (N,) finite rewards.
        propensities
            (N,) probabilities in (0, 1] with which they were chosen.
        next_phi
            (N, K, D) the candidates of the same user's next decision (anything, e.g.
            zeros, where ``done``); finite where ``next_mask`` holds.
        next_mask
            (N, K) boolean, True where a next candidate exists (``None``: all); a row that
            is not ``done`` needs one.
        done
            (N,) booleans (or 0/1): the session ended after this decision.
        """
        n = np.shape(phi)[0] if np.ndim(phi) == 2 else 0  # a bad phi: update names it
        next_phi = as_float_array(next_phi, "next_phi")
        if next_phi.ndim != 3 or next_phi.shape[0] != n or next_phi.shape[2] != self.n_features \
                or next_phi.shape[1] == 0:
            raise ValueError(f"next_phi: must have shape ({n}, K, {self.n_features}) with K >= 1 "
                             f"(got {next_phi.shape})")
        k = next_phi.shape[1]
        next_mask = np.ones((n, k), bool) if next_mask is None else \
            check_mask(next_mask, n, k, "next_mask", "next_phi")
        done = np.asarray(done)
        if done.shape != (n,) or done.dtype.kind not in "biuf" or not np.isin(done, (0, 1)).all():
            raise ValueError(f"done: must have shape ({n},) and hold booleans or 0/1 "
                             f"(got shape {done.shape}, dtype {done.dtype})")
        done = done.astype(bool)
        if not np.isfinite(next_phi[next_mask]).all():
            raise ValueError("next_phi: must be finite where next_mask holds (got NaN or infinity)")
        open_ = ~done & ~next_mask.any(axis=1)
        if open_.any():
            raise ValueError(f"next_mask: row {int(np.argmax(open_))} is not done and has no "
                             "next candidate")
        # the base class validates the records and calls the hook, which takes these
        self._next = (done.astype(np.float64), np.where(next_mask[..., None], next_phi, 0.0),
                      next_mask)
        try:
            return self.update(phi, rewards, propensities)
        finally:
            self._next = None

    def _update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> None:
        n = len(rewards)
        if self._next is None:  # a bandit's records: terminal transitions
            self._learn(phi, rewards, np.ones(n), np.zeros((n, 1, self.n_features)),
                        np.zeros((n, 1), bool))
        else:
            self._learn(phi, rewards, *self._next)

    def _learn(self, x, r, done, nx, nmask) -> None:
        """Store transitions in the ring; train every ``train_every`` of them."""
        n, cap = len(r), self.buffer_size
        if n > cap:
            x, r, done, nx, nmask, n = x[-cap:], r[-cap:], done[-cap:], nx[-cap:], nmask[-cap:], cap
        k = max(nx.shape[1], self._nx.shape[1])
        size = len(self._r)
        if size < min(cap, self._filled + n) or k > self._nx.shape[1]:  # grow, doubling
            new = size if size >= min(cap, self._filled + n) else \
                min(cap, max(2 * size, self._filled + n, 64))
            self._x = _grown(self._x, (new, self.n_features))
            self._r = _grown(self._r, (new,))
            self._done = _grown(self._done, (new,))
            self._nx = _grown(self._nx, (new, k, self.n_features))
            self._nmask = _grown(self._nmask, (new, k))
        idx = (self._pos + np.arange(n)) % cap
        self._x[idx], self._r[idx], self._done[idx] = x, r, done
        self._nx[idx] = 0.0
        self._nmask[idx] = False
        self._nx[idx, :nx.shape[1]] = nx
        self._nmask[idx, :nx.shape[1]] = nmask
        self._pos = (self._pos + n) % cap
        self._filled = min(cap, self._filled + n)
        self._since_train += n
        if self._since_train >= self.train_every:
            self._since_train = 0
            self.train()

    def td_targets(self, rewards: np.ndarray, next_phi: np.ndarray,
                   next_mask: np.ndarray | None, done: np.ndarray) -> np.ndarray:
        """The double-Q targets (N,) that training regresses on, for inspection."""
        import torch

        n, k = np.shape(next_phi)[:2]
        mask = np.ones((n, k), bool) if next_mask is None else np.asarray(next_mask, bool)
        dev = self._torch_device
        with torch.no_grad():
            y = self._learner.targets(
                torch.as_tensor(np.asarray(rewards, np.float32), device=dev),
                torch.as_tensor(np.asarray(next_phi, np.float32), device=dev),
                torch.as_tensor(mask, device=dev),
                torch.as_tensor(np.asarray(done, np.float32), device=dev))
        return y.double().cpu().numpy()

    def train(self) -> SlateQ:
        """``train_steps`` Adam steps on mini-batches from the replay buffer; returns
        ``self`` (``train_steps * min(batch_size, transitions)`` samples are seen)."""
        n = self._filled
        if n == 0:
            return self
        import torch

        gen = torch.Generator().manual_seed(int(self._rng.integers(2**62)))
        picks = torch.randint(n, (self.train_steps, min(self.batch_size, n)), generator=gen)
        self._learner.train((self._x[:n], self._r[:n], self._done[:n], self._nx[:n],
                             self._nmask[:n]), picks)
        self._train_count += 1
        self._after_load()
        return self

    # ---- persistence -----------------------------------------------------------------
    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["torch"] = self._learner.to_bytes()
        return sd

    def load_state_dict(self, state: dict) -> SlateQ:
        if not isinstance(state, dict) or "torch" not in state:
            raise ValueError("state: must be a dict from SlateQ.state_dict()")
        self._learner.load_bytes(state["torch"])
        return super().load_state_dict(state)  # ends with _after_load: weights copied



def _grown(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` zero-padded to ``shape`` (every axis at least as long as ``a``'s)."""
    out = np.zeros(shape, a.dtype)
    out[tuple(slice(0, s) for s in a.shape)] = a
    return out

