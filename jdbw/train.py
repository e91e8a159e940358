"""The training loop every method plugs into.

A method (`jdbw.methods.base.Method`, e.g. `jdbw.methods.jd.JD`) supplies `config` (a frozen dataclass), `init_state(rng)`,
`iteration(state, batch, axis_name) -> (state, metrics, per_sample_weights)` with
`batch = {'x', 'y'}` images stacked [1 + d, B, ...], `batches_per_iteration`,
`directions` ('xy', 'yx'), `translate(params, spectral, images, z, direction)` and
`hooks(domains, ema, every)` (`jdbw.hooks`: what is watched per step, logged and drawn,
e.g. Figure 3's weight monitor). The loop owns data, devices, checkpoints, resume and
logging, and knows nothing of batch weight.

Resume: rerunning with the same --workdir restores the latest checkpoint (step, all
params and optimiser states including learning-rate schedules, RNG, history of the
weight curves) and continues the same run: the data stream is cut into segments of
`stream_segment` iterations, each seeded from (seed, its first step), and a resume
rebuilds the current segment and skips the iterations already trained (their images
are not transformed), so a killed and resumed run sees exactly the batches, and on
the same machine reaches exactly the parameters, of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
import time
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from jdbw import checkpoint, data, hooks, parallel, storage
from jdbw import workdir as wd
from jdbw.config import setting
from jdbw.errors import EXIT_INTERRUPTED, CheckpointError, ConfigError, Preempted

PARALLEL = ("shard_map", "pmap")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """How one run trains (not what): its workdir, length, batch, seed and periods; the
  trainer's run flags are generated from these fields (`experiments.common`)."""
  workdir: str = setting(None, "Directory for checkpoints, TensorBoard and figures.")
  steps: int = setting(50000, "Generator steps (iterations of 1 G + d D steps).")
  batch_size: int = setting(128, "Global batch size (divisible by the device count).")
  seed: int = setting(0, "Seed of the parameters, the RNG state and the data stream.")
  parallel: str = setting("shard_map", "Data-parallel wrapper of the same step:"
                          " jit(shard_map) or pmap.", choices=PARALLEL)
  checkpoint_every: int = setting(1000, "Checkpoint period (steps).")
  keep_checkpoints: int = setting(3, "Checkpoints kept.")
  log_every: int = setting(50, "Log/TensorBoard period (steps).")
  figure_every: int = setting(5000, "Figure period (steps); figures also at the end;"
                              " 0 = no figures.")
  data_dir: str | None = None     # a domain flag (--data_dir), shared with evaluation
  weight_ema: float = 0.98        # Figure 3's moving average; not a flag
  eval_every: int = setting(0, "Evaluate (experiments.evaluate's metrics) every N steps and"
                            " at the end, to TensorBoard under eval/; 0 = off.")
  stream_segment: int = setting(
      1000, "Iterations per data-stream segment: each is seeded from (seed, its first step),"
      " so a resume replays the stream exactly, skipping at most this many iterations'"
      " draws. Keep it when resuming.")
  pairing: str = setting(
      "none", "How X and Y draws relate: independent streams (none), or each Y draw the X"
      " draw's own image through --transform_y and --channels_y (same_draw: paired data,"
      " with X's class distribution; --source_y must equal --source_x, or be the other"
      " half of an A|B folder: folder option half=). The paired methods (pix2pix,"
      " bicyclegan) need pairs; the others ignore the pairing.",
      choices=data.PAIRINGS)

  def validate(self):
    if not self.workdir:
      raise ConfigError("--workdir: required (directory for checkpoints, logs and figures)")
    if self.steps < 1:
      raise ConfigError(f"--steps: got {self.steps}; expected >= 1")
    if self.parallel not in PARALLEL:
      raise ConfigError(f"--parallel: got {self.parallel!r}; expected one of {PARALLEL}")
    if self.pairing not in data.PAIRINGS:
      raise ConfigError(f"--pairing: got {self.pairing!r}; expected one of {data.PAIRINGS}")
    if self.seed < 0:
      raise ConfigError(f"--seed: got {self.seed}; expected >= 0")
    for f in ("batch_size", "checkpoint_every", "log_every", "keep_checkpoints",
              "stream_segment"):
      if getattr(self, f) < 1:
        raise ConfigError(f"--{f}: got {getattr(self, f)}; expected >= 1")
    for f in ("figure_every", "eval_every"):
      if getattr(self, f) < 0:
        raise ConfigError(f"--{f}: got {getattr(self, f)}; expected >= 0 (0 = off)")
    return self


