"""Where the trials of a sweep or a compare run: build_executor picks the executor the
options name (local warm workers, or a Ray cluster), the one place both commands choose it.
Apart from dlx.many.executors so that the local executor never imports the Ray one (which
builds on it)."""

from __future__ import annotations

from dlx.many.executors import LocalExecutor


def build_executor(
    kind: str,
    max_parallel: int | None = None,
    retries: int = 2,
    gpus_per_trial: float | None = None,
    cpus_per_trial: float | None = None,
    address: str | None = None,
    stack: bool = True,
    warm: bool = True,
    in_driver: bool = False,
):
    """The executor dlx sweep and dlx compare run their trials on: "local" (warm workers on
    this machine) or "ray" (a cluster; address as RayExecutor takes it). in_driver: the
    local executor trains stacks in this process too (LocalExecutor). UsageError for
    options that do not go together."""
    from dlx.core.errors import UsageError

    if kind == "ray":
        from dlx.many.ray_executor import RayExecutor

        return RayExecutor(
            address=address,
            num_cpus=cpus_per_trial or 1,
            num_gpus=gpus_per_trial or 0,
            max_retries=retries,
            max_parallel=max_parallel,
            stack=stack,
        )
    if kind != "local":
        raise UsageError(f"executor {kind!r}: local or ray")
    if address:
        raise UsageError("--address is for --executor ray; the local executor runs on this machine")
    return LocalExecutor(
        max_parallel=max_parallel,
        retries=retries,
        gpus_per_trial=gpus_per_trial,
        threads_per_trial=int(cpus_per_trial) if cpus_per_trial else None,
        stack=stack,
        warm=warm,
        in_driver=in_driver,
    )
