"""dlx: run small deep-learning experiments and see their training dynamics.

The package imports nothing heavy until used: `dlx.train` loads torch on first call.
"""

from dlx.core.version import __version__

__all__ = [
    "train",
    "compare",
    "sweep",
    "fix",
    "check_example",
    "check_examples",
    "load_run",
    "runs",
    "check",
    "load_config",
    "Run",
    "RunResult",
    "Comparison",
    "DlxError",
    "ConfigError",
    "__version__",
]


def __getattr__(name):
    if name in ("train", "load_run", "runs", "check"):
        from dlx import api

        return getattr(api, name)
    if name == "compare":
        from dlx.many.compare import compare

        return compare
    if name in ("Run", "RunResult", "Comparison", "RunList"):
        from dlx import results

        return getattr(results, name)
    if name == "sweep":
        from dlx.many.sweeper import sweep

        return sweep
    if name == "fix":
        from dlx.many.remedies import fix

        return fix
    if name in ("check_example", "check_examples"):
        # many, not api: a check trains one or two runs through api.train
        from dlx.many import papers

        return getattr(papers, name)
    if name == "load_config":
        from dlx.config.loader import load_config

        return load_config
    if name in ("DlxError", "ConfigError"):
        from dlx.core import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'dlx' has no attribute {name!r}")


# The loop lives in dlx.run.trainer (not dlx.train) so that importing it never shadows
# the dlx.train() function on the package.
