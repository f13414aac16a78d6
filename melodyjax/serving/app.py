"""The HTTP app: POST /generate, GET /health, GET / (a page to try it),
GET /files/NAME (a file this server made, named in an answer).

Every answer is JSON except the page and the files. A request the server
refuses gets HTTP 400 and `{"error": "one line"}` with the same message the
command line gives; an unexpected failure gets 500 and one line, and the
server stays up. Tokens, body limits, the queue and time limits are the
guard's (`guard`: 401, 408, 413, 503, 504).
"""

from __future__ import annotations

import base64
import contextlib
import html
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from melodyjax import files
from melodyjax.listening import abc
from melodyjax.music import midi_io, tokens
from melodyjax.music.events import Song
from melodyjax.serving import batcher as batcher_lib
from melodyjax.serving import guard as guard_lib
from melodyjax.serving import requests
from melodyjax.serving import store as store_lib


def _json(data, status: int = 200) -> JSONResponse:
  return JSONResponse(files.finite_or_null(data), status_code=status)


def _melody(events, run, tempo: float, store: store_lib.FileStore) -> dict:
  pitch, duration = tokens.event_tokens(events)
  key = "C" if run.config.data.normalize_key else None
  midi = midi_io.song_to_bytes(Song(list(events), tempo, (4, 4), key))
  name = store.add(midi, ".mid")
  return {
    "num_events": len(events),
    "pitch": pitch,
    "duration": duration,
    "midi_base64": base64.b64encode(midi).decode("ascii"),
    "midi_url": None if name is None else f"/files/{name}",
    "abc": abc.to_abc(events, key_signature=key, tempo_bpm=tempo),
  }


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
    return _json(
      {
        "step": run.step,
        "settings": {**checked.request.to_json(), "tempo": checked.tempo},
        "melodies": [_melody(m, run, checked.tempo, store) for m in melodies],
        "seconds": time.perf_counter() - start,
      }
    )

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
    return HTMLResponse(_page(run))

  guarded = guard_lib.Guard(
    Starlette(
      routes=[
        Route("/", index, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/generate", generate, methods=["POST"]),
        store_lib.route(store, _json),
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


def _page(run) -> str:
  title = html.escape(f"melodyjax: step {run.step} of {run.workdir}")
  return PAGE.replace("TITLE", title)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>TITLE</title>
<style>
body { font-family: sans-serif; max-width: 820px; margin: 1em auto;
  padding: 0 1em; color: #222; }
label { display: inline-block; margin: 0.3em 1em 0.3em 0; }
input { width: 7em; } #primer { width: 20em; }
pre { background: #f6f6f6; padding: 0.5em; white-space: pre-wrap; }
</style></head><body>
<h1>TITLE</h1>
<form id="form">
<label>primer
  <input id="primer" name="primer" placeholder="C4:1 D4:0.5"></label>
<label>notes <input name="num_notes" type="number" value="64"></label>
<label>melodies <input name="num_outputs" type="number" value="1"></label>
<label>temperature <input name="temperature" value="1.0"></label>
<label>top-k <input name="top_k" type="number" value="0"></label>
<label>top-p <input name="top_p" value="1.0"></label>
<label>seed <input name="seed" type="number" value="0"></label>
<label>tempo <input name="tempo" value="100"></label>
<button type="submit">Generate</button>
</form>
<div id="result"></div>
<script>
const INTS = ["num_notes", "num_outputs", "top_k", "seed"];
document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {};
  for (const [name, value] of new FormData(event.target)) {
    if (name === "primer") { body.primer = value; continue; }
    body[name] = INTS.includes(name) ? parseInt(value, 10) : parseFloat(value);
  }
  const out = document.getElementById("result");
  out.textContent = "generating...";
  const response = await fetch("/generate", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await response.json();
  out.textContent = "";
  if (!response.ok) {
    const p = document.createElement("pre");
    p.className = "error"; p.textContent = data.error; out.appendChild(p);
    return;
  }
  data.melodies.forEach((melody, i) => {
    const link = document.createElement("a");
    link.href = "data:audio/midi;base64," + melody.midi_base64;
    link.download = `melody_${data.step}_${data.settings.seed}_${i}.mid`;
    link.textContent = `melody ${i}: ${melody.num_events} events (MIDI)`;
    const p = document.createElement("pre");
    p.className = "melody";
    p.textContent = melody.pitch.map((pitch, j) =>
      pitch + ":" + melody.duration[j]).join(" ");
    out.append(link, p);
  });
});
</script>
</body></html>
"""
