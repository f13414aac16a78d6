"""Samples written while training, and the audition page in a real browser."""

import json
import os
import re
import shutil
import struct
import wave

import pytest

from melodyjax.evaluation import report as evaluation
from melodyjax.listening import page
from melodyjax.music import midi_io, tokens
from tests.helpers import (
  browser_problem,
  chromium,
  run_python,
  tiny_config,
  train,
  write_tunes,
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A tiny run sampled at steps 10 and 20, then evaluated (page rewritten)."""
  root = tmp_path_factory.mktemp("audition")
  midi_dir = root / "midi"
  write_tunes(midi_dir, 40, 9, name="t{}.mid")
  config = tiny_config(midi_dir, root / "data")
  config.train.sample_every_steps = 10
  train(config, root / "run")
  shutil.copy(root / "run" / page.PAGE, root / "trained.html")
  evaluation.evaluate_run(
    str(root / "run"),
    num_samples=4,
    num_notes=16,
    max_order=2,
    log=lambda message: None,
  )
  return root / "run"


def read_events(path):
  """(tag, step, kind) of every summary in a TensorBoard event file."""
  from tensorboardX.proto import event_pb2

  found = []
  with open(path, "rb") as f:
    while header := f.read(12):
      (length,) = struct.unpack("<Q", header[:8])
      event = event_pb2.Event.FromString(f.read(length))
      f.read(4)
      for value in event.summary.value:
        found.append((value.tag, event.step, value.WhichOneof("value")))
  return found


def test_training_samples_every_n_steps_and_at_the_end(workdir):
  for step in (10, 20):
    folder = workdir / "samples" / str(step)
    names = sorted(os.listdir(folder))
    assert names == sorted(
      f"sample_{step}_{i}.{ext}"
      for i in range(2)
      for ext in ("abc", "json", "mid", "png", "wav")
    )
    for i in range(2):
      stem = folder / f"sample_{step}_{i}"
      sidecar = json.loads(stem.with_suffix(".json").read_text())
      events = tokens.tokens_to_events(sidecar["pitch"], sidecar["duration"])
      assert midi_io.read_midi(stem.with_suffix(".mid")).events == events
      with wave.open(str(stem.with_suffix(".wav"))) as f:
        seconds = f.getnframes() / f.getframerate()
      quarters = sum(float(e.quarters) for e in events)
      assert seconds == pytest.approx(quarters * 60 / 100 + 0.5, abs=0.01)
      notation = stem.with_suffix(".abc").read_text()
      assert notation.startswith("%abc-2.1\nX:") and "\nK:C\n" in notation
      assert "\nM:4/4\n" in notation and "\nQ:1/4=100\n" in notation
  records = [
    json.loads(line)
    for line in (workdir / "metrics.jsonl").read_text().splitlines()
  ]
  sampled = [r for r in records if "sample/overlap_pitch_class" in r]
  assert [r["step"] for r in sampled] == [10, 20]
  for record in sampled:
    assert 0 <= record["sample/overlap_interval"] <= 1
    assert 0 <= record["sample/in_key_share"] <= 1
    assert record["sample/notes_per_song"] >= 1
  (event_file,) = os.listdir(workdir / "tensorboard")
  summaries = read_events(workdir / "tensorboard" / event_file)
  for step in (10, 20):
    assert ("samples/piano_roll_1", step, "image") in summaries
    assert ("samples/audio_1", step, "audio") in summaries
    assert ("sample/overlap_duration", step, "simple_value") in summaries


def test_training_samples_equal_sample_main(workdir, tmp_path):
  """The train loop's sampler is sample_main.py's: same seed, same notes."""
  result = run_python(
    "sample_main.py",
    f"--workdir={workdir}",
    "--step=20",
    f"--output_dir={tmp_path}",
    "--num_outputs=2",
    "--num_notes=24",
    "--seed=0",
  )
  assert result.returncode == 0, result.stderr
  for i in range(2):
    ours = json.loads((tmp_path / f"sample_20_{i}.json").read_text())
    trained = json.loads(
      (workdir / "samples" / "20" / f"sample_20_{i}.json").read_text()
    )
    assert (ours["pitch"], ours["duration"]) == (
      trained["pitch"],
      trained["duration"],
    )
    assert (tmp_path / f"sample_20_{i}.wav").read_bytes() == (
      workdir / "samples" / "20" / f"sample_20_{i}.wav"
    ).read_bytes()


def test_page_links_files_of_the_workdir_only(workdir):
  text = (workdir / page.PAGE).read_text()
  # abcjs is inlined once, as shipped (its sound-font addresses are never
  # fetched: the page only draws); the rest of the page names no address.
  bundle = page.abcjs_source()
  assert text.count(bundle) == 1 and len(bundle) > 400_000
  assert "ABCJS.renderAbc" in text
  text = text.replace(bundle, "")
  links = re.findall(r'(?:src|href)="([^"]+)"', text)
  local = [link for link in links if not link.startswith(("#", "data:"))]
  samples = [link for link in local if link.startswith("samples/")]
  # 2 steps x 2 melodies x mid/json/abc/wav/png
  assert len(samples) == 2 * 2 * 5
  assert "report.md" in local
  for link in local:
    assert (workdir / link).is_file(), link
  assert "http://" not in text and "https://" not in text
  # Each melody's notation block carries its .abc file's text.
  blocks = re.findall(
    r'class="notation" id="notation-([^"]+)" data-abc="', text
  )
  assert sorted(blocks) == sorted(
    f"sample_{step}_{i}" for step in (10, 20) for i in range(2)
  )
  assert text.index('id="step-20"') < text.index('id="step-10"')
  # The evaluation's numbers (test split against the n-gram) are on it.
  assert "n-gram" in text and "No test-split evaluation" not in text
  assert 'alt="training curves"' in text
  # The table of sampled steps includes the last one, as soon as training
  # ends (before the evaluation rewrote the page).
  trained = (workdir.parent / "trained.html").read_text()
  for html in (text, trained):
    assert re.search(r"<tr><td>20</td><td>[0-9.]+</td>", html)
  assert "No test-split evaluation" in trained


def test_page_without_samples_or_metrics(tmp_path):
  page.write_page(str(tmp_path))
  text = (tmp_path / page.PAGE).read_text()
  assert "No samples yet." in text and "melodyjax-evaluate" in text


# Every audio element has loaded its WAV's metadata (a duration) without an
# error, and every image has decoded to a size.
CHECK_MEDIA = """
const done = arguments[arguments.length - 1];
const audios = Array.from(document.querySelectorAll('audio'));
const images = Array.from(document.querySelectorAll('img'));
function report() {
  return {
    notation: Array.from(document.querySelectorAll('.notation')).map(b => ({
      id: b.id, svgs: b.querySelectorAll('svg').length,
      notes: b.querySelectorAll('svg .abcjs-note').length,
      rests: b.querySelectorAll('svg .abcjs-rest').length,
      bars: b.querySelectorAll('svg .abcjs-bar').length,
      text: b.textContent.slice(0, 200)})),
    resources: performance.getEntriesByType('resource').map(r => r.name),
    audios: audios.map(a => ({src: a.currentSrc, ready: a.readyState,
      duration: a.duration, error: a.error && a.error.code})),
    images: images.map(i => ({src: i.src.slice(0, 80), complete: i.complete,
      width: i.naturalWidth, height: i.naturalHeight})),
  };
}
const start = Date.now();
(function poll() {
  const r = report();
  const settled = r.audios.every(a => a.ready >= 1 || a.error) &&
    r.images.every(i => i.complete);
  if (settled || Date.now() - start > 20000) { done(r); }
  else { setTimeout(poll, 100); }
})();
"""


def test_page_in_headless_chromium(workdir):
  problem = browser_problem()
  if problem:
    pytest.skip(problem)
  with chromium() as driver:
    driver.set_script_timeout(30)
    driver.get((workdir / page.PAGE).as_uri())
    assert driver.title == f"Audition: {workdir.name}"
    result = driver.execute_async_script(CHECK_MEDIA)
    shot = os.environ.get("MELODYJAX_SCREENSHOT")
    if shot:
      driver.save_screenshot(shot)
  assert len(result["audios"]) == 4 and len(result["images"]) == 5
  for a in result["audios"]:
    assert a["error"] is None and a["ready"] >= 1, a
    assert a["duration"] > 0.5, a
  for image in result["images"]:
    assert image["width"] > 100 and image["height"] > 50, image
  # Every melody's staff is drawn: an SVG with a glyph for each of its notes
  # (a note tied over a bar line has two) and rests, and its bar lines.
  assert len(result["notation"]) == 4
  for block in result["notation"]:
    stem = block["id"][len("notation-") :]
    step = stem.split("_")[1]
    sidecar = json.loads(
      (workdir / "samples" / step / f"{stem}.json").read_text()
    )
    events = tokens.tokens_to_events(sidecar["pitch"], sidecar["duration"])
    notes = sum(1 for e in events if e.pitches)
    assert block["svgs"] >= 1, block
    assert block["notes"] >= notes > 0, (block, notes)
    assert block["bars"] >= 1 and "not drawn" not in block["text"], block
  # Nothing but the workdir's own files was loaded.
  for name in result["resources"]:
    assert name.startswith("file://"), name
