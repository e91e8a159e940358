"""Training steps, wrappers, loop: agreement across devices, resume, signals, NaN."""

import dataclasses
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import helpers
from helpers import one_line

from jdbw import checkpoint, data, inference, train, workdir
from jdbw.methods import jd
from jdbw.errors import EXIT_INTERRUPTED, EXIT_PREEMPTED, CheckpointError, ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(g_features=4, d_features=2, w_features=2, d_steps=2)


def _batch(d_steps, b=4, seed=0):
  rng = np.random.default_rng(seed)
  return {k: rng.uniform(-1, 1, (d_steps + 1, b, 32, 32, 1)).astype(np.float32)
          for k in ("x", "y")}


def _copy(tree):
  return jax.tree.map(lambda a: jnp.array(a, copy=True), tree)


# Both wrappers run the same step code with the device axis; pmap is checked on the
# default variant, shard_map (the default wrapper) on every variant (compiles are slow).
@pytest.mark.parametrize("variant,modes", [
    (dict(batch_weight="two_sided", weight_norm="softmax"), ("shard_map", "pmap")),
    (dict(batch_weight="two_sided", weight_norm="sigmoid", weighting="concat",
          weight_phase="discriminator", gp_type="interpolates"), ("shard_map",)),
    (dict(batch_weight="one_sided"), ("shard_map",)),
])
def test_shard_map_and_pmap_match_single_device(variant, modes):
  assert jax.device_count() == 2
  method = jd.JD(jd.JDConfig(**TINY, **variant))
  state = method.init_state(jax.random.PRNGKey(0))
  batch = _batch(method.config.d_steps)
  for (ref_state, ref_metrics, ref_w), (got_state, got_metrics, got_w) in (
      helpers.iterations_across_devices(method, state, batch, modes)):
    chex.assert_trees_all_close(got_metrics, ref_metrics, rtol=2e-4, atol=1e-6)
    # Critic scores near zero (6.6e-4 seen) differ by float noise (1e-8): an atol too.
    chex.assert_trees_all_close(train.flat_per_sample(got_w), train.flat_per_sample(ref_w),
                                rtol=1e-5, atol=1e-7)
    # Adam's first moments are proportional to the gradients: a sensitive check.
    chex.assert_trees_all_close(got_state.opt_state, ref_state.opt_state, rtol=2e-3, atol=1e-6)
    # Adam's first steps move each parameter by about ±lr whatever the gradient's size,
    # so float noise on an exactly-zero gradient can move it by up to lr per step; the
    # gradient-level agreement is asserted on the moments above.
    lr_bound = method.config.lr * (1 + method.config.d_steps)
    chex.assert_trees_all_close(got_state.params, ref_state.params, rtol=1e-4, atol=lr_bound)
    chex.assert_trees_all_close(got_state.spectral, ref_state.spectral, rtol=1e-4, atol=1e-5)
    assert int(got_state.step) == 1


