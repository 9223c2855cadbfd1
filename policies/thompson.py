"""Win probabilities under a Gaussian posterior, estimated from many draws at once.

Plain Thompson sampling shows the winner of one posterior draw, whose probability nobody
knows. Loopwise policies report instead the probability that each candidate wins, estimated
from ``n_draws`` draws, and the caller samples from exactly those numbers, so the logged
propensity is the one used.
"""

from __future__ import annotations

import numpy as np

from policies import linear  # its LAPACK binding (or None without scipy), looked up per call


def win_probabilities(phi: np.ndarray, mask: np.ndarray | None, theta: np.ndarray, cov: np.ndarray,
                      chol: np.ndarray | None, n_draws: int, rng: np.random.Generator
                      ) -> np.ndarray:
    """Fraction of posterior draws in which each candidate has the highest score.

    The score of candidate k is ``phi[b, k] . w`` with ``w ~ N(theta, cov)``. When a batch
    holds fewer candidates than features (B * K < D, e.g. one decision at a time) the K
    scores of a row are drawn jointly from ``N(phi theta, phi cov phi^T)`` (fewer normals);
    otherwise ``n_draws`` weight vectors are drawn once and shared by the whole batch. Both
    sample the same law; draws come in antithetic pairs (z, -z).

    Parameters
    ----------
    phi
        (B, K, D) features.
    mask
        (B, K) valid candidates; invalid ones never win. ``None``: all valid.
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
    winners = None
    if b * k < d:
        x = phi.astype(np.float64, copy=False)
        if b == 1:  # one decision: 2-D arrays skip the batched machinery (latency matters)
            x = x[0]
            sigma = (x @ cov) @ x.T
        else:
            sigma = (x @ cov) @ x.transpose(0, 2, 1)  # (B, K, K)
        try:
            lower = np.linalg.cholesky(sigma)
        except np.linalg.LinAlgError:  # duplicate candidates make sigma singular: add jitter
            diag = sigma.reshape(-1, k * k)[:, ::k + 1]  # a view
            diag += 1e-9 * diag.max() + 1e-12
            try:
                lower = np.linalg.cholesky(sigma)
            except np.linalg.LinAlgError:  # still singular: use the weight-space path
                lower = None
        if lower is not None:
            half = (n_draws + 1) // 2
            spread = lower @ rng.standard_normal((k, half) if b == 1 else (b, k, half))
            mean = (x @ theta)[..., None]
            scores = np.concatenate([mean + spread, mean - spread], axis=-1)
            if half * 2 != n_draws:
                scores = scores[..., :n_draws]
            scores = scores.reshape(b, k, n_draws)
            if mask is not None and not mask.all():
                scores = np.where(mask[..., None], scores, -np.inf)
            winners = scores.argmax(axis=1)
            if b > 1:
                winners += (k * np.arange(b))[:, None]  # flat indices into (B, K)
    if winners is None:
        if chol is None:
            chol = cholesky_psd(cov)
        z = antithetic_normals(rng, (d,), n_draws, axis=0)
        weights = (theta + z @ chol.T).astype(np.float32)  # (S, D)
        # float32 is plenty to rank scores and halves the cost of the one large product
        flat = phi.reshape(b * k, d).astype(np.float32, copy=False)
        return _win_frequencies((weights @ flat.T).reshape(n_draws, b, k), mask)
    counts = np.bincount(winners.ravel(), minlength=b * k).reshape(b, k)
    return counts / n_draws


def _win_frequencies(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Share of the draws (S, B, K) in which each candidate of each row scores highest;
    masked candidates never win."""
    n_draws, b, k = scores.shape
    if mask is not None and not mask.all():
        scores = np.where(mask, scores, -np.inf)
    winners = scores.argmax(axis=2)  # (S, B)
    if b > 1:
        winners += k * np.arange(b)  # flat indices into (B, K)
    return np.bincount(winners.ravel(), minlength=b * k).reshape(b, k) / n_draws


