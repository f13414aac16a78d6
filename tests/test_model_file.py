"""One-file models (.mjx): export, sample anywhere, refuse damaged files."""

import io
import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from melodyjax import errors
from melodyjax.cli import export
from melodyjax.sampling import generate
from melodyjax.sampling import request as request_lib
from melodyjax.training import model_file, runs
from tests.helpers import final_params, run_python


@pytest.fixture(scope="module")
def exported(workdir, tmp_path_factory):
  path = tmp_path_factory.mktemp("model") / "tiny.mjx"
  assert (
    export.main([f"--workdir={workdir}", "--step=latest", f"--out={path}"]) == 0
  )
  return path


def test_the_file_is_an_inspectable_zip_without_pickle(exported, workdir):
  with zipfile.ZipFile(exported) as archive:
    names = set(archive.namelist())
    manifest = json.loads(archive.read("manifest.json"))
    arrays = {
      name: np.load(io.BytesIO(archive.read(name)), allow_pickle=False)
      for name in names
      if name.endswith(".npy")
    }
  assert {"config.json", "vocab_pitch.json", "vocab_duration.json"} <= names
  assert manifest["format_version"] == model_file.FORMAT_VERSION
  assert manifest["step"] == 10 and manifest["dtype"] == "float32"
  assert manifest["num_params"] == sum(a.size for a in arrays.values())
  assert isinstance(manifest["valid_bits_per_note"], float)
  state, _ = final_params(workdir)
  kernel = np.asarray(state.params["pitch_head"]["kernel"])
  np.testing.assert_array_equal(arrays["params/pitch_head/kernel.npy"], kernel)


def test_sampling_the_file_gives_the_workdirs_melodies(
  exported, workdir, tmp_path
):
  # Elsewhere: a copy of the file only, no corpus, no checkpoints.
  alone = tmp_path / "elsewhere" / "tiny.mjx"
  alone.parent.mkdir()
  shutil.copy(exported, alone)
  flags = ["--seed=7", "--num_outputs=3", "--num_notes=20", "--temperature=0.9"]
  for name, source in (
    ("a", f"--workdir={workdir}"),
    ("b", f"--model={alone}"),
  ):
    result = run_python(
      "sample_main.py", source, f"--output_dir={tmp_path / name}", *flags
    )
    assert result.returncode == 0, result.stderr
  written = sorted(os.listdir(tmp_path / "a"))
  assert written == sorted(os.listdir(tmp_path / "b"))
  for name in written:
    if name.endswith((".mid", ".wav")):
      assert (tmp_path / "a" / name).read_bytes() == (
        tmp_path / "b" / name
      ).read_bytes(), name
  sidecar = json.loads((tmp_path / "b" / "sample_10_0.json").read_text())
  assert sidecar["model"] == str(alone) and sidecar["workdir"] is None


def test_bfloat16_is_half_the_parameters_and_still_samples(workdir, tmp_path):
  path = tmp_path / "half.mjx"
  assert (
    export.main([f"--workdir={workdir}", f"--out={path}", "--dtype=bfloat16"])
    == 0
  )
  run = runs.from_model_file(str(path))
  state, _ = final_params(workdir)
  kernel = np.asarray(state.params["pitch_head"]["kernel"])
  got = run.params["pitch_head"]["kernel"]
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, kernel, rtol=1 / 128)
  melodies = generate.generate(
    run, request_lib.Request(num_outputs=2, num_notes=8)
  )
  assert all(melodies)


def damaged_copies(exported, tmp_path):
  data = exported.read_bytes()
  flipped = bytearray(data)
  with zipfile.ZipFile(exported) as archive:
    info = archive.getinfo("params/pitch_head/kernel.npy")
  # A byte in the middle of that array's compressed data.
  at = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
  flipped[at] ^= 0xFF
  other_version = tmp_path / "future.mjx"
  with (
    zipfile.ZipFile(exported) as source,
    zipfile.ZipFile(other_version, "w") as target,
  ):
    for item in source.infolist():
      content = source.read(item)
      if item.filename == "manifest.json":
        manifest = json.loads(content)
        manifest["format_version"] = 99
        content = json.dumps(manifest).encode()
      target.writestr(item, content)
  foreign = tmp_path / "foreign.mjx"
  with zipfile.ZipFile(foreign, "w") as archive:
    archive.writestr("hello.txt", "not a model")
  cases = {
    "truncated": data[: len(data) // 2],
    "flipped": bytes(flipped),
    "text": b"hello",
  }
  for name, content in cases.items():
    (tmp_path / f"{name}.mjx").write_bytes(content)
  return {
    **{name: tmp_path / f"{name}.mjx" for name in cases},
    "future": other_version,
    "foreign": foreign,
  }


def test_damaged_or_foreign_files_are_refused_in_one_line(exported, tmp_path):
  expected = {
    "truncated": "not a usable melodyjax model",
    "flipped": "not a usable melodyjax model",
    "text": "not a usable melodyjax model",
    "future": "format version 99",
    "foreign": "no melodyjax manifest",
  }
  for name, path in damaged_copies(exported, tmp_path).items():
    with pytest.raises(errors.CheckpointError, match=expected[name]):
      runs.from_model_file(str(path))
    result = run_python(
      "sample_main.py", f"--model={path}", f"--output_dir={tmp_path / 'x'}"
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert (
      lines[0].startswith("sample_main.py: error: ") and str(path) in lines[0]
    )
  assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
  "args, message",
  [
    (["--out={tmp}/m.zip"], "--out must end with .mjx"),
    (["--out={tmp}/no/such/m.mjx"], "--out: no folder"),
    (["--out={tmp}/m.mjx", "--step=12345"], "no checkpoint at step 12345"),
    (["--out={tmp}/m.mjx", "--dtype=float16"], "--dtype"),
  ],
)
def test_export_mistakes_are_one_line(workdir, tmp_path, args, message):
  args = [a.format(tmp=tmp_path) for a in args]
  result = run_python(
    "-m", "melodyjax.cli.export", f"--workdir={workdir}", *args
  )
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1, result.stderr
  assert message in lines[0], lines[0]
  assert not any(p.suffix == ".mjx" for p in tmp_path.iterdir())


def test_sample_needs_exactly_one_source(exported, workdir, tmp_path):
  for args in ([], [f"--workdir={workdir}", f"--model={exported}"]):
    result = run_python("sample_main.py", *args)
    assert result.returncode == 2
    assert "--workdir is required (or --model" in result.stderr
  result = run_python("sample_main.py", f"--model={exported}", "--step=5")
  assert (
    result.returncode == 2 and "--step applies to --workdir" in result.stderr
  )


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_a_killed_export_leaves_no_partial_file(workdir, tmp_path, signal_name):
  import signal
  import subprocess
  import sys
  import time

  out = tmp_path / "killed.mjx"
  for delay in (0.5, 2.0, 4.0):  # before, during and after the write
    process = subprocess.Popen(
      [
        sys.executable,
        "-m",
        "melodyjax.cli.export",
        f"--workdir={workdir}",
        f"--out={out}",
      ],
      stderr=subprocess.PIPE,
      text=True,
    )
    time.sleep(delay)
    process.send_signal(getattr(signal, signal_name))
    _, err = process.communicate(timeout=120)
    if out.exists():  # complete, or not there at all
      assert runs.from_model_file(str(out)).step == 10
      out.unlink()
    if signal_name == "SIGTERM" and process.returncode == 143:
      assert err.strip().splitlines() == [
        "melodyjax-export: terminated (SIGTERM); the files written are complete"
      ]
      assert not list(tmp_path.glob(".*.tmp"))
