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
import secrets
import threading
from pathlib import Path

from dlx.core.jsonable import jsonable
from dlx.lab.bodies import json_object, read_limited
from dlx.lab.guard import Guard, allowed_hosts, is_loopback  # noqa: F401  (is_loopback: for the CLI)
from dlx.lab.runs import (  # noqa: F401
    KEEP_FINISHED,
    MAX_ACTIVE,
    MAX_BODY,
    Lab,
    LabError,
    LabRun,
    lab_config,
    lab_config_and_network,
)

STATIC = Path(__file__).resolve().parent / "static"


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
    replay = None
    if config:
        from dlx.lab.replay import Replay, replay_target

        target = replay_target(config, Path(runs_dir))  # dlx lab RUN: scrub through a finished run
        if target is not None:
            replay = Replay(target)
            initial = {"name": str(config), "replay": replay.run_id}
    if config and replay is None:
        from dlx.config.catalogue import resolve_config

        path = resolve_config(config)
        text = path.read_text()
        try:
            lab_config({"yaml": text})
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
        return json_object(await read_limited(request, MAX_BODY))

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
        """The config a body trains, resolved (the page sets every knob from it), and its
        network (drawn before play). With "report": true, as the page checks its knobs while
        a person edits them, a config's problems answer 200 {"ok": false, ...}: a config being
        edited is a finding for the page, not a failed request for the browser's console."""
        b = await body(request)

        def resolve():
            cfg, network = lab_config_and_network(b)
            return {"ok": True, "yaml": _yaml(cfg), "config": cfg.resolved(), "network": network}

        try:
            answer = await asyncio.to_thread(resolve)
        except LabError as e:
            if b.get("report") is not True or e.status != 400:
                raise
            return JSONResponse({"ok": False, "error": e.message, "problems": e.problems})
        return JSONResponse(jsonable(answer))

    async def start(request):
        b = await body(request)
        session = session_of(request, b)
        slot = b.get("slot", "A")
        if slot not in ("A", "B"):
            raise LabError(400, "slot must be A or B")
        if lab.closing:
            raise LabError(503, "the lab is stopping")
        cfg, network = await asyncio.to_thread(lab_config_and_network, b)
        run = await asyncio.to_thread(lab.start, session, slot, cfg, bool(b.get("play", True)))
        return JSONResponse(
            jsonable({"run": run.id, "slot": slot, "yaml": _yaml(cfg), "config": cfg.resolved(), "network": network})
        )

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

    async def change(request):
        """Knobs turned while a run trains: {"lr"?, "l2"?, "l1"?, "batch_size"?, "dropout"?},
        taken at the run's next step boundary, on the event stream as {"run", "step",
        "change"} when applied; answers {"run", "pending": {config key: value}}."""
        b = await body(request)
        run = the_run(request.path_params["run"])
        return JSONResponse(jsonable({"run": run.id, "pending": run.change(b)}))

    async def phases(request):
        """Step mode on a paused run: {"unit": "LAYER:INDEX"}; exactly one step, whose phases
        come on the event stream as {"run", "step", "phases"}."""
        b = await body(request)
        run = the_run(request.path_params["run"])
        return JSONResponse(jsonable(run.phases(b)))

    def the_replay():
        if replay is None:
            raise LabError(404, "this lab opened no run: dlx lab RUN scrubs through a finished run")
        return replay

    async def replay_info(request):
        return JSONResponse(jsonable(the_replay().info()))

    async def replay_event(request):
        rep, i = the_replay(), request.path_params["i"]
        if not 0 <= i < len(rep.steps):
            raise LabError(404, f"no snapshot {i}: this run has {len(rep.steps)} (0 to {len(rep.steps) - 1})")
        return JSONResponse(jsonable(await asyncio.to_thread(rep.event, i)))

    async def own_data(request):
        """Your own data (dlx.lab.uploads): a JSON body of one of {"csv": "<text>"},
        {"npz_base64": "<base64 of a .npz>"}, {"points": [[x, y, label], ...], "task":
        "classification"} or {"points": [[x, y, value], ...], "task": "regression"}; saved as
        RUNS_DIR/lab-data/<sha256, 16 hex>.npz, split 80/20 (seeded, by class). Answers
        {"data": {"name": "arrays", "path": ...}, "summary": {"task", "n_train", "n_test",
        "features", "classes", "columns"}}. Limits: a body of up to 2 MiB (this route only),
        10 to 50,000 rows, 2 to 64 features, finite numbers within +-1e30, 2 to 100 classes (a
        CSV's integer target with at most 20 values is classes); else 400 with a sentence."""
        from dlx.lab.uploads import MAX_UPLOAD, save_own_data

        b = json_object(await read_limited(request, MAX_UPLOAD, "POST /api/data"))
        return JSONResponse(jsonable(await asyncio.to_thread(save_own_data, b, lab.runs_dir)))

    async def lesson(request):
        """A finished run's root verdict and the remedy dlx fix tries first, as --set lines for
        run B (dlx.lab.lessons): {"kind", "message", "cause", "remedy", "advice", "sets",
        "answers"}; 409 while it trains, when healthy, or when no --set expresses its remedy."""
        from dlx.lab.lessons import lesson_of

        await body(request)
        run = the_run(request.path_params["run"])
        return JSONResponse(jsonable(await asyncio.to_thread(lesson_of, run)))

    async def weights(request):
        """The finished (or interrupted) run's model weights, a torch state_dict, as a download
        "<run folder>-weights.pt" (dlx.lab.weights); 409 before it has a checkpoint."""
        from starlette.responses import Response

        from dlx.lab.weights import weights_of

        run = the_run(request.path_params["run"])
        content, name = await asyncio.to_thread(weights_of, run)
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
        )

    routes = [
        Route("/", index),
        Route("/api/initial", initial_config),
        Route("/api/check", check, methods=["POST"]),
        Route("/api/runs", start, methods=["POST"]),
        Route("/api/data", own_data, methods=["POST"]),
        # Before {action}: a POST to .../fix is the lesson, not a control.
        Route("/api/runs/{run}/fix", lesson, methods=["POST"]),
        Route("/api/runs/{run}/weights", weights),
        Route("/api/runs/{run}/change", change, methods=["POST"]),
        Route("/api/runs/{run}/phases", phases, methods=["POST"]),
        Route("/api/replay", replay_info),
        Route("/api/replay/{i:int}", replay_event),
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
