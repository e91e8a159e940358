r"""Translates images with a trained workdir.

  python -m experiments.translate --workdir W --input in.png --output out.png --direction xy
  python -m experiments.translate --workdir W --input in.npy --output out.npy --direction yx

.npy: images [N, H, W, C] or [H, W, C] with values in --input_range (default [-1, 1];
0,255 for uint8). .png: one image (grey or RGB), resized to the model resolution; the
output PNG holds the translation. Bad input (empty, undecodable, NaN, values outside
the range, a missing output folder) is one line and exit 2, before the model is loaded
where it can be.
"""

import os

import numpy as np
from absl import app, flags

from experiments import common
from jdbw import inference
from jdbw.errors import ConfigError

flags.DEFINE_string("workdir", None, "Training workdir (its latest checkpoint is used).")
flags.DEFINE_string("input", None, "Input .npy or .png.")
flags.DEFINE_string("output", None, "Output .npy or .png.")
flags.DEFINE_enum("direction", "xy", ["xy", "yx"], "X->Y (G_xy) or Y->X (G_yx).")
flags.DEFINE_integer("seed", 0, "Seed of the noise z.")
flags.DEFINE_string("input_range", "-1,1",
                    "LO,HI: the value range of a .npy input's images, mapped linearly onto the"
                    " models' [-1, 1] (0,255 for uint8 images, 0,1 for [0, 1] floats). PNGs"
                    " are always scaled.")
FLAGS = flags.FLAGS


def parse_range(text: str) -> tuple[float, float]:
  try:
    lo, hi = (float(v) for v in text.split(","))
  except ValueError:
    lo = hi = None
  if lo is None or not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
    raise ConfigError(f"--input_range: got {text!r}; expected LO,HI with LO < HI, e.g. 0,255")
  return lo, hi


def load_input(path: str):
  """The decoded input (a numpy array for .npy, a PIL image for .png); ConfigError, one
  line, for an empty, unreadable or undecodable file. Runs before the model is loaded."""
  if os.path.getsize(path) == 0:
    raise ConfigError(f"--input: {path} is empty")
  if path.endswith(".npy"):
    try:
      arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
      raise ConfigError(f"--input: {path} is not a readable .npy file ({e})") from e
    if arr.size == 0:
      raise ConfigError(f"--input: {path} holds no values (shape {arr.shape})")
    if arr.dtype.kind not in "fiub":
      raise ConfigError(f"--input: {path} holds {arr.dtype} values; expected numbers")
    return arr
  from PIL import Image
  try:
    img = Image.open(path)
    img.load()
  except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
    raise ConfigError(f"--input: {path} is not a decodable image ({type(e).__name__}: {e})") from e
  return img


def prepare(raw, path: str, *, channels: int, resolution: int, points: bool,
            value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
  """Model-ready float32 inputs: PNGs converted and resized, .npy arrays scaled from
  `value_range` (images only); ConfigError, one line, for non-finite values or values
  outside the range."""
  if not isinstance(raw, np.ndarray):
    from PIL import Image
    img = raw.convert("L" if channels == 1 else "RGB")
    img = img.resize((resolution, resolution), Image.BILINEAR)
    arr = np.asarray(img, np.float32) / 127.5 - 1.0
    return arr[..., None] if channels == 1 else arr
  arr = raw.astype(np.float32)
  bad = int(np.size(arr) - np.isfinite(arr).sum())
  if bad:
    raise ConfigError(f"--input: {path} holds {bad} non-finite values (NaN or inf) of"
                      f" {arr.size}")
  if points:
    return arr
  lo, hi = value_range
  found = (float(arr.min()), float(arr.max()))
  if found[0] < lo - 1e-3 * (hi - lo) or found[1] > hi + 1e-3 * (hi - lo):
    hint = (" (uint8 images: pass --input_range=0,255)" if raw.dtype == np.uint8 or found[1] > 2
            else "")
    raise ConfigError(f"--input: {path} holds values in [{found[0]:.4g}, {found[1]:.4g}],"
                      f" outside --input_range=[{lo:g}, {hi:g}]{hint}")
  return np.clip((arr - lo) / (hi - lo) * 2.0 - 1.0, -1.0, 1.0)


def _write(path, out):
  try:
    if path.endswith(".npy"):
      np.save(path, out)
      return
    from PIL import Image
    img = out if out.ndim == 3 else out[0]
    arr = np.clip((img + 1.0) * 127.5, 0, 255).astype(np.uint8)
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)
  except OSError as e:
    raise ConfigError(f"--output: cannot write {path} ({e.strerror or e})") from e


@common.exit_on_bad_input
def main(argv):
  del argv
  for name in ("workdir", "input", "output"):
    if not FLAGS[name].value:
      raise ConfigError(f"--{name}: required")
  for name in ("input", "output"):
    if not FLAGS[name].value.endswith((".npy", ".png")):
      raise ConfigError(f"--{name}: {FLAGS[name].value} must end in .npy or .png")
  if not os.path.isfile(FLAGS.input):
    raise ConfigError(f"--input: {FLAGS.input} does not exist")
  folder = os.path.dirname(os.path.abspath(FLAGS.output))
  if not os.path.isdir(folder):
    raise ConfigError(f"--output: the folder {folder} does not exist")
  value_range = parse_range(FLAGS.input_range)
  raw = load_input(FLAGS.input)
  tr = inference.Translator.from_workdir(FLAGS.workdir)
  c = tr.method.config
  points = getattr(c, "networks", "conv") == "mlp"
  if points:
    for name in ("input", "output"):
      if FLAGS[name].value.endswith(".png"):
        raise ConfigError(f"--{name}: this model translates points ([N, 2] arrays); use .npy")
  channels = c.channels_x if FLAGS.direction == "xy" else c.channels_y
  images = prepare(raw, FLAGS.input, channels=channels, resolution=c.resolution,
                   points=points, value_range=value_range)
  out = tr.translate(images, FLAGS.direction, seed=FLAGS.seed)
  _write(FLAGS.output, out)
  print(FLAGS.output)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
