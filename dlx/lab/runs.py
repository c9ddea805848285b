"""The lab's runs: each a normal dlx run (Trainer, History, RunWriter) in a thread of the
server, a LabStream callback turning each log interval into an event for the page, and the
Lab that holds them (one per slot and page, --max-active in all, finished ones released)."""

from __future__ import annotations

import math
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

# Trainings at once in one server, and parameters a lab model may have.
MAX_ACTIVE = 4
MAX_PARAMETERS = 5_000_000
MAX_BODY = 64 * 1024  # bytes of a request
MAX_SETS = 64
# Grid of the decision surface sent to the page, units per layer and points drawn.
SURFACE_GRID = 40
UNIT_GRID = 16
MIN_UNIT_GRID = 6
MAP_VALUES = 40_000
MAX_UNITS = 16
POINTS = 300
# Pictures and the verdict are made at most this often (the curves every interval).
# The pictures are the training thread's heaviest work (30-70 ms for a 10x64 net's maps and
# network view, holding the GIL the event stream needs) and the page's: at 4 a second a busy
# 2-core machine delivered the curves' events a second late; twice a second keeps them live.
PICTURE_EVERY_S = 0.5
VERDICT_EVERY_S = 1.0
# A run of the lab trains this many steps unless its config says otherwise (it can be paused).
DEFAULT_STEPS = 3000
# Finished runs kept for their status and event stream (older ones are released: memory
# stays flat however many runs a page starts), and how long a start waits for the run it
# replaces to end (it ends within one step; a run still loading its data counts as active).
KEEP_FINISHED = 16
REPLACE_WAIT_S = 10.0
# Keys of an event that carry pictures: only the newest event keeps them (older ones are
# superseded on the page), so a run's memory grows by its curves alone.
PICTURE_KEYS = ("hist", "surface", "units", "net", "net_summary")


class LabError(Exception):
    """A request the lab refuses: its status code and a message (and problems) for the page."""

    def __init__(self, status: int, message: str, problems: list[dict] | None = None):
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems or []


def lab_config(body: dict) -> Any:
    """The Config a request asks for, validated and sized for the lab (lab_config_and_network)."""
    return lab_config_and_network(body)[0]


def lab_config_and_network(body: dict) -> tuple[Any, dict[str, Any]]:
    """The Config a request asks for: body {"config": {...} or "yaml": "...", "sets": [...]},
    validated by dlx (every problem, each with its key), sized for the lab; and the network it
    builds (lab_network: built once, for the size check and the page's drawing)."""
    import yaml

    from dlx.config.loader import load_config, safe_load
    from dlx.core.errors import ConfigError, DlxError

    if not isinstance(body, dict):
        raise LabError(400, "the request body must be a JSON object")
    raw = body.get("config")
    if raw is None and isinstance(body.get("yaml"), str):
        try:
            raw = safe_load(body["yaml"])  # dlx's own YAML reading: `on:` is a key, as in a file
        except (yaml.YAMLError, ValueError) as e:  # ValueError: an integer past Python's digit limit
            raise LabError(400, f"the YAML does not parse: {' '.join(str(e).split())[:300]}") from None
    if not isinstance(raw, dict):
        raise LabError(400, "config must be a mapping of dlx config keys (as in a config file)")
    sets = body.get("sets") or []
    if not isinstance(sets, list) or len(sets) > MAX_SETS or not all(isinstance(s, str) and len(s) < 500 for s in sets):
        raise LabError(400, f"sets must be a list of at most {MAX_SETS} KEY=VALUE strings")
    raw = dict(raw)
    try:
        cfg = load_config(raw, [s.strip() for s in sets if s.strip()])
    except ConfigError as e:
        problems = [{"key": p.path, "message": _no_path_facts(p.path, p.message)} for p in e.problems]
        raise LabError(400, "the config has problems", problems) from None
    except DlxError as e:
        raise LabError(400, str(e)) from None
    if cfg.train.steps is None and cfg.train.epochs is None:
        cfg.train.steps = DEFAULT_STEPS
    return cfg, lab_network(cfg)


def _no_path_facts(key: str, message: str) -> str:
    """A problem with a file the config names, said without telling whether the path exists
    (a reply is no way to probe the user's disk)."""
    if key.split(".")[0] == "data" and key.split(".")[-1] in ("path", "root"):
        return "not a usable file or folder for this key (the lab does not say which check failed)"
    return message


