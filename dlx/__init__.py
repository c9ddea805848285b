"""dlx: run small deep-learning experiments and see their training dynamics.

The package imports nothing heavy until used: `dlx.train` loads torch on first call.
"""

__version__ = "0.1.0"
# True in a process dlx itself runs (the dlx command, a worker), False where dlx is a library
# in someone's program: only its own processes skip torch's torch._dynamo imports
# (optim.skip_dynamo_wrappers), which a user's torch.compile may rely on.
OWNS_PROCESS = False
__all__ = [
    "train",
    "compare",
    "sweep",
    "fix",
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
    if name in ("train", "compare", "load_run", "runs", "check"):
        from . import api

        return getattr(api, name)
    if name in ("Run", "RunResult", "Comparison", "RunList"):
        from . import results

        return getattr(results, name)
    if name == "sweep":
        from .sweeper import sweep

        return sweep
    if name == "fix":
        from .remedies import fix

        return fix
    if name == "load_config":
        from .config import load_config

        return load_config
    if name in ("DlxError", "ConfigError"):
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'dlx' has no attribute {name!r}")


# The loop lives in dlx.trainer (not dlx.train) so that importing it never shadows
# the dlx.train() function on the package.
