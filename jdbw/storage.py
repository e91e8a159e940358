"""Where a run's files live: a local folder, or object storage (`gs://`, `s3://`).

Every file of a workdir other than the checkpoints' own (config, metrics, reports,
figures, checksum records, the lock) is read and written through these functions. A
local path goes through `os` exactly as before: atomic renames, `flock`, free-space
checks. A URL goes through `etils.epath` (TensorFlow's `tf.io.gfile` where TensorFlow is
installed, else fsspec: `gcsfs` for `gs://`). Checkpoints go through orbax, which reads
such URLs itself (TensorStore's GCS driver), and TensorBoard events through tensorboardX's
own `gs://` writer.

On object storage an object is replaced whole (a reader sees the old one or the new one),
so a small file is written directly; there is no atomic create-if-absent through epath,
so the workdir lock degrades to check-then-write (`jdbw.workdir.WorkdirLock` says so in
one line); there is no free-space figure to check before a checkpoint.
"""

from __future__ import annotations

import builtins
import os
import shutil

REMOTE_PREFIXES = ("gs://", "s3://")


def is_remote(path) -> bool:
  """Whether `path` is an object-storage URL (`gs://`, `s3://`)."""
  return str(path).startswith(REMOTE_PREFIXES)


def _path(path):
  from etils import epath   # imported on first use: local runs never need it
  return epath.Path(str(path))


def absolute(path) -> str:
  """`os.path.abspath` for a local path; a URL as it is."""
  return str(path) if is_remote(path) else os.path.abspath(path)


def open(path, mode: str = "r"):  # noqa: A001  (the file-system function it stands for)
  return _path(path).open(mode) if is_remote(path) else builtins.open(path, mode)


def exists(path) -> bool:
  return _path(path).exists() if is_remote(path) else os.path.exists(path)


def isfile(path) -> bool:
  return _path(path).is_file() if is_remote(path) else os.path.isfile(path)


def isdir(path) -> bool:
  return _path(path).is_dir() if is_remote(path) else os.path.isdir(path)


def makedirs(path) -> None:
  """Creates `path` and its parents if missing (on object storage: nothing to create
  for most stores; epath does what the store needs)."""
  if is_remote(path):
    _path(path).mkdir(parents=True, exist_ok=True)
  else:
    os.makedirs(path, exist_ok=True)


def listdir(path) -> list[str]:
  """The names in folder `path`; FileNotFoundError if there is none."""
  if not is_remote(path):
    return os.listdir(path)
  p = _path(path)
  if not p.is_dir():
    raise FileNotFoundError(2, "No such folder", str(path))
  return [c.name for c in p.iterdir()]


def remove(path) -> None:
  if is_remote(path):
    _path(path).unlink()
  else:
    os.remove(path)


def replace(src, dst) -> None:
  """Renames file `src` to `dst`, replacing it (atomic on a local file system)."""
  if is_remote(src):
    _path(src).replace(str(dst))
  else:
    os.replace(src, dst)


def files_below(root) -> list[str]:
  """Every file below folder `root`, as paths relative to it, sorted."""
  if not is_remote(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)
  # epath's walk names folders with or without the scheme, as its backend does.
  key = lambda p: str(p).split("://", 1)[-1].rstrip("/")
  base = key(root)
  return sorted(os.path.relpath(f"{key(d)}/{f}", base)
                for d, _, files in _path(root).walk() for f in files)


def move(src, dst) -> None:
  """Moves file or folder `src` to `dst` (on object storage: copy, then delete)."""
  if not is_remote(src):
    shutil.move(src, dst)
    return
  s, d = _path(src), _path(dst)
  if s.is_file():
    s.copy(d, overwrite=True)
    s.unlink()
    return
  for rel in files_below(src):
    (d / rel).parent.mkdir(parents=True, exist_ok=True)
    (s / rel).copy(d / rel, overwrite=True)
  s.rmtree()
