"""The audition page, `workdir/audition.html`: a run's numbers, curves and
samples in one file that needs no server and fetches nothing.

Each melody's ABC notation is drawn as a staff in the page by abcjs, whose
pinned copy (`vendor/abcjs-basic-min.js`) is inlined into the page.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import importlib.resources
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from melodyjax import files
from melodyjax.listening import audio, plots
from melodyjax.training import metrics as metrics_lib
from melodyjax.training import workdir as workdir_lib

PAGE = workdir_lib.PAGE_FILE
ABCJS = "vendor/abcjs-basic-min.js"  # in this package; see vendor/README.md


@functools.cache
def abcjs_source() -> str:
  """The vendored abcjs bundle (its licence header included)."""
  resource = importlib.resources.files(__package__).joinpath(ABCJS)
  return resource.read_text(encoding="utf-8")


# Draws every notation block's ABC as a staff; a failure leaves the text.
RENDER_NOTATION = """
document.querySelectorAll('.notation').forEach(function (block) {
  try {
    ABCJS.renderAbc(block, block.dataset.abc,
      {responsive: 'resize', add_classes: true});
  } catch (error) {
    block.textContent = 'notation not drawn: ' + error;
  }
});
"""


def _sample_steps(workdir: str) -> list[tuple[int, list[dict[str, Any]]]]:
  """[(step, sidecars sorted by index)], newest step first."""
  root = os.path.join(workdir, workdir_lib.SAMPLES_DIR)
  if not os.path.isdir(root):
    return []
  steps = []
  for name in os.listdir(root):
    folder = os.path.join(root, name)
    if not (name.isdigit() and os.path.isdir(folder)):
      continue
    sidecars = []
    for file in os.listdir(folder):
      if re.fullmatch(r"sample_\d+_\d+\.json", file):
        try:  # gone since the listing, or not a sidecar: left out
          with open(os.path.join(folder, file), encoding="utf-8") as f:
            sidecar = json.load(f)
        except (OSError, ValueError):
          continue
        if not isinstance(sidecar, dict) or "index" not in sidecar:
          continue
        stem = file[: -len(".json")]
        sidecar["stem"] = f"{workdir_lib.SAMPLES_DIR}/{name}/{stem}"
        sidecars.append(sidecar)
    if sidecars:
      steps.append((int(name), sorted(sidecars, key=lambda s: s["index"])))
  return sorted(steps, reverse=True)


BITS_PANEL = ("bits per note", ("train/bits_per_note", "eval/bits_per_note"))


SAMPLE_PANEL = (
  "samples against training songs",
  (
    "sample/overlap_pitch_class",
    "sample/overlap_interval",
    "sample/overlap_duration",
    "sample/in_key_share",
  ),
)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  def cell(value):
    if isinstance(value, float):
      return f"{value:.3f}"
    if value is None:  # undefined (null in the JSON): no data
      return "-"
    return html.escape(str(value))

  head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
  body = "".join(
    "<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
    for row in rows
  )
  return f"<table><tr>{head}</tr>{body}</table>"


def _numbers_section(workdir: str, records: Sequence[Mapping[str, Any]]) -> str:
  parts = ["<h2>Numbers</h2>", _evaluation_part(workdir)]
  sampled = [r for r in records if "sample/overlap_pitch_class" in r]
  if sampled:
    parts.append(_training_samples_part(sampled))
  evals = [
    r
    for r in records
    if all(
      isinstance(r.get(f"eval/bits_per_note{s}"), int | float)
      for s in ("", "_pitch", "_duration")
    )
  ]
  if evals:
    last = evals[-1]
    parts.append(
      f"<p>Validation at step {last['step']}: "
      f"{last['eval/bits_per_note']:.3f} bits per note (pitch "
      f"{last['eval/bits_per_note_pitch']:.3f}, duration "
      f"{last['eval/bits_per_note_duration']:.3f}).</p>"
    )
  return "\n".join(parts)


def _evaluation_part(workdir: str) -> str:
  """The test split's scores of `evaluation.json`, or how to get them."""
  path = workdir_lib.path(workdir, workdir_lib.EVALUATION_FILE)
  evaluation = None
  with contextlib.suppress(OSError, ValueError):
    with open(path, encoding="utf-8") as f:
      evaluation = json.load(f)
  if not evaluation:
    command = f"melodyjax-evaluate --workdir={workdir}"
    return (
      "<p>No test-split evaluation yet: <code>"
      f"{html.escape(command)}</code> scores the held-out bits per note "
      "against the n-gram baseline and rewrites this page.</p>"
    )
  model = evaluation["model"]
  # Evaluations before the short-term baselines have only the n-gram; a
  # conditioned run's baselines are given its labels.
  scores = evaluation.get("labelled_baselines") or evaluation.get(
    "baselines", {"ngram": evaluation["ngram"]}
  )
  best = evaluation.get("best_baseline", "ngram")
  kinds = evaluation.get("baseline_labels") or []
  given = (
    f", each given the model's labels ({html.escape(', '.join(kinds))})"
    * bool(kinds)
  )
  rows = [
    (
      label,
      model[key],
      *(s[key] for s in scores.values()),
      model[key] - scores[best][key],
    )
    for key, label in (
      ("bits_per_note", "bits per note"),
      ("bits_per_note_pitch", "pitch"),
      ("bits_per_note_duration", "duration"),
      ("top1", "top-1 accuracy (both)"),
    )
  ]
  statistics = [
    (name, scores["overlap"], scores["kl"])
    for name, scores in evaluation["statistics"].items()
  ]
  return "\n".join(
    [
      f"<p>Test split at step {evaluation['step']} "
      f"({int(model['num_targets']):,} targets): bits per note of the model "
      "against the baselines: an interpolated Kneser-Ney n-gram fitted on "
      "the same training songs, a short-term model fitted on each song as "
      f"it goes, and IDyOM's combination of the two{given}; "
      "the best on validation "
      f"is <b>{html.escape(best)}</b> "
      '(<a href="report.md">report.md</a> has the details).</p>',
      _table(("", "model", *scores, f"model - {best}"), rows),
      "<p>Sample statistics of the evaluation's melodies against the "
      "training songs (overlap 1 = same distribution):</p>",
      _table(("feature", "overlap", "KL"), statistics),
    ]
  )


