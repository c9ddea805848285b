"""dlx lab: a live page in the browser where a person changes a knob and watches the
network react (TensorFlow Playground's idea, with any dlx config, the gradients, the
pictures and the verdict).

A starlette app served by uvicorn (the optional extra dlx[lab]); the page is static files
in dlx/lab_static (no CDN, no network). Each run is a normal dlx run (Trainer, History,
RunWriter: a run folder that `dlx runs` lists), trained in a thread of the server; a
LabStream callback turns each log interval into an event (metrics, the interval's
per-layer gradient norms, activation histograms, for 2-D data the decision surface and
unit maps, the verdict as it forms) that the page receives by server-sent events.

Bound to 127.0.0.1 unless --host says otherwise; then every request must carry the
token printed at start (?token= or the X-DLX-Token header). One active training per
browser session and MAX_ACTIVE in all; requests are checked (JSON, known keys, sizes)
and answered with an error, never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

STATIC = Path(__file__).resolve().parent / "lab_static"
# Trainings at once in one server, and parameters a lab model may have.
MAX_ACTIVE = 4
MAX_PARAMETERS = 5_000_000
MAX_BODY = 64 * 1024  # bytes of a request
MAX_SETS = 64
# Grid of the decision surface sent to the page, units per layer and points drawn.
SURFACE_GRID = 40
UNIT_GRID = 16
MAX_UNITS = 16
POINTS = 300
# Pictures and the verdict are made at most this often (the curves every interval).
PICTURE_EVERY_S = 0.25
VERDICT_EVERY_S = 1.0
# A run of the lab trains this many steps unless its config says otherwise (it can be paused).
DEFAULT_STEPS = 3000


class LabError(Exception):
    """A request the lab refuses: its status code and a message (and problems) for the page."""

    def __init__(self, status: int, message: str, problems: list[dict] | None = None):
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems or []


def _config(body: dict) -> Any:
    """The Config a request asks for: body {"config": {...} or "yaml": "...", "sets": [...]},
    validated by dlx (every problem, each with its key), sized for the lab."""
    import yaml

    from .config import load_config
    from .errors import ConfigError, DlxError

    if not isinstance(body, dict):
        raise LabError(400, "the request body must be a JSON object")
    raw = body.get("config")
    if raw is None and isinstance(body.get("yaml"), str):
        try:
            raw = yaml.safe_load(body["yaml"])
        except yaml.YAMLError as e:
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
        problems = [{"key": p.path, "message": p.message} for p in e.problems]
        raise LabError(400, "the config has problems", problems) from None
    except DlxError as e:
        raise LabError(400, str(e)) from None
    if cfg.train.steps is None and cfg.train.epochs is None:
        cfg.train.steps = DEFAULT_STEPS
    _check_size(cfg)
    return cfg


def _check_size(cfg) -> None:
    """Refuse a model too big for a live page (parameters counted on the meta device)."""
    import torch

    from .errors import DlxError

    try:
        data = cfg.data.load(cfg.seed)
        with torch.device("meta"):
            model = cfg.model.build(data, cfg)
        n = sum(p.numel() for p in model.parameters())
    except DlxError as e:
        raise LabError(400, str(e)) from None
    if n > MAX_PARAMETERS:
        raise LabError(
            400, f"the model has {n:,} parameters; the lab trains at most {MAX_PARAMETERS:,} (fewer or narrower layers)"
        )
    if len(data.x_train) > 200_000:
        raise LabError(400, "at most 200,000 training samples in the lab")


class LabStream:
    """A trainer callback: each log interval becomes an event for the page; pause, step and
    stop are obeyed between intervals (pause: the thread waits, nothing is lost)."""

    def __init__(self, run: "LabRun"):
        self.run = run
        self._last_pic = 0.0
        self._last_verdict = 0.0

    def on_start(self, trainer):
        self.run.trainer = trainer
        self.run.push(self._event(trainer, None, pictures=True))
        self.run.wait_while_paused()

    def on_interval(self, trainer, record):
        now = time.monotonic()
        pics = now - self._last_pic >= PICTURE_EVERY_S
        if pics:
            self._last_pic = now
        self.run.push(self._event(trainer, record, pictures=pics))
        if self.run.stepping:
            self.run.stepping = False
            self.run.paused.set()
        self.run.wait_while_paused()
        if self.run.stop_asked:
            trainer.interrupt()

    def on_end(self, trainer, outcome):
        self.run.push({**self._event(trainer, None, pictures=True), "status": outcome.status, "final": True})

    def _event(self, trainer, record, pictures: bool) -> dict[str, Any]:
        ev: dict[str, Any] = {"run": self.run.id, "step": trainer.step, "total": trainer.total_steps, "t": time.time()}
        if record is not None:
            ev["metrics"] = {k: record.get(k) for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
            g = np.asarray(record.get("grad_norm"), dtype=float)
            if g.ndim == 2 and g.size:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ev["grad"] = [_finite(v) for v in np.log10(np.median(g, axis=0))]
        if pictures:
            ev.update(_pictures(trainer))
        now = time.monotonic()
        if record is not None and now - self._last_verdict >= VERDICT_EVERY_S:
            self._last_verdict = now
            ev["verdict"] = self.run.verdict()
        return ev


def _finite(v) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _pictures(trainer) -> dict[str, Any]:
    """Activation histograms per layer and, for a 2-D classifier, the decision surface and
    the units' maps: the model in eval mode on fixed inputs, between steps (pictures.py's
    own readings of a model)."""
    from .pictures import _extent, _grid, _hidden, _probs

    model, data = trainer.model, trainer.data
    out: dict[str, Any] = {}
    names = [n for n, _ in model.activation_modules()]
    was = model.training
    model.eval()
    try:
        hist = []
        for name, o in zip(names, _hidden(trainer, data.as_float(data.x_train[:256]))):
            v = o.ravel()
            v = v[np.isfinite(v)]
            if v.size:
                counts, edges = np.histogram(v, bins=24)
                hist.append({"layer": name, "counts": counts.tolist(), "lo": float(edges[0]), "hi": float(edges[-1])})
        out["hist"] = hist
        if data.task == "classification" and tuple(data.feature_shape) == (2,):
            extent = _extent(data)
            probs = _probs(trainer, _grid(extent, SURFACE_GRID))
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
                    "maps": [[round(float(x), 3) for x in o[:, j]] for j in range(min(o.shape[1], MAX_UNITS))],
                    "total": int(o.shape[1]),
                }
                for name, o in zip(names, _hidden(trainer, _grid(extent, UNIT_GRID)))
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
        self.stop_asked = False
        self.done = False
        self.status = "starting"
        self.path: Path | None = None
        self.trainer = None
        self.error: str | None = None
        self.hist = None
        self.thread = threading.Thread(target=self._train, name=f"dlx-lab-{self.id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def push(self, ev: dict[str, Any]) -> None:
        from .folders import jsonable

        with self.cond:
            self.events.append(jsonable(ev))
            self.cond.notify_all()

    def wait_while_paused(self) -> None:
        while self.paused.is_set() and not self.stop_asked:
            self.status = "paused"
            time.sleep(0.02)
        if not self.stop_asked:
            self.status = "running"

    def verdict(self) -> dict[str, Any] | None:
        """The verdict as it forms: the diagnosis of the intervals so far."""
        from .diagnose import diagnose, headline
        from .recording import diagnosis_context

        tr, hist = self.trainer, self.hist
        if tr is None or hist is None or not hist.metrics:
            return None
        try:
            ctx = diagnosis_context(tr, hist)
            vs = diagnose(ctx)
        except Exception as e:  # noqa: BLE001  (a verdict that cannot form yet is no reason to stop)
            return {"kind": None, "message": f"no verdict yet ({type(e).__name__})"}
        return {"kind": vs[0]["kind"] if vs else None, "message": headline(vs), "kinds": [v["kind"] for v in vs]}

    def _train(self) -> None:
        from .folders import RunFolder
        from .recording import History, RunWriter
        from .trainer import Trainer

        try:
            if not self.cfg.name:  # named after its slot: dlx runs shows lab-a, lab-b
                self.cfg = self.cfg.model_copy(update={"name": f"lab-{self.slot.lower()}"})
            folder = RunFolder(self.runs_dir, self.cfg.name)
            self.hist = History()
            writer = RunWriter(folder, self.hist)
            trainer = Trainer(self.cfg, callbacks=[self.hist, writer, LabStream(self)])
            outcome = trainer.run()
            self.path = folder.path
            self.status = outcome.status
        except Exception as e:  # noqa: BLE001  (the page is told; the server goes on)
            self.error = f"{type(e).__name__}: {e}"
            self.status = "failed"
            self.push({"run": self.id, "error": self.error, "final": True})
        finally:
            self.done = True
            with self.cond:
                self.cond.notify_all()

    def stop(self) -> None:
        self.stop_asked = True
        self.paused.clear()


class Lab:
    """The server's state: sessions (a browser) and their runs, slot A and B each."""

    def __init__(self, runs_dir: Path, max_active: int = MAX_ACTIVE, token: str | None = None):
        self.runs_dir = Path(runs_dir)
        self.max_active = max_active
        self.token = token
        self.runs: dict[str, LabRun] = {}
        self.lock = threading.Lock()

    def active(self, session: str | None = None) -> list[LabRun]:
        return [r for r in self.runs.values() if not r.done and (session is None or r.session == session)]

    def start(self, session: str, slot: str, cfg, playing: bool) -> LabRun:
        with self.lock:
            # A session trains one run per slot: a new one there replaces (stops) the old.
            for r in self.active(session):
                if r.slot == slot:
                    r.stop()
            if len([r for r in self.active(session) if not r.stop_asked]) >= 2:
                raise LabError(429, "this page already trains two runs (A and B); pause or reset one")
            if len([r for r in self.active() if not r.stop_asked]) >= self.max_active:
                raise LabError(429, f"the lab already trains {self.max_active} runs; try again when one ends")
            run = LabRun(cfg, self.runs_dir, session, slot, playing)
            self.runs[run.id] = run
        run.start()
        return run

    def stop_all(self, wait: float = 30.0) -> None:
        """Ctrl-C on the server: every run ends as a Ctrl-C ends dlx train (interrupted, checkpointed)."""
        for r in list(self.runs.values()):
            r.stop()
        t = time.monotonic() + wait
        for r in list(self.runs.values()):
            r.thread.join(max(0.0, t - time.monotonic()))