def stream_seed(seed: int, step: int) -> int:
  """Seed of the data-stream segment that starts at `step` (0: the run's seed)."""
  if step == 0:
    return seed
  return int(np.random.SeedSequence([seed, step]).generate_state(1)[0] & 0x7FFFFFFF)


# --- wrappers: the same step under jit(shard_map) or pmap ---

def compile_iteration(method, mode: str, mesh=None):
  """The method's iteration, compiled once, with the state's buffers donated.

  shard_map: state replicated, batch global arrays sharded on their batch axis (1).
  pmap: state and batch carry a leading local-device axis.

  An equal method (same type and config, `BaseMethod.__eq__`), mode and mesh give the
  same compiled function (a few are kept), so a second run of a method in one process
  (a resume, a notebook's rerun, a sweep's next seed) neither traces nor compiles its
  iteration again.
  """
  if mode not in ("shard_map", "pmap"):
    raise ValueError(mode)
  return _compiled(method, mode, (mesh or parallel.make_mesh()) if mode == "shard_map" else None)


@functools.lru_cache(maxsize=8)
def _compiled(method, mode: str, mesh):
  fn = functools.partial(method.iteration, axis_name=parallel.BATCH_AXIS)
  if mode == "shard_map":
    sm = jax.shard_map(fn, mesh=mesh, in_specs=(P(), parallel.batch_spec(1)),
                       out_specs=(P(), P(), P(parallel.BATCH_AXIS)), check_vma=False)
    return jax.jit(sm, donate_argnums=0)
  return jax.pmap(fn, axis_name=parallel.BATCH_AXIS, donate_argnums=0)


@functools.lru_cache(maxsize=8)
def compiled_init(method):
  """`method.init_state` compiled (one program instead of hundreds of eager ones: each
  network layer's initialisers), kept per (equal) method like `compile_iteration`."""
  return jax.jit(method.init_state)


def place_state(state, mode: str, mesh=None):
  if mode == "pmap":
    n = jax.local_device_count()
    return jax.tree.map(lambda a: np.stack([np.asarray(a)] * n), state)
  # From host values: with several processes each one supplies its (identical) copy.
  return jax.device_put(jax.device_get(state), NamedSharding(mesh or parallel.make_mesh(), P()))


def host_state(state, mode: str):
  """A single (unreplicated) copy of the state, for checkpoints and inference."""
  return jax.tree.map(lambda a: a[0], state) if mode == "pmap" else state


def local_state(state, mode: str):
  """This process's own copy of the (replicated) state, for work one process does
  alone (figures, evaluation): with several processes the global arrays span devices
  of other hosts, and a computation on them would wait for every process."""
  state = host_state(state, mode)
  if jax.process_count() == 1:
    return state
  return jax.tree.map(lambda a: np.asarray(a.addressable_data(0))
                      if isinstance(a, jax.Array) else a, state)


def place_batch(images, mode: str, mesh=None):
  if mode == "pmap":
    return parallel.to_pmap(images, batch_axis=1)
  return parallel.to_global(images, mesh or parallel.make_mesh(), batch_axis=1)


def flat_per_sample(per_sample):
  return {k: np.asarray(v).reshape(-1) for k, v in per_sample.items()}


# --- workdir bookkeeping ---

def _config_record(method, domains, run: RunConfig | None = None) -> dict:
  """config.json: the method (its registry name), its model config, the domain specs, the
  run's settings and, for sources whose classes have names (folder subfolders), those
  names by label."""
  from jdbw import methods
  record = {"method": methods.name_of(method), "model": dataclasses.asdict(method.config),
            "domains": {k: dataclasses.asdict(d.spec) for k, d in domains.items()}}
  if run is not None:
    record["run"] = dataclasses.asdict(run)
  names = {k: list(d.data.class_names) for k, d in domains.items() if d.data.class_names}
  if names:
    record["class_names"] = names
  return record


