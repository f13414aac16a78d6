"""Golden run: the tokens, losses, parameters and samples of a tiny run.

The values in tests/golden/tiny_run.json were recorded before the package
moved into subpackages (issue 12), through the command-line entry points,
which that move keeps unchanged. Moving code must not change them. On the
CPU model they were recorded on, floats must agree to 1e-6 and sampled
tokens exactly; elsewhere XLA vectorizes differently, so floats are compared
to 2e-3 and samples are not compared.

To change the values on purpose (a change meant to alter the numbers):
  MELODYJAX_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
and say why in the commit message.
"""

import hashlib
import json
import os
import platform

import jax
import numpy as np
import pytest

from tests.helpers import PROJECT, final_params, run_python, write_tunes

GOLDEN = os.path.join(PROJECT, "tests", "golden", "tiny_run.json")
TRAIN_OVERRIDES = {
  "train.num_train_steps": 6,
  "train.log_every_steps": 2,
  "train.eval_every_steps": 3,
  "train.checkpoint_every_steps": 3,
  "train.sample_every_steps": 3,
  "data.valid_fraction": 0.15,
  "data.test_fraction": 0.1,
}
SAMPLE_FLAGS = (
  "--primer=C4:1 D4:0.5 E4:0.5",
  "--seed=3",
  "--num_outputs=3",
  "--num_notes=20",
  "--temperature=0.9",
  "--top_p=0.95",
  "--nowav",
  "--nopiano_roll",
)


def cpu_model() -> str:
  """The CPU model and its feature flags, as XLA:CPU compiles for them."""
  try:
    with open("/proc/cpuinfo") as f:
      info = f.read()
  except OSError:
    return platform.processor()
  first = info.split("\n\n")[0]  # processor 0
  fields = {
    key.strip(): value
    for key, _, value in (line.partition(":") for line in first.splitlines())
  }
  name = fields.get("model name", "").strip()
  flags = fields.get("flags", "").split()
  digest = hashlib.sha1(" ".join(sorted(flags)).encode()).hexdigest()[:12]
  return f"{name} [{digest}]"


def dataset_digest(dataset_dir) -> dict:
  out = {}
  with np.load(os.path.join(dataset_dir, "arrays.npz")) as npz:
    for name in sorted(npz.files):
      out[name] = hashlib.sha256(np.ascontiguousarray(npz[name])).hexdigest()
  for stream in ("pitch", "duration"):
    with open(os.path.join(dataset_dir, f"vocab_{stream}.json")) as f:
      out[f"vocab_{stream}"] = json.load(f)
  return out


def sidecar_tokens(folder) -> list:
  names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
  tokens = []
  for name in names:
    with open(os.path.join(folder, name)) as f:
      sidecar = json.load(f)
    tokens.append([sidecar["pitch"], sidecar["duration"]])
  return tokens


def record_run(tmp_path) -> dict:
  """Trains and samples through the mains; returns what the golden holds."""
  midi_dir = write_tunes(tmp_path / "midi", 48, 17)
  data_dir, workdir = tmp_path / "data", tmp_path / "run"
  result = run_python(
    "train_main.py",
    "--config=configs/tiny.py",
    f"--workdir={workdir}",
    f"--config.data.midi_dir={midi_dir}",
    f"--config.data.dataset_dir={data_dir}",
    *(f"--config.{k}={v}" for k, v in TRAIN_OVERRIDES.items()),
  )
  assert result.returncode == 0, result.stderr[-3000:]
  out_dir = tmp_path / "sampled"
  result = run_python(
    "sample_main.py",
    f"--workdir={workdir}",
    f"--output_dir={out_dir}",
    *SAMPLE_FLAGS,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = []
  with open(workdir / "metrics.jsonl") as f:
    for line in f:
      record = json.loads(line)
      kept = {
        k: v
        for k, v in record.items()
        if k.split("/")[0] in ("train", "eval")
        and "per_second" not in k
        and "seconds" not in k
      }
      if kept:
        metrics.append({"step": record["step"], **kept})
  state, _ = final_params(workdir)
  params = {
    jax.tree_util.keystr(path): [
      float(np.sum(leaf, dtype=np.float64)),
      float(np.sqrt(np.sum(np.square(leaf, dtype=np.float64)))),
    ]
    for path, leaf in jax.tree_util.tree_flatten_with_path(
      jax.device_get(state.params)
    )[0]
  }
  return {
    "cpu": cpu_model(),
    "dataset": dataset_digest(data_dir),
    "metrics": metrics,
    "params": params,
    "samples": {
      "train_step_3": sidecar_tokens(workdir / "samples" / "3"),
      "train_step_6": sidecar_tokens(workdir / "samples" / "6"),
      "sample_main": sidecar_tokens(out_dir),
    },
  }


def test_tiny_run_matches_the_golden_values(tmp_path):
  got = record_run(tmp_path)
  if os.environ.get("MELODYJAX_UPDATE_GOLDEN"):
    with open(GOLDEN, "w") as f:
      json.dump(got, f, indent=1, sort_keys=True)
      f.write("\n")
    pytest.skip(f"golden values rewritten: {GOLDEN}")
  with open(GOLDEN) as f:
    want = json.load(f)
  hint = (
    "the tiny run no longer gives its golden values; if that is meant, "
    "rerun with MELODYJAX_UPDATE_GOLDEN=1 and say why in the commit"
  )
  assert got["dataset"] == want["dataset"], "tokens changed: " + hint
  same_cpu = got["cpu"] == want["cpu"]
  rtol = 1e-6 if same_cpu else 2e-3
  assert [m["step"] for m in got["metrics"]] == [
    m["step"] for m in want["metrics"]
  ]
  for g, w in zip(got["metrics"], want["metrics"], strict=True):
    assert set(g) == set(w), hint
    for key in w:
      np.testing.assert_allclose(g[key], w[key], rtol=rtol, err_msg=key)
  assert set(got["params"]) == set(want["params"]), hint
  for name, values in want["params"].items():
    np.testing.assert_allclose(
      got["params"][name], values, rtol=rtol, atol=1e-6, err_msg=name
    )
  if same_cpu:
    assert got["samples"] == want["samples"], "samples changed: " + hint
