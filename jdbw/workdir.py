"""The workdir as a resource: checked before compiling, locked while a trainer uses it,
and storage failures (disk full, read-only, permissions) told in one line.

`docs/reliability.md` lists what each guarantees and the tests that check it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import json
import logging as py_logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback

from absl import logging

from jdbw import storage
from jdbw.errors import CheckpointError, ConfigError, DataUnavailableError, StorageError

LOCK = "lock"
# Where the checkpoint writer's background threads' errors go (`BackgroundErrors`).
BACKGROUND_ERRORS = "background_errors.log"
# A lock whose heartbeat (its file's mtime, touched every HEARTBEAT_S by the holder) is
# older than this belongs to a dead run, whatever its host. On the holder's own host a
# dead PID is detected at once.
STALE_AFTER_S = 300.0
HEARTBEAT_S = 30.0

# errno values that mean "the storage refuses", not "the program is wrong".
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                   errno.EIO}
# How orbax / TensorStore spell them when the OSError itself does not travel.
_STORAGE_TEXT = {"No space left on device": errno.ENOSPC, "RESOURCE_EXHAUSTED": errno.ENOSPC,
                 "Disk quota exceeded": errno.EDQUOT, "Read-only file system": errno.EROFS,
                 "Permission denied": errno.EACCES, "PERMISSION_DENIED": errno.EACCES}


def write_text_atomic(path: str, text: str) -> None:
  """Writes `path` through a temporary file in the same folder and a rename: a reader
  (or a crash) sees the old file or the new one, never a part. On object storage an
  object is replaced whole: written directly."""
  if storage.is_remote(path):
    with storage.open(path, "w") as f:
      f.write(text)
    return
  tmp = f"{path}.tmp.{os.getpid()}"
  try:
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json_atomic(path: str, record, **dump_kw) -> None:
  """`json.dump` of `record` to `path`, atomically (`write_text_atomic`)."""
  write_text_atomic(path, json.dumps(record, **dump_kw))


def read_json(path: str, what: str):
  """The JSON record at `path`; a damaged file is one ConfigError line naming it."""
  try:
    with storage.open(path) as f:
      return json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise ConfigError(f"{what}: {path} is damaged ({type(e).__name__}: {e}); restore it or"
                      " use a new --workdir") from None


def check_writable(workdir: str, need_bytes: int = 0) -> None:
  """Creates `workdir` if needed and checks, before anything is compiled, that a file
  can be written in it and that its file system has room for `need_bytes` (about one
  checkpoint); ConfigError, one line, if not."""
  try:
    storage.makedirs(workdir)
  except OSError as e:
    raise ConfigError(f"--workdir: cannot create {workdir}: {e.strerror or e}") from e
  probe = os.path.join(workdir, f".write_probe.{socket.gethostname()}.{os.getpid()}")
  try:
    with storage.open(probe, "wb") as f:
      f.write(b"0" * 4096)
      if not storage.is_remote(probe):
        f.flush()
        os.fsync(f.fileno())
  except OSError as e:
    raise ConfigError(f"--workdir: {workdir} is not writable ({e.strerror or e})") from e
  finally:
    try:
      storage.remove(probe)
    except OSError:
      pass
  if storage.is_remote(workdir):
    return   # object storage reports no free space to check
  free = shutil.disk_usage(workdir).free
  if free < need_bytes:
    raise ConfigError(
        f"--workdir: {free / 2**20:.1f} MiB free on the file system of {workdir}; one"
        f" checkpoint needs about {need_bytes / 2**20:.1f} MiB: free space or use another"
        " --workdir")


def ensure_room(workdir: str, need_bytes: int) -> None:
  """Before a checkpoint write: StorageError, one line, if the file system of `workdir`
  has less than `need_bytes` free, or its checkpoints folder no longer takes a new
  entry (permissions, an immutable attribute, read-only), so that the run stops before
  orbax starts a write it cannot finish (its threads then print pages of tracebacks, or
  wait minutes for a step folder that cannot appear)."""
  folder = os.path.join(workdir, "checkpoints")
  probe = os.path.join(folder, f".write_probe.{socket.gethostname()}.{os.getpid()}")
  try:
    storage.makedirs(folder)
    with storage.open(probe, "wb"):
      pass
    storage.remove(probe)
  except OSError as e:
    if e.errno not in _STORAGE_ERRNOS:
      raise
    raise StorageError(workdir, os.strerror(e.errno), folder,
                       _finished_checkpoints(workdir)) from None
  if storage.is_remote(workdir):
    return
  free = shutil.disk_usage(workdir).free
  if free < need_bytes:
    raise StorageError(
        workdir, f"{os.strerror(errno.ENOSPC)} ({free / 2**20:.1f} MiB free, one checkpoint"
        f" needs about {need_bytes / 2**20:.1f} MiB)", None, _finished_checkpoints(workdir))


def storage_error(exc: BaseException, workdir: str) -> StorageError | None:
  """The StorageError that `exc` (or an exception it was raised from or during) amounts
  to, or None if it is not a storage failure. The project's own errors (a bad data
  file's ConfigError may well say "Permission denied") are already one line: left alone."""
  if isinstance(exc, (ConfigError, DataUnavailableError, CheckpointError, StorageError)):
    return None
  seen, todo = set(), [exc]
  while todo:
    e = todo.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    code, path = None, None
    if isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS:
      code, path = e.errno, e.filename
      if path and not storage.absolute(path).startswith(storage.absolute(workdir)):
        code = None   # Not the workdir's storage (a data file, say): not ours to explain.
    else:
      text = str(e)
      code = next((c for t, c in _STORAGE_TEXT.items() if t in text), None)
    if code is not None:
      return StorageError(workdir, os.strerror(code), path, _finished_checkpoints(workdir))
    todo += [e.__cause__, e.__context__]
  return None


