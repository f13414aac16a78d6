"""The studio page (`GET /`): the run's controls, Generate, the staff, the
sound, downloads, "continue this melody", the settings in the address.

The page is `studio.html` (package data) with the run's choices filled in
as JSON: the time signatures, modes and styles it was trained on (its
label vocabularies), the tonics, the defaults and the server's limits.
Its notation is abcjs from `/abcjs.js` (`listening.page.abcjs_source`),
its sound the server's WAV; nothing comes from the network.
"""

from __future__ import annotations

import functools
import html
import importlib.resources
import json

from melodyjax.listening import audio
from melodyjax.music import tonality
from melodyjax.serving import requests
from melodyjax.training import runs

# Offered to a run without metre conditioning (the bars and the files'
# metre; any other can be typed).
COMMON_METRES = ("4/4", "3/4", "2/4", "6/8", "9/8", "2/2")
# General MIDI programs offered by name (any other 0-127 can be typed).
GM_PROGRAMS = {
  0: "Acoustic Grand Piano",
  21: "Accordion",
  22: "Harmonica",
  24: "Acoustic Guitar (nylon)",
  40: "Violin",
  42: "Cello",
  46: "Orchestral Harp",
  71: "Clarinet",
  72: "Piccolo",
  73: "Flute",
  74: "Recorder",
  75: "Pan Flute",
  78: "Whistle",
  105: "Banjo",
  109: "Bagpipe",
  110: "Fiddle",
}


@functools.lru_cache(maxsize=1)
def _template() -> str:
  return (
    importlib.resources.files(__package__)
    .joinpath("studio.html")
    .read_text(encoding="utf-8")
  )


def choices(run: runs.Run, limits: requests.Limits) -> dict:
  """What the page offers for `run`: labels by kind ([] for a condition
  the run was trained without), tonics, defaults, limits, renderer."""
  config = run.model.config
  labels = {}
  for kind, group in (
    ("time_signature", "metre"),
    ("mode", "mode"),
    ("style", "style"),
  ):
    conditioned = getattr(config, f"condition_{group}")
    vocab = run.labels[kind]
    labels[kind] = {
      "conditioned": bool(conditioned),
      "known": list(vocab.known) if conditioned else [],
      "default": vocab.most_common() if conditioned else None,
    }
  if not labels["time_signature"]["conditioned"]:
    labels["time_signature"]["known"] = list(COMMON_METRES)
  return {
    "run": run.workdir or run.model_path,
    "step": run.step,
    "labels": labels,
    "tonics": list(tonality.TONIC_NAMES)
    if run.config.data.normalize_key
    else [],
    "defaults": {**requests.DEFAULTS, "num_notes": 64},
    "limits": {
      "num_notes": limits.max_notes,
      "num_outputs": limits.max_outputs,
      "primer_notes": limits.max_primer_notes,
    },
    "renderer": audio.renderer(),
    "programs": GM_PROGRAMS,
  }


def render_page(run: runs.Run, limits: requests.Limits) -> str:
  """The page's HTML for `run`."""
  data = json.dumps(choices(run, limits)).replace("</", "<\\/")
  title = html.escape(
    f"melodyjax studio: step {run.step} of {run.workdir or run.model_path}"
  )
  return _template().replace("__TITLE__", title).replace("__CHOICES__", data)
