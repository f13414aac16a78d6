"""Files a kill cannot leave half-written, readers that expect a cut, and
the cache folder.

Every file the project writes goes through `atomic_write`: the data goes to
a hidden temporary file beside the target (`.NAME.PID.tmp`), which is then
renamed over it, so a reader sees the old file or the new one, never a part.
A file that is appended to instead (a metrics log) can be cut by a kill in
its last line; `read_jsonl` skips such a line.

Every JSON text the project writes is strict JSON (`to_json`): NaN and
infinity are refused, not written as the `NaN` that strict readers reject;
where a value may legitimately be undefined (a statistic of no data), the
writer turns it into null first (`finite_or_null`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
from collections.abc import Iterator
from typing import IO, Any

TMP_SUFFIX = ".tmp"
CACHE_ENV = "MELODYJAX_CACHE"
DEFAULT_CACHE = os.path.join("~", ".cache", "melodyjax")


def cache_dir(*parts: str) -> str:
  """The one place that decides where melodyjax caches what it derives
  (converted corpora, datasets, compiled kernels, baseline tables):
  `$MELODYJAX_CACHE` if set, else `~/.cache/melodyjax`, then `parts`.

  Returns:
    An absolute path (`~` expanded); nothing is created.
  """
  root = os.environ.get(CACHE_ENV) or DEFAULT_CACHE
  return os.path.abspath(os.path.join(os.path.expanduser(root), *parts))


def temporary_path(path: str | os.PathLike) -> str:
  """The hidden temporary name `atomic_write` writes `path` under."""
  folder, name = os.path.split(os.fspath(path))
  return os.path.join(folder, f".{name}.{os.getpid()}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
  """Opens a temporary file that replaces `path` when the block ends.

  Args:
    path: the file to (re)write.
    mode: 'w' (text, UTF-8) or 'wb'.

  Yields:
    The open temporary file. If the block raises, it is removed and `path`
    is left as it was.
  """
  tmp = temporary_path(path)
  encoding = None if "b" in mode else "utf-8"
  try:
    with open(tmp, mode, encoding=encoding) as f:
      yield f
    os.replace(tmp, path)
  except BaseException as e:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    if isinstance(e, OSError) and e.errno and e.filename != os.fspath(path):
      # Name the file the caller wrote, not the hidden temporary one.
      raise type(e)(e.errno, e.strerror, os.fspath(path)) from e
    raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` to `path` atomically."""
  with atomic_write(path, "wb") as f:
    f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
  """Writes `text` to `path` atomically, UTF-8."""
  with atomic_write(path) as f:
    f.write(text)


def to_json(
  data: Any, *, indent: int | None = None, sort_keys: bool = False
) -> str:
  """`data` as strict JSON text.

  Raises:
    ValueError: `data` holds NaN or an infinity (strict JSON has neither;
      see `finite_or_null`).
  """
  return json.dumps(data, indent=indent, sort_keys=sort_keys, allow_nan=False)


def finite_or_null(data: Any) -> Any:
  """`data` with every NaN or infinite float (numpy's too) as None."""
  if isinstance(data, dict):
    return {k: finite_or_null(v) for k, v in data.items()}
  if isinstance(data, list | tuple):
    return [finite_or_null(v) for v in data]
  if isinstance(data, float) and not math.isfinite(data):
    return None
  if hasattr(data, "dtype") and hasattr(data, "item") and data.ndim == 0:
    return finite_or_null(data.item())
  return data


def write_json(
  path: str | os.PathLike,
  data: Any,
  *,
  indent: int | None = 1,
  sort_keys: bool = False,
) -> None:
  """Writes `data` as strict JSON (and a final newline) to `path` atomically.

  Raises:
    ValueError: `data` holds NaN or an infinity; `path` is not touched.
  """
  try:
    text = to_json(data, indent=indent, sort_keys=sort_keys)
  except ValueError as e:
    raise ValueError(f"{os.fspath(path)}: {e}") from None
  with atomic_write(path) as f:
    f.write(text + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
  """The records of a JSON-lines file, [] if it does not exist.

  A line that is not JSON (the last one, cut by a kill during a write) is
  skipped.
  """
  if not os.path.exists(path):
    return []
  records = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return records


NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_TEXTS = ("No space left on device", "Disk quota exceeded")
# How tensorstore (under Orbax) names the file it failed to write.
_QUOTED_FILE = re.compile(r'(?:local file|Failed writing:) "([^"]+)"')


def no_space(error: BaseException | None) -> str | None:
  """Whether `error` says the disk (or quota) is full, and which file.

  Looks along the error's chain (`__cause__`, `__context__`) for an OSError
  with ENOSPC or EDQUOT, or a library's error that quotes one (Orbax's
  tensorstore raises ValueError: RESOURCE_EXHAUSTED ... No space left on
  device).

  Returns:
    None for any other error; else the file it was writing ('' when the
    error names none).
  """
  seen, found = set(), None
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
      if error.filename:
        return os.fsdecode(error.filename)
      found = ""
    text = str(error)
    if any(marker in text for marker in _NO_SPACE_TEXTS):
      quoted = _QUOTED_FILE.search(text)
      if quoted:
        return quoted.group(1)
      found = ""
    error = error.__cause__ or error.__context__
  return found


def reason(error: OSError) -> str:
  """A short reason for an OSError, for one-line messages."""
  if error.errno in (errno.EACCES, errno.EPERM):
    return "permission denied"
  if error.errno == errno.EROFS:
    return "read-only file system"
  if error.errno in NO_SPACE_ERRNOS:
    return "no space left on device"
  if error.errno == errno.ENAMETOOLONG:
    return "file name too long"
  return error.strerror or str(error)


def format_bytes(size: float) -> str:
  """1536 -> '1.5 KiB'."""
  for unit in ("B", "KiB", "MiB", "GiB"):
    if size < 1024 or unit == "GiB":
      return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
    size /= 1024
  raise AssertionError("unreachable")
