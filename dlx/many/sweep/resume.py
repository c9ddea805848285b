"""What a --resume checks of a sweep folder's own files before it trusts them: Optuna's
journal torn by a crash (cut back to its last whole record), and spec.yaml edited since the
sweep started (refused with what changed, unless only `trials` changed)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from dlx.core.errors import DlxError
from dlx.many.sweep.spec import yaml_value


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def repair_journal(path: Path) -> str | None:
    """Cut Optuna's journal back to its last whole record (one JSON object a line). A crash
    or power loss mid-append leaves a torn last line; Optuna would append the next record onto
    it and fail to read the file ever after. The cut bytes are kept beside it (journal.log.torn);
    a trial whose record was cut is asked again on resume. A note for the user, or None."""
    data = path.read_bytes()
    good = 0
    for line in data.splitlines(keepends=True):
        if not (line.endswith(b"\n") and _is_json(line)):
            break
        good += len(line)
    if good == len(data):
        return None
    from dlx.records.folders import write_atomic

    torn = data[good:]
    if b"\n" not in torn and _is_json(torn):  # a whole last record whose newline never made it
        write_atomic(path, data + b"\n")
        return None
    write_atomic(path.with_name(path.name + ".torn"), torn)
    write_atomic(path, data[:good])
    records = len(torn.splitlines())
    return (
        f"{path.name}: cut {len(torn)} byte(s) ({records} record(s)) torn by a crash mid-write back to the "
        f"last whole record (the cut bytes are in {path.name}.torn); a trial they recorded runs again"
    )


def _is_json(b: bytes) -> bool:
    try:
        json.loads(b)
        return True
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


# Spec keys whose change cannot mix incomparable trials in one sweep: a random or TPE search
# told to try more (or fewer) points is the same search.
SAFE_EDITS = {"trials"}


def check_spec_unchanged(folder: Path, meta: dict, text: str, notes: list[str]) -> str:
    """The spec text to resume with: spec.yaml as stored at the start. An edit that changes
    which trials the sweep holds (the space, the metric, the base's overrides, the strategy)
    is refused with what changed; a change of `trials` alone (random/tpe) is accepted, noted."""
    original = meta.get("spec_text")
    if not isinstance(original, str) or sha256_text(text) == meta.get("spec_sha256"):
        return text
    try:
        old, new = yaml.safe_load(original), yaml.safe_load(text)
    except yaml.YAMLError as e:
        old, new = None, str(e).splitlines()[0]
    changes = _changes(old, new) if isinstance(old, dict) and isinstance(new, dict) else None
    if changes is not None and not changes:
        return text  # comments or layout only
    if (
        changes is not None
        and {c[0] for c in changes} <= SAFE_EDITS
        and old.get("strategy", "grid") != "grid"
        and isinstance(new.get("trials"), int)
        and new["trials"] > 0
    ):
        notes.append(f"spec.yaml: trials {old.get('trials')} -> {new['trials']}: the same search, run to the new count")
        meta.update(spec_text=text, spec_sha256=sha256_text(text), trials=new["trials"])
        return text
    listed = (
        "; ".join(f"{key}: {_show(a)} -> {_show(b)}" for key, a, b in changes)
        if changes
        else f"it no longer reads as a spec ({new})"
    )
    raise DlxError(
        f"{folder / 'spec.yaml'} was edited after the sweep started ({listed}). Trials of the old and the new "
        f"spec would be mixed in one table, so the sweep is not resumed. To finish the sweep as started, put "
        f"spec.yaml back (sweep.json keeps its text under spec_text); to search the edited space, start a new "
        f"sweep: dlx sweep {folder / 'spec.yaml'}"
    )


def _changes(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(key path, old, new) for every leaf that differs; a missing side is None."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in [*old, *(k for k in new if k not in old)]:
            out += _changes(
                old.get(k, _MISSING), new.get(k, _MISSING), f"{prefix}{k}" if not prefix else f"{prefix}.{k}"
            )
        return out
    return [] if old == new else [(prefix, old, new)]


_MISSING = object()


def _show(v: Any) -> str:
    return "(absent)" if v is _MISSING else yaml_value(v)
