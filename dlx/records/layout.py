"""The run folder's layout: every file name of a run folder, written here and nowhere else
(the rest of dlx imports these names; see DESIGN.md, the contract).

runs/<run_id>/
  config.yaml     the resolved config, defaults filled in
  meta.json       status, times, seed, device, versions, git commit, command line, layers
  metrics.jsonl   one line per log interval (train loss/acc, lr, time; test metrics when evaluated)
  probes.jsonl    one line per log interval: per-step gradient norms, weight norms,
                  update ratios, unit spreads, activation statistics
  summary.json    final metrics, status, per-layer summaries, verdicts
  checkpoint.pt   model + optimizer + schedule + RNG state
  instruments.jsonl  only with an instruments: section: one line per measurement (sharpness
                  against the lr's threshold, Hessian trace, gradient noise, weight spectra,
                  each instrument's seconds), dlx.run.instruments
  snapshots.pt    the model's weights (state_dict) at up to SNAPSHOTS log steps spread over
                  the run, step 0 first, within SNAPSHOT_BYTES (recording.Snapshots): the
                  pictures at a step (dlx plot --step, dlx animate) are drawn from them.
                  A dict {"steps": [int], "losses": [float|None], "states": [state_dict]};
                  written with the checkpoint and at the end, so it never runs ahead of it
  events.jsonl    only for a run changed while it trained (train.changes, dlx lab's knobs): one
                  line per change applied, {step, set, was, at}: the step after which it took
                  effect, the keys set, their values before (dlx.run.changes); `dlx show` lists them
  fix.json        only after `dlx fix RUN`: the remedies it ran over seeds, whether each
                  removed the verdict, the metric's mean and sd, the winner (write_fix_record)
  fixed.yaml      ... and the winning config, ready for `dlx train` (FIXED_CONFIG)
  masks.pt        only for a run trained under train.mask: the masks it trained under (MASKS_FILE)
  pruned.pt       only for a `dlx ticket` round: the masks its final weights prune to (PRUNED_FILE)
  paper.png       only for a run `dlx examples check` trained: its picture (PAPER_PICTURE_FILE)
runs/compare-<config>-<time>.json   a dlx compare's record (write_compare_record); dlx fix's
                  trainings are one too (compare-fix-<run>-<time>.json)
runs/ticket-<config>-<time>.json, .png   a dlx ticket's record and figure (TICKET_PREFIX)
runs/coordcheck-<example>-<parametrization>.json, .png   a `dlx examples check` coordinate
                  check's record (the scales it measured) and picture (COORDCHECK_PREFIX)
runs/.runs-index.json  list_runs' rows kept beside the folders (RUNS_INDEX, dlx.records.index): a
                  cache, rebuilt from the folders when missing, damaged or stale; safe to delete

A folder appears under its final name only once config.yaml and meta.json are
complete; JSON files are replaced atomically; .jsonl files are appended and
flushed per interval, so a crash loses at most one interval.

Liveness: meta.json of a run in progress says status `running` with the pid,
host and boot_id of its process and a "heartbeat" time, rewritten at log
intervals (at most every HEARTBEAT_EVERY_S). A killed process cannot change its
status, so readers judge a `running` run with `run_status(meta)`: it is
`interrupted` when its process is gone (same host: the pid is dead, or the
machine rebooted since) or when its heartbeat is older than STALE_AFTER_S
(the only evidence for a run started on another host).
"""

CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
METRICS_FILE = "metrics.jsonl"
PROBES_FILE = "probes.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
INSTRUMENTS_FILE = "instruments.jsonl"
SNAPSHOTS_FILE = "snapshots.pt"
EVENTS_FILE = "events.jsonl"
FIX_RECORD = "fix.json"
FIXED_CONFIG = "fixed.yaml"
# A run trained under train.mask keeps the masks it trained under (a copy of that file, taken
# at its start: the folder says what was pruned even if the file it named is gone);
# {parameter name: bool tensor}, torch.save'd, read with weights_only (dlx.run.masks).
MASKS_FILE = "masks.pt"
# After a dlx ticket round: the masks its final weights prune to, the next round's train.mask.
PRUNED_FILE = "pruned.pt"
# `dlx examples check` of a papers example: the picture of its `# look:` panels.
PAPER_PICTURE_FILE = "paper.png"
# Beside the run folders: a dlx ticket's record (its rounds and control: kept, test metrics,
# run folders) and its figure; TICKET_PREFIX + NAME + .json / .png.
TICKET_PREFIX = "ticket-"
# Beside the run folders: a coordinate check's record (widths, layers, every scale) and picture
# from `dlx examples check` (COORDCHECK_PREFIX + NAME + .json / .png); it trains no run folder.
COORDCHECK_PREFIX = "coordcheck-"
# Beside the run folders (in a runs folder, or a sweep's trials/): a dot-name, so never taken for a run.
RUNS_INDEX = ".runs-index.json"
# The .jsonl series of a run, one line per log interval (instruments.jsonl: per measurement).
SERIES = (METRICS_FILE, PROBES_FILE, INSTRUMENTS_FILE)
