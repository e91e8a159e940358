"""Experiment entrypoints (absl apps): training, evaluation, studies, figures."""

import os

# TensorFlow (the input pipeline) logs its C++ start-up notices unless told before import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# XLA:CPU flags measured for this project's networks (jdbw.xla_flags), set before any
# entry point starts JAX.
from jdbw import xla_flags as _xla_flags  # noqa: E402  (imports no JAX)

_xla_flags.apply()
