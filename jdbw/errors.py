"""Errors raised for bad user input.

Every `ConfigError` message is one line that names the flag or file at fault and
what was expected; entrypoints print it as is and exit with status 2.
"""


class ConfigError(ValueError):
  """Bad flag value, file or directory, detected at start-up."""


class DataUnavailableError(RuntimeError):
  """A data set could not be obtained (e.g. TFDS download while offline)."""


class CheckpointError(RuntimeError):
  """No checkpoint of a workdir restores (each one's step and cause in one line)."""


class StorageError(RuntimeError):
  """The workdir's storage refused a write during a run (disk full, read-only,
  permissions): one line naming the path, the cause and the last good checkpoint."""

  def __init__(self, workdir: str, cause: str, path: str | None, checkpoints: list[int]):
    last = (f"the last good checkpoint is step {checkpoints[-1]}" if checkpoints
            else "no checkpoint was written yet")
    super().__init__(f"--workdir: writing {path or workdir} failed: {cause}; {last};"
                     " fix the storage and rerun the same command to continue")
    self.workdir, self.cause, self.path, self.checkpoints = workdir, cause, path, checkpoints


class Preempted(Exception):
  """SIGTERM (preemption) or Ctrl-C stopped a run: after writing a checkpoint of `step`,
  or during start-up, before any step (`saved` False: nothing new to keep). Rerunning the
  same command continues it. Entrypoints exit with `exit_status`: EXIT_PREEMPTED after
  SIGTERM, EXIT_INTERRUPTED after Ctrl-C."""

  def __init__(self, workdir: str, step: int, signal_name: str = "SIGTERM",
               saved: bool = True):
    what = "preempted (SIGTERM)" if signal_name == "SIGTERM" else "interrupted (Ctrl-C)"
    where = (f"at step {step}: checkpoint written in {workdir}" if saved else
             f"during start-up: nothing new to save in {workdir}")
    super().__init__(f"{what} {where}; rerun the same command to continue")
    self.workdir, self.step, self.saved = workdir, step, saved
    self.exit_status = EXIT_PREEMPTED if signal_name == "SIGTERM" else EXIT_INTERRUPTED


# Exit statuses of the entrypoints (docs/reliability.md, "Exit statuses").
EXIT_BAD_INPUT = 2      # ConfigError, DataUnavailableError, CheckpointError: one line
EXIT_STORAGE = 74       # EX_IOERR: StorageError (disk full, read-only): one line
EXIT_PREEMPTED = 75     # EX_TEMPFAIL: SIGTERM; checkpoint written, rerun to continue
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C once; checkpoint written, rerun to continue
