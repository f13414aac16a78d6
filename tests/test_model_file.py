"""One-file models (.mjx): export, sample anywhere, refuse damaged files."""

import hashlib
import io
import json
import os
import re
import shutil
import zipfile

import numpy as np
import pytest

from melodyjax import errors
from melodyjax.cli import export
from melodyjax.cli import sample as sample_cli
from melodyjax.sampling import generate
from melodyjax.sampling import request as request_lib
from melodyjax.training import model_file, runs
from tests.helpers import PROJECT, final_params, run_python


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


def test_damaged_or_foreign_files_are_refused_in_one_line(
  exported, tmp_path, capsys
):
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
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
      sample_cli.main([f"--model={path}", f"--output_dir={tmp_path / 'x'}"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1, lines
    assert (
      lines[0].startswith("sample_main.py: error: ") and str(path) in lines[0]
    )
  assert not (tmp_path / "x").exists()


def rewrite(source, target, change):
  """A copy of a model file with `change(name, bytes) -> bytes | None`
  applied to each member (None leaves it out)."""
  with (
    zipfile.ZipFile(source) as old,
    zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new,
  ):
    for item in old.infolist():
      content = change(item.filename, old.read(item))
      if content is not None:
        new.writestr(item.filename, content)
  return target


def _swap_two_pitches(data: bytes) -> bytes:
  vocab = json.loads(data)
  tokens = vocab["tokens"]
  i, j = len(tokens) - 2, len(tokens) - 1
  tokens[i], tokens[j] = tokens[j], tokens[i]
  return json.dumps(vocab, indent=1).encode()


def _edit_json(field, value):
  def edit(data: bytes) -> bytes:
    loaded = json.loads(data)
    loaded[field] = value
    return json.dumps(loaded, indent=1).encode()

  return edit


# Each member edited by hand (or damaged): what the one line names.
TAMPERING = {
  "manifest-list": ("manifest.json", lambda d: b"[1, 2]", "no melodyjax"),
  "manifest-step": (
    "manifest.json",
    _edit_json("step", 12),
    "manifest.json: edited",
  ),
  "manifest-members": (
    "manifest.json",
    _edit_json("members", [1]),
    "manifest.json: edited",
  ),
  "config-edited": (
    "config.json",
    lambda d: d.replace(b'"seed": 0', b'"seed": 1'),
    "config.json: damaged or edited",
  ),
  "vocab-swapped": (
    "vocab_pitch.json",
    _swap_two_pitches,
    "vocab_pitch.json: damaged or edited",
  ),
  "duration-vocab-edited": (
    "vocab_duration.json",
    lambda d: d + b" ",
    "vocab_duration.json: [0-9,]+ bytes, the manifest says",
  ),
  "labels-removed": ("vocab_labels.json", lambda d: None, "missing"),
  "param-edited": (
    "params/pitch_head/bias.npy",
    lambda d: d[:-4] + b"\0\0\0\0",
    "params/pitch_head/bias.npy: damaged or edited",
  ),
  "member-added": ("extra.txt", None, "unlisted member extra.txt"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_every_member_edited_or_damaged_is_found(exported, tmp_path, case):
  member, change, message = TAMPERING[case]
  target = tmp_path / f"{case}.mjx"
  if change is None:  # a member the manifest does not list
    rewrite(exported, target, lambda name, data: data)
    with zipfile.ZipFile(target, "a") as archive:
      archive.writestr(member, "x")
  else:
    rewrite(
      exported,
      target,
      lambda name, data: change(data) if name == member else data,
    )
  with pytest.raises(errors.CheckpointError, match=message) as caught:
    runs.from_model_file(str(target))
  assert "\n" not in str(caught.value) and str(target) in str(caught.value)


def test_every_tampering_case_is_catalogued():
  with open(os.path.join(PROJECT, "docs", "errors.md")) as f:
    text = f.read().split("## Model files edited or damaged")[1]
    section = text.split("\n## ")[0]  # up to the next section
  ids = re.findall(r"^\| `([\w-]+)` \|", section, re.M)
  assert ids == [*TAMPERING, "member-bomb"]


def test_a_member_larger_than_declared_is_refused_before_reading(
  exported, tmp_path
):
  """A member whose data inflates far past the size its manifest declares
  (a zip bomb under an honest manifest) is refused from the zip's own
  header, and never read past the declared size."""
  with zipfile.ZipFile(exported) as archive:
    manifest = json.loads(archive.read("manifest.json"))
  name = "params/pitch_head/bias.npy"
  bomb = b"\0" * (64 << 20)  # 64 MiB of zeros, a few KB compressed
  target = rewrite(
    exported, tmp_path / "bomb.mjx", lambda n, d: bomb if n == name else d
  )
  assert target.stat().st_size < 1 << 20
  with pytest.raises(errors.CheckpointError, match="the manifest says"):
    runs.from_model_file(str(target))
  assert manifest["members"][name]["bytes"] < 1 << 16


def test_the_manifest_covers_every_member_and_itself(exported):
  with zipfile.ZipFile(exported) as archive:
    names = set(archive.namelist()) - {"manifest.json"}
    manifest = json.loads(archive.read("manifest.json"))
    for name, entry in manifest["members"].items():
      data = archive.read(name)
      assert entry == {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
      }
  assert set(manifest["members"]) == names
  assert manifest["content_sha256"] == model_file.content_digest(manifest)


def test_format_1_files_are_still_read(exported, tmp_path):
  """A file written before the member hashes: the parameters' hash only."""

  def downgrade(name, data):
    if name != "manifest.json":
      return data
    manifest = json.loads(data)
    del manifest["members"], manifest["content_sha256"]
    manifest["format_version"] = 1
    return json.dumps(manifest).encode()

  old = rewrite(exported, tmp_path / "v1.mjx", downgrade)
  assert runs.from_model_file(str(old)).step == 10


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
