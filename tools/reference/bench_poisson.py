#!/usr/bin/env python3
"""OpenCV's side of benches/benches/poisson.rs: HD-Painter's poisson_blend (generate.py's
restatement, on cv2.seamlessClone) of a 2048 x 2048 RGB image with the same textures and hole;
median of 10 and peak RSS.

    ~/.cache/hd-painter/venv/bin/python tools/reference/bench_poisson.py
"""

import resource
import time

import cv2
import numpy as np

from generate import hd_painter_poisson_blend

N = 2048


def texture(phase):
    yy, xx = np.mgrid[0:N, 0:N].astype(np.float64)
    return np.stack([
        (128 + 100 * np.sin(xx / (7.0 + c) + phase) * np.cos(yy / (11.0 + c) - phase)).astype(np.uint8) for c in range(3)
    ], -1)


def main():
    orig, fake = texture(0.0), texture(1.3)
    yy, xx = np.mgrid[0:N, 0:N].astype(np.float64)
    x, y = xx - 1000.0, yy - 1100.0
    hole = ((np.hypot(x, y) < 600) & ~((x > 100) & (np.abs(y) < 150))).astype(np.uint8) * 255
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    times = []
    for _ in range(10):
        start = time.perf_counter()
        hd_painter_poisson_blend(orig, fake, hole)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads: poisson_blend 2048x2048 "
          f"{sorted(times)[5]:.3f} s (median of 10), peak RSS {peak:.2f} GiB ({before:.2f} before)")


if __name__ == "__main__":
    main()
