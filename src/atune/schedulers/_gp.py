"""A small time-varying GP-UCB in numpy, for PB2's explore step.

PB2 (Parker-Holder et al., 2020) models the *change* of reward per unit of time as a
function of ``(time, reward before, hyperparameters)`` with a Gaussian process whose kernel
is a squared exponential over the hyperparameters times a time-decay term
(``(1 - epsilon) ** (|t - t'| / 2)``, the TV-GP-UCB kernel of Bogunovic et al., 2016), and
picks the hyperparameters that maximise ``mean + kappa * variance`` at the donor's
``(time, reward)``. Ray Tune's version uses scikit-learn (L-BFGS-B over kernel
hyperparameters and the acquisition); this one is numpy only: the kernel hyperparameters
are chosen by log marginal likelihood over a fixed grid, and the acquisition is maximised
over seeded random candidates, so the choice is a deterministic function of the data and
the seed.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

__all__ = ["GaussianProcess", "normalize", "select_config", "standardize"]

Array = npt.NDArray[np.float64]

# The targets are standardized, so the variance is fixed at 1; the grid spans the
# lengthscale (in the unit cube) and the time decay.
_VARIANCES = (1.0,)
_LENGTHSCALES = (0.05, 0.2, 1.0)
_EPSILONS = (0.05, 0.3)
_JITTER = 1e-6
_MAX_POINTS = 200
_CANDIDATES = 1024


def normalize(data: Array, wrt: Array) -> Array:
    """Scale columns to ``[0, 1]`` with respect to the min and max of ``wrt``'s columns."""
    low, high = np.min(wrt, axis=0), np.max(wrt, axis=0)
    return np.asarray((data - low) / (high - low + 1e-8), dtype=np.float64)


def standardize(data: Array) -> Array:
    """Zero mean, unit variance, clipped to ``[-2, 2]`` (Ray Tune's PB2 does the same)."""
    scaled = (data - np.mean(data, axis=0)) / (np.std(data, axis=0) + 1e-8)
    return np.asarray(np.clip(scaled, -2, 2), dtype=np.float64)


def _kernel(a: Array, b: Array, variance: float, lengthscale: float, epsilon: float) -> Array:
    """TV squared exponential: column 0 is time, the rest are the spatial inputs."""
    time_dist = np.abs(a[:, :1] - b[:, :1].T)
    sq = np.sum((a[:, None, 1:] - b[None, :, 1:]) ** 2, axis=-1)
    return np.asarray(
        variance * np.exp(-sq / lengthscale) * (1 - epsilon) ** (0.5 * time_dist),
        dtype=np.float64,
    )


class GaussianProcess:
    """A zero-mean GP regression with the TV kernel, its hyperparameters fit on a grid.

    Args:
        x: Inputs, one row per point (column 0 is time).
        y: Targets.
        params: ``(variance, lengthscale, epsilon)``; None picks the grid point with the
            highest log marginal likelihood.
    """

    def __init__(self, x: Array, y: Array, params: tuple[float, float, float] | None = None):
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64).reshape(-1)
        if params is None:
            fits = [self._fit(p) for p in itertools.product(_VARIANCES, _LENGTHSCALES, _EPSILONS)]
            params, self._k, self._alpha, _ = max(fits, key=lambda fit: fit[3])
        else:
            _, self._k, self._alpha, _ = self._fit(params)
        self.params = params

    def _fit(
        self, params: tuple[float, float, float]
    ) -> tuple[tuple[float, float, float], Array, Array, float]:
        """``(params, K + jitter, K^-1 y, log marginal likelihood)``."""
        k = _kernel(self.x, self.x, *params)
        jitter = _JITTER
        while True:
            regularized = k + jitter * np.eye(len(k))
            try:
                chol = np.linalg.cholesky(regularized)
                break
            except np.linalg.LinAlgError:
                if jitter > 1.0:
                    raise
                jitter *= 10
        alpha = np.asarray(np.linalg.solve(regularized, self.y), dtype=np.float64)
        likelihood = float(-0.5 * self.y @ alpha - np.sum(np.log(np.diag(chol))))
        return params, regularized, alpha, likelihood

    def predict(self, x: Array) -> tuple[Array, Array]:
        """Posterior mean and variance at the rows of ``x``."""
        k_star = _kernel(np.asarray(x, dtype=np.float64), self.x, *self.params)
        mean = k_star @ self._alpha
        v = np.linalg.solve(self._k, k_star.T)
        var = self.params[0] - np.sum(k_star.T * v, axis=0)
        return mean, np.maximum(var, 0.0)


def select_config(
    x_raw: Array,
    y_raw: Array,
    current: Array | None,
    new_point: Array,
    bounds: Array,
    rng: np.random.Generator,
) -> Array:
    """The hyperparameters (in the units of ``bounds``) that maximise GP-UCB.

    Args:
        x_raw: Rows ``(time, reward before, hyperparameters...)``.
        y_raw: Reward change per unit of time of each row.
        current: Hyperparameters already chosen for trials since the last data (rows), or
            None: they are added to the variance model with zero targets, so a second
            choice avoids the first (Ray Tune's batch trick).
        new_point: ``(time, reward)`` of the donor: fixed, not optimised.
        bounds: ``(2, d)``: row 0 the lower, row 1 the upper bounds.
        rng: Draws the candidates.
    """
    x_raw = x_raw[-_MAX_POINTS:]
    y_raw = y_raw[-_MAX_POINTS:]
    fixed_raw = x_raw[:, :2]
    limits = np.concatenate(
        (np.vstack((fixed_raw.max(axis=0), fixed_raw.min(axis=0))), bounds), axis=1
    )
    x = normalize(x_raw, limits)
    y = standardize(y_raw)
    fixed = normalize(np.asarray(new_point, dtype=np.float64).reshape(1, -1), fixed_raw)[0]
    model = GaussianProcess(x, y)
    var_model = model
    if current is not None and len(current):
        pad = np.tile(fixed, (len(current), 1))
        extra = np.hstack((pad, normalize(current, bounds)))
        var_model = GaussianProcess(
            np.vstack((x, extra)), np.concatenate((y, np.zeros(len(current)))), model.params
        )
    dim = bounds.shape[1]
    candidates = rng.uniform(0.0, 1.0, size=(_CANDIDATES, dim))
    points = np.hstack((np.tile(fixed, (_CANDIDATES, 1)), candidates))
    beta = 0.2 + max(0.0, float(np.log(0.4 * len(x))))
    mean, _ = model.predict(points)
    _, var = var_model.predict(points)
    best = candidates[int(np.argmax(mean + np.sqrt(beta) * var))]
    low, high = bounds.min(axis=0), bounds.max(axis=0)
    return np.asarray(best * (high - low) + low, dtype=np.float64)
