"""dlx compare --ensemble: the seed runs' averaged predictions, against the members."""

from __future__ import annotations

import pytest
import torch

import dlx
from dlx.many.ensemble import ensemble


@pytest.mark.slow
def test_the_ensemble_beats_its_mean_member_and_is_the_average_of_their_probabilities(tmp_path):
    cmp = dlx.compare(
        "ensembles",
        over=["regularization.dropout=0,0.5"],
        seeds=3,
        overrides=["train.steps=300"],
        runs_dir=tmp_path / "runs",
        quiet=True,
        ensemble=True,
        figure=False,
    )
    assert len(cmp.ensembles) == 2
    label = next(k for k in cmp.ensembles if k.endswith("=0"))
    e = cmp.ensembles[label]
    assert e["members"] == 3
    assert e["test_acc"] > e["member_test_acc_mean"] and e["test_loss"] < e["member_test_loss_mean"]
    # The oracle: the saved models by hand, their softmax averaged, on the first run's test
    # points in the raw plane, each standardised as that member's own training draw was.
    from dlx.config.loader import load_config

    paths = [r.path for r in cmp.runs[label]]
    probs = []
    for p in paths:
        run = dlx.load_run(p)
        cfg = load_config(run.config)
        model = cfg.model.build(cfg.data.load(cfg.seed), cfg)
        model.load_state_dict(torch.load(p / "checkpoint.pt", weights_only=True)["model"])
        model.eval()
        raw = cfg.data.model_copy(update={"normalize": False}).load(cfg.seed)
        mean, std = raw.x_train.mean(0), raw.x_train.std(0, unbiased=False)
        if p == paths[0]:
            points, labels = raw.x_test, raw.y_test
        with torch.no_grad():
            probs.append(model((points - mean) / std).double().softmax(-1))
    acc = float((torch.stack(probs).mean(0).argmax(-1) == labels).double().mean())
    assert e["test_acc"] == pytest.approx(acc, abs=1.5 / len(labels))  # float32 rounding may move a tie
    assert ensemble(paths)["test_acc"] == acc
    assert "ensembles" in cmp.as_dict()
