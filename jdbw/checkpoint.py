"""Orbax checkpoints of a run: the TrainState plus a JSON of host-side history.

Layout: `<workdir>/checkpoints/<step>/{state,history}`. Saves are atomic (orbax writes
to a temporary directory and renames), so a crash never leaves a half checkpoint and
never touches the previous one.

Each finished checkpoint gets the SHA-256 of every file it holds, written after the write
(`<workdir>/checkpoint_checksums/<step>.json`, temp + rename) and checked on restore, so
bytes flipped inside a data file are caught even where the format would decode them; a
restored state with a NaN or infinite value is refused too. A checkpoint without a
checksum record (written before they existed, or cut off between the write and its
record) restores unchecked.

A checkpoint damaged afterwards (a truncated, deleted or altered file, a disk error) does
not stop a run: `restore_latest` falls back to the newest checkpoint that restores, with one
warning line per skipped step naming the cause; the trainer also moves the damaged ones
to `<workdir>/damaged_checkpoints/` so that saving that step again cannot collide.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jdbw import storage
from jdbw.errors import CheckpointError


def _cause(e: BaseException) -> str:
  """One line for an exception: its type and the first line of its message (orbax and
  TensorStore messages run to many lines)."""
  lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
  # TensorStore appends "See full TensorStore details: <bound method ...>" and source
  # locations; they say nothing to a user.
  text = next((re.split(r"\s*(?:See full TensorStore details|\[source locations=)", ln)[0]
               for ln in lines if not ln.startswith("See full TensorStore")), "")
  text = re.sub(r"<bound method [^>]*>", "", text).strip()
  return f"{type(e).__name__}: {text[:240]}" if text else type(e).__name__


def size_bytes(abstract_state) -> int:
  """About what one checkpoint of a state of this structure takes on disk: its arrays
  plus orbax's metadata and the history (a generous 1 MiB)."""
  leaves = jax.tree.leaves(abstract_state)
  return sum(int(np.prod(getattr(a, "shape", ())))
             * np.dtype(getattr(a, "dtype", np.float64)).itemsize for a in leaves) + 2**20


def _without_empty_extras(abstract):
  """The state as a dict without its `extras` field, when that field is empty (the
  layout of checkpoints written before `TrainState.extras` existed); else None."""
  if getattr(abstract, "extras", None) != {}:
    return None
  return {f.name: getattr(abstract, f.name) for f in dataclasses.fields(abstract)
          if f.name != "extras"}


def _restore_target(leaf):
  """The leaf's shape, dtype and sharding; a leaf without a sharding (from
  `jax.eval_shape`) is restored onto this process's first device, whatever the devices
  the checkpoint was written from (a run trained on 8 devices translates on a laptop)."""
  target = ocp.utils.to_shape_dtype_struct(leaf)
  if getattr(target, "sharding", None) is None and hasattr(target, "shape"):
    target = jax.ShapeDtypeStruct(target.shape, target.dtype, sharding=(
        jax.sharding.SingleDeviceSharding(jax.local_devices()[0])))
  return target