# The run settings' defaults, for records written before a field existed.
RUN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}
# How, not what, a run computes: a workdir may be resumed with another value.
EXECUTION_FIELDS = ("conv_impl",)
# The run settings that make the run what it is (its initial state and its data stream); a
# resume with another value would continue silently on another stream. The others (steps,
# periods, --parallel) may change between a run and its resume.
RUN_IDENTITY = ("batch_size", "seed", "stream_segment", "pairing")


def as_json(value):
  """`value` as its JSON file holds it (tuples as lists, keys as strings), for comparing
  a configuration with the record of a workdir."""
  return json.loads(json.dumps(value))


def check_workdir_config(workdir: str, record: dict, defaults: dict | None = None) -> None:
  """Writes config.json on a new workdir; refuses one made with another configuration.

  `defaults`: the model config's defaults, taken for fields the workdir's record lacks
  (fields added after the run was made).
  """
  from jdbw import methods
  path = os.path.join(workdir, "config.json")
  record, defaults = as_json(record), as_json(defaults or {})
  if storage.exists(path):
    old = wd.read_json(path, "--workdir")
    old = {**old, "model": {**(defaults or {}), **old.get("model", {})}}
    diff = sorted(k for sec in ("model", "domains") for k in
                  set(old.get(sec, {})) | set(record[sec])
                  if old.get(sec, {}).get(k) != record[sec].get(k)
                  and not (sec == "model" and k in EXECUTION_FIELDS))
    if "run" in old and "run" in record:   # records before 2026-12-05 have no run section
      was = {**RUN_DEFAULTS, **old["run"]}   # fields added since take their defaults
      diff = [f"run.{k} ({was.get(k)} then, {record['run'].get(k)} now)"
              for k in RUN_IDENTITY if was.get(k) != record["run"].get(k)] + diff
    if methods.canonical_name(old.get("method")) != methods.canonical_name(record["method"]):
      diff.insert(0, "method")
    old_names, names = old.get("class_names", {}), record.get("class_names", {})
    diff += [f"class_names.{k}" for k in sorted(set(old_names) & set(names))
             if old_names[k] != names[k]]   # a folder's classes changed under the run
    if diff:
      raise ConfigError(
          f"--workdir: {workdir} was created with a different configuration"
          f" (differs in: {', '.join(diff)}); use a new --workdir or the original flags")
    return
  if jax.process_index() != 0:   # multi-process: process 0 writes the run's files
    return
  storage.makedirs(workdir)
  wd.write_json_atomic(path, record, indent=2, sort_keys=True)


class _Preemption:
  """SIGTERM (preemption on Colab / TPU VMs) or Ctrl-C asks the run to stop: in the loop
  after the current step, with a checkpoint; during start-up before the first step.
  The handler only sets a flag (no KeyboardInterrupt that a library callback could
  swallow). A second Ctrl-C stops at once: one line, exit EXIT_INTERRUPTED, nothing
  saved (the lock is taken over by the next run).

  Several processes (`jax.distributed`): SIGTERM is left to JAX's preemption service,
  which tells every process of a notice to any one of them and agrees on one step to
  stop at; `reached(step)` asks it through orbax (`CheckpointManager.reached_preemption`),
  so all processes write the same checkpoint, which their collective save needs.
  """

  SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}

  def __init__(self):
    self.requested = None   # the name of the first signal received
    self._old = {}
    self._synced = jax.process_count() > 1

  def reached(self, step: int, ckpt) -> bool:
    """Whether the run stops after `step` (every process calls it at every step)."""
    if self._synced and not self.requested and ckpt.manager.reached_preemption(step):
      logging.warning("a preemption notice (SIGTERM to one of the %d processes): every"
                      " process stops after step %d", jax.process_count(), step)
      self.requested = "SIGTERM"
    return self.requested is not None

  def __enter__(self):
    for sig in self.SIGNALS:
      if sig == signal.SIGTERM and self._synced:
        continue
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread: leave signals alone.
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self.requested and signum == signal.SIGINT:
      os.write(2, f"interrupted twice (Ctrl-C): stopped at once, nothing saved since the"
                  f" last checkpoint (exit status {EXIT_INTERRUPTED})\n".encode())
      os._exit(EXIT_INTERRUPTED)
    self.requested = self.requested or self.SIGNALS[signum]
    if signum == signal.SIGINT:
      os.write(2, b"Ctrl-C: stopping after this step with a checkpoint (Ctrl-C again:"
                  b" stop at once)\n")

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