def _changed(a, b):
  return any(not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_steps_change_only_their_own_networks():
  method = jd.JD(jd.JDConfig(**TINY))
  state = method.init_state(jax.random.PRNGKey(0))
  b = jax.tree.map(lambda a: a[0], _batch(0))
  key = jax.random.PRNGKey(1)
  g_state, _ = jax.jit(method.generator_step)(state, b, key)
  assert _changed(g_state.params["G"], state.params["G"])
  assert _changed(g_state.params["W"], state.params["W"])
  chex.assert_trees_all_equal(g_state.params["D"], state.params["D"])
  d_state, _ = jax.jit(method.discriminator_step)(state, b, key)
  assert _changed(d_state.params["D"], state.params["D"])
  chex.assert_trees_all_equal(d_state.params["G"], state.params["G"])
  chex.assert_trees_all_equal(d_state.params["W"], state.params["W"])
  it_state, _, _ = jax.jit(method.iteration)(state, _batch(TINY["d_steps"]))
  for k in ("G", "D", "W"):
    assert _changed(it_state.params[k], state.params[k]), k


def test_iteration_compiles_once():
  """The loop's compiled iteration (shard_map, state donated) traces and compiles once
  over new batches and a new state each step. It is kept per method: a method rebuilt
  from an equal config (a resume in one process) gets the same compiled iteration and
  init, another config its own. (JD with TINY is the shard_map test's default variant
  above, so in this file its iteration is compiled already.)"""
  method = jd.JD(jd.JDConfig(**TINY))
  fn = train.compile_iteration(method, "shard_map")
  state = train.place_state(method.init_state(jax.random.PRNGKey(0)), "shard_map")
  for seed in range(3):
    state, _, _ = fn(state, train.place_batch(_batch(TINY["d_steps"], seed=seed), "shard_map"))
  assert int(state.step) == 3
  assert fn._cache_size() == 1
  again, other = jd.JD(jd.JDConfig(**TINY)), jd.JD(jd.JDConfig(**{**TINY, "d_steps": 1}))
  assert again == method and hash(again) == hash(method) and other != method
  assert train.compile_iteration(again, "shard_map") is fn
  assert train.compiled_init(again) is train.compiled_init(method)
  assert train.compile_iteration(other, "shard_map") is not fn   # not compiled: jit is lazy
  assert train.compiled_init(other) is not train.compiled_init(method)


def _specs():
  return {"x": data.DomainSpec(source="digits", name="x"),
          "y": data.DomainSpec(source="digits", classes="0:0.5", transform="sr", name="y")}


def _run(workdir, steps, **kw):
  return train.RunConfig(**{"workdir": str(workdir), "steps": steps, "batch_size": 4,
                            "checkpoint_every": 2, "log_every": 1, "figure_every": 0, **kw})


def test_tiny_run_writes_everything_and_resumes(tmp_path):
  method = jd.JD(jd.JDConfig(**TINY))
  train.train(method, _run(tmp_path, 3, figure_every=100), _specs())
  ckpts = sorted(int(os.path.basename(p)) for p in glob.glob(f"{tmp_path}/checkpoints/[0-9]*"))
  assert ckpts == [2, 3]
  assert glob.glob(f"{tmp_path}/tb/events.out.tfevents.*")
  for name in ("figure2_transfer", "figure3_weights", "figure4_noise"):
    with open(f"{tmp_path}/figures/{name}.png", "rb") as f:
      assert f.read(4) == b"\x89PNG"
  state = train.train(method, _run(tmp_path, 5), _specs())
  assert int(state.step) == 5
  ckpts = sorted(int(os.path.basename(p)) for p in glob.glob(f"{tmp_path}/checkpoints/[0-9]*"))
  assert ckpts[-1] == 5
  # A different model configuration is refused.
  other = jd.JD(jd.JDConfig(**{**TINY, "d_steps": 3}))
  with pytest.raises(ConfigError, match="--workdir: .*differs in: d_steps"):
    train.train(other, _run(tmp_path, 6), _specs())
  # config.json holds the registry name and the run's settings; a resume on another data
  # stream (another batch size or seed) is refused in one line naming the difference.
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["method"] == "jd" and saved["run"]["batch_size"] == 4
  with pytest.raises(ConfigError) as e:
    train.train(method, _run(tmp_path, 6, seed=1), _specs())
  one_line(e, "--workdir:", "differs in: run.seed (0 then, 1 now)")
  with pytest.raises(ConfigError) as e:
    train.train(method, train.RunConfig(workdir=str(tmp_path), steps=6, batch_size=8,
                                        checkpoint_every=2, log_every=1), _specs())
  one_line(e, "run.batch_size (4 then, 8 now)")
  # Paired draws are another stream too; a record without the field (before 2026-12-06)
  # reads as unpaired (the resume above compared it so).
  with pytest.raises(ConfigError) as e:
    train.train(method, _run(tmp_path, 6, pairing="same_draw"),
                {**_specs(), "y": data.DomainSpec(source="digits", transform="sr", name="y")})
  one_line(e, "run.pairing (none then, same_draw now)")


def _damage(workdir, step, how):
  state_dir = os.path.join(workdir, "checkpoints", str(step), "state")
  files = [os.path.join(r, f) for r, _, fs in os.walk(state_dir) for f in fs]
  big = max(files, key=os.path.getsize)   # the largest file: array data
  if how == "truncate":
    with open(big, "r+b") as f:
      f.truncate(os.path.getsize(big) // 2)
  elif how == "flip":     # bytes changed in place, the size kept
    with open(big, "r+b") as f:
      f.seek(os.path.getsize(big) // 2)
      n = min(4096, os.path.getsize(big) // 4)
      f.write(bytes(255 - b for b in f.read(n)))
  else:
    os.remove(os.path.join(state_dir, "_METADATA"))


def test_damaged_checkpoints_fall_back_to_the_newest_that_restores(tmp_path, caplog):
  method = jd.JD(jd.JDConfig(**TINY))
  train.train(method, _run(tmp_path, 5), _specs())           # checkpoints 2, 4, 5
  assert not (tmp_path / "figures").exists()                  # --figure_every=0: none
  _damage(tmp_path, 5, "truncate")
  _damage(tmp_path, 4, "metadata")
  os.remove(tmp_path / "checkpoint_checksums" / "4.json")   # unchecked: orbax's failure
  with caplog.at_level("WARNING"):
    _, state, _ = inference.load_run(str(tmp_path))
  assert int(state.step) == 2
  warned = [r.getMessage() for r in caplog.records if "checkpoint step" in r.getMessage()]
  assert len(warned) == 2 and "step 5" in warned[0] and "step 4" in warned[1]
  assert "fails its checksum" in warned[0] and "does not restore" in warned[1]
  assert all("\n" not in w for w in warned)
  with pytest.raises(CheckpointError) as e:                   # an explicit step: no fallback
    inference.load_run(str(tmp_path), step=5)
  one_line(e, "checkpoint step 5", "fails its checksum")
  # The trainer resumes from step 2 and moves the damaged ones aside.
  state = train.train(method, _run(tmp_path, 6), _specs())
  assert int(state.step) == 6
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4", "6"]
  assert sorted(p.split("-")[0] for p in os.listdir(tmp_path / "damaged_checkpoints")) == ["4", "5"]
  for step in (2, 4, 6):
    _damage(tmp_path, step, "metadata")
  with pytest.raises(CheckpointError) as e:
    inference.load_run(str(tmp_path))
  one_line(e, "--workdir: no checkpoint", "step 6:", "step 4:", "step 2:")


def _rewrite(workdir, method, step, fn):
  """Checkpoint `step` rewritten (with valid checksums) with `fn` applied to its state."""
  ck = checkpoint.Checkpointer(str(workdir))
  try:
    state, history = ck.restore(jax.eval_shape(method.init_state, jax.random.PRNGKey(0)), step)
    shutil.rmtree(os.path.join(workdir, "checkpoints", str(step)))
    ck.manager.reload()
    ck.save(step, fn(state), history)
    ck.wait()
  finally:
    ck.close()


def _poison_adam_moment(value):
  """The state with the first G network's first Adam moment (mu) filled with `value`."""
  def fn(state):
    found = []

    def poison(path, leaf):
      if not found and "mu" in jax.tree_util.keystr(path) and leaf.size > 1:
        found.append(jax.tree_util.keystr(path))
        return jnp.full_like(leaf, value)
      return leaf
    opt = jax.tree_util.tree_map_with_path(poison, state.opt_state)
    assert found
    return state.replace(opt_state=opt)
  return fn


def test_flipped_bytes_and_poisoned_moments_are_caught(tmp_path, caplog):
  """Bytes flipped inside a data file (size kept) fail the checksum; a checkpoint that
  restores a NaN Adam moment is refused; both fall back to the newest good one. One
  that restores finite but trains to a non-finite loss at once is named and set aside."""
  method = jd.JD(jd.JDConfig(**TINY))
  train.train(method, _run(tmp_path, 5), _specs())           # checkpoints 2, 4, 5
  assert sorted(os.listdir(tmp_path / "checkpoint_checksums")) == ["2.json", "4.json",
                                                                       "5.json"]
  _damage(tmp_path, 5, "flip")
  _rewrite(tmp_path, method, 4, _poison_adam_moment(jnp.nan))
  with caplog.at_level("WARNING"):
    _, state, _ = inference.load_run(str(tmp_path))
  assert int(state.step) == 2
  warned = [r.getMessage() for r in caplog.records if "checkpoint step" in r.getMessage()]
  assert "step 5" in warned[0] and "fails its checksum" in warned[0]
  assert "step 4" in warned[1] and "non-finite value" in warned[1] and "mu" in warned[1]
  state = train.train(method, _run(tmp_path, 6), _specs())   # resumes at 2, sets 4, 5 aside
  assert int(state.step) == 6
  assert sorted(p.split("-")[0] for p in os.listdir(tmp_path / "damaged_checkpoints")) == ["4", "5"]
  # Finite but ruinous (Adam's first moment at 3e38): the first step after the resume
  # diverges; the checkpoint is named, set aside, and a rerun resumes from the one before.
  _rewrite(tmp_path, method, 6, _poison_adam_moment(3e38))
  with pytest.raises(CheckpointError) as e:
    train.train(method, _run(tmp_path, 8), _specs())
  one_line(e, "non-finite loss at step 7", "resuming from checkpoint step 6", "rerun")
  assert "6" not in os.listdir(tmp_path / "checkpoints")
  state = train.train(method, _run(tmp_path, 8), _specs())
  assert int(state.step) == 8


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
  method = jd.JD(jd.JDConfig(**TINY))

  def inject(step_fn):
    calls = {"n": 0}

    def wrapped(state, batch):
      state, metrics, w = step_fn(state, batch)
      calls["n"] += 1
      if calls["n"] == 3:
        metrics = {**metrics, "g/gap": metrics["g/gap"] * jnp.nan}
      return state, metrics, w
    return wrapped

  with pytest.raises(FloatingPointError, match="non-finite loss at step 3.*step 2"):
    train.train(method, _run(tmp_path, 6), _specs(), iteration_wrapper=inject)
  ckpts = sorted(int(os.path.basename(p)) for p in glob.glob(f"{tmp_path}/checkpoints/[0-9]*"))
  assert ckpts == [2]


def _cli(workdir, steps, extra=()):
  return [sys.executable, "-m", "experiments.mnist_srmnist", f"--workdir={workdir}",
          f"--steps={steps}", "--batch_size=4", "--g_features=4", "--d_features=2",
          "--w_features=2", "--d_steps=1", "--log_every=1", "--figure_every=0", *extra]


# One CPU device: these tests are about signals and files, not about devices.
_CLI_ENV = {**os.environ, "XLA_FLAGS": helpers.xla_flags()}


def _wait_for(pred, proc, timeout=240, poll=0.5):
  t = time.time()
  while not pred():
    assert proc.poll() is None, f"exited with {proc.returncode}"
    assert time.time() - t < timeout
    time.sleep(poll)


def _launch(wd, steps, extra, log):
  """The entrypoint on `wd` in the background, its log (stderr) to the file `log`."""
  with open(log, "w") as err:   # the child keeps its own copy of the descriptor
    return subprocess.Popen(_cli(wd, steps, extra), cwd=ROOT, env=_CLI_ENV,
                            stdout=subprocess.DEVNULL, stderr=err)


def _ended(proc, log, status):
  """Waits for `proc` to exit with `status`, with no traceback: (log text, last line)."""
  try:
    assert proc.wait(120) == status, log.read_text()[-3000:]
  finally:
    proc.kill()
  text = log.read_text()
  assert "Traceback" not in text, text[-3000:]
  return text, text.strip().splitlines()[-1]


def _saved(wd):
  """Finished checkpoint steps of a workdir."""
  d = wd / "checkpoints"
  return sorted(int(p) for p in os.listdir(d) if p.isdigit()) if d.is_dir() else []


def _writing(wd):
  """orbax's temporary directories: checkpoint writes in progress (or killed)."""
  d = wd / "checkpoints"
  return {p for p in os.listdir(d) if not p.isdigit()} if d.is_dir() else set()


def _final(wd, step):
  method, _, _ = inference.load_run(str(wd))
  abstract = jax.eval_shape(method.init_state, jax.random.PRNGKey(0))
  ckpt = train.checkpoint.Checkpointer(str(wd))
  try:
    return ckpt.restore(abstract, step)
  finally:
    ckpt.close()


def test_interruptions_resume_to_the_uninterrupted_runs_parameters(tmp_path):
  """Fault injection through the real entrypoint: a Ctrl-C, a SIGKILL during a checkpoint
  write, then a SIGTERM, each followed by a rerun of the same command, end in exactly the
  parameters, optimiser states and weight history of an uninterrupted run: a resume
  continues the same run (segmented data stream, jdbw.train).

  Ctrl-C once: a checkpoint of the step reached, one line, EXIT_INTERRUPTED (130), the
  lock released. The SIGKILL lands while a newer checkpoint is being written, so the rerun
  resumes from an older finished one than the step the killed process had reached (the
  case of a SIGKILL after a checkpoint, plus a write's leftovers). SIGTERM writes a
  checkpoint of the step reached and exits with EXIT_PREEMPTED (75), never 0, and without
  "done:"."""
  steps, extra = 32, ["--checkpoint_every=4", "--stream_segment=12"]
  # Every launch runs the same programs: the session's persistent compilation cache
  # (conftest.py, inherited through _CLI_ENV) saves recompiling them.
  env = _CLI_ENV
  ref, wd = tmp_path / "ref", tmp_path / "wd"
  subprocess.run(_cli(ref, steps, extra), cwd=ROOT, env=env, check=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  launch = lambda log: _launch(wd, steps, extra, log)

  log = tmp_path / "once.log"
  proc = launch(log)
  _wait_for(lambda: "step 3/" in log.read_text(), proc, poll=0.05)
  proc.send_signal(signal.SIGINT)
  text, last = _ended(proc, log, EXIT_INTERRUPTED)
  saved = max(_saved(wd))
  assert last.startswith(f"interrupted (Ctrl-C) at step {saved}: checkpoint written"), last
  assert 3 <= saved < steps and not (wd / workdir.LOCK).exists()
  # Quiet by default: the libraries' INFO records (orbax's dozens per checkpoint) are hidden.
  info = [l for l in text.splitlines() if l[:1] == "I" and l[1:5].isdigit()]
  assert info and not [l for l in info if "checkpoint_manager.py" in l], info[:5]

  log = tmp_path / "killed.log"
  stale = _writing(wd)
  proc = launch(log)
  try:  # as soon as a write of a newer checkpoint is seen
    _wait_for(lambda: _writing(wd) - stale or max(_saved(wd)) > saved + 4, proc, poll=0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
  finally:
    proc.kill()
  assert f"resumed {wd} at step {saved}" in log.read_text()
  assert _writing(wd) - stale, "the kill did not land during a checkpoint write"
  assert max(_saved(wd)) < steps, "the run finished before its kill: raise `steps`"

  log = tmp_path / "resumed.log"
  saved = max(_saved(wd))
  proc = launch(log)
  _wait_for(lambda: f"step {saved + 2}/" in log.read_text(), proc, poll=0.05)
  proc.send_signal(signal.SIGTERM)
  text, last = _ended(proc, log, EXIT_PREEMPTED)
  assert f"resumed {wd} at step {saved}" in text
  assert "SIGTERM: checkpoint written" in text and "rerun the same command" in text
  assert "done:" not in text
  preempted = max(_saved(wd))
  assert saved < preempted < steps, _saved(wd)
  subprocess.run(_cli(wd, steps, extra), cwd=ROOT, env=env, check=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  assert not _writing(wd)   # the killed write's temporary directory was removed
  (state, history), (want, want_history) = _final(wd, steps), _final(ref, steps)
  chex.assert_trees_all_equal(jax.device_get(state), jax.device_get(want))
  assert history == want_history


def test_workdir_config_check_takes_new_fields_defaults_and_ignores_execution(tmp_path):
  defaults = dataclasses.asdict(jd.JDConfig())
  record = {"method": "JD", "model": dict(defaults), "domains": {"x": {"source": "digits"}}}
  # A workdir made before these fields existed (tuple-valued oracle_map among them).
  old = {**record, "model": {k: v for k, v in defaults.items()
                             if k not in ("conv_impl", "compute_dtype", "networks",
                                          "mlp_layers", "point_dim", "oracle_map", "w_lr")}}
  with open(tmp_path / "config.json", "w") as f:
    json.dump(old, f)
  train.check_workdir_config(str(tmp_path), record, defaults)  # Fields added since: defaults.
  train.check_workdir_config(str(tmp_path), {**record, "model": {**defaults, "conv_impl": "xla"}},
                             defaults)
  with pytest.raises(ConfigError, match="compute_dtype"):
    train.check_workdir_config(
        str(tmp_path), {**record, "model": {**defaults, "compute_dtype": "bfloat16"}}, defaults)


def test_figure_and_eval_periods_take_0_for_off():
  train.RunConfig(workdir="w", figure_every=0, eval_every=0).validate()
  for f in ("figure_every", "eval_every"):
    with pytest.raises(ConfigError) as e:
      train.RunConfig(workdir="w", **{f: -1}).validate()
    one_line(e, f"--{f}: got -1; expected >= 0 (0 = off)")
  with pytest.raises(ConfigError) as e:
    train.RunConfig(workdir="w", log_every=0).validate()
  one_line(e, "--log_every: got 0; expected >= 1")


def test_the_128_setting():
  """§4.4's 128x128 setting: d = 2 (three batches an iteration) and the geometry checks.
  That one iteration at 128 trains every network is asserted by test_folder.py's run at
  128 (the same networks), which compiles them once."""
  method = jd.JD(jd.JDConfig(**{**TINY, **jd.PAPER_128}))
  assert method.config.d_steps == 2 and method.batches_per_iteration == 3
  state = jax.eval_shape(method.init_state, jax.random.PRNGKey(0))
  x = jax.ShapeDtypeStruct((2, 128, 128, 3), np.float32)
  z = jax.ShapeDtypeStruct((2, method.config.noise_dim), np.float32)
  for way in ("xy", "yx"):
    out = jax.eval_shape(lambda s, x, z: method.translate(s.params, s.spectral, x, z, way),
                         state, x, z)
    assert out.shape == (2, 128, 128, 3), (way, out.shape)
  with pytest.raises(ConfigError, match="--resolution"):
    jd.JDConfig(resolution=64).validate()
  with pytest.raises(ConfigError, match="--g_kernel"):
    jd.JDConfig(**{**jd.PAPER_128, "g_kernel": 1, "g_stride": 1}).validate()


@pytest.mark.slow
def test_ctrl_c_twice_and_signals_during_start_up(tmp_path):
  """Through the entrypoint (Ctrl-C once: the interruptions test above). Ctrl-C twice:
  stops at once, one line, no traceback. SIGTERM during start-up (lock taken, data or
  compile): one line, EXIT_PREEMPTED (75), the lock released."""
  launch = lambda wd, log: _launch(wd, 400, ["--checkpoint_every=1000"], log)

  # Twice: the first during start-up (which takes seconds), the second soon after.
  wd2, log = tmp_path / "twice", tmp_path / "twice.log"
  proc = launch(wd2, log)
  _wait_for(lambda: (wd2 / workdir.LOCK).exists(), proc, poll=0.01)
  proc.send_signal(signal.SIGINT)
  time.sleep(0.3)
  proc.send_signal(signal.SIGINT)
  text, last = _ended(proc, log, EXIT_INTERRUPTED)
  assert last.startswith("interrupted twice (Ctrl-C): stopped at once"), last
  assert "Ctrl-C: stopping after this step" in text

  wd, log = tmp_path / "start", tmp_path / "start.log"
  proc = launch(wd, log)
  _wait_for(lambda: (wd / workdir.LOCK).exists(), proc, poll=0.01)
  proc.send_signal(signal.SIGTERM)
  text, last = _ended(proc, log, EXIT_PREEMPTED)
  assert last.startswith("preempted (SIGTERM)") and "rerun the same command" in last, last
  assert not (wd / workdir.LOCK).exists()
