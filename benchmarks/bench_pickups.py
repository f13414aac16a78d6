"""Pickups of ESAC tunes: the ABC text and the onset rule against music21.

  .venv/bin/python -m benchmarks.bench_pickups [--tunes 600] [--seed 0]

Draws tunes at random from music21's ESAC files, takes music21's pickup
(the padding of the first measure of the parsed score, as the conversion
records it) as the truth, and counts how often `esac.abc_pickup`
(from the ABC text) and `metre.song_metre`'s onset rule (from the
converted MIDI file in ~/.cache/melodyjax/esac_midi, as `make run` writes
it) give the same length. About a minute for 600 tunes (music21 parses).
"""

from __future__ import annotations

import argparse
import os
import random

from melodyjax.data.corpora import (
  abc_text,
  builtin,
  esac,
  music21_abc,
)
from melodyjax.music import metre, midi_io


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tunes", type=int, default=600)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--midi_dir", default=str(builtin.default_midi_dir()))
  args = parser.parse_args()
  tunes = [
    t for f in builtin.find_abc_files() for t in abc_text.read_abc_tunes(f)
  ]
  sample = random.Random(args.seed).sample(tunes, args.tunes)
  counts = dict.fromkeys(("meter", "pickup", "abc", "midi", "zero"), 0)
  for tune in sample:
    score = music21_abc.parse_abc_tune(tune.text)
    music21_abc.prepare_score_for_midi(score)
    truth = music21_abc._pickup_quarters(score)
    hint = esac.abc_pickup(tune.text)
    path = os.path.join(args.midi_dir, tune.relpath)
    if hint is None or not os.path.exists(path):
      continue
    counts["meter"] += 1
    counts["pickup"] += truth > 0
    counts["zero"] += truth == 0
    counts["abc"] += float(hint) == truth
    found = metre.song_metre(midi_io.read_midi(path), 12)
    counts["midi"] += found.pickup_steps == round(truth * 12)
  n = counts["meter"]
  print(
    f"{n} tunes with a meter ({counts['pickup']} with a pickup): ABC text "
    f"{counts['abc']}/{n}, onset rule {counts['midi']}/{n} "
    f"({100 * counts['midi'] / n:.0f}%), no pickup {counts['zero']}/{n}"
  )


if __name__ == "__main__":
  main()
