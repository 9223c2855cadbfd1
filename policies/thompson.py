"""Win probabilities under a Gaussian posterior, estimated from many draws at once.

Plain Thompson sampling shows the winner of one posterior draw, whose probability nobody
knows. Loopwise policies report instead the probability that each candidate wins, estimated
from ``n_draws`` draws, and the caller samples from exactly those numbers, so the logged
propensity is the one used.
"""

from __future__ import annotations

import numpy as np


def win_probabilities(phi: np.ndarray, mask: np.ndarray, theta: np.ndarray, cov: np.ndarray,
                      chol: np.ndarray | None, n_draws: int, rng: np.random.Generator
                      ) -> np.ndarray:
    """Fraction of posterior draws in which each candidate has the highest score.

    The score of candidate k is ``phi[b, k] . w`` with ``w ~ N(theta, cov)``. When a batch
    holds fewer candidates than features (B * K < D, e.g. one decision at a time) the K
    scores of a row are drawn jointly from ``N(phi theta, phi cov phi^T)`` (fewer normals);
    otherwise ``n_draws`` weight vectors are drawn once and shared by the whole batch. Both
    sample the same law.

    Parameters
    ----------
    phi
        (B, K, D) features.
    mask
        (B, K) valid candidates; invalid ones never win.
    theta, cov
        Posterior mean (D,) and covariance (D, D).
    chol
        Lower Cholesky factor of ``cov`` if already known (used on the batch path), else
        ``None``.
    n_draws
        Number of posterior draws S.
    rng
        The policy's generator.

    Returns
    -------
    np.ndarray
        (B, K) win frequencies, each a multiple of 1 / S; rows sum to 1.

    Examples
    --------
    >>> import numpy as np
    >>> phi = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    >>> p = win_probabilities(phi, np.ones((1, 2), bool), np.array([0.0, 0.0]), np.eye(2),
    ...                       None, 4000, np.random.default_rng(0))
    >>> bool(abs(p[0, 0] - 0.5) < 0.03)   # two independent N(0, 1) scores: a fair coin
    True
    """
    b, k, d = phi.shape
    scores = None
    if b * k < d:
        sigma = phi @ cov @ phi.transpose(0, 2, 1)  # (B, K, K)
        scale = np.abs(np.diagonal(sigma, axis1=1, axis2=2)).max() + 1e-12
        sigma = sigma + np.eye(k) * (1e-9 * scale)
        try:
            lower = np.linalg.cholesky(sigma)
        except np.linalg.LinAlgError:  # numerically singular: use the weight-space path
            lower = None
        if lower is not None:
            z = rng.standard_normal((b, k, n_draws))
            scores = (phi @ theta)[..., None] + lower @ z  # (B, K, S)
    if scores is None:
        if chol is None:
            chol = cholesky_psd(cov)
        z = rng.standard_normal((n_draws, d))
        weights = (theta + z @ chol.T).astype(np.float32)  # (S, D)
        # float32 is plenty to rank scores and halves the cost of the one large product
        flat = phi.reshape(b * k, d).astype(np.float32, copy=False)
        scores = (weights @ flat.T).reshape(n_draws, b, k)
    else:
        scores = scores.transpose(2, 0, 1)  # (S, B, K)
    if not mask.all():
        scores = np.where(mask, scores, -np.inf)
    winners = scores.argmax(axis=2) + k * np.arange(b)  # (S, B) flat indices into (B, K)
    counts = np.bincount(winners.ravel(), minlength=b * k).reshape(b, k)
    return counts / n_draws


def cholesky_psd(cov: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a symmetric positive semi-definite matrix (with jitter)."""
    scale = np.abs(np.diag(cov)).max() + 1e-12
    for jitter in (1e-12, 1e-9, 1e-6):
        try:
            return np.linalg.cholesky(cov + np.eye(len(cov)) * (jitter * scale))
        except np.linalg.LinAlgError:
            continue
    vals, vecs = np.linalg.eigh(cov)
    return vecs * np.sqrt(np.clip(vals, 0.0, None))
