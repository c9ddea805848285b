"""dlx compare --ensemble: the seed runs' averaged predictions, against the members."""

from __future__ import annotations

import torch

import dlx
from dlx.many.ensemble import ensemble


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
    # The oracle: the saved models by hand, their softmax averaged, on the first run's test set.
    from dlx.config.loader import load_config

    paths = [r.path for r in cmp.runs[label]]
    probs = []
    for p in paths:
        run = dlx.load_run(p)
        cfg = load_config(run.config)
        model = cfg.model.build(cfg.data.load(cfg.seed), cfg)
        model.load_state_dict(torch.load(p / "checkpoint.pt", weights_only=True)["model"])
        model.eval()
        if p == paths[0]:
            data = cfg.data.load(cfg.seed)
        with torch.no_grad():
            probs.append(model(data.as_float(data.x_test)).double().softmax(-1))
    acc = float((torch.stack(probs).mean(0).argmax(-1) == data.y_test).double().mean())
    assert e["test_acc"] == acc
    assert ensemble(paths)["test_acc"] == acc
    assert "ensembles" in cmp.as_dict()
