"""SIGKILL at random moments of a corpus build and of an export: every file
left is whole (or absent), and the same command run again succeeds with
the result of an uninterrupted run (the training loop's own kill loop is
tests/test_crash_safety.py; the evaluation's, tests/test_faults.py)."""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from melodyjax.cli import corpus as corpus_cli
from melodyjax.cli import export
from melodyjax.data import dataset as dataset_lib
from melodyjax.training import model_file, runs
from tests.helpers import PROJECT, write_tunes

# MELODYJAX_KILLS=N kills N times (the table in BENCHMARKS.md: N = 20).
KILLS = int(os.environ.get("MELODYJAX_KILLS", "4"))


def _kill_after(argv: list[str], delay: float) -> int:
  """Runs `python -m argv` and kills it with SIGKILL after `delay` seconds
  (or lets it finish first); its return code."""
  process = subprocess.Popen(
    [sys.executable, "-m", *argv],
    cwd=PROJECT,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  try:
    process.wait(timeout=delay)
  except subprocess.TimeoutExpired:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
  return process.returncode


def _whole_dataset_files(out_dir: str) -> list[str]:
  """The dataset folder's visible files, each checked to be whole."""
  names = sorted(n for n in os.listdir(out_dir) if not n.startswith("."))
  for name in names:
    path = os.path.join(out_dir, name)
    if name.endswith(".json"):
      with open(path) as f:
        json.load(f)
    elif name.endswith(".npz"):
      with np.load(path) as arrays:
        for key in arrays.files:
          arrays[key]
    elif name.endswith(".jsonl"):
      with open(path) as f:
        text = f.read()
      assert text.endswith("\n") and all(
        json.loads(line) is not None for line in text.splitlines()
      )
    else:
      raise AssertionError(f"unexpected file {name}")
  return names


def _tokens(out_dir: str) -> dict[str, np.ndarray]:
  dataset = dataset_lib.load_dataset(out_dir)
  return {
    f"{split}/{stream}": getattr(dataset.splits[split], stream)
    for split in dataset_lib.SPLITS
    for stream in ("pitch", "duration")
  }


def test_killed_corpus_builds_leave_whole_files_and_the_rerun_succeeds(
  tmp_path,
):
  midi = write_tunes(tmp_path / "midi", 1500, 9)
  reference = tmp_path / "reference"
  args = [f"--midi_dir={midi}", "--no_progress", "--workers=1"]
  argv = ["melodyjax.cli.corpus", *args, f"--out={reference}"]
  started = time.monotonic()
  assert _kill_after(argv, 300) == 0  # whole, as a user runs it: its time
  seconds = time.monotonic() - started
  out = tmp_path / "killed"
  rng = np.random.default_rng(0)
  killed = 0
  for _ in range(KILLS):
    argv = ["melodyjax.cli.corpus", *args, f"--out={out}", "--force"]
    code = _kill_after(argv, float(rng.uniform(0.3, 0.95)) * seconds)
    killed += code == -signal.SIGKILL
    if out.exists():
      names = _whole_dataset_files(str(out))
      if "manifest.json" in names:  # the manifest goes last: all there
        assert {"arrays.npz", "report.json", "songs.jsonl"} <= set(names)
  assert killed >= 1, "no kill landed inside a build"
  print(f"corpus build: {killed} of {KILLS} kills landed ({seconds:.1f} s run)")
  assert corpus_cli.main([*args, f"--out={out}"]) == 0
  expected, got = _tokens(str(reference)), _tokens(str(out))
  assert expected.keys() == got.keys()
  for key, value in expected.items():
    np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.mark.parametrize("seed", [0])
def test_killed_exports_leave_no_partial_file_and_the_rerun_succeeds(
  workdir, tmp_path, seed
):
  out = tmp_path / "model.mjx"
  rng = np.random.default_rng(seed)
  landed = whole = 0
  for _ in range(KILLS):
    delay = float(rng.uniform(0.5, 5.0))
    argv = ["melodyjax.cli.export", f"--workdir={workdir}", f"--out={out}"]
    started = time.monotonic()
    landed += _kill_after(argv, delay) == -signal.SIGKILL
    assert time.monotonic() - started < 120
    leftovers = [p for p in tmp_path.iterdir() if p.name != out.name]
    assert all(p.name.startswith(".") for p in leftovers), leftovers
    if out.exists():  # whole: it reads and its hashes hold
      assert runs.from_model_file(str(out)).step == 10
      whole += 1
      out.unlink()
  print(f"export: {landed} of {KILLS} kills landed, {whole} files whole")
  assert export.main([f"--workdir={workdir}", f"--out={out}"]) == 0
  exported = model_file.read(str(out))
  with zipfile.ZipFile(out) as archive:
    assert set(archive.namelist()) - {"manifest.json"} == set(
      exported.manifest["members"]
    )