def lab_network(cfg) -> dict[str, Any]:
    """The network a config builds, for the page to draw before play: its input shape and
    each layer that holds parameters (kind, weight shape, parameter count), in order; built
    on the meta device (no memory, no initialization, nothing written; the data peeked, so a
    check downloads nothing and creates no folder). A model or data too big for a live page
    is refused here."""
    import torch

    from dlx.core.errors import DlxError

    try:
        data = cfg.data.peek(cfg.seed)
        with torch.device("meta"):
            model = cfg.model.build(data, cfg)
    except DlxError as e:
        raise LabError(400, str(e)) from None
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_PARAMETERS:
        raise LabError(
            400, f"the model has {n:,} parameters; the lab trains at most {MAX_PARAMETERS:,} (fewer or narrower layers)"
        )
    if len(data.x_train) > 200_000:
        raise LabError(400, "at most 200,000 training samples in the lab")
    layers = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        weight = getattr(module, "weight", None)
        shape = weight.shape if isinstance(weight, torch.Tensor) else own[0].shape
        layers.append(
            {"name": name, "kind": type(module).__name__, "shape": list(shape), "params": sum(p.numel() for p in own)}
        )
    return {
        "input": list(data.feature_shape),
        "layers": layers,
        "parameters": n,
        "task": data.task,
    }


