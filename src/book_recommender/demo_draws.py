"""Random draws of the demo-data generator, derived from ``Generator.random``
(uniform doubles) alone, so the output does not depend on how a numpy version
implements ``normal`` or ``choice``."""

from __future__ import annotations

import numpy as np


def zipf(order_key: np.ndarray, exponent: float, offset: float) -> np.ndarray:
    """Zipf-Mandelbrot weights by descending ``order_key``."""
    position = np.empty(len(order_key))
    position[np.argsort(-order_key, kind="stable")] = np.arange(len(order_key))
    return (position + 1.0 + offset) ** -exponent


def normal(rng: np.random.Generator, size: int) -> np.ndarray:
    """Standard normal draws by Box-Muller from two uniform streams."""
    u1 = 1.0 - rng.random(size)  # (0, 1], so log is finite
    u2 = rng.random(size)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def pick(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    """Indices drawn with replacement, proportional to ``weights``."""
    cumulative = np.cumsum(weights, dtype=np.float64)
    cumulative /= cumulative[-1]
    idx = np.searchsorted(cumulative, rng.random(size), side="right")
    return np.minimum(idx, len(weights) - 1)


def permutation(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.argsort(rng.random(n), kind="stable")
