#!/usr/bin/env python3
"""Fits the coefficients of the native GEGLU's erfc (hd-painter-models/src/native/geglu.rs):
erfc(z) = t * exp(-z^2 + P(t)) with t = 1 / (1 + z / 2), the scheme of Numerical Recipes'
erfcc. P (degree 9) is fitted to log(erfc(z) / t) + z^2 over z in [0, 10] (t in [1/6, 1]) by
least squares on Chebyshev nodes, reweighted toward minimax (Lawson), against mpmath's erfc.
Prints the maximum error of the exponent and P's coefficients as f32, lowest degree first.

    ~/.cache/hd-painter/venv/bin/python tools/reference/fit_erfc.py
"""

import mpmath as mp
import numpy as np

DEGREE = 9
NODES = 4000


def main():
    low, high = 1 / 6, 1.0
    u = np.cos(np.pi * (np.arange(NODES) + 0.5) / NODES)
    t = (low + high) / 2 + (high - low) / 2 * u
    z = 2 * (1 / t - 1)
    target = np.array([float(mp.log(mp.erfc(mp.mpf(v)))) for v in z]) - np.log(t) + z * z
    basis = np.vander(t, DEGREE + 1, increasing=True)
    weights = np.ones(NODES)
    for _ in range(60):
        root = np.sqrt(weights)
        coefficients, *_ = np.linalg.lstsq(basis * root[:, None], target * root, rcond=None)
        weights *= np.abs(basis @ coefficients - target)
        weights /= weights.sum()
    print(f"max |error| of the exponent: {np.abs(basis @ coefficients - target).max():.3e}")
    print([float(c) for c in coefficients.astype(np.float32)])


if __name__ == "__main__":
    main()
