"""The coordinate check of μP (Yang & Hu 2021; Tensor Programs V, Yang et al. 2022, fig. 5):
the typical size of every layer's output over the first steps of training, against width.

Under the maximal-update parametrisation (`model.parametrization: mup`) each layer's scale
stays flat as the width grows; under the standard one with Adam the output layer's (and the
hidden layers') grows about like width**1 after the first step, since Adam moves every one of
a layer's fan_in weights by about lr and the moves add up coherently.

What is measured: the mean |y| over a fixed batch (the config's first batch_size training
rows) of each weight layer's output y = W x + b (`model.init_targets()`: fc1, fc2, ..., out;
pre-activations, and the logits for `out`), at step 0 (the init) and after each of `steps`
Adam steps on that same batch, averaged over seeds. The nets train in this process through
the run's own Trainer (its init, parametrisation, optimizer and lr groups); nothing is
written, the loss is the plain data loss (no penalties, no clipping) and the schedule steps
as in a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dlx.components.optim import step as optimizer_step
from dlx.config import measures
from dlx.config.loader import Config, load_config
from dlx.core.errors import UsageError
from dlx.core.stats import loglog_slope
from dlx.run.trainer import Trainer


@dataclass
class CoordCheck:
    """scales[w, t, l]: mean |output| of layer l after t steps at widths[w] (t = 0: the init)."""

    widths: list[int]
    layers: list[str]
    scales: np.ndarray  # float64 [len(widths), steps + 1, len(layers)], the mean over seeds
    parametrization: str
    seeds: int

    @property
    def steps(self) -> int:
        return self.scales.shape[1] - 1

    def record(self) -> dict:
        """As plain JSON: widths, layers, scales[width][step][layer], each layer's slope at the last step."""
        return {
            "parametrization": self.parametrization,
            "seeds": self.seeds,
            "widths": self.widths,
            "layers": self.layers,
            "scales": self.scales.tolist(),
            "slopes": dict(zip(self.layers, self.slopes().tolist())),
        }

    def growth(self, step: int = -1) -> np.ndarray:
        """Per layer: the scale at the widest width over the one at the narrowest."""
        return self.scales[-1, step] / self.scales[0, step]

    def slopes(self, step: int = -1) -> np.ndarray:
        """Per layer: the least-squares slope of log(scale) against log(width), so that
        scale ~ width**slope (0: flat, as μP promises; about 1 under sp with Adam)."""
        return np.array([loglog_slope(self.widths, self.scales[:, step, j]) for j in range(len(self.layers))])


def parse_widths(text: str) -> list[int]:
    """`--widths 64,128,256,512`: measures.parse_widths, a UsageError naming the option."""
    try:
        return measures.parse_widths(text)
    except ValueError as e:
        raise UsageError(f"--widths {e}; got '{text}'") from None


def coordcheck(cfg: Config, widths: list[int], steps: int = 5, seeds: int = 2) -> CoordCheck:
    """Train `cfg` at each of `widths` (model.width) for `steps` steps, `seeds` seeds each
    (cfg.seed, cfg.seed + 1, ...), and measure each layer's output scale at every step."""
    if "width" not in type(cfg.model).model_fields or getattr(cfg.model, "widths", None) is not None:
        raise UsageError(
            f"the coordinate check varies model.width; model {cfg.model.name} "
            f"{'gives explicit widths' if getattr(cfg.model, 'widths', None) else 'has no width'} "
            "(use an mlp with depth and width)"
        )
    if steps < 1 or seeds < 1:
        raise UsageError("--steps and --seeds take positive integers")
    runs = [[_scales(cfg, w, cfg.seed + s, steps) for s in range(seeds)] for w in widths]
    layers = runs[0][0][0]
    scales = np.array([np.mean([r[1] for r in by_seed], axis=0) for by_seed in runs])
    return CoordCheck(widths, layers, scales, getattr(cfg.model, "parametrization", "sp"), seeds)


def _scales(cfg: Config, width: int, seed: int, steps: int) -> tuple[list[str], np.ndarray]:
    """One net: (layer names, [steps + 1, layers] mean |output|)."""
    tr = Trainer(load_config(cfg, [f"model.width={width}", f"seed={seed}"]))
    model, data = tr.model, tr.data
    rows = min(tr.batch_size, len(data.x_train))
    xb, yb = data.as_float(data.x_train[:rows]), data.y_train[:rows]
    targets = model.init_targets()
    seen = torch.zeros(steps + 1, len(targets))
    at = [0]  # the step being measured, read by the hooks

    def hook(j):
        def record(module, inputs, out):
            if not torch.is_grad_enabled():  # the measuring pass, not the training one
                seen[at[0], j] = out.detach().abs().mean().cpu()

        return record

    handles = [m.register_forward_hook(hook(j)) for j, (_, m) in enumerate(targets)]
    try:
        for t in range(steps + 1):
            at[0] = t
            model.eval()
            with torch.no_grad():
                model(xb)
            if t == steps:
                break
            model.train()
            loss = tr.loss_fn(model(xb), yb)
            tr.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer_step(tr.optimizer)
            if tr.scheduler is not None:
                tr.scheduler.step()
    finally:
        for h in handles:
            h.remove()
    values = seen.double().numpy()
    if not np.isfinite(values).all() or (values <= 0).any():
        bad = "non-finite" if not np.isfinite(values).all() else "zero"
        # A log-log slope needs positive finite scales: say which net broke, not a nan table.
        raise UsageError(f"width {width}, seed {seed}: a layer's output scale is {bad} (lr too high?)")
    return [n for n, _ in targets], values


def default_figure_name(widths: list[int], parametrization: str) -> str:
    return f"coordcheck-{parametrization}-{widths[0]}-{widths[-1]}.png"
