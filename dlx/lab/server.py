"""dlx lab: a live page in the browser where a person changes a knob and watches the
network react (TensorFlow Playground's idea, with any dlx config, the gradients, the
pictures and the verdict).

A starlette app served by uvicorn (the optional extra dlx[lab]); the page is static files
in dlx/lab/static (no CDN, no network). Each run is a normal dlx run (Trainer, History,
RunWriter: a run folder that `dlx runs` lists), trained in a thread of the server; a
LabStream callback turns each log interval into an event (metrics, the interval's
per-layer gradient norms, activation histograms, for 2-D data the decision surface and
unit maps, the verdict as it forms) that the page receives by server-sent events.

The lab answers only its own page (see `guard`): a request must name the lab's own
address in its Host header (DNS rebinding), carry the per-server token printed in the
URL at start (?token= or the X-DLX-Token header; as Jupyter does, on loopback too), and
a state-changing call must be a JSON body with the lab's own Origin or none (cross-site
request forgery: a "simple" cross-origin POST needs no preflight). Bound to 127.0.0.1
unless --host says otherwise. One active training per browser session and MAX_ACTIVE
in all, stopping runs counted until they end; requests are checked (JSON, known keys,
sizes) and answered with a 4xx, never a crash.
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
from urllib.parse import urlsplit

import numpy as np

STATIC = Path(__file__).resolve().parent / "static"
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
# Finished runs kept for their status and event stream (older ones are released: memory
# stays flat however many runs a page starts), and how long a start waits for the run it
# replaces to end (it ends within one step; a run still loading its data counts as active).
KEEP_FINISHED = 16
REPLACE_WAIT_S = 10.0
# Names a loopback-bound lab answers to: a page reached under any other Host header was
# loaded from another site's name (DNS rebinding) and is refused.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
# Keys of an event that carry pictures: only the newest event keeps them (older ones are
# superseded on the page), so a run's memory grows by its curves alone.
PICTURE_KEYS = ("hist", "surface", "units")


class LabError(Exception):
    """A request the lab refuses: its status code and a message (and problems) for the page."""

    def __init__(self, status: int, message: str, problems: list[dict] | None = None):
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems or []


def _config(body: dict) -> Any:
    """The Config a request asks for: body {"config": {...} or "yaml": "...", "sets": [...]},
    validated by dlx (every problem, each with its key), sized for the lab."""
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
    _check_size(cfg)
    return cfg


def _no_path_facts(key: str, message: str) -> str:
    """A problem with a file the config names, said without telling whether the path exists
    (a reply is no way to probe the user's disk)."""
    if key.split(".")[0] == "data" and key.split(".")[-1] in ("path", "root"):
        return "not a usable file or folder for this key (the lab does not say which check failed)"
    return message


def _check_size(cfg) -> None:
    """Refuse a model too big for a live page (parameters counted on the meta device)."""
    import torch

    from dlx.core.errors import DlxError

    try:
        data = cfg.data.peek(cfg.seed)  # read-only: a check downloads nothing and creates no folder
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
        if self.run.stop_asked:  # stopped while it was being built
            trainer.interrupt()
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
    from dlx.views.pictures import _extent, _grid, _hidden, _probs

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
        from dlx.records.folders import jsonable

        ev = jsonable(ev)
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

    def _train(self) -> None:
        from dlx.records.folders import RunFolder
        from dlx.records.recording import History, RunWriter
        from dlx.run.trainer import Trainer

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
            # Released: a finished run keeps its events and status, not its model and data.
            self.trainer = self.hist = None
            self.done = True
            with self.cond:
                self.cond.notify_all()

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


def allowed_hosts(host: str) -> tuple[str, ...] | None:
    """The Host names a lab bound to `host` answers to: loopback's names on loopback, the
    address it was given otherwise; None (any name) for a wildcard bind (0.0.0.0, ::), where
    the machine's names are not known and the token alone keeps other pages out."""
    name = host.strip("[]").lower()
    if name in ("0.0.0.0", "::", ""):
        return None
    if is_loopback(name):
        return LOOPBACK_NAMES + ((name,) if name not in LOOPBACK_NAMES else ())
    return (name,)


def is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def host_name(header: str) -> str | None:
    """The name in a Host header ('127.0.0.1:8765', '[::1]:8765', 'localhost'), lowercased;
    None where it is not one."""
    try:
        parts = urlsplit("//" + header)
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError:
        return None
    return parts.hostname


class Guard:
    """Every request passes here first (a plain ASGI middleware, so event streams flow
    unbuffered). Refused: a Host that is not the lab's own (DNS rebinding: another site's
    name resolved to 127.0.0.1), a missing or wrong token, and a state-changing call that
    is not a JSON body from the lab's own page (cross-site request forgery). A refusal says
    why in a sentence and gives nothing away: no path, no run, no config."""

    def __init__(self, app, token: str, hosts: tuple[str, ...] | None):
        self.app, self.token, self.hosts = app, token, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.requests import Request
        from starlette.responses import JSONResponse

        why = self.refusal(Request(scope))
        if why is not None:
            status, message = why
            return await JSONResponse({"error": message}, status_code=status)(scope, receive, send)
        return await self.app(scope, receive, send)

    def refusal(self, request) -> tuple[int, str] | None:
        host = request.headers.get("host", "")
        name = host_name(host)
        if name is None or (self.hosts is not None and name not in self.hosts):
            return 421, "this lab answers only requests addressed to its own host name"
        if request.url.path.startswith("/static/"):
            return None  # the page's script and style: public, no state, nothing of the user's
        given = request.query_params.get("token") or request.headers.get("x-dlx-token") or ""
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            return 403, "this lab needs its access token: open the URL that dlx lab printed (with its ?token=)"
        if request.method not in ("GET", "HEAD"):
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return 415, "a state-changing request must be a JSON body (Content-Type: application/json)"
            origin = request.headers.get("origin")
            if origin is not None and origin.lower() != f"{request.url.scheme}://{host}".lower():
                return 403, "this lab takes state-changing requests only from its own page"
        return None


def create_app(
    runs_dir: str | Path = "runs",
    token: str | None = None,
    max_active: int = MAX_ACTIVE,
    config: str | None = None,
    host: str = "127.0.0.1",
):
    """The starlette app of `dlx lab` (tests build it directly). token: the per-server
    secret every request carries (a fresh one when None: app.state.lab.token); host: the
    address it is bound to, whose names it answers to; config: a config file or an
    example's name the page starts from (refused here, before serving, if it does not load)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    lab = Lab(Path(runs_dir), max_active, token or secrets.token_urlsafe(24))
    initial = None
    if config:
        from dlx.config.catalogue import resolve_config

        path = resolve_config(config)
        text = path.read_text()
        try:
            _config({"yaml": text})
        except LabError as e:
            from dlx.core.errors import UsageError

            why = "; ".join(f"{p['key']}: {p['message']}" for p in e.problems) or e.message
            raise UsageError(f"{config}: {why}") from None
        initial = {"name": str(config), "yaml": text}

    async def refused(request, e: LabError):
        return JSONResponse({"error": e.message, "problems": e.problems}, status_code=e.status)

    async def failed(request, e: Exception):  # a bug answers 500 and the server goes on
        return JSONResponse({"error": f"the lab failed on this request ({type(e).__name__})"}, status_code=500)

    async def body(request: Request) -> dict:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise LabError(413, f"the request is over {MAX_BODY} bytes")
        try:
            obj = json.loads(raw or b"{}")
        except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, an integer of 5000 digits, deep nesting
            raise LabError(400, f"the request body is not JSON ({getattr(e, 'msg', e)})") from None
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
            raise LabError(404, f"no run {run_id[:40]!r} in this lab")
        return run

    async def index(request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

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
        if lab.closing:
            raise LabError(503, "the lab is stopping")
        cfg = await asyncio.to_thread(_config, b)
        run = await asyncio.to_thread(lab.start, session, slot, cfg, bool(b.get("play", True)))
        return JSONResponse({"run": run.id, "slot": slot, "yaml": _yaml(cfg)})

    async def control(request):
        await body(request)
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
            raise LabError(404, f"no action {action[:40]!r}: play, pause, step or stop")
        return JSONResponse({"run": run.id, "status": run.status})

    async def status(request):
        run = the_run(request.path_params["run"])
        trainer = run.trainer
        return JSONResponse(
            {
                "run": run.id,
                "status": run.status,
                "step": trainer.step if trainer is not None else None,
                "path": str(run.path) if run.path else None,
                "error": run.error,
            }
        )

    async def events(request):
        run = the_run(request.path_params["run"])
        try:
            start_at = int(request.query_params.get("from", "0") or 0)
        except ValueError:
            raise LabError(400, "from must be an event number") from None

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
        from dlx.config.catalogue import load_examples

        out = []
        for ex in load_examples():
            if ex.sweep:
                continue
            out.append({"name": ex.name, "claim": ex.claim})
        return JSONResponse(out)

    async def example(request):
        from dlx.config.catalogue import find_example
        from dlx.core.errors import UsageError

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

    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, token=lab.token, hosts=allowed_hosts(host))],
        exception_handlers={LabError: refused, Exception: failed},
        lifespan=lifespan,
    )
    app.state.lab = lab
    return app


def _yaml(cfg) -> str:
    from dlx.config.loader import dump_yaml

    return dump_yaml(cfg.resolved())


def url_of(host: str, port: int, token: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={token}"


def serve(config: str | None, host: str, port: int, runs_dir: Path, open_browser: bool, max_active: int, echo) -> None:
    """Run the lab server until Ctrl-C or SIGTERM, which end its runs as they end dlx train
    (each after its current step: interrupted, checkpointed, resumable), then the server.

    The socket is bound here, before serving, so that --port 0 prints the port it got and a
    port in use is a clear message."""
    import socket

    import uvicorn

    from dlx.core.errors import UsageError

    app = create_app(runs_dir, None, max_active, config, host)
    lab = app.state.lab
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as e:
        raise UsageError(
            f"dlx lab cannot listen on {host}:{port}: {e.strerror or e}; pick another --port (0: any free one) "
            f"or --host"
        ) from None
    bound = sock.getsockname()[1]
    url = url_of(host, bound, lab.token)
    echo(url, lab.token)

    class LabServer(uvicorn.Server):
        def handle_exit(self, sig, frame):
            # First the runs: each ends after its step, so the open event streams end with
            # them and the server's graceful shutdown does not wait on a stream forever.
            lab.ask_all_to_stop()
            super().handle_exit(sig, frame)

    # timeout_graceful_shutdown: a stream whose client never reads cannot hold the stop up.
    server = LabServer(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=20))
    if open_browser:
        import webbrowser

        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    server.run(sockets=[sock])
