"""The workdir as a resource: start-up checks, the trainer's lock, storage failures."""

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import namedtuple

import pytest
import helpers

from jdbw import train, workdir
from jdbw.data import DomainSpec
from jdbw.errors import EXIT_BAD_INPUT, EXIT_STORAGE, ConfigError, StorageError
from jdbw.methods import jd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(g_features=4, d_features=2, w_features=2, d_steps=1)


def _train(wd, steps=2, **kw):
  specs = {"x": DomainSpec(source="digits"),
           "y": DomainSpec(source="digits", transform="sr", name="y")}
  run = train.RunConfig(workdir=str(wd), steps=steps, batch_size=4, checkpoint_every=2,
                        log_every=1, figure_every=0)
  return train.train(jd.JD(jd.JDConfig(**TINY)), run, specs, **kw)


@pytest.fixture
def no_compile(monkeypatch):
  """Start-up checks must come before compiling (which takes a minute at paper scale)."""
  def refuse(*a, **k):
    raise AssertionError("compiled before the workdir was checked")
  monkeypatch.setattr(train, "compile_iteration", refuse)


def test_unwritable_workdir_is_one_line_before_compiling(tmp_path, no_compile):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(ConfigError) as e:
    _train(blocker / "wd")   # a regular file where a directory should be
  helpers.one_line(e, "--workdir", str(blocker / "wd"), "cannot create")


def test_too_little_free_space_is_one_line_before_compiling(tmp_path, monkeypatch, no_compile):
  usage = namedtuple("usage", "total used free")
  monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 1000))
  with pytest.raises(ConfigError) as e:
    _train(tmp_path / "wd")
  helpers.one_line(e, "--workdir", "MiB free", "one checkpoint needs")


def test_a_second_trainer_is_refused_and_the_lock_is_released(tmp_path, no_compile):
  wd = tmp_path / "wd"
  wd.mkdir()
  with workdir.WorkdirLock(str(wd)):
    with pytest.raises(ConfigError) as e:
      _train(wd)
    helpers.one_line(e, "--workdir", "in use by another trainer", f"pid {os.getpid()}")
    with pytest.raises(ConfigError):   # A second lock object in this process too.
      workdir.WorkdirLock(str(wd)).acquire()
  assert not (wd / workdir.LOCK).exists()
  with pytest.raises(AssertionError, match="compiled"):   # Free again: gets to compiling,
    _train(wd)
  assert not (wd / workdir.LOCK).exists()                 # and releases on the way out.


def _write_lock(wd, **record):
  (wd / workdir.LOCK).write_text(json.dumps(
      {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": None,
       "since": "then", **record}))


def test_stale_locks_are_taken_over(tmp_path, caplog):
  wd = tmp_path
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  _write_lock(wd, pid=dead.pid)       # This host, a PID that is gone.
  with workdir.WorkdirLock(str(wd)):
    assert json.loads((wd / workdir.LOCK).read_text())["pid"] == os.getpid()
  assert "not running" in caplog.text
  # This host, our PID but another process start time: a reused PID.
  _write_lock(wd, pid_start="1")
  with workdir.WorkdirLock(str(wd)):
    pass
  # Another host: its PID cannot be checked; a fresh heartbeat means in use, an old one dead.
  _write_lock(wd, host="elsewhere", pid=1)
  with pytest.raises(ConfigError) as e:
    workdir.WorkdirLock(str(wd)).acquire()
  helpers.one_line(e, "pid 1 on elsewhere")
  old = time.time() - workdir.STALE_AFTER_S - 10
  os.utime(wd / workdir.LOCK, (old, old))
  with workdir.WorkdirLock(str(wd)):
    pass
  assert "heartbeat" in caplog.text
  # A lock cut short (unreadable) is in use while fresh.
  (wd / workdir.LOCK).write_text("{")
  with pytest.raises(ConfigError, match="unreadable"):
    workdir.WorkdirLock(str(wd)).acquire()


def test_storage_errors_are_recognised_through_wrapping(tmp_path):
  (tmp_path / "checkpoints" / "4").mkdir(parents=True)
  (tmp_path / "checkpoints" / "6.orbax-checkpoint-tmp").mkdir()
  inner = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "checkpoints" / "6"))
  try:
    try:
      raise inner
    except OSError as e:
      raise RuntimeError("background save failed") from e
  except RuntimeError as outer:
    err = workdir.storage_error(outer, str(tmp_path))
  assert isinstance(err, StorageError)
  msg = str(err)
  assert "\n" not in msg and str(tmp_path / "checkpoints" / "6") in msg
  assert "No space left on device" in msg and "last good checkpoint is step 4" in msg
  # As orbax / TensorStore spell it (no OSError travels).
  err = workdir.storage_error(ValueError("RESOURCE_EXHAUSTED: Error writing local file"),
                              str(tmp_path))
  assert "No space left on device" in str(err)
  err = workdir.storage_error(PermissionError(errno.EACCES, "Permission denied",
                                              str(tmp_path / "tb")), str(tmp_path))
  assert "Permission denied" in str(err)
  # Not storage, not the workdir's storage, or already one line of ours: left alone.
  assert workdir.storage_error(ConfigError("--source_x: /d/x.gz: Permission denied"),
                               str(tmp_path)) is None
  assert workdir.storage_error(ValueError("shapes differ"), str(tmp_path)) is None
  assert workdir.storage_error(PermissionError(errno.EACCES, "Permission denied",
                                               "/data/train.gz"), str(tmp_path)) is None


