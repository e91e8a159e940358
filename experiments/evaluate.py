r"""Evaluates a training workdir: class consistency, hallucination, weight calibration,
noise, FD-classifier, and with --eval_inception FID and KID (which alone need no labels,
so unlabelled folders are scored by them). Writes <workdir>/metrics.json, <workdir>/report.md and figures;
with --step=N (an older checkpoint) they go to <workdir>/evaluations/step_N/ instead, so
the run's own metrics.json stays that of its last step.

  python -m experiments.evaluate --workdir=workdirs/quickstart

The first run per domain trains its evaluation classifier into --classifier_dir.

  python -m experiments.evaluate --workdir=workdirs/quickstart --weights_only \
      --eval_split='train[:90%]' --eval_samples=1024

prints the learned per-class weights beside their targets on any split (a training
slice included; no classifier needed) and writes <workdir>/weights/<split>-step<N>.json.
"""

from absl import app, flags, logging

from experiments import common
from jdbw.evaluation import report

common.define_eval_flags()
flags.DEFINE_string("workdir", None, "Training workdir to evaluate.")
flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the latest, written"
                     " into the workdir); an explicit step writes into"
                     " <workdir>/evaluations/step_<N>/.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir (as used for training).")
flags.DEFINE_bool("every_checkpoint", True,
                  "Also compute the weight calibration TV at every kept checkpoint.")
flags.DEFINE_bool("weights_only", False,
                  "Only the weight calibration (per-class weights, targets, TV) on"
                  " --eval_split, without classifiers; metrics.json is left alone.")
FLAGS = flags.FLAGS


@common.exit_on_bad_input
def main(argv):
  if not FLAGS.workdir:
    raise common.ConfigError("--workdir: required (a training workdir with config.json)")
  if FLAGS.weights_only:
    _weights_only()
    return
  result = report.evaluate_workdir(
      FLAGS.workdir, common.eval_config(), step=FLAGS.step, data_dir=FLAGS.data_dir,
      classifier_config=common.classifier_config(), every_checkpoint=FLAGS.every_checkpoint)
  for k, v in sorted(result["scalars"].items()):
    print(f"{k:40s} {v:.4f}")
  logging.info("wrote %s/metrics.json and report.md", result["output_dir"])


def _weights_only():
  from jdbw import inference
  splits = {k: d["split"] for k, d in inference.read_config(FLAGS.workdir)["domains"].items()}
  for name in common.eval_split_overlaps(splits, FLAGS.eval_split):
    logging.warning("--eval_split=%s shares examples with the training split %s of"
                    " domain %s: these are training-set weights", FLAGS.eval_split,
                    splits[name], name)
  out = report.weights_workdir(FLAGS.workdir, common.eval_config(), step=FLAGS.step,
                               data_dir=FLAGS.data_dir)
  print(f"step {out['step']}, {out['samples']} draws of {out['split']!r} per domain"
        f" (weight x m, 1 = uniform):")
  print(report.weights_table(out))
  logging.info("wrote %s", out["path"])


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
