"""`dlx sweep` and `dlx.sweep()`: a search over config keys, each trial an ordinary dlx train run.

The entry to the package dlx.many.sweep, whose modules hold the code (spec, resume, results,
folder, driver); its public names are importable from here, as they were before the split.

(Named sweeper, not sweep, so that `import dlx.many.sweeper` never shadows the dlx.sweep() function.)
"""

from dlx.many.sweep.driver import run_sweep, sweep
from dlx.many.sweep.folder import RERUN, TPE_STARTUP, Sweep, SweepTrial
from dlx.many.sweep.results import SweepResults
from dlx.many.sweep.resume import SAFE_EDITS, repair_journal
from dlx.many.sweep.spec import (
    GOALS,
    MAX_GRID,
    METRICS,
    STRATEGIES,
    Dimension,
    Metric,
    Plan,
    SweepSpec,
    plan,
    trial_sets,
)
from dlx.records.folders import find_sweep

__all__ = [
    "GOALS",
    "MAX_GRID",
    "METRICS",
    "RERUN",
    "SAFE_EDITS",
    "STRATEGIES",
    "TPE_STARTUP",
    "Dimension",
    "Metric",
    "Plan",
    "Sweep",
    "SweepResults",
    "SweepSpec",
    "SweepTrial",
    "find_sweep",
    "plan",
    "repair_journal",
    "run_sweep",
    "sweep",
    "trial_sets",
]
