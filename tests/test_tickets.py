"""Lottery tickets: train.mask holds weights at exactly 0, rewinding is the same init times
the mask, init.seed re-draws the weights alone, and `dlx ticket` prunes by magnitude."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import dlx
from dlx.config.loader import load_config
from dlx.core.errors import ConfigError
from dlx.core.tensorfile import read_tensors
from dlx.many.stack_plan import plan_stacks, why_not
from dlx.many.tickets import OUTPUT_SHARE
from dlx.records.layout import CHECKPOINT_FILE, MASKS_FILE, PRUNED_FILE
from dlx.records.tickets import write_masks
from dlx.run.masks import prunable, prune_by_magnitude
from dlx.run.trainer import Trainer


def random_masks(cfg: dict, keep: float = 0.5, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random mask of every weight matrix of the config's model (biases left unmasked)."""
    model = Trainer(load_config(cfg)).model
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    return {n: torch.rand(params[n].shape, generator=g) < keep for n in prunable(model)}


class Final:
    """The model's weights and the optimizer's state at the end of a run."""

    def on_end(self, trainer, outcome):
        self.weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        names = {id(p): n for n, p in trainer.model.named_parameters()}
        self.state = {names[id(p)]: s for p, s in trainer.optimizer.state.items()}


@pytest.mark.parametrize(
    "optimizer, moments",
    [
        ({"name": "momentum", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}, ("momentum_buffer",)),
        ({"name": "adam", "lr": 0.01}, ("exp_avg", "exp_avg_sq")),
    ],
)
def test_masked_weights_stay_exactly_zero_and_keep_no_optimizer_state(tiny, tmp_path, optimizer, moments):
    tiny["optimizer"] = optimizer
    masks = random_masks(tiny)
    tiny["train"]["mask"] = str(write_masks(tmp_path / "m.pt", masks))
    final = Final()
    run = dlx.train(tiny, save=False, quiet=True, callbacks=[final])
    assert run.status == "completed"
    for name, m in masks.items():
        w = final.weights[name]
        assert torch.equal(w[~m], torch.zeros_like(w[~m])), name  # exactly 0, not merely small
        assert (w[m] != 0).all(), name  # the kept weights trained
        for key in moments:
            s = final.state[name][key]
            assert torch.equal(s[~m], torch.zeros_like(s[~m])), (name, key)


def test_rewound_ticket_starts_at_the_dense_init_times_the_mask_bit_for_bit(tiny, tmp_path):
    masks = random_masks(tiny, keep=0.3)
    dense = Trainer(load_config(tiny)).model.state_dict()
    tiny["train"]["mask"] = str(write_masks(tmp_path / "m.pt", masks))
    ticket = Trainer(load_config(tiny)).model.state_dict()
    assert set(ticket) == set(dense)
    for name, w in ticket.items():
        want = dense[name] * masks[name] if name in masks else dense[name]
        assert torch.equal(w, want), name


def test_init_seed_draws_other_weights_on_the_same_data(tiny):
    a = Trainer(load_config(tiny))
    tiny["init"] = {"name": "kaiming_normal", "seed": 7}
    b = Trainer(load_config(tiny))
    assert torch.equal(a.data.x_train, b.data.x_train) and torch.equal(a.data.x_test, b.data.x_test)
    name = prunable(a.model)[0]
    assert not torch.equal(a.model.state_dict()[name], b.model.state_dict()[name])
    again = Trainer(load_config(tiny))
    assert torch.equal(b.model.state_dict()[name], again.model.state_dict()[name])  # a seed: drawn again alike


def test_each_round_prunes_rate_of_the_kept_weights_the_smallest_first():
    g = torch.Generator().manual_seed(0)
    weights = {"a": torch.randn(40, 50, generator=g), "b": torch.randn(10, 40, generator=g)}
    rates = {"a": 0.2, "b": 0.1}
    masks = None
    for k in range(1, 6):
        before = masks
        masks = prune_by_magnitude(weights, masks, rates)
        for name, w in weights.items():
            n = w.numel()
            assert abs(int(masks[name].sum()) - n * (1 - rates[name]) ** k) <= k, (name, k)  # one per round
            kept_before = before[name] if before else torch.ones_like(masks[name])
            assert not (masks[name] & ~kept_before).any()  # a pruned weight never comes back
            gone = kept_before & ~masks[name]
            # The pruned are the smallest |w| of those kept before: kthvalue's order statistic.
            n_gone = int(gone.sum())
            threshold = w.abs()[kept_before].kthvalue(n_gone).values
            assert (w.abs()[gone] <= threshold).all() and (w.abs()[masks[name]] >= threshold).all()
        weights = {n: w + 0.1 * torch.randn(w.shape, generator=g) for n, w in weights.items()}  # "trained on"


