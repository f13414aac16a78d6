"""Conditioning and controls on ESAC: bits per note with and without each
condition, and the checks of each control's outcome.

  .venv/bin/python -m benchmarks.bench_controls [--runs runs/controls] \
      [--variants none,metre,mode,style,all] [--num_outputs 64]

Trains `configs/cpu.py` (1,500 steps) once per variant into RUNS/<variant>
(a finished run is reused): without conditions, with each one, with all
three; each on its own copy of the ESAC dataset
(~/.cache/melodyjax/datasets/esac_controls, format 2). Prints the test
bits per note of each at its best validation step (every event and eos of
every test song, from its start, as `melodyjax-evaluate`), then samples
the 'all' run with each control against a reference request (same seed)
and prints `evaluation.controls.control_checks` of both.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

if __name__ == "__main__":
  from melodyjax.cli import runtime

  runtime.reexec_with_fast_malloc()

from benchmarks import results, runs  # noqa: E402
from melodyjax import files  # noqa: E402
from melodyjax.evaluation import controls  # noqa: E402
from melodyjax.music import tonality  # noqa: E402
from melodyjax.sampling import generate, plan  # noqa: E402
from melodyjax.sampling import request as request_lib  # noqa: E402
from melodyjax.training import runs as runs_lib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET = files.cache_dir("datasets", "esac_controls")
VARIANTS = {
  "none": {},
  "metre": {"model.condition_metre": True},
  "mode": {"model.condition_mode": True},
  "style": {"model.condition_style": True},
  "all": {
    "model.condition_metre": True,
    "model.condition_mode": True,
    "model.condition_style": True,
  },
}
# (name, asked, reference, figures): each control against the same request
# without it (or with another value), same seed, both measured as asked.
CHECKS = (
  (
    "--time_signature=3/4",
    {"time_signature": "3/4"},
    {"time_signature": "4/4"},
    ("downbeat_share", "strong_on_beat_share"),
  ),
  (
    "--time_signature=6/8",
    {"time_signature": "6/8"},
    {"time_signature": "2/4"},
    ("downbeat_share", "strong_on_beat_share"),
  ),
  (
    "--mode=minor",
    {"mode": "minor"},
    {"mode": "major"},
    ("third_share", "mode_share"),
  ),
  ("--bars=8", {"bars": 8}, {}, ("bars_min", "bars_max")),
  ("--end_on_tonic", {"end_on_tonic": True}, {}, ("tonic_end_share",)),
  ("--key=D", {"key": "D"}, {}, ("key_share",)),
  (
    "--beam_size=4 --branch_factor=2",
    {"beam_size": 4, "branch_factor": 2},
    {},
    ("log_likelihood_per_event",),
  ),
  ("--best_of=8", {"best_of": 8}, {}, ("log_likelihood_per_event",)),
)


def measure(run, request, asked) -> dict[str, float]:
  """The control checks of `request`'s melodies as if `asked` had been
  requested (its metre, mode and key), and their log-likelihood per
  sampled event (nats; eos included)."""
  resolved = plan.make_plan(run, asked)
  mode = resolved.mode or tonality.MAJOR
  tonic = plan.NORMALISED_TONIC[mode]
  if resolved.key_tonic is not None:
    tonic = resolved.key_tonic
  melodies, scores = generate.generate_scored(run, request)
  out = controls.control_checks(
    melodies,
    signature=resolved.time_signature,
    grid=run.config.data.grid,
    tonic=tonic,
    mode=mode,
  )
  events = sum(len(m) for m in melodies) + len(melodies)
  out["log_likelihood_per_event"] = float(scores.sum() / events)
  return out


def print_checks(run, num_outputs: int) -> list:
  """The table of control checks; returns its figures."""
  base = request_lib.Request(num_outputs=num_outputs, num_notes=128, seed=1)
  figures = []
  print("| control | asked | reference (same seed) |\n|---|---|---|")
  for name, asked, reference, keys in CHECKS:
    wanted = dataclasses.replace(base, **asked)
    got = measure(run, wanted, wanted)
    ref = measure(run, dataclasses.replace(base, **reference), wanted)
    cells = [", ".join(f"{k} {d[k]:.3g}" for k in keys) for d in (got, ref)]
    print(f"| `{name}` | {cells[0]} | {cells[1]} |", flush=True)
    slug = name.strip("-").split("=")[0].split()[0]
    figures += [(f"controls_{slug}_{k}", got[k], "") for k in keys]
  return figures


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--runs", default=os.path.join(ROOT, "runs", "controls"))
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--num_outputs", type=int, default=64)
  parser.add_argument("--skip_checks", action="store_true")
  parser.add_argument("--out", default=results.DEFAULT_PATH)
  args = parser.parse_args()
  figures, rows = [], []
  for variant in args.variants.split(","):
    workdir = os.path.join(args.runs, variant)
    minutes = runs.train_main(
      "cpu", workdir, {"data.dataset_dir": DATASET, **VARIANTS[variant]}
    )
    bits = runs.test_bits(workdir)
    rows.append((variant, bits, minutes))
    print(
      f"{variant}: test {bits['bits_per_note']:.3f} bits/note (pitch "
      f"{bits['bits_per_note_pitch']:.3f}, duration "
      f"{bits['bits_per_note_duration']:.3f}); {minutes:.1f} min",
      flush=True,
    )
    figures += [
      (f"controls_{variant}_bits", bits["bits_per_note"], "bits/note"),
      (f"controls_{variant}_bits_pitch", bits["bits_per_note_pitch"], ""),
      (f"controls_{variant}_bits_duration", bits["bits_per_note_duration"], ""),
    ]
  print("| conditions | test bits/note | pitch | duration |\n|---|---|---|---|")
  for variant, bits, _ in rows:
    print(
      f"| {variant} | {bits['bits_per_note']:.3f} | "
      f"{bits['bits_per_note_pitch']:.3f} | "
      f"{bits['bits_per_note_duration']:.3f} |"
    )
  if not args.skip_checks:
    run = runs_lib.from_workdir(os.path.join(args.runs, "all"), "best")
    figures += print_checks(run, args.num_outputs)
  results.merge(args.out, figures)


if __name__ == "__main__":
  main()
