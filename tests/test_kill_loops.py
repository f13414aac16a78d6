"""SIGKILL at random moments of a corpus build, an export, an evaluation
and a serving server: every file left is whole (or absent, or a hidden
temporary), and the same command run again succeeds (with the result of an
uninterrupted run where there is one to compare). The training loop's own
kill loop is tests/test_crash_safety.py."""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

from melodyjax.cli import corpus as corpus_cli
from melodyjax.cli import export
from melodyjax.data import dataset as dataset_lib
from melodyjax.serving import store
from melodyjax.training import model_file, runs
from tests.helpers import (
  PROJECT,
  check_whole_file,
  http_call,
  start_server,
  write_tunes,
)

# MELODYJAX_KILLS=N kills N times (the table in BENCHMARKS.md: N = 20); the
# evaluation and the server, slower to start, half as often (2 at least).
KILLS = int(os.environ.get("MELODYJAX_KILLS", "4"))
SLOW_KILLS = max(2, KILLS // 2)


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


def _visible_files_whole(folder) -> tuple[int, int]:
  """(whole visible files, hidden temporaries) below `folder`; fails on a
  visible file that is not whole."""
  whole = hidden = 0
  for path in folder.rglob("*") if folder.exists() else []:
    if not path.is_file():
      continue
    if path.name.startswith("."):
      hidden += 1
      continue
    check_whole_file(str(path))
    whole += 1
  return whole, hidden


def test_killed_evaluations_leave_whole_files_and_the_rerun_succeeds(
  workdir, tmp_path
):
  out = tmp_path / "evaluation"
  argv = [
    sys.executable,
    "-m",
    "melodyjax.cli.evaluate",
    f"--workdir={workdir}",
    f"--output_dir={out}",
    "--num_samples=4",
    "--num_notes=16",
    "--max_order=2",
  ]
  rng = np.random.default_rng(2)
  landed = 0
  for _ in range(SLOW_KILLS):
    # A random moment of the writing: after the n-th file appears.
    count = int(rng.integers(1, 16))
    process = subprocess.Popen(
      argv, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
      if out.exists() and sum(1 for _ in out.rglob("*")) >= count:
        process.send_signal(signal.SIGKILL)
        break
      time.sleep(0.002)
    landed += process.wait(timeout=60) == -signal.SIGKILL
    _visible_files_whole(out)
  assert landed >= 1, "no kill landed inside an evaluation"
  print(f"evaluate: {landed} of {SLOW_KILLS} kills landed")
  result = subprocess.run(argv, cwd=PROJECT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  whole, _ = _visible_files_whole(out)
  with open(out / "evaluation.json") as f:
    assert json.load(f)["step"] == 10
  assert whole >= 10


def _traffic(port, stop, answers, seed) -> None:
  """Requests (of a shape compiled at the start) until `stop` or a kill."""
  while not stop.is_set():
    body = {"num_notes": 16, "seed": seed}
    try:
      answers.append(http_call(port, "POST", "/generate", body)[0])
    except (OSError, http.client.HTTPException):  # the kill
      return


def test_killed_servers_leave_whole_files_and_the_rerun_serves(
  workdir, tmp_path
):
  """SIGKILL while clients keep the server writing its answers' files."""
  folder = tmp_path / "files"
  flags = [
    f"--workdir={workdir}",
    "--warm_notes=16",
    "--max_batch=1",  # one shape to compile at each start
    f"--files_dir={folder}",
    "--max_files=8",
  ]
  rng = np.random.default_rng(3)
  served = hidden_left = 0
  for _ in range(SLOW_KILLS):
    port, process = start_server(*flags)
    stop, answers = threading.Event(), []
    clients = [
      threading.Thread(target=_traffic, args=(port, stop, answers, i))
      for i in range(3)
    ]
    for client in clients:
      client.start()
    deadline = time.monotonic() + 120
    while not answers and time.monotonic() < deadline:
      time.sleep(0.01)
    time.sleep(float(rng.uniform(0.0, 1.0)))  # a random moment of writing
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    stop.set()
    for client in clients:
      client.join(timeout=60)
    process.stdout.close()
    process.stderr.close()
    served += answers.count(200)
    whole, hidden = _visible_files_whole(folder)
    hidden_left += hidden
    names = [p.name for p in folder.iterdir()]
    assert all(store.NAME.match(n) or store.TEMPORARY.match(n) for n in names)
  assert served >= 1, "no answer before any kill"
  print(
    f"serve: {SLOW_KILLS} kills after {served} answers, "
    f"{hidden_left} temporaries left behind"
  )
  # The rerun: what the killed servers left is gone, and it serves.
  port, process = start_server(*flags)
  try:
    assert not [p for p in folder.iterdir()]
    status, _, answer = http_call(
      port, "POST", "/generate", {"num_notes": 8, "num_outputs": 2}
    )
    assert status == 200
    for melody in answer["melodies"]:
      assert http_call(port, "GET", melody["midi_url"])[0] == 200
    assert sorted(p.name for p in folder.iterdir()) == sorted(
      re.sub("^/files/", "", m["midi_url"]) for m in answer["melodies"]
    )
  finally:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
