"""The HTTP app: POST /generate, GET /health, GET / (the studio page),
GET /files/NAME (an answer's MIDI file, one this server made), GET
/audio/NAME.wav (an answer's WAV), GET /abcjs.js (the page's notation).

Every answer is JSON except the page and the files. A request the server
refuses gets HTTP 400 and `{"error": "one line"}` with the same message the
command line gives; an unexpected failure gets 500 and one line, and the
server stays up. Tokens, body limits, the queue and time limits are the
guard's (`guard`: 401, 408, 413, 503, 504).
"""

from __future__ import annotations

import contextlib
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from melodyjax import files
from melodyjax.listening import page
from melodyjax.serving import answer, requests, studio
from melodyjax.serving import batcher as batcher_lib
from melodyjax.serving import guard as guard_lib
from melodyjax.serving import store as store_lib


def _json(data, status: int = 200) -> JSONResponse:
  return JSONResponse(files.finite_or_null(data), status_code=status)


def create_app(
  batcher: batcher_lib.Batcher,
  settings: guard_lib.Settings | None = None,
  store: store_lib.FileStore | None = None,
) -> guard_lib.Guard:
  """The app serving `batcher`'s run behind its guard; the batcher runs
  while the app does; the store (default: a temporary one) keeps the files
  its answers name."""
  run = batcher.run
  started = time.time()
  store = store_lib.FileStore() if store is None else store
  audio_store = answer.AudioStore()

  async def generate(request: Request) -> JSONResponse:
    start = time.perf_counter()
    try:
      body = await request.body()  # whole and in time: the guard read it
      checked = requests.check(requests.parse_body(body), run, batcher.limits)
    except requests.RequestError as e:
      return _json({"error": str(e)}, e.status)
    try:
      melodies = await batcher.generate(checked)
    except Exception as e:  # noqa: BLE001 - one line, and stay up
      first = (str(e).strip().splitlines() or [type(e).__name__])[0]
      return _json({"error": f"generation failed: {first[:300]}"}, 500)
    made = answer.make_answer(run, checked, melodies, audio_store, store)
    return _json({**made, "seconds": time.perf_counter() - start})

  async def health(request: Request) -> JSONResponse:
    return _json(
      {
        "status": "ok",
        "workdir": run.workdir,
        "step": run.step,
        "uptime_seconds": time.time() - started,
        "requests": batcher.served,
        "sampler_calls": batcher.calls,
        "compiled_shapes": sorted(batcher.shapes),
        "limits": {
          "num_notes": batcher.limits.max_notes,
          "num_outputs": batcher.limits.max_outputs,
          "primer_notes": batcher.limits.max_primer_notes,
          "body_bytes": batcher.limits.max_body_bytes,
          "requests_per_call": batcher.max_slots,
        },
        "guard": guarded.stats(),
        "files": len(store),
      }
    )

  async def index(request: Request) -> HTMLResponse:
    return HTMLResponse(studio.render_page(run, batcher.limits))

  async def wav(request: Request) -> Response:
    name = request.path_params["name"]
    data = await run_in_threadpool(audio_store.wav, name)
    if data is None:
      return _json({"error": f"no audio {name}.wav on this server"}, 404)
    return Response(data, media_type="audio/wav")

  async def abcjs(request: Request) -> Response:
    return Response(page.abcjs_source(), media_type="text/javascript")

  guarded = guard_lib.Guard(
    Starlette(
      routes=[
        Route("/", index, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/generate", generate, methods=["POST"]),
        store_lib.route(store, _json),
        Route("/audio/{name:str}.wav", wav, methods=["GET"]),
        Route("/abcjs.js", abcjs, methods=["GET"]),
      ],
      lifespan=_lifespan(batcher, store),
    ),
    settings
    or guard_lib.Settings(max_body_bytes=batcher.limits.max_body_bytes),
  )
  return guarded


def _lifespan(batcher: batcher_lib.Batcher, store: store_lib.FileStore):
  """Runs the batcher while the app runs; then removes a temporary store."""

  @contextlib.asynccontextmanager
  async def lifespan(app):
    import asyncio

    task = asyncio.create_task(batcher.serve())
    await asyncio.sleep(0)  # the queue exists before the first request
    try:
      yield
    finally:
      task.cancel()
      with contextlib.suppress(asyncio.CancelledError):
        await task
      store.close()

  return lifespan
