"""Experiment entrypoints (absl apps): training, evaluation, studies, figures."""

import os

# TensorFlow (the input pipeline) logs its C++ start-up notices unless told before import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
