"""Test set-up: two fake CPU devices for data-parallel tests, shared fixtures."""

import os

# Must precede the first `import jax` anywhere in the test session.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=2").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

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
