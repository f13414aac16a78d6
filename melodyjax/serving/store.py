"""The files the server makes (each answer's MIDI), handed out by name.

Only names this server process wrote are served (`GET /files/NAME`): any
other name or path is 404, traversal included, and nothing outside the
store's folder is ever opened. Each file is written whole (a hidden
temporary, then a rename), the folder keeps the newest `max_files`, and a
start removes what an earlier server left there (a kill's temporaries
included), and nothing else.
"""

from __future__ import annotations

import collections
import os
import re
import secrets
import shutil
import tempfile

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route

from melodyjax import files

SUFFIXES = (".mid", ".abc", ".wav")
NAME = re.compile(r"[0-9a-f]{32}\.(mid|abc|wav)\Z")
# What files.atomic_write leaves when a kill lands before its rename.
TEMPORARY = re.compile(
  r"\.[0-9a-f]{32}\.(mid|abc|wav)\.\d+" + re.escape(files.TMP_SUFFIX) + r"\Z"
)
MEDIA_TYPES = {
  ".mid": "audio/midi",
  ".abc": "text/vnd.abc",
  ".wav": "audio/wav",
}


class FileStore:
  """A folder of files the server wrote, with the names it handed out.

  Args:
    folder: where the files go (None: a new temporary folder, removed by
      `close`).
    max_files: files kept; the oldest goes when a new one passes it.
  """

  def __init__(self, folder: str | None = None, max_files: int = 1024):
    self._own = folder is None
    if folder is None:
      folder = tempfile.mkdtemp(prefix="melodyjax-serve-")
    os.makedirs(folder, exist_ok=True)
    self.folder = os.path.realpath(folder)
    self.max_files = max_files
    self.failed = 0
    self._names: collections.OrderedDict[str, None] = collections.OrderedDict()
    self.removed = self._remove_leftovers()

  def _remove_leftovers(self) -> int:
    """Removes an earlier server's files and temporaries; how many."""
    removed = 0
    for name in os.listdir(self.folder):
      if NAME.match(name) or TEMPORARY.match(name):
        try:
          os.remove(os.path.join(self.folder, name))
          removed += 1
        except OSError:
          pass
    return removed

  def add(self, data: bytes, suffix: str) -> str | None:
    """Writes `data` under a new name; the name (None if it could not be
    written: the answer goes out without its link)."""
    if suffix not in SUFFIXES:
      raise ValueError(f"not a suffix the store serves: {suffix}")
    name = secrets.token_hex(16) + suffix
    try:
      files.write_bytes(os.path.join(self.folder, name), data)
    except OSError:
      self.failed += 1
      return None
    self._names[name] = None
    while len(self._names) > self.max_files:
      old, _ = self._names.popitem(last=False)
      try:
        os.remove(os.path.join(self.folder, old))
      except OSError:
        pass
    return name

  def path(self, name: str) -> str | None:
    """The file's path if this store wrote `name` and still keeps it."""
    if name not in self._names:
      return None
    return os.path.join(self.folder, name)

  def __len__(self) -> int:
    return len(self._names)

  def close(self) -> None:
    """Removes the folder if the store made it."""
    if self._own:
      shutil.rmtree(self.folder, ignore_errors=True)


def route(store: FileStore, answer) -> Route:
  """`GET /files/NAME`: the store's file, or 404 from `answer(data, status)`
  (the app's one-line JSON) for any other name."""

  async def file(request: Request):
    path = store.path(request.path_params["name"])
    if path is None:
      return answer({"error": "no such file on this server"}, 404)
    suffix = path[path.rindex(".") :]
    return FileResponse(path, media_type=MEDIA_TYPES[suffix])

  return Route("/files/{name}", file, methods=["GET"])
