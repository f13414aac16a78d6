"""How much the per-path split leaked: held-out songs with a copy or a
variant (a member of their `data.groups` group) in the training split.

  .venv/bin/python -m benchmarks.bench_splits --midi_dir CACHE/esac_midi \
      [--grid 12]

Reads every MIDI file of the folder, groups the songs as the build does,
splits each by the hash of its own path (the rule before groups) and counts
the test and validation songs whose group has a training song.
"""

from __future__ import annotations

import argparse
import os

from melodyjax import files
from melodyjax.data import dataset, groups, tokenize
from melodyjax.data.config import CorpusConfig
from melodyjax.music import midi_io


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--midi_dir", default=files.cache_dir("esac_midi"))
  parser.add_argument("--grid", type=int, default=12)
  args = parser.parse_args()
  midi_dir = os.path.expanduser(args.midi_dir)
  config = CorpusConfig(grid=args.grid)
  names, fingerprints = [], []
  for relpath in tokenize.list_midi_files(midi_dir):
    try:
      song = midi_io.read_midi(os.path.join(midi_dir, relpath), grid=args.grid)
    except midi_io.MidiError:
      continue
    names.append(relpath)
    fingerprints.append(groups.fingerprint(song.events))
  group, links = groups.group_songs(fingerprints, [None] * len(names))
  split = [dataset.assign_split(name, config) for name in names]
  in_train = {g for g, s in zip(group, split, strict=True) if s == "train"}
  print(f"{len(names)} songs, {len(set(group))} groups, links {links}")
  for held_out in ("test", "valid"):
    members = [g for g, s in zip(group, split, strict=True) if s == held_out]
    leaked = sum(g in in_train for g in members)
    print(
      f"{held_out}: {leaked} of {len(members)} songs have a copy or a "
      "variant in train under the path hash"
    )


if __name__ == "__main__":
  main()
