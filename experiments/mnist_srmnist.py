r"""Trains JD-BW (Algorithm 1), its ablations, MUNIT, CycleGAN or DistanceGAN (each + BW)
on MNIST <-> SR-MNIST, or any other pair of domains (the --source_* flags).

  python -m experiments.mnist_srmnist --flagfile=experiments/configs/quickstart.flags
  python -m experiments.mnist_srmnist --flagfile=experiments/configs/mnist_srmnist.flags

Rerunning the same command resumes from the latest checkpoint in --workdir.
"""

import dataclasses
import json

import jax
from absl import app, flags, logging

from experiments import common
from jdbw import methods, train
from jdbw.errors import ConfigError
from jdbw.evaluation import evaluator as ev_lib

common.define_training_flags()
FLAGS = flags.FLAGS


@common.exit_on_bad_input
def main(argv):
  if FLAGS.jax_distributed:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  elif any(FLAGS[f].present for f in ("coordinator_address", "num_processes", "process_id")):
    raise ConfigError("--coordinator_address/--num_processes/--process_id: need"
                      " --jax_distributed")
  run = common.run_config().validate()
  method = methods.from_config(common.model_config(FLAGS.model))
  logging.info("devices: %s; processes: %d", jax.devices(), jax.process_count())
  specs = common.domain_specs()
  if FLAGS.dry_run:   # what config.json would record, and nothing read or compiled
    for s in specs.values():
      s.parsed   # noqa: B018 - a bad source string is one line
    if run.eval_every:
      common.check_eval_split(specs, FLAGS.eval_split)
      common.eval_config().validate(), common.classifier_config()
    print(json.dumps({"method": methods.name_of(method),
                      "model": dataclasses.asdict(method.config),
                      "domains": {k: dataclasses.asdict(s) for k, s in specs.items()},
                      "run": dataclasses.asdict(run)}, indent=2, sort_keys=True, default=str))
    return
  evaluate = None
  if run.eval_every:  # Built before training: a bad classifier fails at start-up.
    common.check_eval_split(specs, FLAGS.eval_split)
    evaluator = common.make_evaluator(method, specs)
    evaluate = lambda state: ev_lib.scalars(evaluator(state))
  train.train(method, run, specs, evaluate=evaluate)
  logging.info("done: %s", run.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
