r"""Writes a PNG preview of both domains: sample grids and class masses.

  python -m experiments.preview_data --output=preview.png
  python -m experiments.preview_data --source_x=idx:/usr/share/datasets/fashion-mnist \
      --source_y=idx:/usr/share/datasets/fashion-mnist --output=fashion.png
  python -m experiments.preview_data --pairing=same_draw --output=pairs.png   # (x, sr(x))
"""

import numpy as np
from absl import app, flags, logging

from experiments import common
from jdbw import data, figures

flags.DEFINE_string("output", "preview.png", "PNG file to write.")
flags.DEFINE_integer("seed", 0, "Stream seed.")
flags.DEFINE_integer("num_images", 64, "Images shown per domain.")
flags.DEFINE_integer("num_draws", 8192, "Draws used for the empirical class mass.")
common.define_domain_flags()
common.define_run_setting("pairing")
FLAGS = flags.FLAGS


@common.exit_on_bad_input
def main(argv):
  if FLAGS.num_images <= 0 or FLAGS.num_draws <= 0:
    raise data.ConfigError("--num_images and --num_draws: expected positive integers")
  specs = common.domain_specs()
  domains = {n: data.load_domain(s, data_dir=FLAGS.data_dir) for n, s in specs.items()}
  batch = FLAGS.num_draws
  paired = FLAGS.pairing != "none"   # make_batches checks the domains can be paired
  sample = next(data.make_batches(domains, batch, seed=FLAGS.seed,
                                  resolution=FLAGS.resolution, device_count=1,
                                  process_index=0, process_count=1, pairing=FLAGS.pairing))
  if any(d.is_points for d in domains.values()):  # 2-D mixture: scatter plots by mode.
    point_panels = []
    for name, d in domains.items():
      if not d.is_points:
        raise data.ConfigError(f"--source_{name}: preview shows two point domains or two"
                               f" image domains, not one of each")
      lab = sample[name]["label"]
      freq = ", ".join(f"{k}: {f:.2f}" for k, f in enumerate(
          np.bincount(lab, minlength=d.num_classes) / len(lab)))
      point_panels.append({"title": f"{name.upper()}: {d.spec.source} [{d.spec.split}],"
                                    f" drawn mode masses {freq}",
                           "points": sample[name]["image"], "color": lab,
                           "centres": d.data.mixture.means})
    path = figures.point_panels(FLAGS.output, point_panels, "Two point domains; numbers"
                                " mark the modes (the classes)")
    logging.info("wrote %s", path)
    print(path)
    return
  panels = []
  for name, d in domains.items():
    s = d.spec
    title = (f"{name.upper()}: {s.source} [{s.split}] classes={s.classes or 'natural'}"
             f" transform={s.transform}")
    if paired and name == "y":   # the X draws' own images, X's classes: shown pair by pair
      title = (f"Y: X's draws through transform={s.transform} (--pairing={FLAGS.pairing};"
               " each image the pair of X's in the same place)")
    panels.append(dict(title=title, images=sample[name]["image"][:FLAGS.num_images],
                       labels=sample[name]["label"],
                       probs=domains["x"].probs if paired else d.probs))
  path = figures.domain_preview(FLAGS.output, panels)
  logging.info("wrote %s", path)
  print(path)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
