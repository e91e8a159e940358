r"""A lever sweep: one mass-shift study per configuration of a grid file, one table.

  python -m experiments.sweep --grid=experiments/configs/sweeps/mixture2d.grid \
      --workdir=workdirs/sweep_mixture2d

Each grid line is `name  variants  [flags...]`: the study
`experiments.mass_shift_benchmark --flagfile=<--base_flagfile> <flags>` runs the
comma-separated variants over --seeds into `<workdir>/<name>` (resumed and reused when
rerun, like the benchmark itself), evaluated on --eval_split (default `validation`:
settings are chosen there, and the chosen one is then reported on `test`). The table of
every configuration, mean ± sample std over seeds and the per-seed values, goes to
`<workdir>/sweep.md`. A configuration whose study fails is listed as
failed, not dropped.
"""

from __future__ import annotations

import os
import subprocess
import sys

from absl import app, flags, logging

from experiments import common
from experiments.sweep_grid import read_grid, read_results, table
from jdbw.errors import ConfigError

flags.DEFINE_string("grid", None, "Grid file: lines 'name variants [flags...]' (# comments).")
flags.DEFINE_string("base_flagfile", "experiments/configs/mixture2d.flags",
                    "Flags of every study (data, model, steps), before each line's flags.")
flags.DEFINE_string("workdir", None, "Root of the sweep: <workdir>/<name>/<variant>/seed_<k>.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every configuration.")
flags.DEFINE_string("eval_split", "validation", "Split the studies are evaluated on.")
flags.DEFINE_list("only", [], "Run only these grid names (default: all).")
flags.DEFINE_bool("report_only", False,
                  "Run nothing: tabulate the studies already in --workdir (the rest: not run).")
flags.DEFINE_list("columns", ["class_consistency_xy", "class_consistency_yx", "tv_weighted",
                              "mode_margin_x", "mode_margin_y",
                              "hallucination_xy/into_mode", "hallucination_yx/out_of_mode"],
                  "Metrics shown in the table.")
FLAGS = flags.FLAGS


@common.exit_on_bad_input
def main(argv):
  if not FLAGS.grid or not FLAGS.workdir:
    raise ConfigError("--grid and --workdir: both required")
  if FLAGS.eval_split.split("[")[0] == "test":
    raise ConfigError(f"--eval_split: got {FLAGS.eval_split!r}; a sweep chooses settings, so"
                      " it evaluates on a validation split ('validation' for mixture2d,"
                      " 'train[90%:]' for images trained on 'train[:90%]'), never on test")
  if FLAGS.report_only and not os.path.isdir(FLAGS.workdir):
    raise ConfigError(f"--workdir: no such folder {FLAGS.workdir!r} (--report_only tabulates"
                      " the studies already there)")
  rows = read_grid(FLAGS.grid)
  unknown = sorted(set(FLAGS.only) - {r[0] for r in rows})
  if unknown:
    raise ConfigError(f"--only: {unknown} not in {FLAGS.grid}")
  results = {}
  for name, variants, extra in rows:
    root = os.path.join(FLAGS.workdir, name)
    csv_path = os.path.join(root, "results.csv")
    if not FLAGS.report_only and (not FLAGS.only or name in FLAGS.only):
      cmd = [sys.executable, "-m", "experiments.mass_shift_benchmark",
             f"--flagfile={FLAGS.base_flagfile}", f"--workdir={root}",
             f"--variants={variants}", f"--seeds={','.join(FLAGS.seeds)}",
             f"--eval_split={FLAGS.eval_split}", *extra]
      logging.info("sweep: %s", " ".join(cmd))
      os.makedirs(root, exist_ok=True)
      if os.path.isfile(csv_path):  # A study stopped early must not show an old table.
        os.remove(csv_path)
      with open(os.path.join(root, "study.log"), "a") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
      if proc.returncode != 0:
        logging.warning("sweep: %s failed (exit %d); see %s/study.log", name,
                        proc.returncode, root)
        continue
    if os.path.isfile(csv_path):
      results[name] = read_results(csv_path)
  md = (f"Sweep `{FLAGS.grid}` over seeds {', '.join(FLAGS.seeds)}, evaluated on"
        f" `{FLAGS.eval_split}`; base flags `{FLAGS.base_flagfile}`. Cells: mean ± sample"
        " std (per-seed values).\n\n" + table(rows, results, FLAGS.columns))
  with open(os.path.join(FLAGS.workdir, "sweep.md"), "w") as f:
    f.write(md)
  print(md)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
