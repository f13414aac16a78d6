"""A trained run as one file (`.mjx`): parameters, config, vocabularies.

A model file is a zip archive a reader can inspect without melodyjax:

  manifest.json         format version, melodyjax version, corpus, step,
                        validation bits per note, parameter count and dtype,
                        and a SHA-256 of the parameters
  config.json           the run's resolved config
  vocab_pitch.json      the vocabularies, as in a workdir
  vocab_duration.json
  vocab_labels.json     the label vocabularies (absent in older files:
                        none known)
  params/<path>.npy     one array per parameter (`np.save`, no pickle);
                        bfloat16 arrays are stored as their uint16 bits

It is written atomically (`files.atomic_write`). `read` checks the format
version and the hash, and refuses a damaged or foreign file in one line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import ml_collections
import numpy as np

from melodyjax import errors, files
from melodyjax.data import labels as labels_lib
from melodyjax.music import tokens
from melodyjax.training import workdir as workdir_lib

FORMAT = "melodyjax-model"
FORMAT_VERSION = 1
SUFFIX = ".mjx"
DTYPES = ("float32", "bfloat16")
MANIFEST = "manifest.json"
PARAMS_DIR = "params/"


@dataclasses.dataclass(frozen=True)
class ModelFile:
  """What a model file holds.

  Attributes:
    config: the run's config (locked ConfigDict).
    pitch_vocab, duration_vocab: the vocabularies.
    params: nested dict of float32 numpy arrays (Flax parameter tree).
    manifest: the manifest (step, corpus, bits per note, hash, ...).
    labels: the label vocabularies.
  """

  config: ml_collections.ConfigDict
  pitch_vocab: tokens.Vocab
  duration_vocab: tokens.Vocab
  params: dict[str, Any]
  manifest: Mapping[str, Any]
  labels: labels_lib.Labels = dataclasses.field(
    default_factory=labels_lib.empty
  )

  @property
  def step(self) -> int:
    return int(self.manifest["step"])


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for key in sorted(tree):
    value = tree[key]
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(_flatten(value, name + "/"))
    else:
      out[name] = np.asarray(value)
  return out


def _unflatten(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split("/")
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree


def params_digest(params: Mapping[str, Any]) -> str:
  """SHA-256 over every parameter's name, dtype, shape and float32 bytes."""
  digest = hashlib.sha256()
  for name, value in _flatten(params).items():
    value = np.ascontiguousarray(value, np.float32)
    digest.update(f"{name}|{value.shape}|".encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


def _melodyjax_version() -> str:
  try:
    return metadata.version("melodyjax")
  except metadata.PackageNotFoundError:
    return "unknown"


def write(
  path: str,
  *,
  config: ml_collections.ConfigDict,
  pitch_vocab: tokens.Vocab,
  duration_vocab: tokens.Vocab,
  params: Mapping[str, Any],
  step: int,
  bits_per_note: float | None = None,
  dtype: str = "float32",
  label_vocabs: labels_lib.Labels | None = None,
) -> dict[str, Any]:
  """Writes a model file; returns its manifest.

  Args:
    path: the file to write (`.mjx`), replaced atomically.
    config, pitch_vocab, duration_vocab: the run's.
    params: the parameter tree (float32).
    step: the checkpoint's optimizer step.
    bits_per_note: the step's validation bits per note, if logged.
    dtype: 'float32', or 'bfloat16' (half the size; parameters are
      rounded, so samples may differ from the float32 run's).
    label_vocabs: the run's label vocabularies.
  """
  if dtype not in DTYPES:
    raise errors.UsageError(f"--dtype must be one of {DTYPES}, got {dtype!r}")
  import ml_dtypes

  flat = _flatten(params)
  stored = {
    name: (
      value.astype(np.float32)
      if dtype == "float32"
      else value.astype(ml_dtypes.bfloat16).view(np.uint16)
    )
    for name, value in flat.items()
  }
  restored = {name: _decode(value, dtype) for name, value in stored.items()}
  manifest = {
    "format": FORMAT,
    "format_version": FORMAT_VERSION,
    "melodyjax_version": _melodyjax_version(),
    "corpus": os.path.basename(
      os.path.normpath(os.path.expanduser(config.data.midi_dir))
    ),
    "step": int(step),
    "valid_bits_per_note": bits_per_note,
    "num_params": int(sum(v.size for v in flat.values())),
    "dtype": dtype,
    "params_sha256": params_digest(_unflatten(restored)),
  }
  with files.atomic_write(path, "wb") as f:
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
      archive.writestr(MANIFEST, json.dumps(manifest, indent=1) + "\n")
      archive.writestr(
        workdir_lib.CONFIG_FILE, config.to_json(indent=2, sort_keys=True)
      )
      for vocab in (pitch_vocab, duration_vocab):
        archive.writestr(
          f"vocab_{vocab.stream}.json", json.dumps(vocab.to_json(), indent=1)
        )
      if label_vocabs is not None:
        archive.writestr(
          labels_lib.FILE, json.dumps(label_vocabs.to_json(), indent=1)
        )
      for name, value in stored.items():
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        archive.writestr(f"{PARAMS_DIR}{name}.npy", buffer.getvalue())
  return manifest


def _decode(value: np.ndarray, dtype: str) -> np.ndarray:
  if dtype == "float32":
    return value.astype(np.float32)
  import ml_dtypes

  return value.view(ml_dtypes.bfloat16).astype(np.float32)


def _refuse(path: str, why: str) -> errors.CheckpointError:
  return errors.CheckpointError(f"{path}: not a usable melodyjax model ({why})")


def read(path: str) -> ModelFile:
  """Reads and checks a model file.

  Raises:
    CheckpointError: the file is missing, damaged, foreign, of another
      format version, or its parameters do not match their hash.
  """
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(path):
    raise errors.CheckpointError(f"model file not found: {path}")
  try:
    with zipfile.ZipFile(path) as archive:
      if MANIFEST not in archive.namelist():
        raise _refuse(path, "no melodyjax manifest")
      manifest = json.loads(archive.read(MANIFEST))
      if manifest.get("format") != FORMAT:
        raise _refuse(path, "no melodyjax manifest")
      if manifest.get("format_version") != FORMAT_VERSION:
        raise _refuse(
          path,
          f"format version {manifest.get('format_version')}, this melodyjax "
          f"reads {FORMAT_VERSION}",
        )
      config = ml_collections.ConfigDict(
        workdir_lib.tuples(json.loads(archive.read(workdir_lib.CONFIG_FILE)))
      )
      vocabs = [
        tokens.Vocab.from_json(json.loads(archive.read(f"vocab_{s}.json")))
        for s in tokens.STREAMS
      ]
      label_vocabs = (
        labels_lib.Labels.from_json(json.loads(archive.read(labels_lib.FILE)))
        if labels_lib.FILE in archive.namelist()
        else labels_lib.empty()
      )
      flat = {}
      for name in archive.namelist():
        if name.startswith(PARAMS_DIR) and name.endswith(".npy"):
          value = np.load(io.BytesIO(archive.read(name)), allow_pickle=False)
          flat[name[len(PARAMS_DIR) : -len(".npy")]] = _decode(
            value, manifest.get("dtype", "float32")
          )
  except errors.CheckpointError:
    raise
  except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
    raise _refuse(path, f"{type(e).__name__}: {e}"[:200]) from None
  params = _unflatten(flat)
  if params_digest(params) != manifest.get("params_sha256"):
    raise _refuse(path, "its parameters do not match their hash: damaged")
  config.lock()
  return ModelFile(config, vocabs[0], vocabs[1], params, manifest, label_vocabs)
