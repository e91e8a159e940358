"""Evaluation of a trained model over a fixed sample: arrays from jitted nets -> metrics.

The evaluation sample of each domain is `samples` draws of its *test* split as the
domain draws it (class skew and transform included), with a fixed seed, so every
checkpoint, seed and method is scored on the same images and the same noise. The
networks run batched under `jax.jit`; the metrics are the pure functions of
`jdbw.evaluation.metrics`. Labels are read here and nowhere in training.

A method plugs in with `config.noise_dim`, `directions`, `translate(params, spectral,
images, z, direction)`, `weight_logits(params, x, fx, fy, y)` and
`normalise_weights(logits, n, step)` (see `jdbw.methods.base.Method`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from jdbw import data, figures, nets
from jdbw.config import setting
from jdbw.errors import ConfigError
from jdbw.evaluation import classifier as clf_lib
from jdbw.evaluation import inception, metrics

@dataclasses.dataclass(frozen=True)
class EvalConfig:
  samples: int = setting(5000, "Evaluation sample size per domain (fixed draws of"
                         " --eval_split).", flag="eval_samples")
  seed: int = setting(0, "Seed of the evaluation sample and its noise.", flag="eval_seed")
  split: str = setting("test", "Split the evaluation sample is drawn from.", flag="eval_split")
  batch_size: int = setting(500, "Batch size of evaluation forward passes.",
                            flag="eval_batch_size")
  noise_sources: int = setting(500, "Sources (first of the sample) for the noise-keeps-class"
                               " metric.", flag="eval_noise_sources")
  noise_draws: int = setting(10, "Noise draws per source for it.", flag="eval_noise_draws")
  classifier_dir: str = setting(
      "", "Cache of the evaluation classifiers (trained once per domain); empty:"
      " $JDBW_CACHE/classifiers, else ~/.cache/jdbw/classifiers.")
  min_classifier_accuracy: float | None = setting(
      None, "Refuse classifiers below this test accuracy (default: per data set, see"
      " jdbw/evaluation/classifier.py THRESHOLDS).")
  inception: bool = setting(
      False, "Also report FID and KID per direction (and per class with labels) in"
      " InceptionV3's pool features (Keras; ImageNet weights downloaded once into"
      " ~/.keras/models), or in --eval_feature_model's. Works on unlabelled domains.",
      flag="eval_inception")
  feature_model: str = setting(
      "", "A Keras model file (.keras/.h5) mapping [-1, 1] RGB images to feature vectors,"
      " used instead of InceptionV3 for FID/KID (e.g. offline, or a domain's own"
      " network); empty: InceptionV3.", flag="eval_feature_model")
  kid_subset_size: int = setting(1000, "KID: the size of each random subset (at most the"
                                 " sample); 100 subsets, mean and std.",
                                 flag="eval_kid_subset_size")

  def validate(self):
    for f in ("samples", "batch_size", "noise_sources", "noise_draws"):
      if getattr(self, f) < 1:
        raise ConfigError(f"--eval_{f}: got {getattr(self, f)}; expected >= 1")
    if self.kid_subset_size < 2:
      raise ConfigError(f"--eval_kid_subset_size: got {self.kid_subset_size}; expected >= 2"
                        " (KID's unbiased estimate needs two images a subset)")
    if self.noise_sources > self.samples:
      raise ConfigError(f"--eval_noise_sources: got {self.noise_sources}; expected at most"
                        f" --eval_samples={self.samples}")
    if self.samples < 2:
      raise ConfigError("--eval_samples: need at least 2 (the FD needs a covariance)")
    return self


def _target(direction):
  return direction[1]


def _source(direction):
  return direction[0]


def check_labels(sides: dict, inception_hint: bool = True) -> None:
  """One line if the domains cannot be evaluated by class: {side: (source, labelled,
  class names)}; an unlabelled folder, or two named class sets that differ.
  `inception_hint`: the line says that FID and KID (--eval_inception) need no labels."""
  for k, (source, labelled, _) in sides.items():
    if not labelled:
      raise ConfigError(f"--source_{k}: {source} is an unlabelled folder; the evaluation"
                        " (class consistency, weight calibration per class) needs labels:"
                        " put the images in class subfolders" + (
                            ", or pass --eval_inception alone (FID and KID need no labels)"
                            if inception_hint else ""))
  names = [n for _, _, n in sides.values()]
  if len(names) == 2 and all(names) and names[0] != names[1]:
    raise ConfigError("--source_x/--source_y: the folders' classes differ"
                      f" ({', '.join(names[0])} vs {', '.join(names[1])}); class consistency"
                      " compares labels, so both need the same class subfolder names")


class Evaluator:
  """Holds the classifiers and the fixed evaluation sample; call it with a state."""

  def __init__(self, method, domain_specs: dict, config: EvalConfig = EvalConfig(), *,
               data_dir: str | None = None,
               classifier_config: clf_lib.ClassifierConfig = clf_lib.ClassifierConfig(),
               with_classifiers: bool = True):
    """`with_classifiers=False` skips the classifiers: only `calibration_at` (the
    weights, which need no classifier) may then be called."""
    self.method, self.config = method, config.validate()
    resolution = method.config.resolution
    cache = os.path.expanduser(config.classifier_dir
                               or os.path.join(data.cache_root(), "classifiers"))
    domains = {k: data.load_domain(dataclasses.replace(s, split=config.split), data_dir=data_dir)
               for k, s in domain_specs.items()}
    # Unlabelled domains are scored by FID/KID alone (nothing else needs no labels); the
    # weights alone (`with_classifiers=False`) need labels and no features.
    scores_images = config.inception and with_classifiers
    self.labelled = all(d.data.labelled for d in domains.values()) or not scores_images
    if self.labelled:
      check_labels({k: (d.spec.source, d.data.labelled, d.data.class_names)
                    for k, d in domains.items()}, inception_hint=with_classifiers)
      if domains["x"].num_classes != domains["y"].num_classes:
        raise ConfigError("--source_x/--source_y: the domains have different class sets"
                          f" ({domains['x'].num_classes} vs {domains['y'].num_classes}"
                          " classes); class consistency needs shared classes")
    if scores_images and any(d.is_points for d in domains.values()):
      raise ConfigError("--eval_inception: FID and KID score images; a mixture2d domain is"
                        " points")
    self.features = (inception.FeatureNet.from_path(config.feature_model, config.batch_size)
                     if scores_images else None)
    self.classifiers = {
        k: clf_lib.load_or_train(s, cache, resolution=resolution, config=classifier_config,
                                 data_dir=data_dir, min_accuracy=config.min_classifier_accuracy)
        for k, s in domain_specs.items()} if with_classifiers and self.labelled else {}
    self.sample = {}
    for k, d in domains.items():
      ds = data.domain_dataset(d, seed=config.seed, resolution=resolution)
      b = next(ds.batch(config.samples).as_numpy_iterator())
      self.sample[k] = {"image": b["image"], "label": b["label"]}
    self.real_features = {k: self.features(v["image"]) for k, v in self.sample.items()
                          } if self.features else {}
    self._init_noise(method, config)
    if not self.labelled:
      self.real = {}
      self._compile()
      return
    self.num_classes = domains["x"].num_classes
    self.mode = metrics.over_represented_class(domains["x"].probs, domains["y"].probs)
    self.targets = metrics.midpoint_target_weights(domains["x"].probs, domains["y"].probs)
    self.real = {k: self._batched(jax.jit(c.apply), self.sample[k]["image"])
                 for k, c in self.classifiers.items()}
    self._compile()

  def _init_noise(self, method, config):
    nz = method.config.noise_dim
    key = jax.random.PRNGKey(config.seed)
    n = config.samples
    # Fixed noise: z for the translation, z_back for the cycle, noise_draws for the
    # noise-keeps-class metric.
    self.noise = {d: {"z": nets.sample_noise(jax.random.fold_in(key, 2 * i), n, nz),
                      "z_back": nets.sample_noise(jax.random.fold_in(key, 2 * i + 1), n, nz)}
                  for i, d in enumerate(("xy", "yx"))}
    self.noise_draws = nets.sample_noise(jax.random.fold_in(key, 99),
                                           config.noise_draws, nz)

  def _compile(self):
    self._forward = jax.jit(self._forward_fn)
    self._logits = jax.jit(self._logits_fn)
    self._noise_fn = jax.jit(self._noise_translate, static_argnums=3)

  def for_method(self, method) -> "Evaluator":
    """The same classifiers, sample and noise for another model (same domains)."""
    other = copy.copy(self)
    other.method = method
    other._compile()
    return other

  # --- batched, jitted pieces ---

  def _batched(self, fn, *arrays, post=None):
    """fn over batches of `arrays`, on the host, concatenated; `post` maps each batch's
    host output first (the translations to their features, so that they never all sit
    in memory)."""
    b, post = self.config.batch_size, post or (lambda o: o)
    outs = [post(jax.device_get(fn(*(a[i:i + b] for a in arrays))))
            for i in range(0, len(arrays[0]), b)]
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)

  def _to_features(self, out):
    return {k.replace("fake_", "features_"): (self.features(v) if k.startswith("fake_") else v)
            for k, v in out.items()}

  def _forward_fn(self, params, spectral, x, y, zx, zy, zx_back, zy_back):
    """Translations, cycles, their classes/embeddings and the weight logits of one batch."""
    m = self.method
    tr = functools.partial(m.translate, params, spectral)
    out, fake = {}, {"xy": None, "yx": None}
    for d, src, z, z_back in (("xy", x, zx, zx_back), ("yx", y, zy, zy_back)):
      if d not in m.directions:
        continue
      fake[d] = tr(src, z, d)
      if self.features is not None:   # to FID/KID's features on the host, batch by batch
        out[f"fake_{d}"] = fake[d]
      if not self.labelled:
        continue
      logits, emb = self.classifiers[_target(d)].apply(fake[d])
      out[f"pred_{d}"], out[f"emb_{d}"] = jnp.argmax(logits, -1), emb
      back = d[::-1]
      if back in m.directions:
        cyc_logits, _ = self.classifiers[_source(d)].apply(tr(fake[d], z_back, back))
        out[f"pred_{d}{_source(d)}"] = jnp.argmax(cyc_logits, -1)
    out["logits"] = m.weight_logits(params, x, fake["xy"], fake["yx"], y)
    return out

  def _logits_fn(self, params, spectral, x, y, zx, zy):
    """The weight logits of one batch alone (no classifier)."""
    m = self.method
    fake = {d: m.translate(params, spectral, src, z, d) if d in m.directions else None
            for d, src, z in (("xy", x, zx), ("yx", y, zy))}
    return m.weight_logits(params, x, fake["xy"], fake["yx"], y)

  def _noise_translate(self, params, spectral, src, d):
    """Classes of G_d(src, z_j) for every fixed noise draw j: [N, draws]."""
    def one(z):
      zz = jnp.broadcast_to(z, (src.shape[0], z.shape[-1]))
      out = self.method.translate(params, spectral, src, zz, d)
      return jnp.argmax(self.classifiers[_target(d)].apply(out)[0], -1)
    return jax.vmap(one, out_axes=1)(self.noise_draws)

  # --- metrics ---

  def arrays(self, state, noise: bool = True) -> dict:
    """All per-sample arrays of one state (host numpy); `noise` adds the noise draws."""
    params, spectral = jax.device_get((state.params, state.spectral))
    fwd = functools.partial(self._forward, params, spectral)
    out = self._batched(fwd, self.sample["x"]["image"], self.sample["y"]["image"],
                        self.noise["xy"]["z"], self.noise["yx"]["z"],
                        self.noise["xy"]["z_back"], self.noise["yx"]["z_back"],
                        post=self._to_features if self.features is not None else None)
    out["w_x"], out["w_y"] = self._normalised(out.pop("logits"), state)
    noise = noise and stochastic(self.method) and self.labelled
    n = self.config.noise_sources if noise else 0
    for d in self.method.directions if noise else ():
      src = self.sample[_source(d)]["image"][:n]
      out[f"noise_pred_{d}"] = self._batched(
          lambda s, d=d: self._noise_fn(params, spectral, s, d), src)
    return out

  def calibration(self, w_x, w_y) -> dict:
    """TV of the weighted class masses, and the learned per-class weights (x n, 1 =
    uniform) beside the midpoint targets that the domains' known class masses give."""
    lab_x, lab_y = self.sample["x"]["label"], self.sample["y"]["label"]
    out = metrics.weight_calibration(lab_x, w_x, lab_y, w_y, self.num_classes)
    out["mean_weight_x"] = metrics.per_class_mean_weight(lab_x, w_x, self.num_classes)
    out["mean_weight_y"] = metrics.per_class_mean_weight(lab_y, w_y, self.num_classes)
    out["target_weight_x"], out["target_weight_y"] = self.targets["x"], self.targets["y"]
    for side in ("x", "y"):
      out[f"mode_margin_{side}"] = metrics.mode_weight_margin(
          out[f"mean_weight_{side}"], self.targets[side], self.mode)
    return out

  def image_scores(self, a: dict) -> dict:
    """FID and KID of each direction's translations against the real target sample
    (`inception_<d>`), and with labels per class: translations of source class c against
    the target's real images of class c (`classes`; classes with under 2 of either are
    left out)."""
    res, kid_m, seed = {}, self.config.kid_subset_size, self.config.seed
    for d in self.method.directions:
      fake, real = a[f"features_{d}"], self.real_features[_target(d)]
      r = inception.scores(fake, real, kid_m, seed)
      if self.labelled:
        lab_s, lab_t = self.sample[_source(d)]["label"], self.sample[_target(d)]["label"]
        r["classes"] = {int(c): inception.scores(fake[lab_s == c], real[lab_t == c], kid_m, seed)
                        for c in range(self.num_classes)
                        if min(np.sum(lab_s == c), np.sum(lab_t == c)) >= 2}
      res[f"inception_{d}"] = r
    return res

  def __call__(self, state) -> dict:
    """Every metric of `state` (nested dict, JSON-ready)."""
    a = self.arrays(state)
    if not self.labelled:   # unlabelled domains: FID and KID only
      return {"step": int(state.step), "samples": self.config.samples, "labelled": False,
              **self.image_scores(a)}
    k, lab = self.num_classes, {s: self.sample[s]["label"] for s in ("x", "y")}
    res = {"step": int(state.step), "samples": self.config.samples, "mode_class": self.mode,
           "classifier": {s: {f: c.info[f] for f in ("test_accuracy", "threshold", "cache")}
                          | {"eval_sample_accuracy": float(np.mean(
                              np.argmax(self.real[s][0], -1) == lab[s]))}
                          for s, c in self.classifiers.items()}}
    for d in self.method.directions:
      src, tgt = _source(d), _target(d)
      res[f"class_consistency_{d}"] = metrics.class_consistency(lab[src], a[f"pred_{d}"], k)
      res[f"hallucination_{d}"] = metrics.mode_mass_hallucination(
          lab[src], a[f"pred_{d}"], self.mode)
      cyc = f"{d}{src}"
      if f"pred_{cyc}" in a:
        res[f"cycle_consistency_{cyc}"] = metrics.class_consistency(lab[src], a[f"pred_{cyc}"], k)
      res[f"noise_{d}"] = (metrics.noise_class_retention(
          lab[src][:self.config.noise_sources], a[f"noise_pred_{d}"])
          if stochastic(self.method) else dict(NOT_APPLICABLE))
      res[f"fd_classifier_{d}"] = metrics.fd_classifier(a[f"emb_{d}"], self.real[tgt][1])
    res["weight_calibration"] = self.calibration(a["w_x"], a["w_y"])
    if self.features is not None:
      res.update(self.image_scores(a))
    found = self.modalities(state)
    if found is not None:   # X's modalities found without labels, against its classes
      res["modalities"] = metrics.cluster_agreement(lab["x"], found)
    return res

  def modalities(self, state):
    """Each X sample's modality (`Method.modalities`; None where a method has none)."""
    params = jax.device_get(state.params)
    fn = jax.jit(lambda x: self.method.modalities(params, x))   # None: no modalities
    return self._batched(fn, self.sample["x"]["image"])

  def weights(self, state):
    """(ω_x, ω_y) of the whole sample (host numpy), normalised as in `arrays`."""
    params, spectral = jax.device_get((state.params, state.spectral))
    logits = self._batched(functools.partial(self._logits, params, spectral),
                           self.sample["x"]["image"], self.sample["y"]["image"],
                           self.noise["xy"]["z"], self.noise["yx"]["z"])
    return self._normalised(logits, state)

  def _normalised(self, logits, state):
    """Host (ω_x, ω_y) of the whole sample from its per-sample logits."""
    w_x, w_y = self.method.normalise_weights(jax.tree.map(jnp.asarray, logits),
                                             self.config.samples, int(state.step))
    return np.asarray(w_x), np.asarray(w_y)

  def calibration_at(self, state) -> dict:
    """Weight calibration alone (no classifier, no noise draws), e.g. for every
    checkpoint, or on a training slice (`experiments.evaluate --weights_only`)."""
    return self.calibration(*self.weights(state))


