"""The model behind the cost-aware sampler (``_cost_aware``): a Gaussian process of accuracy alone, and the
expected hypervolume improvement of a candidate whose cost is known exactly.

The process takes a particle's encoding and its log costs (Matern 5/2, one
lengthscale per input group, both and the noise chosen by marginal likelihood
over a grid; numpy only). The improvement is exact in closed form: a candidate
at cost position x with accuracy a ~ N(mu, sigma^2) adds, over each step
[u0, u1) of the front to its right with best accuracy h,
(u1 - max(u0, x)) * E[max(0, a - h)].
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ._hypervolume import front_steps

LENGTHSCALES = np.geomspace(0.25, 8.0, 8)  # tried for each input group (particle encoding, log costs)
NOISES = (1e-3, 1e-2, 0.05, 0.15, 0.4)  # noise variances tried (of the standardized accuracy)


def _matern52(d: np.ndarray) -> np.ndarray:
    r = math.sqrt(5.0) * d
    return (1.0 + r + r * r / 3.0) * np.exp(-r)


class AccuracyModel:
    """A Gaussian process on (particle encoding, log costs) -> accuracy; two lengthscales and the noise by marginal likelihood."""

    def __init__(self, x_particle: np.ndarray, x_cost: np.ndarray, y: np.ndarray, *, hyper: tuple[float, float, float] | None = None) -> None:
        """Fit to (x_particle, x_cost) -> y; ``hyper`` (lengthscales and noise of an earlier fit) skips the search over the grid."""
        self.xp, self.xc = x_particle, x_cost
        self.mean, self.scale = float(y.mean()), float(y.std()) or 1.0
        z = (y - self.mean) / self.scale
        dp, dc = _sqdist(x_particle, x_particle), _sqdist(x_cost, x_cost)
        best = None
        n = len(z)
        grid = [((lp, lc), NOISES) for lp in LENGTHSCALES for lc in LENGTHSCALES] if hyper is None else [((hyper[0], hyper[1]), (hyper[2],))]
        for (lp, lc), noises in grid:
            base = _matern52(np.sqrt(dp / lp**2 + dc / lc**2))
            for noise in noises:
                try:
                    chol = np.linalg.cholesky(base + noise * np.eye(n))
                except np.linalg.LinAlgError:
                    continue
                alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, z))
                amplitude = max(float(z @ alpha) / n, 1e-6)  # the signal variance that maximizes the likelihood
                nll = 0.5 * n * math.log(amplitude) + float(np.log(np.diag(chol)).sum())
                if best is None or nll < best[0]:
                    best = (nll, lp, lc, noise, chol, alpha, amplitude)
        if best is None:
            raise ValueError("the accuracy model must fit its trials, but every kernel was singular.")
        _, self.lp, self.lc, self.noise, self.chol, self.alpha, self.amplitude = best

    @property
    def hyper(self) -> tuple[float, float, float]:
        """The fitted lengthscales (particle, cost) and noise."""
        return self.lp, self.lc, self.noise

    def predict(self, x_particle: np.ndarray, x_cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the accuracy of each row."""
        k = _matern52(np.sqrt(_sqdist(x_particle, self.xp) / self.lp**2 + _sqdist(x_cost, self.xc) / self.lc**2))
        mean = k @ self.alpha
        v = np.linalg.solve(self.chol, k.T)
        var = self.amplitude * np.maximum(1.0 - (v * v).sum(axis=0), 1e-12)
        return self.mean + self.scale * mean, self.scale * np.sqrt(var)


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def expected_improvement_2d(mean: np.ndarray, std: np.ndarray, positions: np.ndarray, front_accuracy: Sequence[float], front_positions: Sequence[float]) -> np.ndarray:
    """Expected hypervolume improvement of candidates with accuracy ~ N(mean, std^2) at known cost positions, over a front.

    The box is accuracy [0, 1] x position [0, 1] (the yardstick's); the front's
    points are (accuracy, position). Exact: the improvement is, over each step of
    the front to the candidate's right, the step's width times max(0, a - its level).
    """
    from scipy.special import ndtr

    edges, level = front_steps(front_accuracy, front_positions)
    starts = np.concatenate([[0.0], edges])  # step k covers [starts[k], ends[k]) at accuracy levels[k]
    ends = np.concatenate([edges, [1.0]])
    levels = np.concatenate([[0.0], level])
    x = np.clip(positions, 0.0, 1.0)[:, None]
    width = np.maximum(0.0, ends[None, :] - np.maximum(starts[None, :], x))
    s = np.maximum(std, 1e-9)[:, None]
    z = (mean[:, None] - levels[None, :]) / s
    gain = (mean[:, None] - levels[None, :]) * ndtr(z) + s * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return (width * gain).sum(axis=1)
