"""Data augmentation: the warp against exact pixel shifts, the seeded stream, and the effect
on a small MNIST run (the train/test gap narrows)."""

from __future__ import annotations

import math

import torch

import dlx
from dlx.run.augment import Augment, warp


def test_the_warp_is_the_identity_at_zero_and_a_one_pixel_shift_moves_every_pixel_by_one():
    x = torch.rand(3, 1, 8, 8)
    zero = torch.zeros(3)
    torch.testing.assert_close(warp(x, zero, zero, zero), x, atol=1e-6, rtol=0)
    right = warp(x, zero, torch.ones(3), zero)
    torch.testing.assert_close(right[..., 1:], x[..., :-1], atol=1e-6, rtol=0)
    assert right[..., 0].abs().max() == 0  # the uncovered column is background
    down = warp(x, zero, zero, torch.ones(3))
    torch.testing.assert_close(down[..., 1:, :], x[..., :-1, :], atol=1e-6, rtol=0)
    # A quarter turn of a square image is rot90 (clockwise on screen for a positive angle).
    quarter = warp(x, torch.full((3,), math.pi / 2), zero, zero)
    torch.testing.assert_close(quarter, torch.rot90(x, k=-1, dims=(2, 3)), atol=1e-5, rtol=0)


def test_the_augmentation_is_seeded_and_keeps_flattened_images_flat():
    xb = torch.rand(4, 784)
    a, b = Augment(2, 10, (784,), 0, "cpu"), Augment(2, 10, (784,), 0, "cpu")
    out = a(xb)
    assert out.shape == (4, 784) and not torch.equal(out, xb)
    torch.testing.assert_close(out, b(xb))
    assert not torch.equal(a(xb), out)  # a fresh draw every batch


def test_augmentation_narrows_the_train_test_gap_of_a_small_mnist_run(tmp_path, mnist_dir, monkeypatch):
    monkeypatch.setenv("DLX_DATA_DIR", str(mnist_dir))
    sets = ["train.epochs=15"]
    plain = dlx.train("mnist_augmentation", [*sets, "data.augment=null"], runs_dir=tmp_path, quiet=True)
    aug = dlx.train("mnist_augmentation", sets, runs_dir=tmp_path, quiet=True)
    gap = lambda r: r.summary["final"]["train_acc"] - r.summary["final"]["test_acc"]  # noqa: E731
    assert gap(aug) < gap(plain) - 0.02
    assert aug.summary["final"]["test_acc"] > plain.summary["final"]["test_acc"]
    assert aug.meta["data"]["name"] == "mnist"


def test_a_resumed_augmented_run_ends_with_the_weights_of_one_never_stopped(tmp_path, mnist_dir, monkeypatch):
    import torch

    monkeypatch.setenv("DLX_DATA_DIR", str(mnist_dir))
    sets = ["train.epochs=null", "train.steps=60", "train.log_every=10", "train.checkpoint_every=20"]
    whole = dlx.train("mnist_augmentation", sets, runs_dir=tmp_path / "a", quiet=True)

    class StopAt:
        def on_interval(self, trainer, record):
            if trainer.step == 30:
                trainer.interrupt()

    first = dlx.train("mnist_augmentation", sets, runs_dir=tmp_path / "b", quiet=True, callbacks=[StopAt()])
    resumed = dlx.train(resume=first.path, runs_dir=tmp_path / "b", quiet=True)
    a = torch.load(whole.path / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(resumed.path / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