# The noise metrics of a deterministic method (CycleGAN, DistanceGAN ignore z): not a
# perfect retention of 1, but no number at all.
NOT_APPLICABLE = {"not_applicable": "deterministic method: the noise z is ignored"}


def stochastic(method) -> bool:
  """Whether `method`'s translations depend on the noise z (`Method.stochastic`)."""
  return method.stochastic


def scalars(result: dict) -> dict[str, float]:
  """The headline numbers of an evaluation, flat, for TensorBoard and tables."""
  out = {}
  for k, v in result.items():
    if k.startswith(("class_consistency_", "cycle_consistency_")):
      out[k] = v["accuracy"]
    elif k.startswith("hallucination_"):
      out[f"{k}/into_mode"], out[f"{k}/out_of_mode"] = v["into_mode"], v["out_of_mode"]
    elif k.startswith("noise_") and "retention" in v:   # stochastic methods only
      out[f"{k}/retention"], out[f"{k}/agreement"] = v["retention"], v["agreement"]
    elif k.startswith("fd_classifier_"):
      out[k] = v
    elif k == "modalities":
      out["modality_purity"], out["modality_nmi"] = v["purity"], v["nmi"]
    elif k.startswith("inception_"):
      d = k.split("_")[-1]
      out[f"fid_{d}"], out[f"kid_{d}"] = v["fid"], v["kid"]
    elif k == "weight_calibration":
      out["tv_weighted"], out["tv_unweighted"] = v["tv_weighted"], v["tv_unweighted"]
      for side in ("x", "y"):  # Older metrics.json files lack them.
        if f"mode_margin_{side}" in v:
          out[f"mode_margin_{side}"] = v[f"mode_margin_{side}"]
  return out


