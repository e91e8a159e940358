"""Where a run's files live: a local folder, or object storage (`gs://`, `s3://`).

Every file of a workdir other than the checkpoints' own (config, metrics, reports,
figures, checksum records, the lock) is read and written through these functions. A
local path goes through `os` exactly as before: atomic renames, `flock`, free-space
checks. A URL goes through fsspec (`gcsfs` for `gs://`, `s3fs` for `s3://`), the same
client wherever TensorFlow is or is not installed. Checkpoints go through orbax, which reads
such URLs itself (TensorStore's GCS driver), and TensorBoard events through tensorboardX's
own `gs://` writer.

On object storage an object is replaced whole (a reader sees the old one or the new one),
so a small file is written directly; there is no atomic create-if-absent through fsspec,
so the workdir lock degrades to check-then-write (`jdbw.workdir.WorkdirLock` says so in
one line); there is no free-space figure to check before a checkpoint.
"""

from __future__ import annotations

import builtins
import os
import posixpath
import shutil

from jdbw.errors import ConfigError

REMOTE_PREFIXES = ("gs://", "s3://")


def is_remote(path) -> bool:
  """Whether `path` is an object-storage URL (`gs://`, `s3://`)."""
  return str(path).startswith(REMOTE_PREFIXES)


def _fs(path):
  """(fsspec file system, path within it) for URL `path`: `gs://` through gcsfs. No
  listings cache: orbax and tensorboardX write into the same folders through clients
  of their own, and a cached listing would not show their files."""
  import fsspec   # imported on first use: local runs never need it
  try:
    return fsspec.core.url_to_fs(str(path), use_listings_cache=False)
  except ImportError as e:   # s3:// without s3fs, gs:// without gcsfs
    raise ConfigError(f"{path}: {e} (jdbw's requirements bring gcsfs for gs://; s3:// needs"
                      " s3fs installed)") from None


def _call(method: str, path, *args, **kwargs):
  fs, p = _fs(path)
  return getattr(fs, method)(p, *args, **kwargs)


def absolute(path) -> str:
  """`os.path.abspath` for a local path; a URL as it is."""
  return str(path) if is_remote(path) else os.path.abspath(path)


def open(path, mode: str = "r"):  # noqa: A001  (the file-system function it stands for)
  return _call("open", path, mode) if is_remote(path) else builtins.open(path, mode)


def exists(path) -> bool:
  return _call("exists", path) if is_remote(path) else os.path.exists(path)


def isfile(path) -> bool:
  return _call("isfile", path) if is_remote(path) else os.path.isfile(path)


def isdir(path) -> bool:
  return _call("isdir", path) if is_remote(path) else os.path.isdir(path)


def makedirs(path) -> None:
  """Creates `path` and its parents if missing (on object storage folders are only
  key prefixes: nothing to create below an existing bucket)."""
  if is_remote(path):
    _call("makedirs", path, exist_ok=True)
  else:
    os.makedirs(path, exist_ok=True)


def listdir(path) -> list[str]:
  """The names in folder `path`; FileNotFoundError if there is none."""
  if not is_remote(path):
    return os.listdir(path)
  if not isdir(path):
    raise FileNotFoundError(2, "No such folder", str(path))
  return [c.rstrip("/").rsplit("/", 1)[-1] for c in _call("ls", path, detail=False)]


def remove(path) -> None:
  if is_remote(path):
    _call("rm_file", path)
  else:
    os.remove(path)


def replace(src, dst) -> None:
  """Renames file `src` to `dst`, replacing it (atomic on a local file system; on object
  storage a copy, then a delete)."""
  if is_remote(src):
    move(src, dst)
  else:
    os.replace(src, dst)


def files_below(root) -> list[str]:
  """Every file below folder `root`, as paths relative to it, sorted."""
  if not is_remote(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)
  fs, base = _fs(root)
  base = base.rstrip("/")
  return sorted(posixpath.relpath(f, base) for f in fs.find(base))


def move(src, dst) -> None:
  """Moves file or folder `src` to `dst` (on object storage: copy, then delete)."""
  if not is_remote(src):
    shutil.move(src, dst)
    return
  fs, s = _fs(src)
  fs.copy(s, _fs(dst)[1], recursive=True)   # not fs.mv: GCS's moveTo, newer than some stores
  fs.rm(s, recursive=True)
