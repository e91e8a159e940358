"""Orbax checkpoints of a run: the TrainState plus a JSON of host-side history.

Layout: `<workdir>/checkpoints/<step>/{state,history}`. Saves are atomic (orbax writes
to a temporary directory and renames), so a crash never leaves a half checkpoint and
never touches the previous one.

A checkpoint damaged afterwards (a truncated or deleted file, a disk error) does not stop
a run: `restore_latest` falls back to the newest checkpoint that restores, with one
warning line per skipped step naming the cause; the trainer also moves the damaged ones
to `<workdir>/damaged_checkpoints/` so that saving that step again cannot collide.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jdbw.errors import CheckpointError


def _cause(e: BaseException) -> str:
  """One line for an exception: its type and the first line of its message (orbax and
  TensorStore messages run to many lines)."""
  text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
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


class Checkpointer:

  def __init__(self, workdir: str, keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, history: dict) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), history=ocp.args.JsonSave(history)), force=True)

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def restore(self, abstract_state, step: int | None = None):
    """(state, history) of `step` (default: the latest); CheckpointError, one line, if
    it does not restore."""
    step = self.latest_step() if step is None else step
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
      return abstract_state.replace(**out.state), out.history
    return out.state, out.history

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
    os.makedirs(aside, exist_ok=True)
    for step in steps:
      dest = os.path.join(aside, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
      shutil.move(os.path.join(self.directory, str(step)), dest)
      logging.warning("moved the damaged checkpoint of step %d to %s", step, dest)
    self.manager.reload()

  def remove_unfinished(self) -> list[str]:
    """Deletes the temporary directories of writes a crash cut short (orbax leaves them
    until that step is saved again). Only for the workdir's one trainer (it holds the
    lock, `jdbw.workdir`), before its first save."""
    try:
      names = [n for n in os.listdir(self.directory) if not n.isdigit()
               and ".orbax-checkpoint-tmp" in n]
    except OSError:
      return []
    for n in names:
      shutil.rmtree(os.path.join(self.directory, n), ignore_errors=True)
    if names:
      logging.info("removed %d unfinished checkpoint write(s): %s", len(names), ", ".join(names))
    return names

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
