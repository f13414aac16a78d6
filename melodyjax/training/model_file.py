"""A trained run as one file (`.mjx`): parameters, config, vocabularies.

A model file is a zip archive a reader can inspect without melodyjax:

  manifest.json         format version, melodyjax version, corpus, step,
                        validation bits per note, parameter count and dtype,
                        a SHA-256 of the parameters, every other member's
                        size and SHA-256, and one SHA-256 over all of it
  config.json           the run's resolved config
  vocab_pitch.json      the vocabularies, as in a workdir
  vocab_duration.json
  vocab_labels.json     the label vocabularies (absent in older files:
                        none known)
  params/<path>.npy     one array per parameter (`np.save`, no pickle);
                        bfloat16 arrays are stored as their uint16 bits

It is written atomically (`files.atomic_write`). `read` refuses a damaged,
edited or foreign file in one line that names the member: before anything
is decompressed it checks that the archive holds exactly the members the
manifest lists, each of its declared size (so no file makes the reader
allocate more than it declares), then each member's hash, the hash over the
manifest and the member hashes (`content_sha256`: a member changed by hand,
or the manifest, is found), then each member's content. Files of format 1
(no member hashes) are still read, with their parameter hash checked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import ml_collections
import numpy as np

from melodyjax import checks, errors, files
from melodyjax.data import labels as labels_lib
from melodyjax.music import tokens
from melodyjax.training import workdir as workdir_lib

FORMAT = "melodyjax-model"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SUFFIX = ".mjx"
MAX_MANIFEST_BYTES = 1 << 20
MAX_MEMBER_BYTES = 4 << 30  # a declared size above this is refused
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
  members = {
    workdir_lib.CONFIG_FILE: config.to_json(indent=2, sort_keys=True).encode(),
    **{
      f"vocab_{vocab.stream}.json": json.dumps(
        vocab.to_json(), indent=1
      ).encode()
      for vocab in (pitch_vocab, duration_vocab)
    },
  }
  if label_vocabs is not None:
    members[labels_lib.FILE] = json.dumps(
      label_vocabs.to_json(), indent=1
    ).encode()
  for name, value in stored.items():
    buffer = io.BytesIO()
    np.save(buffer, value, allow_pickle=False)
    members[f"{PARAMS_DIR}{name}.npy"] = buffer.getvalue()
  manifest["members"] = {
    name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    for name, data in members.items()
  }
  manifest["content_sha256"] = content_digest(manifest)
  with files.atomic_write(path, "wb") as f:
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
      archive.writestr(MANIFEST, json.dumps(manifest, indent=1) + "\n")
      for name, data in members.items():
        archive.writestr(name, data)
  return manifest


def content_digest(manifest: Mapping[str, Any]) -> str:
  """SHA-256 of the manifest's fields (member sizes and hashes included),
  without `content_sha256` itself, as canonical JSON."""
  fields = {k: v for k, v in manifest.items() if k != "content_sha256"}
  text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()


def _decode(value: np.ndarray, dtype: str) -> np.ndarray:
  if dtype == "float32":
    return value.astype(np.float32)
  import ml_dtypes

  return value.view(ml_dtypes.bfloat16).astype(np.float32)


def _refuse(path: str, why: str) -> errors.CheckpointError:
  return errors.CheckpointError(f"{path}: not a usable melodyjax model ({why})")


def read(path: str) -> ModelFile:
  """Reads and checks a model file (see the module docstring).

  Raises:
    CheckpointError: the file is missing, damaged, edited, foreign or of
      another format version; the message names the member.
  """
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(path):
    raise errors.CheckpointError(f"model file not found: {path}")
  try:
    with zipfile.ZipFile(path) as archive:
      manifest = _read_manifest(path, archive)
      if manifest["format_version"] == 1:
        data = {
          name: archive.read(name)
          for name in archive.namelist()
          if name != MANIFEST
        }
      else:
        data = _read_members(path, archive, manifest)
  except errors.CheckpointError:
    raise
  except (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    OSError,
    EOFError,
  ) as e:
    raise _refuse(path, f"{type(e).__name__}: {e}"[:200]) from None
  except (ValueError, RuntimeError, NotImplementedError) as e:
    # zipfile's own complaints about a broken archive (bad compression,
    # an encrypted member, a CRC mismatch).
    raise _refuse(path, f"{type(e).__name__}: {e}"[:200]) from None
  return _decode_members(path, manifest, data)


_MANIFEST_FIELDS = {"step": int, "dtype": str, "params_sha256": str}


def _read_manifest(path: str, archive: zipfile.ZipFile) -> dict[str, Any]:
  """The manifest, checked for its shape and version."""
  try:
    info = archive.getinfo(MANIFEST)
  except KeyError:
    raise _refuse(path, "no melodyjax manifest") from None
  if info.file_size > MAX_MANIFEST_BYTES:
    raise _refuse(path, f"{MANIFEST}: {info.file_size:,} bytes, too large")
  with archive.open(info) as f:
    text = f.read(MAX_MANIFEST_BYTES + 1)
  try:
    manifest = json.loads(text)
  except ValueError as e:
    raise _refuse(path, f"{MANIFEST}: not JSON ({e})") from None
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    raise _refuse(path, "no melodyjax manifest")
  version = manifest.get("format_version")
  if version not in READABLE_VERSIONS:
    raise _refuse(
      path,
      f"format version {version}, this melodyjax reads "
      f"{', '.join(map(str, READABLE_VERSIONS))}",
    )
  for field, kind in _MANIFEST_FIELDS.items():
    value = manifest.get(field)
    if not isinstance(value, kind) or isinstance(value, bool):
      raise _refuse(
        path, f"{MANIFEST}: {field} is missing or not {kind.__name__}"
      )
  if manifest["dtype"] not in DTYPES:
    raise _refuse(path, f"{MANIFEST}: dtype {manifest['dtype']!r}")
  if version >= 2 and manifest.get("content_sha256") != content_digest(
    manifest
  ):
    raise _refuse(path, f"{MANIFEST}: edited (its hash does not match)")
  return manifest


def _read_members(
  path: str, archive: zipfile.ZipFile, manifest: Mapping[str, Any]
) -> dict[str, bytes]:
  """Every member's bytes, each checked against its declared size before it
  is decompressed and against its hash after."""
  members = manifest.get("members")
  if not isinstance(members, dict) or not all(
    isinstance(entry, dict)
    and checks.is_int(entry.get("bytes"))
    and 0 <= entry["bytes"] <= MAX_MEMBER_BYTES
    and isinstance(entry.get("sha256"), str)
    for entry in members.values()
  ):
    raise _refuse(path, f"{MANIFEST}: its member list is malformed")
  names = set(archive.namelist()) - {MANIFEST}
  if names != set(members):
    extra, missing = sorted(names - set(members)), sorted(set(members) - names)
    what = f"unlisted member {extra[0]}" if extra else f"missing {missing[0]}"
    raise _refuse(path, what)
  data = {}
  for name, entry in members.items():
    info = archive.getinfo(name)
    if info.file_size != entry["bytes"]:
      raise _refuse(
        path,
        f"{name}: {info.file_size:,} bytes, the manifest says "
        f"{entry['bytes']:,}",
      )
    with archive.open(info) as f:
      content = f.read(entry["bytes"] + 1)
    if len(content) != entry["bytes"]:
      raise _refuse(path, f"{name}: not {entry['bytes']:,} bytes")
    if hashlib.sha256(content).hexdigest() != entry["sha256"]:
      raise _refuse(path, f"{name}: damaged or edited (its hash differs)")
    data[name] = content
  return data


def _member_json(path: str, data: Mapping[str, bytes], name: str) -> Any:
  if name not in data:
    raise _refuse(path, f"missing {name}")
  try:
    return json.loads(data[name])
  except ValueError as e:
    raise _refuse(path, f"{name}: not JSON ({e})") from None


def _decode_members(
  path: str, manifest: Mapping[str, Any], data: Mapping[str, bytes]
) -> ModelFile:
  """The ModelFile of checked member bytes; each malformed member named."""
  member = workdir_lib.CONFIG_FILE
  try:
    config = ml_collections.ConfigDict(
      workdir_lib.tuples(_member_json(path, data, member))
    )
    vocabs = []
    for stream in tokens.STREAMS:
      member = f"vocab_{stream}.json"
      vocabs.append(tokens.Vocab.from_json(_member_json(path, data, member)))
    label_vocabs = labels_lib.empty()
    if labels_lib.FILE in data:
      member = labels_lib.FILE
      label_vocabs = labels_lib.Labels.from_json(
        _member_json(path, data, member)
      )
    flat = {}
    for name, content in data.items():
      if name.startswith(PARAMS_DIR) and name.endswith(".npy"):
        member = name
        value = np.load(io.BytesIO(content), allow_pickle=False)
        flat[name[len(PARAMS_DIR) : -len(".npy")]] = _decode(
          value, manifest["dtype"]
        )
  except errors.CheckpointError:
    raise
  except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
    raise _refuse(path, f"{member}: {type(e).__name__}: {e}"[:200]) from None
  params = _unflatten(flat)
  if params_digest(params) != manifest["params_sha256"]:
    raise _refuse(path, "its parameters do not match their hash: damaged")
  config.lock()
  return ModelFile(config, vocabs[0], vocabs[1], params, manifest, label_vocabs)
