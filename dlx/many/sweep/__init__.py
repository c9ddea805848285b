"""`dlx sweep` and `dlx.sweep()`, in modules: spec (the spec, the space, plan()), resume (what a
--resume checks of the folder's own files), results (a sweep's rows, results.json, best.yaml),
folder (the sweep folder and its Optuna study: create, open, recover, ask, land, tell) and
driver (run_sweep(), sweep()). dlx.many.sweeper is the entry that re-exports their public names.

Nothing is imported here, so that importing one module of the package loads only what it needs.
"""
