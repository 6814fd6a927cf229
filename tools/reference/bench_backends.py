#!/usr/bin/env python3
"""The PyTorch / numpy side of benches/benches/backends.rs: the same shapes, timed the same way
(warm-up, then the mean of 10 runs, with the machine's default thread count).

    ~/.cache/hd-painter/venv/bin/python tools/reference/bench_backends.py
"""

import time

import numpy as np
import torch


def mean_time(fn, runs=10):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sum(times) / len(times)


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.randn(1, 512, 64, 64)
    w = torch.randn(512, 512, 3, 3)
    b = torch.randn(512)
    a4 = torch.randn(4096, 4096)
    b4 = torch.randn(4096, 4096)
    na = rng.standard_normal((4096, 4096), dtype=np.float32)
    nb = rng.standard_normal((4096, 4096), dtype=np.float32)
    with torch.no_grad():
        rows = [
            ("conv3x3_512ch_64x64", "torch", mean_time(lambda: torch.nn.functional.conv2d(x, w, b, padding=1))),
            ("matmul_4096", "torch", mean_time(lambda: a4 @ b4)),
            ("matmul_4096", "numpy", mean_time(lambda: na @ nb)),
        ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; numpy {np.__version__}")
    for name, lib, seconds in rows:
        print(f"{name:22} {lib:6} {seconds * 1e3:9.1f} ms")


if __name__ == "__main__":
    main()
