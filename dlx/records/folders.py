"""The run and sweep folders: reading and writing them (their layout, every file name, is
dlx.records.layout). The code lives in the modules beside this one; every name stays
importable from here, where most of dlx reads it:

  jsonio       atomic writes, lenient JSON and .jsonl reading, the checks of a series
  locks        liveness: heartbeat, the writer's flock, a run's or sweep's status now
  runs         RunFolder (a run being written), land_run, the run's provenance
  find         a run or sweep folder from a path, an id or `last`
  reading      load_run, list_runs, read_snapshots, whether a run ended for good
  comparisons  dlx compare's and dlx fix's records
"""

from dlx.core.tensorfile import read_tensors
from dlx.records.comparisons import (
    compare_records,
    is_compare_record,
    read_fix_record,
    write_compare_record,
    write_fix_record,
)
from dlx.records.find import (
    LAST,
    find_folder,
    find_run,
    find_sweep,
    newest,
    run_folders,
    started_at,
    sweep_folders,
)
from dlx.records.jsonio import (
    DISK_FULL,
    PER_STEP,
    SHAPE_ERRORS,
    check_series,
    is_int,
    is_number,
    jsonable,
    read_jsonl,
    read_object,
    write_atomic,
    write_json,
)
from dlx.records.layout import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    FIX_RECORD,
    FIXED_CONFIG,
    INSTRUMENTS_FILE,
    META_FILE,
    METRICS_FILE,
    PROBES_FILE,
    SERIES,
    SNAPSHOTS_FILE,
    SUMMARY_FILE,
)
from dlx.records.locks import (
    HEARTBEAT_EVERY_S,
    STALE_AFTER_S,
    STATUSES,
    boot_id,
    liveness,
    lock_holder,
    lock_pid,
    now,
    pid_alive,
    run_status,
    sweep_status,
    take_lock,
    writer_alive,
)
from dlx.records.reading import (
    FINISHED,
    final_metrics,
    finished_summary,
    list_runs,
    load_run,
    pruned_kind,
    read_snapshots,
    resumable_run,
    verdict_kind,
)
from dlx.records.runs import (
    GIT_CACHE_S,
    RunFolder,
    command_line,
    git_commit,
    land_run,
    new_run_id,
    prepare_runs_dir,
    versions,
)

__all__ = [
    # layout
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "FIX_RECORD",
    "FIXED_CONFIG",
    "INSTRUMENTS_FILE",
    "META_FILE",
    "METRICS_FILE",
    "PROBES_FILE",
    "SERIES",
    "SNAPSHOTS_FILE",
    "SUMMARY_FILE",
    # jsonio
    "DISK_FULL",
    "PER_STEP",
    "SHAPE_ERRORS",
    "check_series",
    "is_int",
    "is_number",
    "jsonable",
    "read_jsonl",
    "read_object",
    "write_atomic",
    "write_json",
    # locks
    "HEARTBEAT_EVERY_S",
    "STALE_AFTER_S",
    "STATUSES",
    "boot_id",
    "liveness",
    "lock_holder",
    "lock_pid",
    "now",
    "pid_alive",
    "run_status",
    "sweep_status",
    "take_lock",
    "writer_alive",
    # runs
    "GIT_CACHE_S",
    "RunFolder",
    "command_line",
    "git_commit",
    "land_run",
    "new_run_id",
    "prepare_runs_dir",
    "versions",
    # find
    "LAST",
    "find_folder",
    "find_run",
    "find_sweep",
    "newest",
    "run_folders",
    "started_at",
    "sweep_folders",
    # reading
    "FINISHED",
    "final_metrics",
    "finished_summary",
    "list_runs",
    "load_run",
    "pruned_kind",
    "read_snapshots",
    "resumable_run",
    "verdict_kind",
    # comparisons
    "compare_records",
    "is_compare_record",
    "read_fix_record",
    "write_compare_record",
    "write_fix_record",
    # dlx.core.tensorfile
    "read_tensors",
]