def test_a_missing_mask_file_is_refused_at_train_mask_with_its_line(tiny, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        "data: {name: spirals, n_train: 64, n_test: 32}\nmodel: {name: mlp, depth: 1, width: 8}\n"
        "train:\n  epochs: 1\n  mask: nowhere.pt\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert f"{path}:5: train.mask: file not found" in str(e.value)  # the YAML line, the key, the fix's cause


def test_a_mask_that_does_not_fit_the_model_is_refused_naming_the_key_and_the_shapes(tiny, tmp_path):
    masks = random_masks(tiny)
    name = next(iter(masks))
    masks[name] = masks[name][:, :-1]
    tiny["train"]["mask"] = str(write_masks(tmp_path / "m.pt", masks))
    with pytest.raises(ConfigError) as e:
        dlx.train(tiny, save=False, quiet=True)
    text = str(e.value)
    assert "train.mask" in text and f"shape {name}" in text and "dlx ticket" in text
    torch.save({"nothing.weight": torch.ones(3)}, tmp_path / "other.pt")
    tiny["train"]["mask"] = str(tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="nothing.weight"):
        dlx.check(tiny)


def test_masked_configs_train_alone_in_a_compare(tiny, tmp_path):
    tiny["train"]["mask"] = str(write_masks(tmp_path / "m.pt", random_masks(tiny)))
    assert "train.mask" in why_not(load_config(tiny))
    configs = [dict(tiny, seed=s) for s in range(4)]
    jobs, notes = plan_stacks(configs, slots=1)
    assert all(len(j) == 1 for j in jobs) and any("train.mask" in n for n in notes)


def test_dlx_ticket_runs_end_to_end_and_keeps_the_masks_in_each_round_folder(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "seed: 0\ndata: {name: spirals, n_train: 256, n_test: 128}\nmodel: {name: mlp, depth: 2, width: 16}\n"
        "init: kaiming_normal\noptimizer: {name: adam, lr: 0.01}\ntrain: {epochs: 2, batch_size: 32, log_every: 4}\n"
    )
    runs = tmp_path / "runs"
    rate = 0.5
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlx",
            "ticket",
            str(cfg),
            "--rounds",
            "2",
            "--rate",
            str(rate),
            "--runs-dir",
            str(runs),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "kept" in proc.stdout and "test_acc" in proc.stdout and "round 2 (control)" in proc.stdout
    (record_path,) = runs.glob("ticket-*.json")
    assert record_path.with_suffix(".png").is_file()
    rows = json.loads(record_path.read_text())["rows"]
    assert [(r["round"], r["kind"]) for r in rows] == [(0, "dense"), (1, "ticket"), (2, "ticket"), (2, "control")]
    folders = [tmp_path / r["run"] for r in rows]
    assert not (folders[0] / MASKS_FILE).exists()
    for k in (1, 2):
        masks = read_tensors(folders[k] / MASKS_FILE)
        # Its train.mask was the round before's pruned.pt, pruned from that round's final weights.
        assert all(torch.equal(m, read_tensors(folders[k - 1] / PRUNED_FILE)[n]) for n, m in masks.items())
        before = read_tensors(folders[k - 1] / MASKS_FILE) if k > 1 else None
        final = read_tensors(folders[k - 1] / CHECKPOINT_FILE)["model"]
        names = list(masks)
        rates = {n: rate * (OUTPUT_SHARE if n == names[-1] else 1.0) for n in names}
        assert all(torch.equal(m, prune_by_magnitude(final, before, rates)[n]) for n, m in masks.items())
        for n, m in masks.items():  # (1 - rate)^k of each layer, one weight of rounding per round
            assert abs(int(m.sum()) - m.numel() * (1 - rates[n]) ** k) <= k, (n, k)
    control = read_tensors(folders[3] / MASKS_FILE)
    assert all(torch.equal(m, read_tensors(folders[2] / MASKS_FILE)[n]) for n, m in control.items())
    assert load_config(folders[3] / "config.yaml").init.seed == 1  # the run's seed 0, + 1


def test_a_resumed_masked_run_ends_with_exactly_the_weights_of_one_never_stopped(tiny, tmp_path):
    tiny["optimizer"] = {"name": "momentum", "lr": 0.05, "momentum": 0.9}
    tiny["train"]["mask"] = str(write_masks(tmp_path / "m.pt", random_masks(tiny)))
    whole = dlx.train(tiny, runs_dir=tmp_path / "a", quiet=True)

    class StopAt:
        def on_interval(self, trainer, record):
            if record["step"] == 8:
                trainer.interrupt()

    cut = dlx.train(tiny, runs_dir=tmp_path / "b", quiet=True, callbacks=[StopAt()])
    assert cut.status == "interrupted" and (cut.path / MASKS_FILE).is_file()
    done = dlx.train(resume=cut.path, runs_dir=tmp_path / "b", quiet=True)
    assert done.status == "completed"
    a = read_tensors(whole.path / CHECKPOINT_FILE)["model"]
    b = read_tensors(done.path / CHECKPOINT_FILE)["model"]
    assert all(torch.equal(a[n], b[n]) for n in a)  # the hooks that hold the mask are back after --resume
