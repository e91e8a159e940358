r"""Evaluates a training workdir: class consistency, hallucination, weight calibration,
noise, FD-classifier. Writes <workdir>/metrics.json, <workdir>/report.md and figures.

  python -m experiments.evaluate --workdir=workdirs/quickstart

The first run per domain trains its evaluation classifier into --classifier_dir.
"""

from absl import app, flags, logging

from experiments import common
from jdbw.evaluation import report

common.define_eval_flags()
flags.DEFINE_string("workdir", None, "Training workdir to evaluate.")
flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the latest).")
flags.DEFINE_string("data_dir", None, "TFDS data_dir (as used for training).")
flags.DEFINE_bool("every_checkpoint", True,
                  "Also compute the weight calibration TV at every kept checkpoint.")
FLAGS = flags.FLAGS


@common.exit_on_bad_input
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.workdir:
    raise common.ConfigError("--workdir: required (a training workdir with config.json)")
  result = report.evaluate_workdir(
      FLAGS.workdir, common.eval_config(), step=FLAGS.step, data_dir=FLAGS.data_dir,
      classifier_config=common.classifier_config(), every_checkpoint=FLAGS.every_checkpoint)
  for k, v in sorted(result["scalars"].items()):
    print(f"{k:40s} {v:.4f}")
  logging.info("wrote %s/metrics.json and report.md", FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
