"""A disk that fills up during a run: one line saying what was kept.

Orbax writes checkpoints from background threads and tensorstore callbacks;
when the disk fills, each of them prints a traceback of its own ("No space
left on device", "Event loop is closed") while the main thread fails at its
next write. `quiet_background_errors` keeps those off the console while the
run lasts (the main thread restates them in one line), and `no_space_error`
is that line: the file, the space a checkpoint needs, the last good
checkpoint, and that running the same command again resumes from it.
Nothing is lost: checkpoints are renamed into place only when complete, and
every other file is written atomically or appended to (`files`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator

from melodyjax import errors, files
from melodyjax.training import workdir as workdir_lib

# What background writers report after a disk-full failure of their own.
_AFTERMATH = ("Event loop is closed", "sys.meta_path is None")


def checkpoint_steps(workdir: str) -> list[int]:
  """The steps of the complete checkpoints (Orbax writes a step under a
  temporary name and renames it when every file is written)."""
  folder = workdir_lib.path(workdir, workdir_lib.CHECKPOINT_DIR)
  if not os.path.isdir(folder):
    return []
  return sorted(
    int(name)
    for name in os.listdir(folder)
    if name.isdigit() and os.path.isdir(os.path.join(folder, name))
  )


def _folder_bytes(folder: str) -> int:
  return sum(
    os.path.getsize(os.path.join(root, name))
    for root, _, names in os.walk(folder)
    for name in names
  )


def _free_bytes(path: str) -> int | None:
  while path and not os.path.exists(path):
    path = os.path.dirname(path)
  try:
    return shutil.disk_usage(path or ".").free
  except OSError:
    return None


def no_space_error(workdir: str, path: str) -> errors.NoSpaceError:
  """The one-line error of a run whose disk is full.

  Args:
    workdir: the run's folder.
    path: the file that could not be written ('' if unknown).

  Returns:
    A NoSpaceError naming the file (a checkpoint by its step), the space
    a checkpoint needs (the last one's size) and the space free, the last
    good checkpoint, and how to resume.
  """
  steps = checkpoint_steps(workdir)
  folder = workdir_lib.path(workdir, workdir_lib.CHECKPOINT_DIR)
  step_dir = re.match(re.escape(folder) + r"/(\d+)\.orbax-checkpoint-tmp", path)
  if step_dir:
    what = f"the checkpoint of step {step_dir.group(1)}"
  else:
    what = path or f"a file in {workdir}"
  space = []
  if step_dir and steps:
    last = os.path.join(folder, str(steps[-1]))
    space.append(
      f"a checkpoint needs about {files.format_bytes(_folder_bytes(last))}"
    )
  free = _free_bytes(path or workdir)
  if free is not None:
    space.append(f"{files.format_bytes(free)} free")
  detail = f" ({', '.join(space)})" if space else ""
  if steps:
    kept = (
      f"last good checkpoint: step {steps[-1]} in {workdir}; free some "
      "space and run the same command again to resume from it"
    )
  else:
    kept = (
      "no checkpoint was saved yet; free some space and run the same "
      "command again"
    )
  return errors.NoSpaceError(
    f"no space left on device writing {what}{detail}: training stopped, " + kept
  )


def _is_aftermath(error: BaseException | None) -> bool:
  return files.no_space(error) is not None or any(
    text in str(error) for text in _AFTERMATH
  )


class _DropAftermath(logging.Filter):
  """Drops log records that restate a disk-full failure."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.exc_info and _is_aftermath(record.exc_info[1]):
      return False
    message = record.getMessage()
    return files.no_space(OSError(message)) is None and not any(
      text in message for text in _AFTERMATH
    )


@contextlib.contextmanager
def quiet_background_errors() -> Iterator[None]:
  """While the block runs, background threads' disk-full tracebacks (and
  what follows them) are not printed; any other error still is.

  When the block ends with a full disk, the quiet stays for the rest of
  the process: the abandoned writes of a failed save report again when
  they are garbage-collected, as late as the interpreter's exit.
  """
  previous = sys.excepthook, threading.excepthook, sys.unraisablehook
  log_filter = _DropAftermath()

  def excepthook(kind, value, traceback):
    if not _is_aftermath(value):
      previous[0](kind, value, traceback)

  def thread_excepthook(args):
    if not _is_aftermath(args.exc_value):
      previous[1](args)

  def unraisablehook(unraisable):
    if not _is_aftermath(unraisable.exc_value):
      previous[2](unraisable)

  loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
  handlers = [*loggers, *logging.getLogger().handlers]
  for handler in handlers:
    handler.addFilter(log_filter)
  sys.excepthook, threading.excepthook = excepthook, thread_excepthook
  sys.unraisablehook = unraisablehook
  full = False
  try:
    yield
  except BaseException as e:
    full = isinstance(e, errors.NoSpaceError) or _is_aftermath(e)
    raise
  finally:
    gc.collect()  # abandoned writes end here if nothing holds them
    if not full:
      sys.excepthook, threading.excepthook, sys.unraisablehook = previous
      for handler in handlers:
        handler.removeFilter(log_filter)
