"""`dlx fix RUN` / `dlx.fix(run)`: from a verdict to proof.

A verdict's remedies are data (diagnose.Fix: the --set overrides that make each one). Fix
runs the run's own config and each remedy of its root verdicts as one seeded comparison
(many.compare.run_variants: stacked, warm workers, every training a normal run folder), then says
per remedy on how many seeds each verdict it answers (its root and the symptoms the root
explains) is gone, separately, how the final metric moved (mean and sd over seeds against the
original's), and what it cost in time. The winner is the remedy that removed all its verdicts
on every seed and raised the metric most. A combined remedy (several overrides at once) that
removed them is then run part by part, each override alone over the same seeds, which says
which part was needed. The winner's config is written beside the run (fixed.yaml), with the
record of the whole fix (fix.json), which the run's HTML report shows as "what fixed it".
(Not fix.py: that module would shadow dlx.fix().)
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from dlx.core.errors import UsageError

# The texts of a remedy's row (the CLI's table, the HTML report's, FixReport's repr) live in the
# views, which show them; ORIGINAL is the row of the run's own config.
from dlx.views.labels import ORIGINAL, change_text, kinds_text, mean_sd_text, needed_text

# Row keys that live only while the fix runs (what a next round would try, each seed's
# verdict kinds): fix.json keeps what was run and counted.
_INTERNAL = ("next", "seen")

# At most this many remedies by default: the most direct ones of each root verdict come first.
MAX_FIXES = 4


@dataclass
class Candidate:
    label: str  # "original", or the fix's text
    sets: list[str]
    targets: list[str]  # the verdict kinds it answers (the original: all its root kinds)
    text: str = ""  # the verdict's words for it, why included


def _label(sets: Sequence[str]) -> str:
    """A remedy's name in tables: its overrides as YAML (the why is in fix.json's "text")."""
    return " + ".join(f"{k}: {v}" for k, _, v in (s.partition("=") for s in sets))


@dataclass
class FixReport:
    """What `dlx fix` found: .rows (one per candidate, the original first), .winner (a row or
    None), .fixed_path (the winner's config), .command (how to run it), .record_path (fix.json)."""

    run: Path
    metric: str
    goal: str
    seeds: int
    budget: int | None
    verdicts: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    winner: dict[str, Any] | None = None
    fixed_path: Path | None = None
    command: str | None = None
    record_path: Path | None = None
    compare_record: Path | None = None
    seconds: float = 0.0
    note: str | None = None
    # When the fix ran: stamped once, so fix.json and `dlx fix --json` say the same.
    when: str = field(default_factory=lambda: dt.datetime.now().isoformat(sep=" ", timespec="seconds"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": str(self.run),
            "when": self.when,
            "metric": self.metric,
            "goal": self.goal,
            "seeds": self.seeds,
            "budget": self.budget,
            "verdicts": self.verdicts,
            "rows": [{k: v for k, v in r.items() if k not in _INTERNAL} for r in self.rows],
            "winner": self.winner["label"] if self.winner else None,
            "fixed": str(self.fixed_path) if self.fixed_path else None,
            "command": self.command,
            "compare_record": str(self.compare_record) if self.compare_record else None,
            "seconds": round(self.seconds, 2),
            "note": self.note,
        }

    def __repr__(self) -> str:
        lines = [f"<dlx fix {self.run}: {self.metric} over {self.seeds} seed(s)>"]
        for r in self.rows:
            lines.append(f"  {r['label']}: {kinds_text(r)}; {self.metric} {mean_sd_text(r)} {change_text(r)}".rstrip())
            for p in r.get("parts") or []:
                lines.append(f"    {p['label']} alone: {kinds_text(p)}; {self.metric} {mean_sd_text(p)}")
            if r.get("parts"):
                lines.append(f"    -> {needed_text(r, self.metric)}")
        lines.append(f"  winner: {self.winner['label']}" if self.winner else f"  {self.note or 'no winner'}")
        return "\n".join(lines)


def candidates(summary: dict[str, Any], max_fixes: int = MAX_FIXES) -> tuple[list[str], list[Candidate]]:
    """The root verdict kinds of a run's summary and the remedies to try: each root verdict's
    fixes in its order (the most direct first), duplicates once, at most max_fixes."""
    verdicts = [v for v in summary.get("verdicts") or [] if isinstance(v, dict)]
    roots = [v for v in verdicts if v.get("kind") not in (None, "healthy") and not v.get("symptom_of")]
    out: dict[tuple[str, ...], Candidate] = {}
    for v in roots:
        # A fix answers its root and the symptoms the root explains: all must go.
        kinds = [v["kind"], *(s.get("kind") for s in verdicts if s.get("symptom_of") == v["kind"])]
        for f in v.get("fixes") or []:
            sets = tuple(f.get("set") or ())
            if not sets:
                continue
            if sets in out:
                out[sets].targets = list(dict.fromkeys([*out[sets].targets, *kinds]))
            else:
                out[sets] = Candidate(_label(sets), list(sets), kinds, str(f.get("text") or ""))
    # One remedy per root in turn first, so two roots both get tried within max_fixes.
    by_root = [[c for c in out.values() if c.targets[0] == v["kind"]] for v in roots]
    order: list[Candidate] = []
    for i in range(max(map(len, by_root), default=0)):
        order += [cs[i] for cs in by_root if i < len(cs)]
    return [v["kind"] for v in roots], order[:max_fixes]


def _kinds(summary: dict[str, Any]) -> list[str]:
    """Every verdict kind of a summary but healthy: what the original row checks on each seed."""
    return [v["kind"] for v in summary.get("verdicts") or [] if isinstance(v, dict) and v.get("kind") != "healthy"]


def fix(
    run: str | Path,
    *,
    seeds: int = 3,
    budget: int | None = None,
    max_fixes: int = MAX_FIXES,
    rounds: int = 2,
    pair: bool = False,
    runs_dir: str | Path = "runs",
    max_parallel: int | None = None,
    stack: bool = True,
    quiet: bool | None = None,
    parts: bool = True,
) -> FixReport:
    """Run a run's remedies against its own config over `seeds` seeds (see the module doc).

    run: a run folder, id, 'last' or SWEEP/trial-NNNN. budget: train every variant this many
    steps (default: as many as the run's config asks). rounds: 2 also tries, on top of the best
    remedy that removed its verdict, the remedies of the next verdict its runs show. pair: also
    try the two best remedies together. parts: run each override of a combined remedy that
    removed its verdicts alone over the same seeds (row["parts"]). The trainings land in runs_dir (with a compare record
    per round, which `dlx report` draws); fix.json and fixed.yaml land in the run's folder."""
    import time

    from dlx.core.errors import DlxError
    from dlx.many.compare import run_variants
    from dlx.many.variants import Variant
    from dlx.records.folders import CONFIG_FILE, FINISHED, SUMMARY_FILE, find_run, read_object
    from dlx.results import load_run

    if seeds < 1:
        raise UsageError(f"seeds must be at least 1, got {seeds}")
    if budget is not None and budget < 1:
        raise UsageError(f"budget must be at least 1 step, got {budget}")
    path = find_run(run, Path(runs_dir))
    r = load_run(path)
    config = path / "config.yaml"
    if not config.is_file():
        raise UsageError(f"run {path.name} has no config.yaml: nothing to rerun")
    if not r.summary.get("verdicts") and r.status in FINISHED:
        # It ended for good, so "let it finish" would never come true: the file is the problem.
        _, why = read_object(path / SUMMARY_FILE)
        state = why or f"{SUMMARY_FILE}: holds no verdicts"
        raise DlxError(
            f"run {path.name} is {r.status}, but fix reads what went wrong from its {SUMMARY_FILE}, and that "
            f"is not usable ({state}); restore the file, or train the run again (dlx train "
            f"{path / CONFIG_FILE}) and fix the new run"
        )
    if not r.summary.get("verdicts"):
        raise UsageError(
            f"run {path.name} has no verdicts yet ({r.status}): fix reads what went wrong from a finished "
            f"run's summary.json; let it finish (or resume it: dlx train --resume {path.name})"
        )
    roots, cands = candidates(r.summary, max_fixes)
    metric, goal = _metric(r.summary)
    report = FixReport(path, metric, goal, seeds, budget, roots)
    if not roots:
        report.note = f"nothing to fix: run {path.name} is healthy ({r.summary.get('verdict', '')})"
        return report
    if not cands:
        old = not any("fixes" in v for v in r.summary["verdicts"] if isinstance(v, dict))
        report.note = (
            f"run {path.name} was diagnosed before verdicts carried their remedies as data: train its config "
            f"again (dlx train {config}) and fix that run"
            if old
            else f"no remedy of {', '.join(roots)} is a config change dlx can run: read the verdict's advice"
        )
        return report
    # Every variant trains as long as the budget says, and is never pruned: fix compares finals.
    base = ["train.prune=null", *([f"train.steps={budget}"] if budget else [])]
    t0 = time.perf_counter()

    def train(cs: list[Candidate], round_: int) -> list[dict[str, Any]]:
        cmp = run_variants(
            config,
            [Variant(c.label, c.sets) for c in cs],
            seeds=seeds,
            overrides=base,
            runs_dir=runs_dir,
            max_parallel=max_parallel,
            stack=stack,
            quiet=quiet,
            what="fix",
            name=f"fix-{path.name}"[:60],
        )
        report.compare_record = report.compare_record or cmp.record_path
        return [{**_row(c, cmp.runs.get(c.label, []), metric, goal), "round": round_} for c in cs]

    report.rows = train([Candidate(ORIGINAL, [], _kinds(r.summary)), *cands], 1)
    for round_ in range(2, rounds + 1):
        # The best remedy that removed its verdict may reveal the next problem (zero init fixed,
        # a sigmoid net still vanishes): that verdict's remedies, on top of it.
        more = _next_round(report, max_fixes)
        if not more:
            break
        report.rows += train(more, round_)
    if pair:
        two = _best_pair(report)
        if two is not None:
            report.rows += train([two], 0)
        else:
            report.note = "no pair tried: fewer than two remedies improved on the original, or they set the same keys"
    _judge(report)
    if parts:
        _split(report, lambda cs: train(cs, 0))
    report.seconds = time.perf_counter() - t0
    _write(report, config, base)
    return report


def _merge(*sets: Sequence[str]) -> list[str]:
    """Overrides one after another, a later one replacing an earlier one of the same key."""
    out: dict[str, str] = {}
    for group in sets:
        for s in group:
            out.pop(s.partition("=")[0], None)
            out[s.partition("=")[0]] = s
    return list(out.values())


def _next_round(report: FixReport, max_fixes: int) -> list[Candidate]:
    """The next round's candidates: the best remedy so far whose verdict is gone on every seed
    and whose runs still show another root verdict, with each remedy of that verdict added."""
    orig = report.rows[0]
    gone = [r for r in report.rows[1:] if r["runs"] and r["gone"] == r["runs"]]
    if not gone:
        return []
    best = max(gone, key=_rank)
    if not best.get("next") or _rank(best) < _rank(orig):
        return []  # the best fix left nothing to fix, or made things worse: no branch worth following
    tried = {tuple(sorted(r["set"])) for r in report.rows}
    out = []
    for c in best["next"]:
        sets = _merge(best["set"], c.sets)
        if tuple(sorted(sets)) in tried:
            continue
        tried.add(tuple(sorted(sets)))
        out.append(Candidate(_label(sets), sets, list(dict.fromkeys([*best["targets"], *c.targets])), c.text))
    best["next"] = []
    return out[:max_fixes]


def _metric(summary: dict[str, Any]) -> tuple[str, str]:
    final = summary.get("final") if isinstance(summary.get("final"), dict) else {}
    if isinstance(final.get("test_acc"), (int, float)):
        return "test_acc", "max"
    return "test_loss", "min"


def _count(seen: list[set[str] | None], targets: Sequence[str]) -> tuple[int, dict[str, int]]:
    """Of runs whose verdict kinds are `seen` (None: a run with no verdicts, which crashed and so
    proves nothing gone): on how many none of `targets` appeared, and per target on how many it
    did not."""
    gone = sum(kinds is not None and not kinds & set(targets) for kinds in seen)
    return gone, {k: sum(kinds is not None and k not in kinds for kinds in seen) for k in targets}


def _row(c: Candidate, runs: list, metric: str, goal: str) -> dict[str, Any]:
    values, seen, seconds, heads, statuses = [], [], [], [], {}
    for run in runs:
        s = run.summary or {}
        statuses[run.status] = statuses.get(run.status, 0) + 1
        v = (s.get("final") or {}).get(metric)
        if isinstance(v, (int, float)) and math.isfinite(v):
            values.append(float(v))
        kinds = {x.get("kind") for x in s.get("verdicts") or [] if isinstance(x, dict)}
        seen.append(kinds if s.get("verdicts") else None)
        if isinstance(s.get("train_seconds"), (int, float)):
            seconds.append(float(s["train_seconds"]))
        heads.append(s.get("verdicts", [{}])[0].get("kind") if s.get("verdicts") else run.status)
    # The next problem its runs show (the first seed's roots): what a next round would fix.
    first = next((x.summary for x in runs if (x.summary or {}).get("verdicts")), None)
    nxt = candidates(first)[1] if first else []
    mean = statistics.fmean(values) if values else None
    sd = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
    common = max(set(heads), key=heads.count) if heads else None
    gone, by_kind = _count(seen, c.targets)
    return {
        "label": c.label,
        "text": c.text,
        "set": c.sets,
        "targets": c.targets,
        "runs": len(runs),
        "gone": gone,  # seeds on which none of its target verdicts appeared
        # Per target verdict, the seeds on which it did not appear: a remedy that removes the
        # root but leaves a symptom says so ("symmetry gone 3/3, not_learning gone 0/3").
        "gone_by_kind": by_kind,
        "mean": mean,
        "sd": sd,
        "values": values,
        "seconds": statistics.fmean(seconds) if seconds else None,
        "verdict": common,
        "statuses": statuses,
        "run_paths": [str(x.path) for x in runs if x.path is not None],
        "goal": goal,
        "next": nxt,  # not written: fix.json keeps what was run
        "seen": seen,  # not written: each seed's verdict kinds, which a combined remedy's parts are counted against
    }


def _rank(r: dict[str, Any]) -> tuple[int, float]:
    """Larger is better: runs with a final number first (one that diverged has none), then the mean."""
    sign = 1 if r.get("goal", "max") == "max" else -1
    return (len(r["values"]), sign * r["mean"] if r["mean"] is not None else -math.inf)


def _judge(report: FixReport) -> None:
    """Each remedy against the original: the change of the metric's mean, whether it improved
    (more seeds with a final number, then a better mean: _rank), and whether clearly (by more
    than both spreads together: a yardstick, not a test). The winner: the best-ranked remedy
    that improved and whose verdicts are gone on every seed."""
    orig = report.rows[0]
    for r in report.rows[1:]:
        r["improved"] = _rank(r) > _rank(orig)
        both = r["mean"] is not None and orig["mean"] is not None
        r["change"] = r["mean"] - orig["mean"] if both else None
        more_finished = len(r["values"]) > len(orig["values"])
        r["clear"] = r["improved"] and (
            more_finished or (both and abs(r["change"]) > (r["sd"] or 0.0) + (orig["sd"] or 0.0))
        )
    ok = [r for r in report.rows[1:] if r["runs"] and r["gone"] == r["runs"] and r["improved"]]
    if ok:
        report.winner = max(ok, key=_rank)
    else:
        report.note = (f"{report.note}; " if report.note else "") + (
            f"no remedy removed its verdict on every seed and improved {report.metric}; "
            f"try more steps (--budget) or read the verdicts of the runs it trained"
        )


def _split(report: FixReport, train: Any) -> None:
    """Each combined remedy (several overrides) that removed its verdicts on every seed, part by
    part: each override alone over the same seeds, counted against the combined remedy's own
    verdicts (row["parts"]), and which parts alone remove which verdict (row["needed"]). An
    override already run alone (a remedy of its own) is not run again. train(candidates) -> rows."""
    orig = report.rows[0]
    combined = [r for r in report.rows[1:] if len(r["set"]) > 1 and r["runs"] and r["gone"] == r["runs"]]
    if report.winner in combined:  # the winner's parts first, should a later one fail
        combined.remove(report.winner)
        combined.insert(0, report.winner)
    alone = {r["set"][0]: r for r in report.rows if len(r["set"]) == 1 and "seen" in r}
    todo = list(dict.fromkeys(s for r in combined for s in r["set"] if s not in alone))
    if todo:
        # Each part is trained against every verdict any combined remedy answers; each combined
        # remedy then counts its own verdicts from the seeds' kinds.
        targets = list(dict.fromkeys(k for r in combined for k in r["targets"]))
        ran = train([Candidate(_label([s]), [s], targets, "alone") for s in todo])
        alone.update({r["set"][0]: r for r in ran})
    for r in combined:
        r["parts"] = []
        for s in r["set"]:
            p = alone[s]
            gone, by_kind = _count(p["seen"], r["targets"])
            change = p["mean"] - orig["mean"] if p["mean"] is not None and orig["mean"] is not None else None
            r["parts"].append(
                {
                    **{k: p.get(k) for k in ("label", "set", "runs", "mean", "sd", "values", "seconds", "run_paths")},
                    "targets": r["targets"],
                    "gone": gone,
                    "gone_by_kind": by_kind,
                    "change": change,
                }
            )
        full = [p for p in r["parts"] if p["runs"] and p["gone"] == p["runs"]]
        r["needed"] = {
            # the parts that alone remove every verdict of the remedy on every seed
            "enough": [p["label"] for p in full],
            # per verdict, the parts that alone remove it on every seed
            "by_kind": {
                k: [p["label"] for p in r["parts"] if p["runs"] and p["gone_by_kind"][k] == p["runs"]]
                for k in r["targets"]
            },
        }


def _best_pair(report: FixReport) -> Candidate | None:
    """The two best-ranked remedies that improved on the original, together (if their keys differ)."""
    orig = report.rows[0]
    up = sorted((r for r in report.rows[1:] if _rank(r) > _rank(orig)), key=_rank, reverse=True)
    for i, a in enumerate(up):
        for b in up[i + 1 :]:
            keys_a = {s.partition("=")[0] for s in a["set"]}
            keys_b = {s.partition("=")[0] for s in b["set"]}
            if not any(x == y or x.startswith(y + ".") or y.startswith(x + ".") for x in keys_a for y in keys_b):
                sets = [*a["set"], *b["set"]]
                return Candidate(_label(sets), sets, list(dict.fromkeys([*a["targets"], *b["targets"]])), "together")
    return None


def _write(report: FixReport, config: Path, base: list[str]) -> None:
    import yaml

    from dlx.config.loader import load_config
    from dlx.records.folders import FIXED_CONFIG, write_fix_record

    text = None
    w = report.winner
    if w is not None:
        resolved = load_config(config, [*base, *w["set"]]).resolved()
        resolved["name"] = f"{resolved.get('name') or 'run'}-fixed"[:64]
        resolved.get("train", {}).pop("prune", None)
        orig = report.rows[0]
        header = [
            f"# dlx fix of run {report.run.name}: {w['label']}",
            f"# {kinds_text(w)} (all gone on {w['gone']}/{w['runs']} seeds); {report.metric} "
            f"{mean_sd_text(w)} against {mean_sd_text(orig)} for the original config",
        ]
        if w.get("parts"):
            header.append(f"# part by part: {needed_text(w, report.metric)}")
        text = "\n".join(header) + "\n" + yaml.safe_dump(resolved, sort_keys=False)
    fixed_path = report.run / FIXED_CONFIG
    report.fixed_path = fixed_path if w is not None else None
    report.command = f"dlx train {fixed_path}" if w is not None else None
    report.record_path, report.fixed_path = write_fix_record(report.run, report.as_dict(), text)