def _finished_checkpoints(workdir: str) -> list[int]:
  d = os.path.join(workdir, "checkpoints")
  try:
    return sorted(int(p) for p in storage.listdir(d) if p.isdigit())
  except OSError:
    return []


def _proc_start(pid: int) -> str | None:
  """The kernel's start time of process `pid` (tells a reused PID apart), or None."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rpartition(")")[2].split()[19]
  except (OSError, IndexError):
    return None


def _alive(pid: int, start: str | None) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # Exists, another user's.
  return start is None or _proc_start(pid) in (None, start)


class WorkdirLock:
  """`<workdir>/lock`, held by the trainer using the workdir (process 0 of a run).

  The file (JSON: host, pid, its start time, since) is created atomically; a second
  trainer is refused with one line. A lock left by a dead run is taken over with one
  warning: on the same host when its PID is gone (or reused), on any host when its
  heartbeat is older than STALE_AFTER_S.

  On object storage (`gs://`) no atomic create exists: the lock is read, then written,
  then read back, and one warning line says that two trainers starting within that
  moment are not told apart; the heartbeat rewrites the record.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK)
    self.remote = storage.is_remote(workdir)
    self._stop = threading.Event()
    self._thread = None
    self._held = False

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()

  def _record(self) -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _proc_start(pid),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}

  def _stale(self, other: dict | None) -> str | None:
    """Why the lock `other` (None: unreadable) belongs to a dead run, or None."""
    try:   # On object storage the record carries its heartbeat (objects keep no mtime).
      age = time.time() - (float((other or {}).get("beat", time.time())) if self.remote
                           else os.path.getmtime(self.path))
    except OSError:
      return "it is gone"
    if age > STALE_AFTER_S:
      return f"its heartbeat is {age:.0f} s old"
    if other is None:
      return None
    if other.get("host") == socket.gethostname() and not _alive(
        int(other.get("pid", -1)), other.get("pid_start")):
      return f"process {other.get('pid')} is not running"
    return None

  @contextlib.contextmanager
  def _takeover_guard(self):
    """Serialises acquisition among the trainers of this host (an exclusive `flock` on
    the workdir folder itself, so no extra file), so that of two trainers finding the
    same dead run's lock exactly one removes it and links its own: without it both
    could remove the stale lock, the second removing the first's fresh one. Where the
    file system has no flock the guard is skipped (the heartbeat check still refuses a
    live lock)."""
    try:
      fd = os.open(os.path.dirname(self.path), os.O_RDONLY)
    except OSError:
      yield
      return
    try:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX)
      except OSError:
        pass
      yield
    finally:
      os.close(fd)   # closing releases the flock

  def _refuse(self, other: dict | None):
    who = (f"pid {other.get('pid')} on {other.get('host')}, since {other.get('since')}"
           if other else "an unreadable lock")
    return ConfigError(
        f"--workdir: {os.path.dirname(self.path)} is in use by another trainer ({who});"
        f" wait for it, stop it, or use another --workdir (a dead run's {self.path}"
        " is taken over automatically)")

  def _read(self) -> dict | None:
    try:
      with storage.open(self.path) as f:
        return json.load(f)
    except (OSError, ValueError):
      return None

  def _acquire_remote(self, me: dict) -> None:
    me["beat"] = time.time()
    logging.warning("--workdir %s: object storage has no atomic create, so the lock refuses"
                    " a trainer that starts after this one, not one that starts at the same"
                    " moment", os.path.dirname(self.path))
    if storage.exists(self.path):
      other = self._read()
      why = self._stale(other)
      if why is None:
        raise self._refuse(other)
      logging.warning("taking over the lock %s of a dead run (%s)", self.path, why)
    with storage.open(self.path, "w") as f:
      json.dump(me, f)
    got = self._read()
    if not got or (got.get("host"), got.get("pid")) != (me["host"], me["pid"]):
      raise self._refuse(got)

  def acquire(self) -> None:
    me = self._record()
    if self.remote:
      self._acquire_remote(me)
    else:
      self._acquire_local(me)
    self._held = True
    self._thread = threading.Thread(target=self._beat, args=(me,), name="workdir-lock",
                                    daemon=True)
    self._thread.start()

  def _acquire_local(self, me: dict) -> None:
    tmp = f"{self.path}.{me['host']}.{me['pid']}"
    with open(tmp, "w") as f:
      json.dump(me, f)
    try:
      with self._takeover_guard():
        self._link(tmp)
    finally:
      os.remove(tmp)

  def _link(self, tmp: str) -> None:
    """Links `tmp` as the lock, taking over a dead run's (under `_takeover_guard`)."""
    for _ in range(3):
      try:
        os.link(tmp, self.path)   # atomic: fails if a lock exists
        break
      except FileExistsError:
        pass
      other = self._read()
      why = self._stale(other)
      if why is None:
        raise self._refuse(other)
      logging.warning("taking over the lock %s of a dead run (%s)", self.path, why)
      try:
        os.remove(self.path)
      except FileNotFoundError:
        pass
    else:
      raise ConfigError(f"--workdir: could not take the lock {self.path}")

  def _beat(self, record: dict) -> None:
    while not self._stop.wait(HEARTBEAT_S):
      try:
        if self.remote:   # objects have no settable mtime: rewritten with the time
          with storage.open(self.path, "w") as f:
            json.dump({**record, "beat": time.time()}, f)
        else:
          os.utime(self.path)
      except OSError:
        pass  # A full or vanished disk is reported by the writes that need it.

  def release(self) -> None:
    if not self._held:
      return
    self._stop.set()
    self._thread.join()
    mine = (self._read() or {}).get("pid") == os.getpid()
    if mine:
      try:
        storage.remove(self.path)
      except OSError:
        pass
    self._held = False