def _mount_tmpfs(path, size):
  path.mkdir()
  try:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True, capture_output=True)
  except (OSError, subprocess.CalledProcessError) as e:
    pytest.skip(f"cannot mount a small tmpfs here ({e}); the in-process tests above cover"
                " the logic")


def _cli(wd, steps):
  return [sys.executable, "-m", "experiments.mnist_srmnist", f"--workdir={wd}",
          f"--steps={steps}", "--batch_size=4", "--g_features=4", "--d_features=2",
          "--w_features=2", "--d_steps=1", "--log_every=1", "--figure_every=0",
          "--checkpoint_every=10"]


@pytest.mark.slow
def test_disk_full_and_read_only_through_the_entrypoint(tmp_path):
  """A real small file system: filled during a run, the run ends with one line (exit
  74) naming the cause and the last good checkpoint, which a rerun resumes from once
  space is freed; remounted read-only, the run is refused at start-up (exit 2)."""
  disk = tmp_path / "disk"
  _mount_tmpfs(disk, "8m")
  env = {**os.environ, "XLA_FLAGS": helpers.xla_flags()}   # with conftest's compile cache
  wd, filler = disk / "wd", disk / "filler"
  try:
    with open(tmp_path / "full.log", "w") as err:
      proc = subprocess.Popen(_cli(wd, 10000), cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=err)
      try:
        t = time.time()
        while not (wd / "checkpoints" / "10").is_dir():
          assert proc.poll() is None and time.time() - t < 240
          time.sleep(0.05)
        with open(filler, "wb", buffering=0) as f:   # Fill the disk between two checkpoints.
          try:
            while True:
              f.write(b"\0" * 2**16)
          except OSError as e:
            assert e.errno == errno.ENOSPC
        assert proc.wait(240) == EXIT_STORAGE
      finally:
        proc.kill()
    text = (tmp_path / "full.log").read_text()
    last = text.strip().splitlines()[-1]
    assert last.startswith("error: --workdir:") and "No space left on device" in last, last
    saved = max(int(p) for p in os.listdir(wd / "checkpoints") if p.isdigit())
    assert f"last good checkpoint is step {saved}" in last and "Traceback" not in text
    os.remove(filler)
    out = subprocess.run(_cli(wd, saved + 2), cwd=ROOT, env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0 and f"resumed {wd} at step {saved}" in out.stderr
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    out = subprocess.run(_cli(wd, saved + 4), cwd=ROOT, env=env, capture_output=True,
                         text=True)
    assert out.returncode == EXIT_BAD_INPUT, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert "is not writable (Read-only file system)" in last and "step 1/" not in out.stderr
  finally:
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _fill(path):
  with open(path, "wb", buffering=0) as f:
    try:
      while True:
        f.write(b"\0" * 2**12)
    except OSError as e:
      assert e.errno == errno.ENOSPC


@pytest.mark.slow
def test_a_disk_filled_in_the_middle_of_a_write_is_one_error_and_no_traceback(
    tmp_path, monkeypatch, capfd, caplog):
  """A small tmpfs fills while orbax writes checkpoint 2 in its background threads
  (the disk is filled as iteration 3 starts, right after the write was launched; the
  pre-write room check is switched off to let the write start): the run ends with the
  one-line StorageError, nothing the background threads report reaches the terminal
  or the log (with orbax's own error records, 332 tracebacks were printed), and their
  tracebacks are in the workdir's `background_errors.log` when it can be written (here
  moved to another disk, since this one is full)."""
  disk = tmp_path / "disk"
  _mount_tmpfs(disk, "8m")
  log = tmp_path / "background_errors.log"
  monkeypatch.setattr(workdir, "BACKGROUND_ERRORS", str(log))   # absolute: off the full disk
  monkeypatch.setattr(workdir, "ensure_room", lambda *a, **k: None)
  calls = []

  def fill_at_iteration_3(step_fn):
    def call(state, batch):
      calls.append(1)
      if len(calls) == 3:
        _fill(disk / "filler")
      return step_fn(state, batch)
    return call
  try:
    with pytest.raises(StorageError) as e:
      _train(disk / "wd", steps=8, iteration_wrapper=fill_at_iteration_3)
    helpers.one_line(e, "--workdir", "No space left on device", "no checkpoint was written yet")
    del e
    import gc
    gc.collect()   # what the failed write left behind reports when collected
  finally:
    workdir.BackgroundErrors.release()
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)
  err = capfd.readouterr().err
  assert "Traceback" not in err and "never retrieved" not in err, err[-3000:]
  assert "Traceback" not in caplog.text and "never retrieved" not in caplog.text
  assert f"their tracebacks are in {log}" in caplog.text
  text = log.read_text()
  assert "No space left on device" in text and "orbax" in text and "Traceback" in text
  assert "the error that ended the run" in text