class LabStream:
    """A trainer callback: each log interval becomes an event for the page; pause, step and
    stop are obeyed between intervals (pause: the thread waits, nothing is lost)."""

    def __init__(self, run: "LabRun"):
        self.run = run
        self._last_pic = 0.0
        self._last_verdict = 0.0

    def on_start(self, trainer):
        self.run.trainer = trainer
        if self.run.stop_asked:  # stopped while it was being built
            trainer.interrupt()
        self.run.push(self._event(trainer, None, pictures=True))
        self.run.wait_while_paused()

    def on_interval(self, trainer, record):
        now = time.monotonic()
        pics = now - self._last_pic >= PICTURE_EVERY_S
        watch = self.run.phase
        phases = watch.result(trainer, record) if watch is not None and watch.installed and not watch.done else None
        if pics or phases is not None:
            self._last_pic = now
        self.run.push(self._event(trainer, record, pictures=pics or phases is not None))
        if phases is not None:
            self.run.phase = None
            self.run.push({"run": self.run.id, "step": trainer.step, "phases": phases})
        if self.run.stepping:
            self.run.stepping = False
            self.run.paused.set()
        self.run.wait_while_paused()

    def on_change(self, trainer, event):
        """A change took effect (dlx.run.changes): the page is told at which step."""
        self.run.push({"run": self.run.id, "step": event["step"], "change": event["set"]})

    def on_end(self, trainer, outcome):
        if self.run.phase is not None:  # a step mode cut short: its hooks come off
            self.run.phase.remove(trainer)
        ev = {**self._event(trainer, None, pictures=True), "status": outcome.status, "final": True}
        # The final verdict is the one summary.json holds (the writer summarized the run just
        # before this callback): never a mid-run one left over from an earlier interval.
        final = self.run.final_verdict()
        if final is not None:
            ev["verdict"] = final
        self.run.push(ev)

    def _event(self, trainer, record, pictures: bool) -> dict[str, Any]:
        ev: dict[str, Any] = {"run": self.run.id, "step": trainer.step, "total": trainer.total_steps, "t": time.time()}
        if record is not None:
            ev["metrics"] = {k: record.get(k) for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
            g = np.asarray(record.get("grad_norm"), dtype=float)
            if g.ndim == 2 and g.size:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ev["grad"] = [_finite(v) for v in np.log10(np.median(g, axis=0))]
        if pictures:
            ev.update(lab_pictures(trainer))
        now = time.monotonic()
        if record is not None and now - self._last_verdict >= VERDICT_EVERY_S:
            self._last_verdict = now
            ev["verdict"] = self.run.verdict()
        return ev


def _finite(v) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def lab_pictures(trainer) -> dict[str, Any]:
    """Activation histograms per layer, the network view's data (live.network_view: "net"
    for a small dense net, else "net_summary") and, for a 2-D classifier, the decision
    surface and the units' maps (every unit of a small dense net, else the first
    MAX_UNITS): the model in eval mode on fixed inputs, between steps (pictures.py's own
    readings of a model)."""
    from dlx.lab.live import SMALL_UNITS, network_view, rounded_rows
    from dlx.views.pictures import class_probs, hidden_outputs, plane_extent, plane_grid

    model, data = trainer.model, trainer.data
    out: dict[str, Any] = {}
    names = [n for n, _ in model.activation_modules()]
    was = model.training
    model.eval()
    try:
        hist = []
        outputs = hidden_outputs(trainer, data.as_float(data.x_train[:256]))
        for name, o in zip(names, outputs):
            v = o.ravel()
            v = v[np.isfinite(v)]
            if v.size:
                counts, edges = np.histogram(v, bins=24)
                hist.append({"layer": name, "counts": counts.tolist(), "lo": float(edges[0]), "hi": float(edges[-1])})
        out["hist"] = hist
        out.update(network_view(trainer))
        most = SMALL_UNITS if "net" in out else MAX_UNITS
        if data.task == "classification" and tuple(data.feature_shape) == (2,):
            # Every unit's map within MAP_VALUES numbers in all: a coarser grid for many units
            # (a 10x64 net's 640 maps at 16x16 were 1.1 MB an event, late on the page).
            shown = sum(min(int(o.shape[1]), most) for o in outputs)
            grid = max(MIN_UNIT_GRID, min(UNIT_GRID, math.isqrt(MAP_VALUES // max(shown, 1))))
            extent = plane_extent(data)
            probs = class_probs(trainer, plane_grid(extent, SURFACE_GRID))
            xy = data.as_float(data.x_train[:POINTS]).cpu().numpy()
            out["surface"] = {
                "n": SURFACE_GRID,
                "extent": extent,
                "points": [
                    [round(float(a), 3), round(float(b), 3), int(c)]
                    for (a, b), c in zip(xy, data.y_train[:POINTS].cpu())
                ],
                "pred": probs.argmax(-1).tolist(),
                "conf": [round(float(c), 3) for c in probs.max(-1)],
                "classes": int(data.n_classes),
            }
            out["units"] = [
                {
                    "layer": name,
                    "maps": rounded_rows(o[:, :most].T, 3),
                    "total": int(o.shape[1]),
                }
                for name, o in zip(names, hidden_outputs(trainer, plane_grid(extent, grid)))
            ]
    finally:
        model.train(was)
    return out


class LabRun:
    """One training of the lab, in a thread: a normal dlx run with a LabStream."""

    def __init__(self, cfg, runs_dir: Path, session: str, slot: str, playing: bool):
        self.id = uuid.uuid4().hex[:12]
        self.cfg, self.runs_dir, self.session, self.slot = cfg, runs_dir, session, slot
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.paused = threading.Event()
        if not playing:
            self.paused.set()
        self.stepping = False
        self.phase = None  # a live.PhaseWatch while step mode follows a unit
        self.stop_asked = False
        self.done = False
        self.status = "starting"
        self.path: Path | None = None
        self.trainer = None
        self.error: str | None = None
        self.hist = None
        self.writer = None
        self.thread = threading.Thread(target=self._train, name=f"dlx-lab-{self.id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def push(self, ev: dict[str, Any]) -> None:
        from dlx.records.folders import jsonable

        # "units" is plain JSON as made (live.rounded_rows): jsonable's walk over a small net's
        # every unit map (50k values) took 25 ms of each picture event.
        ev = {k: v if k == "units" else jsonable(v) for k, v in ev.items()}
        with self.cond:
            if any(k in ev for k in PICTURE_KEYS):
                # The newest pictures supersede the older ones: drop those (a new dict, so a
                # stream sending the old one right now still sends it whole).
                for j in range(len(self.events) - 1, -1, -1):
                    old = self.events[j]
                    if any(k in old for k in PICTURE_KEYS):
                        self.events[j] = {k: v for k, v in old.items() if k not in PICTURE_KEYS}
                        break
            self.events.append(ev)
            self.cond.notify_all()

    def wait_while_paused(self) -> None:
        while self.paused.is_set() and not self.stop_asked:
            self.status = "paused"
            time.sleep(0.02)
        if not self.stop_asked:
            self.status = "running"

    def verdict(self) -> dict[str, Any] | None:
        """The verdict as it forms: the diagnosis of the intervals so far."""
        from dlx.diagnosis.engine import diagnose, headline
        from dlx.records.recording import diagnosis_context

        tr, hist = self.trainer, self.hist
        if tr is None or hist is None or not hist.metrics:
            return None
        try:
            ctx = diagnosis_context(tr, hist)
            vs = diagnose(ctx)
        except Exception as e:  # noqa: BLE001  (a verdict that cannot form yet is no reason to stop)
            return {"kind": None, "message": f"no verdict yet ({type(e).__name__})"}
        return {"kind": vs[0]["kind"] if vs else None, "message": headline(vs), "kinds": [v["kind"] for v in vs]}

    def final_verdict(self) -> dict[str, Any] | None:
        """The verdict of the finished run: summary.json's, as `dlx show` prints it."""
        summary = self.writer.summary if self.writer is not None else None
        if not summary:
            return None
        vs = summary.get("verdicts") or []
        return {
            "kind": vs[0]["kind"] if vs else None,
            "message": summary.get("verdict"),
            "kinds": [v["kind"] for v in vs],
            "final": True,
        }

    def _train(self) -> None:
        from dlx.records.folders import RunFolder
        from dlx.records.recording import History, RunWriter
        from dlx.run.trainer import Trainer

        try:
            if not self.cfg.name:  # named after its slot: dlx runs shows lab-a, lab-b
                self.cfg = self.cfg.model_copy(update={"name": f"lab-{self.slot.lower()}"})
            folder = RunFolder(self.runs_dir, self.cfg.name)
            self.hist = History()
            writer = self.writer = RunWriter(folder, self.hist)
            trainer = Trainer(self.cfg, callbacks=[self.hist, writer, LabStream(self)])
            outcome = trainer.run()
            self.path = folder.path
            self.status = outcome.status
        except Exception as e:  # noqa: BLE001  (the page is told; the server goes on)
            self.error = f"{type(e).__name__}: {e}"
            self.status = "failed"
            self.push({"run": self.id, "error": self.error, "final": True})
        finally:
            # Released: a finished run keeps its events and status, not its model and data.
            self.trainer = self.hist = self.writer = None
            self.done = True
            with self.cond:
                self.cond.notify_all()

    def change(self, body: dict) -> dict[str, Any]:
        """Knobs turned while the run trains (live.change_request): added to its schedule at
        the step the training thread takes them, applied there (dlx.run.changes); the keys
        and values pending."""
        from dlx.lab.live import change_request

        trainer = self.trainer
        if trainer is None or self.done:
            raise LabError(409, "the run is not training: start it, or start a new one with these values")
        try:
            values = change_request(trainer, body)
        except ValueError as e:
            raise LabError(400, str(e)) from None
        trainer.changes.request(values)
        return values

    def phases(self, body: dict) -> dict[str, Any]:
        """Step mode: the paused run takes exactly one step, logged alone, followed phase by
        phase for one unit (live.PhaseWatch); the phases come on the event stream."""
        from dlx.lab.live import PhaseWatch, parse_unit

        trainer = self.trainer
        if trainer is None or self.done or self.status != "paused":
            raise LabError(409, "step mode needs a paused run: pause it first")
        if self.phase is not None:
            raise LabError(409, "a step is already being followed; wait for its phases")
        if trainer.step >= trainer.total_steps:
            raise LabError(409, "the run has no step left")
        try:
            layer, index = parse_unit(trainer, body.get("unit"))
        except ValueError as e:
            raise LabError(400, str(e)) from None
        watch = self.phase = PhaseWatch(layer, index)
        trainer.changes.call(watch.install, flush=True)
        self.stepping = True
        self.paused.clear()
        return {"run": self.id, "step": trainer.step, "unit": watch.unit}

    def stop(self) -> None:
        """End the run after its current step (as a first Ctrl-C ends dlx train): interrupted,
        checkpointed, resumable; a paused run is woken to end."""
        self.stop_asked = True
        self.paused.clear()
        trainer = self.trainer
        if trainer is not None:
            trainer.interrupt()


class Lab:
    """The server's state: sessions (a browser) and their runs, slot A and B each."""

    def __init__(self, runs_dir: Path, max_active: int = MAX_ACTIVE, token: str | None = None):
        self.runs_dir = Path(runs_dir)
        self.max_active = max_active
        self.token = token
        self.runs: dict[str, LabRun] = {}
        self.lock = threading.Lock()
        self.closing = False

    def active(self, session: str | None = None) -> list[LabRun]:
        return [r for r in self.runs.values() if not r.done and (session is None or r.session == session)]

    def start(self, session: str, slot: str, cfg, playing: bool) -> LabRun:
        """A new run in this session's slot; the run it replaces ends first (within a step),
        so --max-active counts every training thread, stopping ones too."""
        with self.lock:
            replaced = [r for r in self.active(session) if r.slot == slot]
            for r in replaced:
                r.stop()
        for r in replaced:
            r.thread.join(REPLACE_WAIT_S)
        with self.lock:
            if len(self.active(session)) >= 2:
                raise LabError(429, "this page already trains two runs (A and B); pause or reset one")
            if len(self.active()) >= self.max_active:
                raise LabError(429, f"the lab already trains {self.max_active} runs; try again when one ends")
            self._release_finished()
            run = LabRun(cfg, self.runs_dir, session, slot, playing)
            self.runs[run.id] = run
        run.start()
        return run

    def _release_finished(self) -> None:
        """Forget all but the newest KEEP_FINISHED finished runs (their folders stay on disk)."""
        done = [rid for rid, r in self.runs.items() if r.done]
        for rid in done[: max(0, len(done) - KEEP_FINISHED)]:
            del self.runs[rid]

    def ask_all_to_stop(self) -> None:
        """The server is stopping: every run ends after its current step."""
        self.closing = True
        for r in list(self.runs.values()):
            r.stop()

    def stop_all(self, wait: float = 30.0) -> None:
        """Ctrl-C on the server: every run ends as a Ctrl-C ends dlx train (interrupted, checkpointed)."""
        self.ask_all_to_stop()
        t = time.monotonic() + wait
        for r in list(self.runs.values()):
            r.thread.join(max(0.0, t - time.monotonic()))