# --- figures ---

def _eval_batch(domains, seed, n, resolution, pairing="none"):
  """The figures' fixed batch; on paired data (`pairing`) its Y images are the X images'
  own pairs, so Figure 2 shows each translation beside its target."""
  it = data.make_batches(domains, n, seed=seed + 1, resolution=resolution,
                         device_count=1, process_index=0, process_count=1, pairing=pairing)
  return next(it)


def prepare(method, state, domains, run):
  """A fresh run's data-dependent start: `method.prepare(state, batches)` on
  `method.prepare_batches` batches of each domain (DistanceGAN's distance statistics),
  drawn from their own stream (seed + 2) so the training stream is unchanged. The
  result is part of the state, so a resumed run never redraws it; with several
  processes process 0's is used by all."""
  it = data.make_batches(domains, run.batch_size, seed=run.seed + 2,
                         resolution=method.config.resolution,
                         stack=(method.prepare_batches,), device_count=1, process_index=0,
                         process_count=1)
  images = {k: v["image"] for k, v in next(it).items()}
  state = method.prepare(state, images)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    state = state.replace(extras=multihost_utils.broadcast_one_to_all(state.extras))
  return state


def write_figures(method, watch, state, eval_batch, history, workdir, seed) -> list[str]:
  """Every hook's figures into `<workdir>/figures`."""
  out_dir = os.path.join(workdir, "figures")
  storage.makedirs(out_dir)
  paths = []
  for h in watch:
    paths += h.figures(method, state, eval_batch, history, out_dir, seed)
  return paths


# --- the loop ---

def train(method, run: RunConfig, domain_specs: dict, *, evaluate=None,
          iteration_wrapper=None) -> Any:
  """Trains `method` on the two domains; returns the final host state.

  `evaluate(state) -> {name: float}` (e.g. `jdbw.evaluation.Evaluator`'s scalars) runs
  every `run.eval_every` steps and at the end; its numbers go to TensorBoard under
  `eval/`. `iteration_wrapper` (tests only) wraps the compiled iteration, e.g. to
  inject faults. SIGTERM: a checkpoint of the step reached is written, then
  `jdbw.errors.Preempted` is raised (a preempted run never looks finished). Before
  anything is loaded or compiled the workdir is checked (writable, room for a
  checkpoint) and locked (`jdbw.workdir`); a disk that fills or turns read-only during
  the run ends it with `jdbw.errors.StorageError` (one line, the last good checkpoint).
  """
  run.validate()
  workdir = storage.absolute(run.workdir)
  lead = jax.process_index() == 0   # writes events and figures; every process checkpoints
  abstract = jax.eval_shape(method.init_state, jax.random.PRNGKey(run.seed))
  ckpt_bytes = checkpoint.size_bytes(abstract)
  if lead:   # before loading data or compiling: the workdir takes files, one checkpoint fits
    wd.check_writable(workdir, ckpt_bytes)
  with wd.BackgroundErrors(workdir), _Preemption() as preempt, (
      wd.WorkdirLock(workdir) if lead else contextlib.nullcontext()):
    try:
      return _train(method, run, domain_specs, workdir, lead, abstract, ckpt_bytes,
                    evaluate, iteration_wrapper, preempt)
    except Exception as e:
      error = wd.storage_error(e, workdir)
      if error is None:
        raise
      raise error from e


