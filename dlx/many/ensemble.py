"""Ensembles of a compare's seed runs: the average of their predictions (Breiman's bagging
without the resampling: the members differ in their init, data order and, for synthetic
data, their draw of the data), against the members themselves.

Every member is evaluated on one test set, the first member's (synthetic data are drawn
from each run's seed), mapped into each member's own input units (each draw is standardised
with its own training statistics), from its saved model (checkpoint.pt), in eval mode. Classifiers
average their class probabilities; regressors their outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def ensemble(run_paths: list[str | Path]) -> dict[str, Any]:
    """The ensemble's test loss and accuracy, and the members' mean and best on the same set."""
    import torch
    import torch.nn.functional as F

    from dlx.core.errors import UsageError
    from dlx.records.layout import CHECKPOINT_FILE
    from dlx.records.model import saved_model

    paths = [Path(p) for p in run_paths if (Path(p) / CHECKPOINT_FILE).is_file()]
    if len(paths) < 2:
        raise UsageError("an ensemble needs at least two saved runs (--seeds 2 or more, train.checkpoint: true)")
    _, cfg0, first, _ = saved_model(paths[0])
    data = first.data
    x = data.as_float(data.x_test)
    y = data.y_test
    classify = data.task == "classification"
    sigmoid_out = getattr(cfg0.model, "output_activation", "none") == "sigmoid"
    outs = []
    for p in paths:
        tr = first if p == paths[0] else saved_model(p)[2]  # the first is built already
        # Each seed's draw was standardised with its own training statistics: the shared
        # test points in this member's units (fed as they are, a member saw shifted inputs).
        xm = tr.data.restandardise(x, data)
        with torch.no_grad():
            out = torch.cat([tr.model(xm[i : i + 4096].to(tr.device)) for i in range(0, len(xm), 4096)]).double().cpu()
        if classify:
            out = out / out.sum(-1, keepdim=True).clamp_min(1e-12) if sigmoid_out else out.softmax(-1)
        outs.append(out)
    yc = y.cpu()

    def metrics(pred: torch.Tensor) -> dict[str, float]:
        if classify:
            flat, target = pred.reshape(-1, pred.shape[-1]), yc.reshape(-1)
            return {
                "test_loss": float(F.nll_loss(flat.clamp_min(1e-12).log(), target)),
                "test_acc": float((flat.argmax(-1) == target).double().mean()),
            }
        return {"test_loss": float(F.mse_loss(pred, yc.double()))}

    members = [metrics(o) for o in outs]
    ens = metrics(torch.stack(outs).mean(0))
    out: dict[str, Any] = {"members": len(paths), "test_set": paths[0].name, **ens}
    for k in ens:
        vals = np.array([m[k] for m in members])
        out[f"member_{k}_mean"] = float(vals.mean())
        out[f"member_{k}_best"] = float(vals.max() if k == "test_acc" else vals.min())
    return out
