"""Vowpal Wabbit's ``cb_explore_adf`` as a Loopwise policy (optional: ``loopwise[vw]``)."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from policies.base import Policy, check_param

EXPLORATIONS = ("squarecb", "epsilon", "cover", "bag", "regcb")


class VWPolicy(Policy):
    """VW ``--cb_explore_adf`` with a chosen exploration, behind the Loopwise contract.

    Each candidate becomes one action line ``|f 0:x0 1:x1 ...`` (zeros left out); VW's
    probability mass function comes back aligned to candidate order (masked candidates are
    left out of the example). Learning labels the chosen action ``0:cost:probability`` with
    cost = ``1 - reward`` (VW's regcb assumes costs in [0, 1]; rewards are expected in
    [0, 1]) inside the whole candidate set it was chosen from (remembered from
    ``act`` for the most recent 50,000 candidates, as cover, bag and regcb need every
    action); a chosen row never seen by ``act`` is learned as a one-action example.

    Parameters
    ----------
    exploration
        One of ``squarecb``, ``epsilon``, ``cover``, ``bag``, ``regcb``.
    epsilon
        For ``epsilon`` exploration.
    extra_args
        More VW command-line arguments (e.g. ``"--power_t 0 -l 0.1"``).

    Examples
    --------
    >>> import numpy as np
    >>> p = VWPolicy(n_features=2, exploration="epsilon", epsilon=0.2)
    >>> round(float(p.act(np.ones((1, 3, 2))).sum()), 6)
    1.0
    """

    _params = ("n_features", "seed", "exploration", "epsilon", "extra_args")
    opt_out = {"save_load_same_actions":
               "VW's exploration RNG state is not part of a saved model; learning resumes "
               "exactly but the next sampled draws of cover/bag may differ"}

    def __init__(self, n_features: int, seed: int | None = 0, exploration: str = "squarecb",
                 epsilon: float = 0.05, extra_args: str = ""):
        super().__init__(n_features, seed)
        if exploration not in EXPLORATIONS:
            raise ValueError(f"exploration: must be one of {EXPLORATIONS} (got {exploration!r})")
        check_param("epsilon", epsilon, low=0.0, high=1.0)
        if not isinstance(extra_args, str):
            raise ValueError(f"extra_args: must be a string (got {extra_args!r})")
        self.exploration = exploration
        self.epsilon = epsilon
        self.extra_args = extra_args
        self._vw = self._workspace()
        self._recent: dict[bytes, tuple[list[str], int]] = {}
        self._recent_max = 50_000

    def _args(self, with_seed: bool = True) -> str:
        exp = {"squarecb": "--squarecb", "epsilon": f"--epsilon {self.epsilon}",
               "cover": "--cover 4", "bag": "--bag 4", "regcb": "--regcb"}[self.exploration]
        # a saved model carries its own seed; giving one again makes VW refuse to load it
        seed = "" if self.seed is None or not with_seed else f"--random_seed {self.seed}"
        return f"--cb_explore_adf {exp} {seed} --quiet {self.extra_args}".strip()

    def _workspace(self, model: bytes | None = None):
        import vowpalwabbit

        if model is None:
            return vowpalwabbit.Workspace(self._args())
        fd, path = tempfile.mkstemp(suffix=".vw")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(model)
            return vowpalwabbit.Workspace(f"{self._args(with_seed=False)} -i {path}")
        finally:
            os.unlink(path)

    @staticmethod
    def _line(x: np.ndarray, label: str = "") -> str:
        feats = " ".join(f"{j}:{v:.6g}" for j, v in enumerate(x) if v != 0.0)
        return f"{label} |f {feats}" if label else f"|f {feats}"

    def _act(self, phi: np.ndarray, mask: np.ndarray) -> np.ndarray:
        probs = np.zeros(mask.shape)
        recent = self._recent
        for b in range(len(phi)):
            idx = np.flatnonzero(mask[b])
            lines = [self._line(phi[b, k]) for k in idx]
            probs[b, idx] = self._vw.predict(lines)
            for pos, k in enumerate(idx):  # remember the set, to learn on all its actions
                recent[phi[b, k].tobytes()] = (lines, pos)
        while len(recent) > self._recent_max:
            recent.pop(next(iter(recent)))
        return probs

    def _update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> None:
        for x, r, p in zip(phi, rewards, propensities, strict=True):
            label = f"0:{1.0 - r:.6g}:{p:.6g}"
            seen = self._recent.pop(x.tobytes(), None)
            if seen is None:  # the candidate set is unknown: learn on the chosen action alone
                self._vw.learn([self._line(x, label)])
            else:
                lines, pos = seen
                lines = list(lines)
                lines[pos] = f"{label} {lines[pos]}"
                self._vw.learn(lines)

    def _model_bytes(self) -> bytes:
        fd, path = tempfile.mkstemp(suffix=".vw")
        os.close(fd)
        try:
            self._vw.save(path)
            with open(path, "rb") as fh:
                return fh.read()
        finally:
            os.unlink(path)

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["vw_model"] = self._model_bytes()
        return sd

    def load_state_dict(self, state: dict) -> VWPolicy:
        super().load_state_dict(state)
        self._vw.finish()
        self._vw = self._workspace(state["vw_model"])
        return self

    def __getstate__(self):
        return self.state_dict()

    def __setstate__(self, state):
        self.__init__(**state["params"])
        self.load_state_dict(state)
