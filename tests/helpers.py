"""Assertions shared by several test modules (imported as `helpers`: pytest puts tests/
on the path)."""


def one_line(excinfo, *needles):
  """The error of `pytest.raises` is one line and names every needle (flag, file, ...)."""
  msg = str(excinfo.value)
  assert "\n" not in msg
  for n in needles:
    assert n in msg, msg


# The suite compiles at LLVM -O0 and with XLA:CPU's older fusion emitters (conftest.py
# says why).
SUITE_OPT_LEVEL = "--xla_backend_optimization_level=0"
SUITE_FUSION = "--xla_cpu_use_fusion_emitters=false"
SUITE_COMPILE = f"{SUITE_OPT_LEVEL} {SUITE_FUSION}"


# The evaluation classifiers' settings of the tests that evaluate on digits (and of the
# notebook's QUICK run): one setting, so that its classifiers train once per session in
# the session's shared cache (conftest.py's JDBW_CACHE; `shared_classifier_dir`).
# Small but real: digits classifiers reach > 90 % in a few hundred steps.
DIGITS_CLASSIFIER = dict(steps=300, train_draws=4000, test_draws=1000)


def shared_classifier_dir() -> str:
  """The session's classifiers, also for a test that points JDBW_CACHE elsewhere (to
  test a cache of its own: it would otherwise train the classifiers again)."""
  import os
  return os.path.join(os.environ["JDBW_SUITE_CACHE"], "classifiers")


def assert_own_buffers(state):
  """No two leaves of `state` share a buffer: the loop and experiments.benchmark donate a
  fresh state, and XLA refuses a buffer donated twice."""
  import jax
  pointers = [a.unsafe_buffer_pointer() for a in jax.tree.leaves(state)]
  assert len(set(pointers)) == len(pointers)


def fake_devices(n: int) -> str:
  return f"--xla_force_host_platform_device_count={n}"


def xla_flags(devices=1):
  """XLA_FLAGS for a CLI subprocess: `devices` fake CPU devices, compiled as conftest.py
  compiles the suite (LLVM -O0, the older fusion emitters)."""
  return SUITE_COMPILE + (f" {fake_devices(devices)}" if devices > 1 else "")



def iterations_across_devices(method, state, batch, modes):
  """One iteration of `method` on one device (the reference) and in each data-parallel
  mode of `modes` ('shard_map', 'pmap') from copies of `state`: yields (reference, got),
  each (state, metrics, per-sample values) on the host, metrics as scalars."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jdbw import train
  copy = lambda t: jax.tree.map(lambda a: jnp.array(a, copy=True), t)
  ref = jax.device_get(jax.jit(method.iteration)(copy(state), batch))
  for mode in modes:
    fn = train.compile_iteration(method, mode)
    got_state, got_metrics, got_w = fn(train.place_state(copy(state), mode),
                                       train.place_batch(batch, mode))
    got_metrics = jax.tree.map(lambda a: np.asarray(a).reshape(-1)[0], got_metrics)
    yield ref, (jax.device_get(train.host_state(got_state, mode)), got_metrics, got_w)


def optimised(step_fn, level=2):
  """`jdbw.train.train`'s `iteration_wrapper`: the compiled iteration at XLA's optimisation
  `level` (default 2, XLA's own) and with its default fusion emitters instead of the
  suite's -O0 and older emitters, for the tests whose many steps, not their compiles,
  take the time. Compiled on the first call; the same program otherwise (numerics move
  by float reassociation only)."""
  compiled = []

  def call(state, batch):
    if not compiled:
      compiled.append(step_fn.lower(state, batch).compile(
          compiler_options={"xla_backend_optimization_level": level,
                            "xla_cpu_use_fusion_emitters": True}))
    return compiled[0](state, batch)
  return call


def evaluate_small(workdir):
  """A tiny run's evaluation on 100 digits per domain with the session's shared
  classifiers (`report.evaluate_workdir`'s result)."""
  from jdbw.evaluation import classifier, evaluator, report
  cfg = evaluator.EvalConfig(samples=100, batch_size=100, noise_sources=10, noise_draws=2,
                             classifier_dir=shared_classifier_dir(),
                             min_classifier_accuracy=0.5)
  return report.evaluate_workdir(str(workdir), cfg, classifier_config=(
      classifier.ClassifierConfig(**DIGITS_CLASSIFIER)))


def tiny_feature_model(path, size=32, channels=3, features=4):
  """A stand-in for InceptionV3 (nothing can be downloaded here): a Keras model file of
  one 3x3 valid convolution with ReLU and global average pooling, seeded."""
  import keras
  keras.utils.set_random_seed(0)
  inp = keras.Input((size, size, channels))
  h = keras.layers.Conv2D(features, 3, activation="relu")(inp)
  keras.Model(inp, keras.layers.GlobalAveragePooling2D()(h)).save(str(path))
  return str(path)


def resume_matches_straight(method, run, specs, steps, **straight):
  """Trains `run` (to its own steps), resumes the same workdir to `steps`, and trains a
  fresh workdir (`<workdir>_straight`, `straight` overriding run fields, figures off)
  straight to `steps`: the two states must be equal. Returns the resumed state."""
  import dataclasses

  import chex
  import jax

  from jdbw import train
  train.train(method, run, specs)
  resumed = train.train(method, dataclasses.replace(run, steps=steps), specs)
  other = dataclasses.replace(run, steps=steps, workdir=run.workdir + "_straight",
                              **{"figure_every": 0, **straight})
  chex.assert_trees_all_equal(jax.device_get(resumed),
                              jax.device_get(train.train(method, other, specs)))
  return resumed
