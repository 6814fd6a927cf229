#!/usr/bin/env python3
"""The reference side of benches/benches/core_ops.rs: the same operations with Pillow, scipy,
OpenCV and torchvision, timed the same way (warm-up, then the mean of 10 runs)."""

import time

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as tvf
from PIL import Image
from scipy.ndimage import binary_dilation


def mean_time(fn, runs=10):
    fn()
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - start) / runs


def main():
    idx = np.arange(2048 * 1536 * 3, dtype=np.uint64)
    photo = Image.fromarray((((idx * 2654435761) % 2**32) >> 24).astype(np.uint8).reshape(1536, 2048, 3))
    yy, xx = np.mgrid[0:2048, 0:2048]
    mask = (np.hypot(xx - 1024, yy - 1024) < 512).astype(np.uint8) * 255
    yy, xx = np.mgrid[0:512, 0:512]
    soft = torch.from_numpy((np.hypot(xx - 256, yy - 256) < 128).astype(np.float32))[None, None]
    rows = [
        ("resize_bicubic_2048x1536_to_512x384", "Pillow", mean_time(lambda: photo.resize((512, 384), Image.BICUBIC))),
        ("dilate_cross19_2048", "scipy", mean_time(lambda: binary_dilation(mask > 0, iterations=19))),
        ("dilate_box48_2048", "OpenCV", mean_time(lambda: cv2.dilate(mask, np.ones((48, 48), np.uint8)))),
        ("gaussian_blur19_512_f32", "torchvision", mean_time(lambda: tvf.gaussian_blur(soft, kernel_size=19))),
    ]
    for name, lib, seconds in rows:
        print(f"{name:40} {lib:12} {seconds * 1e3:9.2f} ms")


if __name__ == "__main__":
    main()