def _train(method, run, domain_specs, workdir, lead, abstract, ckpt_bytes, evaluate,
           iteration_wrapper, preempt):
  domains = {k: data.load_domain(s, data_dir=run.data_dir, process_index=jax.process_index(),
                                 process_count=jax.process_count())
             for k, s in domain_specs.items()}
  if lead:
    data.folder.report_pairing(domain_specs)
  method.check_domains(domains)
  data.check_pairing(domains, run.pairing)
  if method.paired and run.pairing == "none":
    raise ConfigError(f"--pairing: {method.name} trains on pairs; set"
                      f" --pairing=same_draw (each Y draw the X draw's own image through"
                      f" --transform_y)")
  points = method.point_domains
  data.host_batch_size(run.batch_size, device_count=jax.device_count(),
                       process_count=jax.process_count())
  check_workdir_config(workdir, _config_record(method, domains, run),
                       dataclasses.asdict(type(method.config)()))

  mesh = parallel.make_mesh() if run.parallel == "shard_map" else None
  step_fn = compile_iteration(method, run.parallel, mesh)
  if iteration_wrapper is not None:
    step_fn = iteration_wrapper(step_fn)
  ckpt = checkpoint.Checkpointer(workdir, run.keep_checkpoints, trainer=lead)
  if lead:
    ckpt.remove_write_probes()
  watch = hooks.default_hooks(method, domains, ema=run.weight_ema, every=run.log_every)
  history = hooks.new_history(watch)
  start = 0
  if ckpt.latest_step():   # a resume restores into shapes: nothing to initialise
    state, restored, start = ckpt.restore_latest(abstract, quarantine=jax.process_index() == 0)
    history = {**hooks.new_history(watch, len(restored.get("steps", []))), **restored}
    logging.info("resumed %s at step %d", workdir, start)
  else:
    # One compiled program instead of hundreds of eager ones (each network layer's
    # initialisers): a tiny JD launch started about 9 s sooner on a 2-core CPU
    # (2026-12-06, warm compilation cache), and a relaunch reads it from JAX's
    # persistent compilation cache when one is set.
    state = compiled_init(method)(jax.random.PRNGKey(run.seed))
  if not start and method.pretrains:   # the method's own fixed network (DTN's f)
    state = method.pretrain(state, domain_specs, run.data_dir)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      state = state.replace(params=multihost_utils.broadcast_one_to_all(state.params))
  if not start and method.prepare_batches:
    state = prepare(method, state, domains, run)
  if start >= run.steps:
    logging.info("nothing to do: checkpoint at step %d >= --steps=%d", start, run.steps)
    return state
  eval_batch = _eval_batch(domains, run.seed, 1000 if points else 16, method.config.resolution,
                           run.pairing)

  def stream(step):
    """The batches of iterations step, step + 1, ... (module docstring: segments)."""
    first = step - step % run.stream_segment
    return data.make_batches(domains, run.batch_size, seed=stream_seed(run.seed, first),
                             resolution=method.config.resolution,
                             stack=(method.batches_per_iteration,), skip=step - first,
                             pairing=run.pairing)

  batches = stream(start)
  writer = _tb_writer(os.path.join(workdir, "tb")) if lead else _NoWriter()
  dev_state = place_state(state, run.parallel, mesh)
  timer = {"t": time.time(), "step": start}

  def finish(done, metrics, per_sample, labels):
    """Host side of one step; its device_get is the loop's only synchronisation."""
    metrics = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in jax.device_get(metrics).items()}
    if not all(np.isfinite(v) for v in metrics.values()):
      bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
      if start and ckpt.latest_step() == start:   # nothing saved since the resume
        if lead:
          ckpt.quarantine(start)
        raise CheckpointError(
            f"--workdir: non-finite loss at step {done} ({', '.join(sorted(bad))}),"
            f" {done - start} step(s) after resuming from checkpoint step {start}: that"
            " checkpoint is the likely cause and was moved to damaged_checkpoints/; rerun"
            " the same command to resume from the one before it")
      raise FloatingPointError(
          f"non-finite loss at step {done}: {bad}; stopping. The last good"
          f" checkpoint (step {ckpt.latest_step()}) is untouched; lower --lr or"
          " raise --gp_weight and rerun with a new --workdir")
    per_sample, labels = _gathered(per_sample, labels, run.parallel)
    per_sample = flat_per_sample(per_sample)
    for h in watch:
      h.observe(history, done, per_sample, labels)
    if done % run.log_every == 0 or done == run.steps:
      rate = (done - timer["step"]) / max(time.time() - timer["t"], 1e-9)
      eta = (run.steps - done) / max(rate, 1e-9)
      logging.info("step %d/%d  %s  %.2f steps/s  ETA %.0fs", done, run.steps,
                   "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())), rate, eta)
      for k, v in metrics.items():
        writer.add_scalar(k, v, done)
      writer.add_scalar("perf/steps_per_s", rate, done)
      for h in watch:
        for k, v in h.scalars(history, done).items():
          writer.add_scalar(k, v, done)
      writer.flush()
      timer["t"], timer["step"] = time.time(), done

  try:
    if preempt.requested:   # during start-up: nothing trained yet, nothing to save
      raise Preempted(workdir, start, preempt.requested, saved=False)
    pending = None
    for step in range(start, run.steps):
      if step > start and step % run.stream_segment == 0:
        batches = stream(step)
      batch = next(batches)
      images = {k: v["image"] for k, v in batch.items()}  # Labels stay on the host.
      labels = {k: v["label"][0] for k, v in batch.items()}
      # Dispatch is asynchronous: the previous step's host work below, and the next
      # batch's read and transfer, overlap this step on the device.
      dev_state, metrics, per_sample = step_fn(dev_state, place_batch(images, run.parallel, mesh))
      if pending is not None:
        finish(*pending)
      done = step + 1
      pending = (done, metrics, per_sample, labels)
      stop = preempt.reached(done, ckpt)
      save = done % run.checkpoint_every == 0 or done == run.steps or stop
      draw = run.figure_every and (done % run.figure_every == 0 or done == run.steps)
      score = evaluate is not None and run.eval_every and (
          done % run.eval_every == 0 or done == run.steps)
      if not (save or draw or score):
        continue
      # Anything that keeps this step's state first checks its losses were finite.
      finish(*pending)
      pending = None
      if save:
        wd.ensure_room(workdir, ckpt_bytes)
        ckpt.save(done, host_state(dev_state, run.parallel), history)
      if draw and lead:
        write_figures(method, watch, local_state(dev_state, run.parallel), eval_batch,
                      history, workdir, run.seed)
      if score:
        scores = evaluate(local_state(dev_state, run.parallel))
        logging.info("eval step %d  %s", done,
                     "  ".join(f"{k}={v:.4f}" for k, v in sorted(scores.items())))
        for k, v in scores.items():
          writer.add_scalar(f"eval/{k}", v, done)
        writer.flush()
      if stop:
        logging.warning("%s: checkpoint written at step %d; exiting", preempt.requested, done)
        break
  finally:
    try:
      ckpt.wait()   # raises what a write in flight failed with
    finally:
      ckpt.close()
      writer.close()
  if preempt.requested:
    raise Preempted(workdir, done, preempt.requested)
  return host_state(dev_state, run.parallel)


def _gathered(per_sample, labels, mode: str):
  """The global batch's per-sample values and labels on every process (host numpy).

  One process: its arrays as they are. Several: the per-sample outputs are global
  arrays no host holds whole, and each host has only its slice of the labels, so both
  are gathered in process order (the order `parallel.to_global` builds the batch in).
  """
  if jax.process_count() == 1:
    return per_sample, labels
  from jax.experimental import multihost_utils
  if mode == "pmap":   # [local devices, B_local] per host
    per_sample = {k: np.asarray(v).reshape(-1) for k, v in per_sample.items()}
  per_sample = multihost_utils.process_allgather(per_sample, tiled=True)
  labels = multihost_utils.process_allgather(
      {k: np.asarray(v).reshape(-1) for k, v in labels.items()}, tiled=True)
  return per_sample, labels


class _NoWriter:
  """The TensorBoard writer of processes other than 0."""

  def add_scalar(self, *args, **kwargs):
    pass

  def flush(self):
    pass

  def close(self):
    pass


class _TBWriter:
  """TensorBoard scalars, written synchronously in the loop's thread.

  tensorboardX's `SummaryWriter` queues events to a background thread; when the disk
  fills, that thread dies and, at interpreter exit, prints a traceback ("OSError: handle
  is closed") after the run's one-line storage error. Here every write and flush happens
  in the caller, so a failure is an ordinary OSError that the loop's storage handling
  turns into its one line, and nothing runs after close.
  """

  def __init__(self, logdir):
    from tensorboardX import event_file_writer, summary
    storage.makedirs(logdir)   # tensorboardX writes gs:// itself (google-cloud-storage)
    self._summary = summary
    self._events = event_file_writer.EventsWriter(os.path.join(logdir, "events"))

  def add_scalar(self, tag, value, step):
    from tensorboardX.proto import event_pb2
    self._events.write_event(event_pb2.Event(
        wall_time=time.time(), step=int(step), summary=self._summary.scalar(tag, float(value))))

  def flush(self):
    self._events.flush()

  def close(self):
    if self._events is not None:
      events, self._events = self._events, None
      events.close()


def _tb_writer(logdir):
  return _TBWriter(logdir)
