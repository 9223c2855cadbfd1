"""Vowpal Wabbit's ``cb_explore_adf`` as a Loopwise policy (optional: ``loopwise[vw]``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from policies.base import PickledByState, Policy, check_param

EXPLORATIONS = ("squarecb", "epsilon", "cover", "bag", "regcb")


def action_template(n_features: int) -> str:
    """``%``-format template of one dense VW action line (features ``0 .. D-1`` in ``f``).

    >>> action_template(3) % (0.5, 0.0, -2.0)
    '|f 0:0.5 1:0 2:-2'
    """
    return "|f " + " ".join(f"{j}:%.6g" for j in range(n_features))


def action_lines(x: np.ndarray, template: str) -> list[str]:
    """One VW action line per candidate row of ``x`` (K, D).

    Sparse rows (at most half non-zero) list only their non-zero features; dense rows are
    formatted whole by one ``%`` call on ``template``. Both give VW the same example (a zero
    feature adds nothing); building the text is the whole cost seen from Python.

    >>> action_lines(np.array([[0.0, 1.5, 0.0], [2.0, 0.0, 0.0]]), action_template(3))
    ['|f 1:1.5', '|f 0:2']
    >>> action_lines(np.array([[0.0, 1.5, 0.0], [2.0, 0.25, -1.0]]), action_template(3))
    ['|f 0:0 1:1.5 2:0', '|f 0:2 1:0.25 2:-1']
    """
    rows, cols = np.nonzero(x)
    if len(rows) > 0.5 * x.size:
        return [template % tuple(row) for row in x.tolist()]
    parts: list[list[str]] = [[] for _ in range(len(x))]
    for r, c, v in zip(rows.tolist(), cols.tolist(), x[rows, cols].tolist(), strict=True):
        parts[r].append(f"{c}:{v:.6g}")
    return ["|f " + " ".join(p) for p in parts]


class VWPolicy(PickledByState, Policy):
    """VW ``--cb_explore_adf`` with a chosen exploration, behind the Loopwise contract.

    Each candidate becomes one action line ``|f 0:x0 1:x1 ...`` (:func:`action_lines`);
    masked candidates are left out. Learning labels the chosen action ``0:cost:propensity``
    with ``cost = 1 - reward`` (rewards in [0, 1]) inside the candidate set it was chosen
    from, remembered for the latest :attr:`REMEMBER` candidates shown (cover, bag and regcb
    learn from every action); a row this object never showed is learned alone. VW's
    distributions are reported verbatim: bag and regcb can give a valid candidate 0.

    Parameters
    ----------
    exploration
        One of ``squarecb``, ``epsilon``, ``cover``, ``bag``, ``regcb`` (cover and bag use
        4 policies).
    epsilon
        For ``epsilon`` exploration.
    extra_args
        More VW command-line arguments (e.g. ``"--power_t 0 -l 0.1"``).

    Examples
    --------
    >>> import numpy as np
    >>> p = VWPolicy(n_features=2, exploration="epsilon", epsilon=0.2)
    >>> phi = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    >>> for _ in range(20):   # candidate 0 pays 1, candidate 1 pays 0
    ...     for k, reward in ((0, 1.0), (1, 0.0)):
    ...         probs = p.act(phi)
    ...         _ = p.update(phi[0, k:k + 1], [reward], probs[0, k:k + 1])
    >>> p.act(phi).round(3).tolist()   # greedy 0.8 + epsilon 0.2 spread over both
    [[0.9, 0.1]]
    """

    _params = ("n_features", "seed", "exploration", "epsilon", "extra_args")
    REMEMBER = 20_000

    @property
    def opt_out(self) -> dict[str, str]:
        if self.exploration in ("bag", "regcb"):
            return {"positive_probabilities": f"VW's {self.exploration} reports its own "
                    "distribution, which can put probability 0 on valid candidates"}
        return {}

    def __init__(self, n_features: int, seed: int | None = 0, exploration: str = "squarecb",
                 epsilon: float = 0.05, extra_args: str = ""):
        super().__init__(n_features, seed)
        if exploration not in EXPLORATIONS:
            raise ValueError(f"exploration: must be one of {EXPLORATIONS} (got {exploration!r})")
        check_param("epsilon", epsilon, low=0.0, high=1.0)
        if not isinstance(extra_args, str):
            raise ValueError(f"extra_args: must be a string (got {extra_args!r})")
        self.exploration, self.epsilon, self.extra_args = exploration, epsilon, extra_args
        self._template = action_template(n_features)
        self._vw = self._workspace()
        self._recent: dict[bytes, tuple[list[str], int]] = {}

    def _args(self, with_seed: bool = True) -> str:
        exp = {"squarecb": "--squarecb", "epsilon": f"--epsilon {self.epsilon}",
               "cover": "--cover 4", "bag": "--bag 4", "regcb": "--regcb"}[self.exploration]
        # a saved model carries its own seed; giving one again makes VW refuse to load it
        seed = "" if self.seed is None or not with_seed else f"--random_seed {self.seed}"
        return f"--cb_explore_adf {exp} {seed} --quiet {self.extra_args}".strip()

    def _workspace(self, model: bytes | None = None):
        try:
            import vowpalwabbit
        except ImportError as err:  # pragma: no cover - depends on the installation
            raise ImportError("VW policies need vowpalwabbit: pip install 'loopwise[vw]'") from err
        if model is None:
            try:
                return vowpalwabbit.Workspace(self._args())
            except Exception as err:
                raise ValueError(f"extra_args: VW rejected the arguments {self._args()!r}: "
                                 f"{err}") from None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.vw"
            path.write_bytes(model)
            return vowpalwabbit.Workspace(f"{self._args(with_seed=False)} -i {path}")

    def _act(self, phi: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        if mask is None:
            mask = np.ones(phi.shape[:2], dtype=bool)
        probs = np.zeros(mask.shape)
        recent = self._recent
        for b in range(len(phi)):
            rows = phi[b, mask[b]]
            lines = action_lines(rows, self._template)
            probs[b, mask[b]] = self._vw.predict(lines)
            for pos, x in enumerate(rows):  # remember the set, to learn on all its actions
                recent[x.tobytes()] = (lines, pos)
        while len(recent) > self.REMEMBER:
            del recent[next(iter(recent))]
        return probs

    def _update(self, phi: np.ndarray, rewards: np.ndarray, propensities: np.ndarray) -> None:
        for x, r, p in zip(phi, rewards, propensities, strict=True):
            label = f"0:{1.0 - r:.6g}:{p:.6g} "
            seen = self._recent.pop(x.tobytes(), None)
            if seen is None:
                seen = self._recent.pop(x.astype(np.float32).tobytes(), None)
            if seen is None:  # the candidate set is unknown: learn on the chosen action alone
                self._vw.learn([label + action_lines(x[None], self._template)[0]])
            else:
                lines, pos = seen
                lines = list(lines)
                lines[pos] = label + lines[pos]
                self._vw.learn(lines)

    def state_dict(self) -> dict:
        """Parameters, VW's model bytes (VW 9 saves resumable state), remembered sets, RNG."""
        sd = super().state_dict()
        with tempfile.TemporaryDirectory() as tmp:
            self._vw.save(str(Path(tmp) / "model.vw"))
            sd["vw_model"] = (Path(tmp) / "model.vw").read_bytes()
        sd["vw_recent"] = dict(self._recent)
        return sd

    def load_state_dict(self, state: dict) -> VWPolicy:
        if not isinstance(state, dict) or "vw_model" not in state:
            raise ValueError("state: must be a dict from VWPolicy.state_dict()")
        super().load_state_dict(state)
        self._vw.finish()
        self._vw = self._workspace(state["vw_model"])
        self._recent = dict(state.get("vw_recent", {}))
        return self