def _file_digests(root: str) -> dict[str, str]:
  """{path relative to `root`: SHA-256} of every file below `root`."""
  out = {}
  for rel in storage.files_below(root):
    h = hashlib.sha256()
    with storage.open(os.path.join(root, rel), "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    out[rel] = h.hexdigest()
  return out


def _non_finite(tree) -> str | None:
  """The key path of the first float leaf of `tree` holding a NaN or an infinity."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    a = np.asarray(jax.device_get(leaf))
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
      return jax.tree_util.keystr(path)
  return None


class Checkpointer:

  CHECKSUMS = "checkpoint_checksums"   # <workdir>/checkpoint_checksums/<step>.json

  def __init__(self, workdir: str, keep: int = 3, *, trainer: bool = False):
    """`trainer`: opened by the workdir's one trainer (it holds the lock, `jdbw.workdir`):
    orbax removes the temporary directories of writes a crash cut short (it leaves them
    otherwise), which no reader may do while a trainer may be writing."""
    self.directory = os.path.join(storage.absolute(workdir), "checkpoints")
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             cleanup_tmp_directories=trainer))
    self._unsealed: list[int] = []
    self._sums = os.path.join(os.path.dirname(self.directory), self.CHECKSUMS)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, history: dict) -> None:
    self._seal()
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), history=ocp.args.JsonSave(history)), force=True)
    self._unsealed.append(step)

  def _checksum_path(self, step: int) -> str:
    return os.path.join(self._sums, f"{step}.json")

  def _seal(self) -> None:
    """Waits for the writes in flight, then records the checksums of the steps they
    finished (only the process that writes the files; the others' steps are the same
    files). Records of steps orbax has since deleted are dropped."""
    if not self._unsealed:
      return
    self.manager.wait_until_finished()
    steps, self._unsealed = self._unsealed, []
    if jax.process_index() != 0:
      return
    from jdbw import workdir as workdir_lib
    storage.makedirs(self._sums)
    kept = set(self.all_steps())
    for step in steps:
      if step in kept:
        workdir_lib.write_json_atomic(self._checksum_path(step), _file_digests(
            os.path.join(self.directory, str(step))), indent=0)
    for name in storage.listdir(self._sums):
      stem = name.split(".")[0]
      if stem.isdigit() and int(stem) not in kept:
        try:
          storage.remove(os.path.join(self._sums, name))
        except FileNotFoundError:
          pass

  def verify(self, step: int) -> None:
    """CheckpointError, one line, if the files of `step` differ from its checksum record
    (a missing, changed or extra file); nothing when it has no record."""
    path = self._checksum_path(step)
    if not storage.isfile(path):
      return
    try:
      with storage.open(path) as f:
        want = json.load(f)
    except (OSError, ValueError) as e:
      raise CheckpointError(f"checkpoint step {step} in {self.directory}: its checksum record"
                            f" {path} is unreadable ({_cause(e)})") from None
    got = _file_digests(os.path.join(self.directory, str(step)))
    bad = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    if bad:
      raise CheckpointError(f"checkpoint step {step} in {self.directory} fails its checksum"
                            f" ({len(bad)} file(s) changed, e.g. {bad[0]})")

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def restore(self, abstract_state, step: int | None = None):
    """(state, history) of `step` (default: the latest); CheckpointError, one line, if
    it does not restore."""
    step = self.latest_step() if step is None else step
    self._seal()
    self.verify(step)
    abstract = jax.tree.map(_restore_target, abstract_state)
    try:
      out = self._restore(step, abstract)
    except Exception as e:  # orbax raises many kinds (ValueError, OSError, XlaRuntimeError)
      legacy = _without_empty_extras(abstract)
      if legacy is None:
        raise CheckpointError(f"checkpoint step {step} in {self.directory} does not restore"
                              f" ({_cause(e)})") from e
      try:   # written before TrainState had `extras`: restore the other fields
        out = self._restore(step, legacy)
      except Exception:
        raise CheckpointError(f"checkpoint step {step} in {self.directory} does not restore"
                              f" ({_cause(e)})") from e
      return self._finite(step, abstract_state.replace(**out.state)), out.history
    return self._finite(step, out.state), out.history

  def _finite(self, step: int, state):
    where = _non_finite(state)
    if where is not None:
      raise CheckpointError(f"checkpoint step {step} in {self.directory} restores a"
                            f" non-finite value (in {where})")
    return state

  def _restore(self, step, abstract):
    return self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()))

  def restore_latest(self, abstract_state, *, quarantine: bool = False):
    """(state, history, step) of the newest checkpoint that restores, trying older ones
    after a failure (one warning line each). `quarantine` (the trainer's process 0):
    move each one that failed to `<workdir>/damaged_checkpoints/<step>-<time>`.
    CheckpointError, one line listing every step and its cause, if none restores."""
    failed = []
    for step in reversed(self.all_steps()):
      try:
        state, history = self.restore(abstract_state, step)
      except CheckpointError as e:
        failed.append((step, e))
        logging.warning("%s; trying an older checkpoint", e)
        continue
      if failed and quarantine:
        self._quarantine([s for s, _ in failed])
      return state, history, step
    raise CheckpointError(
        f"--workdir: no checkpoint in {self.directory} restores: " + "; ".join(
            f"step {s}: {_cause(e.__cause__ or e)}" for s, e in failed))

  def _quarantine(self, steps) -> None:
    aside = os.path.join(os.path.dirname(self.directory), "damaged_checkpoints")
    storage.makedirs(aside)
    for step in steps:
      dest = os.path.join(aside, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
      storage.move(os.path.join(self.directory, str(step)), dest)
      if storage.isfile(self._checksum_path(step)):
        storage.move(self._checksum_path(step), os.path.join(dest, "checksums.json"))
      logging.warning("moved the damaged checkpoint of step %d to %s", step, dest)
    self.manager.reload()

  def remove_write_probes(self) -> list[str]:
    """Deletes the write probes of killed runs (`jdbw.workdir.ensure_room`). Only for the
    workdir's one trainer, before its first save."""
    try:
      names = [n for n in storage.listdir(self.directory) if n.startswith(".write_probe.")]
    except OSError:
      return []
    for n in names:
      try:
        storage.remove(os.path.join(self.directory, n))
      except OSError:
        pass
    return names

  def quarantine(self, step: int) -> None:
    """Moves checkpoint `step` to `<workdir>/damaged_checkpoints/` (one warning line)."""
    self._seal()
    self._quarantine([step])

  def wait(self) -> None:
    self.manager.wait_until_finished()
    self._seal()

  def close(self) -> None:
    self.manager.close()
