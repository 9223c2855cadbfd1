"""What the torch policies (``neural_ts``, ``slateq``) share: the device they train on and
their network, an MLP built from a seed. Imported only when such a policy is built, so that
``import policies`` does not import torch."""

from __future__ import annotations

import torch


def pick_device(device: str) -> torch.device:
    """``"auto"``: CUDA when torch sees it, else the CPU; ``"cuda"`` without one raises.

    Examples
    --------
    >>> pick_device("cpu")
    device(type='cpu')
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: must be 'auto', 'cpu' or 'cuda' (got {device!r})")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but torch sees no CUDA device "
                         "(use 'auto' to fall back to the CPU)")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


def seeded_mlp(n_features: int, hidden: int, seed: int,
               device: torch.device) -> torch.nn.Sequential:
    """Two ReLU layers of width ``hidden`` and a linear output, initialized as torch does
    by default but from ``seed`` (no global random state), on ``device``.

    Examples
    --------
    >>> a, b = seeded_mlp(3, 4, 7, torch.device("cpu")), seeded_mlp(3, 4, 7, torch.device("cpu"))
    >>> bool(torch.equal(a[0].weight, b[0].weight)), a(torch.zeros(2, 3)).shape
    (True, torch.Size([2, 1]))
    """
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(n_features, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
        torch.nn.Linear(hidden, 1))
    with torch.no_grad():
        for layer in net[::2]:
            bound = (1.0 / layer.in_features) ** 0.5  # torch's default init, seeded here
            layer.weight.uniform_(-bound, bound, generator=gen)
            layer.bias.uniform_(-bound, bound, generator=gen)
    return net.to(device)
