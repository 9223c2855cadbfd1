"""Double-Q training in torch for :class:`policies.slateq.SlateQ`: an online Q-network over
(state, item) features, a Polyak-averaged target network, Adam on the Huber TD error.

Kept apart from the policy so that ``import policies`` does not import torch: the policy
imports this module when it is built.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import torch

from policies.torchnet import seeded_mlp

_WARMUP = 3  # eager Adam steps before a CUDA graph is captured (as policies.neural)


class QLearner:
    """The networks, the optimizer and the training steps of a SlateQ policy.

    ``Q(x)`` is an MLP (two ReLU layers of width ``hidden``, a linear output) of a chosen
    candidate's features ``x`` (D,): its action-dependent features already hold the user's
    state crossed with the item. One step on a mini-batch of transitions ``(x, r, x'_1..K,
    mask', done)`` minimizes the Huber loss of ``Q(x)`` against the double-Q target::

        r + gamma * (1 - done) / L * sum_{j in top_L Q(x'_j)} Q_target(x'_j)

        (top_L over valid next candidates by the online network; L = slate_size)

    then moves the target network ``tau`` of the way to the online one (Polyak).
    """

    def __init__(self, n_features: int, hidden: int, lr: float, gamma: float, tau: float,
                 slate_size: int, device: torch.device, seed: int):
        self.gamma, self.tau, self.slate_size, self.device = gamma, tau, slate_size, device
        self.net = seeded_mlp(n_features, hidden, seed, device)
        self.target = copy.deepcopy(self.net)
        for p in self.target.parameters():
            p.requires_grad_(False)
        # capturable: the step counter lives on the device, so CUDA graphs can hold the step
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr,
                                    capturable=device.type == "cuda")

    def weights(self, target: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
        """(W (in, out), b) float32 numpy copies of each linear layer, for numpy forwards."""
        net = self.target if target else self.net
        return [(m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy().copy())
                for m in net if isinstance(m, torch.nn.Linear)]

    # ---- training --------------------------------------------------------------------
    def targets(self, r: torch.Tensor, nx: torch.Tensor, nmask: torch.Tensor,
                done: torch.Tensor) -> torch.Tensor:
        """Double-Q targets (N,) of transitions with rewards ``r`` (N,), next candidates
        ``nx`` (N, K, D) of which ``nmask`` (N, K) exist, and ``done`` (N,) in {0, 1}."""
        if self.gamma == 0.0:
            return r
        with torch.no_grad():
            online = self.net(nx).squeeze(-1).masked_fill(~nmask, float("-inf"))
            top = online.topk(min(self.slate_size, online.shape[1]), dim=1).indices
            valid = nmask.gather(1, top).to(r.dtype)  # fewer valid than L: fewer slots
            value = (self.target(nx).squeeze(-1).gather(1, top) * valid).sum(1)
            return r + (self.gamma / self.slate_size) * (1.0 - done) * value

    def _loss(self, data: tuple[torch.Tensor, ...], idx: torch.Tensor) -> torch.Tensor:
        x, r, done, nx, nmask = (t[idx] for t in data)
        y = self.targets(r, nx, nmask, done)
        return torch.nn.functional.smooth_l1_loss(self.net(x).squeeze(-1), y)

    def _step(self, data: tuple[torch.Tensor, ...], idx: torch.Tensor) -> None:
        loss = self._loss(data, idx)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self._polyak()

    def _polyak(self) -> None:
        with torch.no_grad():
            torch._foreach_lerp_(list(self.target.parameters()), list(self.net.parameters()),
                                 self.tau)

    def train(self, arrays: tuple[np.ndarray, ...], picks: torch.Tensor) -> None:
        """One Adam step per row of ``picks`` (steps, batch) of indices into the transitions
        ``arrays`` = (x (n, D), r (n,), done (n,), next x (n, K, D), next mask (n, K))."""
        dev = self.device
        data = tuple(torch.as_tensor(a, device=dev) for a in arrays)
        picks = picks.to(dev)
        if dev.type == "cuda" and len(picks) > _WARMUP:
            self._train_graphed(data, picks)
        else:
            for idx in picks:
                self._step(data, idx)

    def _train_graphed(self, data: tuple[torch.Tensor, ...], picks: torch.Tensor) -> None:
        """The same steps on CUDA, replayed from one captured CUDA graph (Adam step and
        Polyak update included): a small network's step costs more in kernel launches than
        in maths."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # capture needs warmed-up kernels and optimizer state
            for idx in picks[:_WARMUP]:
                self._step(data, idx)
        torch.cuda.current_stream().wait_stream(side)
        static_idx = picks[_WARMUP].clone()
        graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):  # recorded, not run
            self._loss(data, static_idx).backward()
            self.opt.step()
            self._polyak()
        for idx in picks[_WARMUP:]:
            static_idx.copy_(idx)
            graph.replay()
        self.opt.zero_grad(set_to_none=True)  # let go of the graph's gradient buffers
        del graph

    # ---- persistence -----------------------------------------------------------------
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        torch.save({"net": self.net.state_dict(), "target": self.target.state_dict(),
                    "opt": self.opt.state_dict()}, buf)
        return buf.getvalue()

    def load_bytes(self, blob: bytes) -> None:
        state = torch.load(io.BytesIO(blob), map_location=self.device)
        self.net.load_state_dict(state["net"])
        self.target.load_state_dict(state["target"])
        self.opt.load_state_dict(state["opt"])
        on_cuda = self.device.type == "cuda"  # the state may come from the other device
        for group in self.opt.param_groups:
            group["capturable"] = on_cuda
        for st in self.opt.state.values():
            if "step" in st:
                st["step"] = st["step"].to(self.device, torch.float32)