def cholesky_small(sigma: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor of a small covariance (K, K) plus a jitter of 1e-10 of its mean
    variance on the diagonal; ``None`` if even that fails (a matrix far from positive
    semi-definite, or NaN). ``sigma`` may be overwritten.

    Candidates that share features give a singular covariance (K scores spanning fewer than
    K dimensions: common with one-hot features), which the jitter makes factorizable in one
    attempt; it adds independent noise of standard deviation 1e-5 of the typical score's to
    each score, far below what changes a ranking.

    Examples
    --------
    >>> lower = cholesky_small(np.array([[4.0, 2.0], [2.0, 2.0]]))
    >>> np.allclose(lower, [[2.0, 0.0], [1.0, 1.0]]), float(lower[0, 1])
    (True, 0.0)
    >>> cholesky_small(np.ones((2, 2))) is not None   # rank 1
    True
    >>> cholesky_small(np.array([[1.0, 0.0], [0.0, -1.0]])) is None
    True
    """
    k = len(sigma)
    if not sigma.flags.c_contiguous:
        sigma = np.ascontiguousarray(sigma)
    sigma.ravel()[::k + 1] += 1e-10 * float(sigma.trace()) / k + _TINY  # ravel: a view
    if linear._dpotrf is not None:  # LAPACK without numpy.linalg's wrapper: a few us, not ~10
        lower, info = linear._dpotrf(sigma, 1, 1)  # lower, upper triangle zeroed
        return lower if info == 0 else None
    try:
        return np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        return None


_TINY = float(np.finfo(np.float64).tiny)


#: Decisions scored together (times K candidates times the draws): a chunk's scores stay
#: a few MB at most.
CHUNK = 256


def win_probabilities_root(phi: np.ndarray, mask: np.ndarray | None, theta: np.ndarray,
                           root: np.ndarray, scale: float, n_draws: int,
                           rng: np.random.Generator) -> np.ndarray:
    """Like :func:`win_probabilities`, with the posterior ``N(theta, scale^2 R R^T)`` given
    by any square root ``R`` (D, D) of its covariance, so no factorization happens here.

    The ``n_draws`` weight vectors ``w = theta +/- scale R z`` (antithetic pairs) are shared
    by the whole batch; the scores ``phi w`` are computed ``CHUNK`` decisions at a time, in
    float32 for float32 features (the scores only need ranking), as ``phi w+`` and ``2 phi
    theta - phi w+``, laid out (K, draws, decisions) so that the best candidate of every
    decision in every draw is an element-wise maximum over K. Each draw credits every
    candidate with its row's best score, so exact ties share the draw; each row's counts are
    then normalized: an unbiased estimate of its candidates' probabilities of winning (ties
    have probability 0 unless candidates are identical).

    Examples
    --------
    >>> import numpy as np
    >>> phi = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    >>> p = win_probabilities_root(phi, None, np.zeros(2), np.eye(2), 1.0, 4000,
    ...                            np.random.default_rng(0))
    >>> bool(abs(p[0, 0] - 0.5) < 0.03)   # two independent N(0, 1) scores: a fair coin
    True
    """
    b, k, d = phi.shape
    half = (n_draws + 1) // 2
    z = rng.normal(0.0, scale, (half, d))
    dtype = np.float32 if phi.dtype == np.float32 else np.float64
    plus = (theta + np.dot(z, root.T)).astype(dtype, copy=False)  # (half, D): w+ = theta + s R z
    twice_theta = (2.0 * theta).astype(dtype, copy=False)  # w- = 2 theta - w+
    ones = np.ones(n_draws, dtype)
    counts = np.empty((k, b), dtype)
    for first in range(0, b, CHUNK):
        xt = phi[first:first + CHUNK].transpose(1, 2, 0)  # (K, D, decisions), a view
        scores = np.empty((k, 2 * half, xt.shape[2]), dtype)
        np.matmul(plus, xt, out=scores[:, :half])
        np.subtract(np.matmul(twice_theta, xt)[:, None, :], scores[:, :half],
                    out=scores[:, half:])
        if 2 * half != n_draws:
            scores = scores[:, :n_draws]
        if mask is not None:
            np.copyto(scores, -np.inf, where=~mask[first:first + CHUNK].T[:, None, :])
        hits = np.equal(scores, scores.max(axis=0), out=scores)
        counts[:, first:first + CHUNK] = np.matmul(ones, hits)
    counts = counts.T
    return counts / counts.sum(axis=1, keepdims=True, dtype=np.float64)


def antithetic_normals(rng: np.random.Generator, shape: tuple[int, ...], n_draws: int,
                       axis: int) -> np.ndarray:
    """``n_draws`` standard normal vectors along ``axis`` in antithetic pairs (z, -z).

    Each draw is exactly N(0, I), so win frequencies stay unbiased; pairs halve the normals
    generated (the main cost of one decision) and reduce the estimate's variance.
    """
    half = (n_draws + 1) // 2
    full = list(shape)
    full.insert(axis, half)
    z = rng.standard_normal(tuple(full))
    z = np.concatenate([z, -z], axis=axis)
    return z if 2 * half == n_draws else np.delete(z, -1, axis=axis)


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
