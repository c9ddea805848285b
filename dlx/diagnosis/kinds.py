"""The verdict kinds as data: one record per kind, read by the engine, the config
(train.prune), the example catalogue and every renderer (terminal, HTML), so a new
kind is added here once and no table elsewhere can miss it.

Each record: how the kind reads inside a sentence (label), how urgently it needs a
fix (severity), the kinds it produces as symptoms, whether a run may be stopped on
it while it trains, and why.
"""

from __future__ import annotations

from dataclasses import dataclass

# How urgently a kind needs a fix; the renderers style a verdict by its kind's severity.
#   severe   the run is wrecked (NaN, steps blowing up) or started wrong: red
#   warn     it runs, but a layer, a time step or the loss curve is not doing its job: yellow
#   wrong    it learned, but the wrong thing: magenta
#   healthy  nothing to do: green
SEVERITIES = ("severe", "warn", "wrong", "healthy")


@dataclass(frozen=True)
class Kind:
    name: str
    label: str  # how it reads inside a sentence ("the vanishing gradients above")
    severity: str  # one of SEVERITIES
    # What this root cause produces: a verdict of these kinds found beside it is its symptom.
    symptoms: tuple[str, ...]
    # Whether train.prune (`--prune-on`) may stop a run on it while it trains, and why (not).
    prunable: bool
    why: str
    # Its message already says how far the run got (the terminal report adds no outcome line).
    says_outcome: bool = False


# What each root cause produces (a cause comes before the symptoms it produces).
_LOSS = ("not_learning", "slow")
# An init out of range (or symmetric units) explains everything that follows from the start.
_FROM_THE_START = (
    "exploding",
    "vanishing",
    "dead_units",
    "saturation",
    "diverged",
    "lr_too_low",
    "lr_too_high",
    *_LOSS,
)

# Root causes first: the order of diagnose()'s list, and so the headline. A cause
# comes before the symptoms it produces (an init that halves the signal per layer
# before the vanishing gradients and the plateau it causes; a too-high lr before the
# dead units it kills), and each symptom names its root (SYMPTOMS, "symptom_of").
# lr_too_high leads only when the run started sane (init check and step-1
# gradients in range): otherwise the start is the first suspect and it moves to
# its place after the structural kinds (see engine._order). healthy only when nothing
# else fired, and never for a run that ends far from a fit ("slow" says so).
#
# Prunable kinds are judged on the run so far (no rule reads the steps still to come)
# and, once they have held for a few log intervals, do not undo themselves. The others
# read the end of a run or can undo themselves: never a reason to stop one early.
_RECORDS = (
    Kind(
        "symmetry",
        "symmetric units",
        "warn",
        ("init_scale", *_FROM_THE_START),
        True,
        "identical units get identical gradients and stay copies for good (without dropout)",
    ),
    Kind(
        "init_scale",
        "badly scaled init",
        "severe",
        _FROM_THE_START,
        False,
        "a badly scaled init is judged at step 0, and the run may still learn (adam, batch norm)",
    ),
    Kind(
        "lr_too_high",
        "too-high learning rate",
        "severe",
        ("exploding", "vanishing", "dead_units", "saturation", "diverged", *_LOSS),
        False,
        "a loss that rose or swings may settle (a schedule lowers the lr); a blow-up stops the run anyway",
    ),
    Kind(
        "exploding",
        "exploding gradients",
        "severe",
        ("diverged", *_LOSS),
        False,
        "large gradients may be tamed (clipping, adam) while the run still learns",
    ),
    Kind(
        "vanishing",
        "vanishing gradients",
        "warn",
        ("saturation", "lr_too_low", *_LOSS),
        True,
        "the input layers' gradient, sustained at a thousandth of the top's, does not recover by itself",
    ),
    Kind(
        "vanishing_through_time",
        "vanishing gradient through time",
        "warn",
        ("lr_too_low", *_LOSS),
        True,
        "the gradient from early time steps stays lost while the recurrence is unchanged",
    ),
    Kind(
        "dead_units",
        "dead units",
        "warn",
        ("lr_too_low", *_LOSS),
        True,
        "a ReLU off for every input gets no gradient, so nothing turns it back on",
    ),
    # Measured: an 8-layer tanh net at lr 0.1 had 69% of its units saturated at step 250 of
    # 600 with the loss at 66% of chance, then learned to 0.946 test accuracy. Saturation that
    # stalls a run for good leaves the loss at chance: not_learning stops that one.
    Kind(
        "saturation",
        "saturation",
        "warn",
        ("lr_too_low", *_LOSS),
        False,
        "tanh and sigmoid units saturate while a net is still learning and come back; "
        "a saturated net stuck at chance is not_learning",
    ),
    Kind("diverged", "divergence", "severe", (), False, "a run that diverges stops by itself", says_outcome=True),
    Kind("lr_too_low", "too-low learning rate", "warn", _LOSS, False, "judged on how far the whole run got"),
    Kind(
        "not_learning",
        "lack of learning",
        "warn",
        (),
        True,
        "the loss flat at chance level and a root verdict found that explains it (a plateau with no "
        "cause found may yet end, and does not stop a run)",
        says_outcome=True,
    ),
    Kind("slow", "slow progress", "warn", (), False, "judged on how far the whole run got", says_outcome=True),
    Kind(
        "overfitting",
        "overfitting",
        "wrong",
        (),
        False,
        "a rise of the test loss is what regularization.early_stopping stops on",
    ),
    Kind("ignored_class", "an ignored class", "wrong", (), False, "judged on the final per-class recall"),
    Kind("healthy", "health", "healthy", (), False, "nothing to stop", says_outcome=True),
)
KIND = {k.name: k for k in _RECORDS}
KINDS = tuple(KIND)
LABEL = {k.name: k.label for k in _RECORDS}
SYMPTOMS = {k.name: k.symptoms for k in _RECORDS if k.symptoms}

# The prunable kinds in the order train.prune.on lists them by default (and so the order
# a run is checked, and named, when several hold at once); test_owners_diagnosis checks
# that it holds exactly the records marked prunable.
PRUNE_ORDER = ("symmetry", "dead_units", "vanishing", "vanishing_through_time", "not_learning")
PRUNABLE = {k: KIND[k].why for k in PRUNE_ORDER}
NOT_PRUNABLE = {k.name: k.why for k in _RECORDS if not k.prunable}
# train.prune's default warm-up (a fraction of the run's steps): measured, none of 42 healthy
# runs (tests/test_verdict_quality.py's and every example expecting healthy, scaled down)
# is pruned with every PRUNABLE kind on at a warm-up of 0.05; 0.1 keeps twice that margin.
PRUNE_WARMUP = 0.1
