"""Test set-up: two fake CPU devices for data-parallel tests, shared fixtures."""

import os
import tempfile

# Must precede the first `import jax` anywhere in the test session (and reaches the
# pytest-xdist workers and the CLI subprocesses through the environment).
#  - two fake CPU devices for the data-parallel tests;
#  - LLVM at -O0: the suite is dominated by compiling many small programs once, and -O0
#    roughly halves XLA:CPU compile time while the tiny runs execute about as fast.
#    Values move only by float reassociation (test_golden's tolerance says how much).
#    Set XLA_FLAGS=--xla_backend_optimization_level=2 to test at the default level.
#  - XLA:CPU's older fusion emitters (--xla_cpu_use_fusion_emitters=false): at -O0 they
#    compile the tests' tiny iterations about 20 % faster (docs/benchmarks.md); at -O2
#    and the study's sizes they compile and run slower, so only the suite uses them.
from helpers import SUITE_FUSION, SUITE_OPT_LEVEL, fake_devices  # noqa: E402  (nothing heavy)

_flags = os.environ.get("XLA_FLAGS", "")
for _flag in (fake_devices(2), SUITE_OPT_LEVEL, SUITE_FUSION):
  if _flag.split("=")[0] not in _flags:
    _flags += " " + _flag
os.environ["XLA_FLAGS"] = _flags.strip()
# and the XLA:CPU flags the entry points set (jdbw.xla_flags), so the suite runs what users run.
from jdbw import xla_flags  # noqa: E402  (imports no JAX)

xla_flags.apply()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One persistent compilation cache per test session, shared with the CLI subprocesses
# (they inherit the environment): the many tiny runs compile the same iterations, and a
# resumed run recompiles what its first half compiled. Results are unchanged; only
# compile time is saved.
# (The directories are made once, by the first process: xdist workers and subprocesses
# inherit the variables.)
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jdbw_jax_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# One jdbw cache per test session (`jdbw.data.cache_root`), shared the same way: the
# digits evaluation classifiers of `helpers.DIGITS_CLASSIFIER` train once for the
# session's tests, its CLI runs and the notebook's kernel, and never come from (or go
# to) the developer's ~/.cache/jdbw.
if "JDBW_CACHE" not in os.environ:
  os.environ["JDBW_CACHE"] = tempfile.mkdtemp(prefix="jdbw_cache_")
os.environ.setdefault("JDBW_SUITE_CACHE", os.environ["JDBW_CACHE"])   # helpers.shared_*

# orbax creates and lists its checkpoint folders through etils.epath, which reaches
# gs:// through tf.io.gfile where TensorFlow is installed, and decides that once per
# process (a cached check). TensorFlow's GCS client cannot be pointed at the local
# emulator of tests/test_storage.py; gcsfs can. Local paths are unaffected.
os.environ.setdefault("EPATH_USE_TF", "false")

import pytest  # noqa: E402

# The test files, longest first (each file's share of a worker's time on 2 cores,
# 2026-12-07: test_train.py about 9 minutes, test_image_pool.py a second). xdist
# (--dist=loadfile --no-loadscope-reorder, setup.cfg) hands whole files to idle workers in
# collection order: longest first, the two workers end within about a minute of each other
# instead of one waiting out a long file started last. A file not listed (a new one, whose
# length is not known yet) runs first, where a long one does no harm;
# tests/test_layout.py fails until it is listed.
LONGEST_FIRST = ("test_train.py", "test_evaluation.py", "test_munit.py", "test_folder.py",
                 "test_cyclegan.py", "test_multihost.py", "test_paired.py", "test_semantic.py",
                 "test_workdir.py", "test_storage.py", "test_mixture.py", "test_golden.py",
                 "test_balagan.py", "test_notebook.py", "test_layers.py", "test_irwgan.py", "test_data.py",
                 "test_readme.py", "test_methods.py", "test_models.py", "test_losses.py",
                 "test_inception.py", "test_flops.py", "test_batch_weight.py",
                 "test_metrics.py", "test_layout.py", "test_xla_flags.py", "test_image_pool.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, -1))   # stable: file order kept

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="session")
def fashion_dir():
  """Real Fashion-MNIST from Debian's `dataset-fashion-mnist` (installed by the test command)."""
  if not os.path.isfile(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz")):
    pytest.fail(f"{FASHION_DIR} is missing: `apt-get install dataset-fashion-mnist`"
                " (the README's test command does this)")
  return FASHION_DIR


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """One TFDS data_dir per test session, so IDX data is prepared once."""
  return str(tmp_path_factory.mktemp("tensorflow_datasets"))