def write_figures(result: dict, out_dir: str) -> dict[str, str]:
  """Confusion matrices and weighted class histograms of one evaluation as PNG."""
  paths = {}
  cms = {" -> ".join(k.split("_")[-1].upper()): v["confusion"] for k, v in result.items()
         if k.startswith(("class_consistency_", "cycle_consistency_"))}
  if cms:
    paths["confusion"] = figures.confusion_matrices(
        os.path.join(out_dir, "confusion.png"), cms,
        f"Class consistency at step {result['step']}: rows = source class, columns ="
        " class of the translation (row-normalised)")
  wc = result["weight_calibration"]
  if "mean_weight_x" in wc:
    paths["weights_vs_targets"] = figures.class_histograms(
        os.path.join(out_dir, "weights_vs_targets.png"),
        {"X learned": wc["mean_weight_x"], "X target": wc["target_weight_x"],
         "Y learned": wc["mean_weight_y"], "Y target": wc["target_weight_y"]},
        f"Mean combined weight x n per class at step {result['step']} (1 = uniform) and the"
        " midpoint targets ((p + q) / 2 over each domain's class mass)",
        ylabel="mean weight x n")
  paths["calibration"] = figures.class_histograms(
      os.path.join(out_dir, "weight_calibration.png"),
      {"X unweighted": wc["hist_x_unweighted"], "X weighted": wc["hist_x"],
       "Y unweighted": wc["hist_y_unweighted"], "Y weighted": wc["hist_y"]},
      f"Weighted class masses at step {result['step']}: TV weighted"
      f" {wc['tv_weighted']:.3f}, unweighted {wc['tv_unweighted']:.3f}")
  return paths
