"""scikit-learn's digits as [0, 1] tensors, a fixed split, and augmentation."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def digits(seed: int = 0, test_size: float = 0.3):
    """-> (x_train, y_train, x_test, y_test); x as (n, 64) float32 in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=test_size, random_state=seed, stratify=y)
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return t(Xtr), ytr, t(Xte), yte


def augment(x: torch.Tensor, gen: torch.Generator, degrees: float = 12.0, shift: float = 1.0,
            scale: float = 0.1) -> torch.Tensor:
    """Random small rotation, scaling and translation of each (n, 64) digit."""
    n = x.shape[0]
    r = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(degrees)
    s = 1 + (torch.rand(n, generator=gen) * 2 - 1) * scale
    t = (torch.rand(n, 2, generator=gen) * 2 - 1) * shift / 4.0  # grid units: 8 px = 2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(r) / s, -torch.sin(r) / s
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(r) / s, torch.cos(r) / s
    theta[:, :, 2] = t
    img = x.view(n, 1, 8, 8)
    grid = F.affine_grid(theta, img.shape, align_corners=False)
    return F.grid_sample(img, grid, align_corners=False, padding_mode="zeros").view(n, 64)


def mlp(*sizes: int) -> torch.nn.Sequential:
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def grid_image(x: torch.Tensor, rows: int, cols: int, scale: int = 4) -> np.ndarray:
    """(rows*cols, 64) in [0, 1] -> a uint8 picture of the digits, white on black."""
    x = x.detach().clamp(0, 1).view(rows, cols, 8, 8)
    pad = torch.zeros(rows, cols, 10, 10)
    pad[:, :, 1:9, 1:9] = x
    img = pad.permute(0, 2, 1, 3).reshape(rows * 10, cols * 10)
    img = img.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    return (img.numpy() * 255).round().astype(np.uint8)