class BackgroundErrors:
  """While a trainer runs, the errors that orbax's background threads report on their
  own go to `<workdir>/background_errors.log` instead of the terminal: orbax's ERROR
  records (through absl), asyncio's "exception was never retrieved" records of its
  futures, and the unraisable "Event loop is closed" errors of TensorStore's callbacks
  into its closed loops. A disk filled in the middle of a write printed 332 tracebacks
  in 2,300 lines that way, while the same failure reaches the main thread once and is
  told there in one line (`storage_error`). Anything else passes through unchanged.
  When the file cannot be written (the disk that failed the write is full), they are
  dropped.

  A failed write's futures are collected whenever the last reference to them goes,
  which can be after the run has ended: after a failure the diversion stays installed
  (for orbax's records only) until the next `BackgroundErrors` or the process ends."""

  _lingering: "BackgroundErrors | None" = None   # the last failed run's, still installed

  def __init__(self, workdir: str):
    # On object storage (no appends) the log is a local file, named by the warning.
    self.path = (os.path.join(tempfile.gettempdir(), f"jdbw_{BACKGROUND_ERRORS}.{os.getpid()}")
                 if storage.is_remote(workdir) else os.path.join(workdir, BACKGROUND_ERRORS))
    self.diverted = self.written = 0
    self._loggers = (py_logging.getLogger("absl"), py_logging.getLogger("asyncio"))
    self._hook = None

  def filter(self, record) -> bool:   # a logging filter: False drops the record
    if record.levelno < py_logging.ERROR:
      return True
    text = f"{record.name}: {record.getMessage()}\n"
    if record.exc_info:
      text += "".join(traceback.format_exception(*record.exc_info))
    # Logged by orbax itself, or an asyncio record of orbax's futures (its message or
    # traceback names orbax).
    if not (f"{os.sep}orbax{os.sep}" in (record.pathname or "")
            or (record.name == "asyncio" and "orbax" in text)):
      return True
    self._write(text)
    return False

  def _unraisable(self, info) -> None:
    closed_loop = (isinstance(info.exc_value, RuntimeError)
                   and str(info.exc_value) == "Event loop is closed")
    if not closed_loop:
      self._hook(info)
      return
    self._write("unraisable: " + "".join(traceback.format_exception(
        info.exc_type, info.exc_value, info.exc_traceback)))

  def _write(self, text: str, counted: bool = True) -> None:
    self.diverted += counted
    try:
      with open(self.path, "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}")
      self.written += counted
    except OSError:
      pass   # the disk that failed the checkpoint write is full or read-only

  def _install(self) -> None:
    for logger in self._loggers:
      logger.addFilter(self)
    self._hook, sys.unraisablehook = sys.unraisablehook, self._unraisable

  def _uninstall(self) -> None:
    sys.unraisablehook = self._hook
    for logger in self._loggers:
      logger.removeFilter(self)

  @classmethod
  def release(cls) -> None:
    """Uninstalls the diversion a failed run left installed, if any."""
    if cls._lingering is not None:
      cls._lingering._uninstall()
      cls._lingering = None

  def __enter__(self):
    BackgroundErrors.release()
    self._install()
    return self

  def __exit__(self, exc_type, exc, tb):
    if exc is None:
      self._uninstall()
      return
    if isinstance(exc, StorageError):
      self._write("the error that ended the run:\n" + "".join(
          traceback.format_exception(exc)), counted=False)
    BackgroundErrors._lingering = self
    gc.collect()   # most of a failed write's futures report their errors here
    if self.written:
      logging.warning("the checkpoint writer's background threads reported %d error(s);"
                      " their tracebacks are in %s", self.diverted, self.path)
