"""Data augmentation for image data (MNIST): each training batch is shifted by up to `shift`
pixels and rotated by up to `rotate` degrees, per image, on the training device, with the
run's own seeded generator (its state is in the checkpoint: a resumed run draws the same).
Test data are never augmented. The background fills in with 0 in the stored pixel scale
(black for MNIST).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def warp(x: torch.Tensor, angle: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Images x [B, C, H, W] rotated by angle (radians) and shifted by (dx, dy) pixels
    (right and down), each [B]; bilinear, zeros outside."""
    b, _, h, w = x.shape
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output to input coordinates in [-1, 1]: the inverse transform.
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, sin
    theta[:, 1, 0], theta[:, 1, 1] = -sin, cos
    theta[:, 0, 2] = -2 * dx / w
    theta[:, 1, 2] = -2 * dy / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Augment:
    """Random shifts and rotations of a batch of images (flattened square images too)."""

    def __init__(self, shift: float, rotate: float, feature_shape: tuple[int, ...], seed: int, device):
        self.shift, self.rotate = float(shift), math.radians(float(rotate))
        self.feature_shape = tuple(feature_shape)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed + 7919)  # its own stream: the data order's is untouched

    def image_shape(self) -> tuple[int, int, int]:
        s = self.feature_shape
        if len(s) == 3:
            return s
        side = math.isqrt(s[0])
        return (1, side, side)

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        b = len(xb)
        imgs = xb.float().reshape(b, *self.image_shape())
        u = torch.rand(3, b, generator=self.generator, device=xb.device) * 2 - 1
        out = warp(imgs, u[0] * self.rotate, u[1] * self.shift, u[2] * self.shift)
        return out.reshape(b, *self.feature_shape)