# The race runs in a small fresh process that imports jdbw.workdir alone, so forking its
# two rivals costs milliseconds (forking the pytest worker, JAX and all, cost 0.75 s a
# trial).
_RACE = r"""
import json, multiprocessing, os, socket, sys
from jdbw import workdir
from jdbw.errors import ConfigError

def race(wd, barrier, results, i):
  lock = workdir.WorkdirLock(wd)
  barrier.wait(60)
  try:
    lock.acquire()
    results[i] = 1
  except ConfigError:
    results[i] = 0
  # Neither exits before both have decided: a winner that died (and was reaped) before
  # the other looked would rightly be taken over, which is not the race under test.
  barrier.wait(60)
  os._exit(0)   # Dies holding it, as a killed trainer would; the heartbeat thread dies too.

root, dead_pid, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = multiprocessing.get_context("fork")
for trial in range(trials):
  wd = os.path.join(root, str(trial))
  os.makedirs(wd)
  with open(os.path.join(wd, workdir.LOCK), "w") as f:
    json.dump({"host": socket.gethostname(), "pid": dead_pid, "pid_start": None,
               "since": "then"}, f)
  barrier, results = ctx.Barrier(2), ctx.Array("i", [-1, -1])
  procs = [ctx.Process(target=race, args=(wd, barrier, results, i)) for i in range(2)]
  for p in procs:
    p.start()
  for p in procs:
    p.join(60)
  print(trial, *results[:])
"""


def test_two_trainers_on_a_dead_runs_lock_exactly_one_wins(tmp_path):
  """100 trials: two processes released at the same instant (a barrier) both find the
  lock of a dead run; exactly one takes it over, the other is refused."""
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  out = subprocess.run([sys.executable, "-c", _RACE, str(tmp_path), str(dead.pid), "100"],
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = [line.split() for line in out.stdout.splitlines()]
  assert len(rows) == 100, out.stdout[-2000:]
  for trial, *results in rows:
    assert sorted(results) == ["0", "1"], f"trial {trial}: {results}"


def test_small_files_are_atomic_and_a_damaged_config_is_one_line(tmp_path):
  """config.json (and metrics.json, figure3_weights.json) are written through temp +
  rename; a truncated or empty config.json is one line naming it (inference and the
  trainer, which exits 2 before compiling)."""
  from jdbw import inference
  path = tmp_path / "config.json"
  workdir.write_json_atomic(str(path), {"method": "jd"}, indent=2)
  assert json.loads(path.read_text()) == {"method": "jd"} and os.listdir(tmp_path) == [path.name]
  for damaged in ('{"method": "jd", "mo', ""):
    path.write_text(damaged)
    with pytest.raises(ConfigError) as e:
      inference.read_config(str(tmp_path))
    helpers.one_line(e, "--workdir", str(path), "is damaged")
  out = subprocess.run(_cli(tmp_path, 2), cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
  last = out.stderr.strip().splitlines()[-1]
  assert out.returncode == EXIT_BAD_INPUT and str(path) in last and "is damaged" in last, last
  assert "Traceback" not in out.stderr and "step 1/" not in out.stderr


@pytest.mark.slow
def test_checkpoints_folder_made_read_only_mid_run_ends_within_30_s(tmp_path):
  """The checkpoints folder (not the whole disk) turns read-only during a run (a
  read-only bind mount over it): the run ends at its next checkpoint within 30 s, one
  line naming the folder and the last good checkpoint, exit 74, no traceback."""
  wd = tmp_path / "wd"
  env = {**os.environ, "XLA_FLAGS": helpers.xla_flags()}
  folder = wd / "checkpoints"
  with open(tmp_path / "ro.log", "w") as err:
    proc = subprocess.Popen(_cli(wd, 100000) + ["--checkpoint_every=40"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=err)
    mounted = False
    try:
      t = time.time()
      while not (folder / "40").is_dir():
        assert proc.poll() is None and time.time() - t < 240
        time.sleep(0.05)
      try:
        subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True,
                       capture_output=True)
        mounted = True
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True,
                       capture_output=True)
      except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot bind-mount read-only here ({e})")
      t = time.time()
      assert proc.wait(120) == EXIT_STORAGE
      assert time.time() - t < 30
    finally:
      proc.kill()
      if mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
  text = (tmp_path / "ro.log").read_text()
  last = text.strip().splitlines()[-1]
  assert last.startswith("error: --workdir:") and str(folder) in last, last
  assert "Read-only file system" in last and "last good checkpoint is step" in last, last
  assert "Traceback" not in text, text[-3000:]