def create_app(
    runs_dir: str | Path = "runs", token: str | None = None, max_active: int = MAX_ACTIVE, config: str | None = None
):
    """The starlette app of `dlx lab` (tests build it directly); config: a config file or an
    example's name the page starts from (refused here, before serving, if it does not load)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    lab = Lab(Path(runs_dir), max_active, token)
    initial = None
    if config:
        from .examples import resolve_config

        path = resolve_config(config)
        text = path.read_text()
        try:
            _config({"yaml": text})
        except LabError as e:
            from .errors import UsageError

            why = "; ".join(f"{p['key']}: {p['message']}" for p in e.problems) or e.message
            raise UsageError(f"{config}: {why}") from None
        initial = {"name": str(config), "yaml": text}

    class Guard(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):
            if lab.token is not None:
                given = request.query_params.get("token") or request.headers.get("x-dlx-token")
                if not given or not secrets.compare_digest(given, lab.token):
                    return JSONResponse({"error": "this lab needs its access token (?token=...)"}, status_code=403)
            try:
                return await call_next(request)
            except LabError as e:
                return JSONResponse({"error": e.message, "problems": e.problems}, status_code=e.status)
            except Exception as e:  # noqa: BLE001  (a bug answers 500 and the server goes on)
                return JSONResponse(
                    {"error": f"the lab failed on this request ({type(e).__name__}: {e})"}, status_code=500
                )

    async def body(request: Request) -> dict:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise LabError(413, f"the request is over {MAX_BODY} bytes")
        try:
            obj = json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise LabError(400, f"the request body is not JSON ({e.msg if hasattr(e, 'msg') else e})") from None
        if not isinstance(obj, dict):
            raise LabError(400, "the request body must be a JSON object")
        return obj

    def session_of(request: Request, b: dict | None = None) -> str:
        s = (b or {}).get("session") or request.query_params.get("session") or ""
        if not isinstance(s, str) or not (1 <= len(s) <= 64) or not s.replace("-", "").isalnum():
            raise LabError(400, "session must be 1-64 letters, digits or dashes")
        return s

    def the_run(run_id: str) -> LabRun:
        run = lab.runs.get(run_id)
        if run is None:
            raise LabError(404, f"no run {run_id!r} in this lab")
        return run

    async def index(request):
        return FileResponse(STATIC / "index.html")

    async def check(request):
        b = await body(request)
        cfg = await asyncio.to_thread(_config, b)
        return JSONResponse({"ok": True, "yaml": _yaml(cfg)})

    async def start(request):
        b = await body(request)
        session = session_of(request, b)
        slot = b.get("slot", "A")
        if slot not in ("A", "B"):
            raise LabError(400, "slot must be A or B")
        cfg = await asyncio.to_thread(_config, b)
        run = lab.start(session, slot, cfg, bool(b.get("play", True)))
        return JSONResponse({"run": run.id, "slot": slot, "yaml": _yaml(cfg)})

    async def control(request):
        run = the_run(request.path_params["run"])
        action = request.path_params["action"]
        if action == "play":
            run.paused.clear()
        elif action == "pause":
            run.paused.set()
        elif action == "step":
            run.stepping = True
            run.paused.clear()
        elif action == "stop":
            run.stop()
        else:
            raise LabError(404, f"no action {action!r}: play, pause, step or stop")
        return JSONResponse({"run": run.id, "status": run.status})

    async def status(request):
        run = the_run(request.path_params["run"])
        return JSONResponse(
            {"run": run.id, "status": run.status, "path": str(run.path) if run.path else None, "error": run.error}
        )

    async def events(request):
        run = the_run(request.path_params["run"])
        start_at = int(request.query_params.get("from", "0") or 0)

        async def stream():
            i = max(0, start_at)
            while True:
                if await request.is_disconnected():
                    return  # a closed tab stops the stream, never the run
                batch = run.events[i:]
                for ev in batch:
                    yield f"data: {json.dumps(ev)}\n\n"
                i += len(batch)
                if run.done and i >= len(run.events):
                    yield "event: end\ndata: {}\n\n"
                    return
                if not batch:
                    await asyncio.sleep(0.02)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def examples(request):
        from .examples import load_examples

        out = []
        for ex in load_examples():
            if ex.sweep:
                continue
            out.append({"name": ex.name, "claim": ex.claim})
        return JSONResponse(out)

    async def example(request):
        from .errors import UsageError
        from .examples import find_example

        try:
            ex = find_example(request.path_params["name"])
        except UsageError as e:
            raise LabError(404, str(e)) from None
        return PlainTextResponse(ex.path.read_text())

    async def initial_config(request):
        return JSONResponse(initial or {})

    routes = [
        Route("/", index),
        Route("/api/initial", initial_config),
        Route("/api/check", check, methods=["POST"]),
        Route("/api/runs", start, methods=["POST"]),
        Route("/api/runs/{run}/{action}", control, methods=["POST"]),
        Route("/api/runs/{run}", status),
        Route("/api/runs/{run}/events/stream", events),
        Route("/api/examples", examples),
        Route("/api/examples/{name}", example),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.to_thread(lab.stop_all)  # the server stops: its runs end checkpointed

    app = Starlette(routes=routes, middleware=[Middleware(Guard)], lifespan=lifespan)
    app.state.lab = lab
    return app


def _yaml(cfg) -> str:
    from .config import dump_yaml

    return dump_yaml(cfg.resolved())


def serve(config: str | None, host: str, port: int, runs_dir: Path, open_browser: bool, max_active: int, echo) -> None:
    """Run the lab server until Ctrl-C (which stops its runs as Ctrl-C stops dlx train)."""
    import ipaddress

    import uvicorn

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    token = None if loopback else secrets.token_urlsafe(16)
    app = create_app(runs_dir, token, max_active, config)
    url = f"http://{host}:{port}/" + (f"?token={token}" if token else "")
    echo(url, token)
    if open_browser:
        import webbrowser

        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    uvicorn.run(app, host=host, port=port, log_level="warning")