def _training_samples_part(sampled: Sequence[Mapping[str, Any]]) -> str:
  columns = (
    ("notes", "notes_per_song"),
    ("range", "pitch_range"),
    ("in key", "in_key_share"),
    ("repeated", "repeated_share"),
    ("pitch class", "overlap_pitch_class"),
    ("interval", "overlap_interval"),
    ("duration", "overlap_duration"),
  )
  rows = [
    (r["step"], *(r.get(f"sample/{key}", "") for _, key in columns))
    for r in sampled
  ]
  return (
    "<p>Melodies sampled during training (below), against the training "
    "songs: mean notes per song and pitch range (semitones), share of "
    "notes in key and of repeated notes, and the overlap of pitch-class, "
    "interval and duration histograms (1 = same distribution).</p>\n"
    + _table(("step", *(label for label, _ in columns)), rows)
  )


def _sample_section(
  step: int,
  sidecars: Sequence[Mapping[str, Any]],
  exists: Callable[[str], bool],
  read: Callable[[str], str | None],
) -> str:
  first = sidecars[0]
  parts = [f'<section class="step" id="step-{step}">', f"<h3>Step {step}</h3>"]
  parts.append(
    "<p>"
    + html.escape(
      f"temperature {first.get('temperature')}, top-p {first.get('top_p')}, "
      f"seed {first.get('seed')}, primer {first.get('primer') or 'none'}"
    )
    + "</p>"
  )
  for sidecar in sidecars:
    stem = sidecar["stem"]
    name = html.escape(os.path.basename(stem))
    notation = read(stem + ".abc")
    abc_link = (
      f', <a href="{html.escape(stem)}.abc">ABC</a>' if notation else ""
    )
    parts.append('<div class="melody">')
    parts.append(
      f"<p><b>{name}</b>: {sidecar.get('num_events', '?')} events, "
      f'<a href="{html.escape(stem)}.mid">MIDI</a>, '
      f'<a href="{html.escape(stem)}.json">settings</a>{abc_link}</p>'
    )
    if notation:
      parts.append(
        f'<div class="notation" id="notation-{name}" '
        f'data-abc="{html.escape(notation)}"></div>'
      )
    if exists(stem + ".wav"):
      renderer = html.escape(str(sidecar.get("renderer", audio.ADDITIVE)))
      parts.append(
        f'<audio controls preload="auto" src="{html.escape(stem)}.wav"></audio>'
        f' <span class="renderer">sound: {renderer}</span>'
      )
    if exists(stem + ".png"):
      parts.append(
        f'<img class="roll" alt="piano roll of {name}" '
        f'src="{html.escape(stem)}.png">'
      )
    parts.append("</div>")
  parts.append("</section>")
  return "\n".join(parts)


STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 1em auto;
  padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.melody { margin: 0.8em 0; padding: 0.5em; background: #f6f6f6; }
.roll { max-width: 100%; display: block; }
.notation { background: #fff; margin: 0.3em 0; max-width: 100%; }
audio { width: 100%; max-width: 520px; }
nav a { margin-right: 0.8em; }
"""


def write_page(workdir: str) -> str:
  """(Re)writes `workdir/audition.html`; returns its path.

  The page uses relative links to the workdir's files and embeds its one
  figure, so it opens from disk (or a copy of the workdir) with no server
  and no network.
  """
  workdir = os.path.abspath(workdir)
  records = metrics_lib.read_metrics(workdir)
  samples = _sample_steps(workdir)
  title = f"Audition: {os.path.basename(workdir)}"
  parts = [
    "<!DOCTYPE html>",
    '<html lang="en"><head><meta charset="utf-8">',
    f"<title>{html.escape(title)}</title>",
    f"<style>{STYLE}</style></head><body>",
    f"<h1>{html.escape(title)}</h1>",
    f"<p><code>{html.escape(workdir)}</code></p>",
  ]
  if samples:
    links = " ".join(f'<a href="#step-{s}">step {s}</a>' for s, _ in samples)
    parts.append(f"<nav>Samples: {links}</nav>")
  parts.append(_numbers_section(workdir, records))
  curves = plots.curves_png(records, [BITS_PANEL, SAMPLE_PANEL])
  if curves:
    data = base64.b64encode(curves).decode("ascii")
    parts += [
      "<h2>Training curves</h2>",
      f'<img class="curves" alt="training curves" '
      f'src="data:image/png;base64,{data}">',
    ]
  parts.append("<h2>Samples</h2>")
  if not samples:
    parts.append("<p>No samples yet.</p>")
  exists = lambda stem: os.path.exists(os.path.join(workdir, stem))  # noqa: E731
  read = functools.partial(_read_text, workdir)
  sections = [_sample_section(s, cars, exists, read) for s, cars in samples]
  parts += sections
  if any('class="notation"' in section for section in sections):
    parts.append(f"<script>{abcjs_source()}</script>")
    parts.append(f"<script>{RENDER_NOTATION}</script>")
  parts.append("</body></html>\n")
  path = os.path.join(workdir, PAGE)
  files.write_text(path, "\n".join(parts))
  return path


def _read_text(workdir: str, relpath: str) -> str | None:
  """A workdir file's text, or None if it is missing or unreadable."""
  try:
    with open(os.path.join(workdir, relpath), encoding="utf-8") as f:
      return f.read()
  except (OSError, UnicodeDecodeError):
    return None


def describe_outputs(workdir: str) -> str:
  """Where a run's samples and audition page are (for the end of a run)."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  samples = _sample_steps(workdir)
  lines = []
  if samples:
    step, sidecars = samples[0]
    folder = os.path.join(workdir, workdir_lib.SAMPLES_DIR, str(step))
    count = len(sidecars)
    lines.append(f"samples:     {folder} ({count} melodies: .mid .wav .abc)")
  if os.path.exists(os.path.join(workdir, PAGE)):
    lines.append(f"audition:    file://{os.path.join(workdir, PAGE)}")
  return "\n".join(lines)
