"""Early stopping: a trainer callback that ends the run once its metric stops improving."""

from __future__ import annotations

from typing import Any


class EarlyStopping:
    """Stops the run when the watched metric has not improved for `patience` evaluations."""

    def __init__(self, metric: str, patience: int, min_delta: float):
        self.metric, self.patience, self.min_delta = metric, patience, min_delta
        self.sign = 1.0 if metric.endswith("loss") else -1.0  # minimise losses, maximise accuracies
        self.best: float | None = None
        self.best_step = 0
        self.bad = 0

    STATE = ("best", "best_step", "bad")  # what a checkpoint keeps, so a resumed run stops alike

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self.STATE:
            setattr(self, k, state[k])

    def on_interval(self, trainer, record):
        if "test_loss" not in record or record.get(self.metric) is None:
            return  # only evaluation points count, for train_* metrics too
        value = self.sign * record[self.metric]
        if self.best is None or value < self.best - self.min_delta:
            self.best, self.best_step, self.bad = value, record["step"], 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            trainer.stop(
                "completed",
                f"early stopping: {self.metric} has not improved for "
                f"{self.patience} evaluations (best {self.sign * self.best:.4g} "
                f"at step {self.best_step})",
            )
