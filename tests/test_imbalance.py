"""Class imbalance: the rare class made rare, the remedies (weighted loss, over- and
undersampling), the per-class numbers and the verdict when accuracy hides a class."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import dlx
from dlx.components.data.base import make_imbalanced, rebalance
from dlx.config.loader import load_config
from dlx.run.trainer import Trainer


def test_imbalance_makes_the_last_class_rare_in_train_and_test_and_rebalancing_evens_it():
    data = load_config("class_imbalance", ["data.imbalance=null"]).data.load(0)  # balanced
    counts = torch.bincount(data.y_train, minlength=3)
    rare = make_imbalanced(data, 50)
    got = torch.bincount(rare.y_train, minlength=3)
    assert got[:2].tolist() == counts[:2].tolist() and got[2] == -(-int(counts[2]) // 50)
    assert torch.bincount(rare.y_test, minlength=3)[2] < torch.bincount(data.y_test, minlength=3)[2] / 40
    over = rebalance(rare, "oversample")
    assert torch.bincount(over.y_train).tolist() == [int(got.max())] * 3
    under = rebalance(rare, "undersample")
    assert torch.bincount(under.y_train).tolist() == [int(got.min())] * 3
    # Oversampling repeats the rare class's own samples, nothing new.
    rare_x = {tuple(v.tolist()) for v in rare.x_train[rare.y_train == 2]}
    assert {tuple(v.tolist()) for v in over.x_train[over.y_train == 2]} == rare_x


def test_the_weighted_loss_is_cross_entropy_weighted_by_n_over_k_times_the_class_count():
    tr = Trainer(load_config("class_imbalance", ["train.balance=weighted"]))
    y = tr.data.y_train
    counts = torch.bincount(y, minlength=3).float()
    weight = len(y) / (3 * counts)
    out = torch.randn(len(y), 3)
    torch.testing.assert_close(tr.loss_fn(out, y), F.cross_entropy(out, y, weight=weight))


def test_accuracy_hides_the_ignored_class_and_weighting_or_oversampling_brings_it_back(tmp_path):
    plain = dlx.train("class_imbalance", runs_dir=tmp_path, quiet=True)
    c = plain.summary["classes"]
    assert plain.summary["final"]["test_acc"] > 0.9 and c["recall"][2] <= 0.3
    assert plain.summary["verdicts"][0]["kind"] == "ignored_class"
    assert "class 2" in plain.summary["verdicts"][0]["message"]
    # The oracle: the confusion matrix of the saved model, by hand.
    cfg = load_config(plain.config)
    tr = Trainer(cfg, resuming=True)
    tr.model.load_state_dict(torch.load(plain.path / "checkpoint.pt", weights_only=True)["model"])
    tr.model.eval()
    with torch.no_grad():
        pred = tr.model(tr.data.as_float(tr.data.x_test)).argmax(-1)
    for i in range(3):
        for j in range(3):
            assert c["confusion"][i][j] == int(((tr.data.y_test == i) & (pred == j)).sum())
    for how in ("weighted", "oversample"):
        fixed = dlx.train("class_imbalance", [f"train.balance={how}"], runs_dir=tmp_path, quiet=True)
        assert fixed.summary["classes"]["recall"][2] >= 0.6, how
        assert "ignored_class" not in [v["kind"] for v in fixed.summary["verdicts"]]
        # The per-class table is still shown: it is what says the rare class came back
        # (oversampling evens the training counts; the test set is as rare as ever).
        from dlx.views.rows import classes_worth_showing

        assert classes_worth_showing(fixed.summary), how
