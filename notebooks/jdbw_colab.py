# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # JD-BW on Colab: train, evaluate, look, translate
#
# Batch weight for domain adaptation with mass shift (JD-BW): two stochastic generators,
# a joint critic on (x, y) pairs and weighting networks that re-weight both domains so
# that class frequencies stop fooling the GAN. This notebook trains JD-BW through the
# library's API, shows the paper's Figures 2-4, evaluates the run and translates an
# image.
#
# - **Backends.** On a TPU or GPU runtime it picks the paper's MNIST <-> SR-MNIST setting
#   (TFDS `mnist`); on CPU the embedded digits quickstart (a few minutes, no download).
#   Colab's TPU runtimes are TPU VMs: JAX sees the chips directly (`jax[tpu]`).
# - **Tested on CPU only.** The project's CI executes this notebook headless on CPU with
#   a few steps; it has never been run on a real TPU or on Colab itself (no such machine
#   is reachable from where it is built). The TPU branch's choice of setting is unit-tested.
# - **Disconnects.** Training writes checkpoints to `WORKDIR`; re-running the training
#   cell with the same `WORKDIR` resumes exactly where the last checkpoint stood. Put it
#   on Google Drive (`USE_DRIVE = True`) or in a bucket (`WORKDIR = "gs://my-bucket/run"`,
#   after `google.colab.auth.authenticate_user()`) to survive a runtime reset.

# %% tags=["parameters"]
REPO_URL = ""          # this repository's git address, e.g. "https://github.com/<owner>/jdbw"
WORKDIR = "runs/jdbw_colab"
USE_DRIVE = False      # Colab: keep WORKDIR on Google Drive (survives a runtime reset)
STEPS = None           # None: the setting's own length (quickstart: 300)
DATA_DIR = None        # TFDS data_dir for the MNIST setting, e.g. "gs://my-bucket/tfds"
QUICK = False          # small evaluation sample and classifiers (CI's smoke run)
UPLOAD = False         # Colab: translate an image you upload instead of a test digit

# %% [markdown]
# ## Install
# Unless the library is importable already (a local clone with `pip install -e .`, or a
# second run), clones the repository whose git address you put in `REPO_URL` (the
# parameters cell above) and installs it with its own `requirements.txt`, so jax, flax,
# optax and orbax stay at the versions the project pins and tests instead of floating to
# the newest. On a TPU runtime it then installs `jax[tpu]` at the same pinned jax version.

# %%
import glob
import importlib.util
import os
import subprocess
import sys

IN_COLAB = "google.colab" in sys.modules
if importlib.util.find_spec("jdbw") is None:
    if not REPO_URL:
        raise SystemExit("jdbw is not installed: put this repository's git address in REPO_URL"
                         " (the parameters cell)")
    CLONE = os.path.abspath("jdbw_repo")
    if not os.path.isdir(CLONE):
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, CLONE], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r",
                    os.path.join(CLONE, "requirements.txt"), "-e", CLONE], check=True)
    sys.path.insert(0, CLONE)   # this kernel sees the editable install without a restart
HAS_TPU = bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))
if HAS_TPU and importlib.util.find_spec("libtpu") is None:
    from experiments import notebook as _nb
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", _nb.tpu_install_spec()],
                   check=True)

# %%
import experiments  # noqa: F401  (first: its XLA:CPU flags, jdbw.xla_flags, before JAX starts)
import jax

print("backend:", jax.default_backend())
print("devices:", jax.devices())

# %% [markdown]
# ## Setting
# TPU/GPU: the paper's MNIST <-> SR-MNIST (`experiments/configs/mnist_srmnist.flags`);
# CPU: the digits quickstart (`experiments/configs/quickstart.flags`).

# %%
from experiments import notebook

setting = notebook.choose_setting(jax.default_backend())
print(f"setting: {setting.name}: {setting.about}")

# %% [markdown]
# ### Data (MNIST setting only)
# TFDS downloads and prepares MNIST once into `DATA_DIR` (a local folder or a `gs://`
# bucket next to the TPU). The same preparation from a shell:
# `python -c "import tensorflow_datasets as tfds; tfds.builder('mnist', data_dir='DIR').download_and_prepare()"`

# %%
if setting.needs_tfds:
    import tensorflow_datasets as tfds
    tfds.builder("mnist", data_dir=DATA_DIR).download_and_prepare()

# %% [markdown]
# ## Train
# Progress is logged every `--log_every` steps. Interrupting the cell (or a disconnect)
# loses at most the steps since the last checkpoint; run the cell again to continue.

# %%
from absl import logging

from jdbw import train

if IN_COLAB and USE_DRIVE:
    from google.colab import drive
    drive.mount("/content/drive")
    WORKDIR = os.path.join("/content/drive/MyDrive", WORKDIR)
logging.set_verbosity(logging.INFO)
method, run, specs = notebook.configure(setting.flagfile, workdir=WORKDIR, steps=STEPS,
                                        data_dir=DATA_DIR)
print(f"{type(method).__name__}, {run.steps} steps, batch {run.batch_size}, workdir {run.workdir}")
state = train.train(method, run, specs)

# %% [markdown]
# ## Figures 2-4
# Figure 2: translations X -> Y and Y -> X. Figure 3: the mean weight of each class
# against steps (the over-represented class drawn thick, the target weights dashed).
# Figure 4: one source, several noise draws.

# %%
from IPython.display import Image, Markdown, display

for path in notebook.figures(run.workdir):
    print(os.path.basename(path))
    display(Image(filename=path))

# %% [markdown]
# ## Evaluation
# Class consistency, hallucination, weight calibration and the rest, scored by
# classifiers trained once per domain (cached). The table and the confusion matrix come
# from the report the evaluation writes into the workdir.

# %%
from jdbw.evaluation import classifier, evaluator, report

eval_config = evaluator.EvalConfig(split="test")
clf_config = classifier.ClassifierConfig()
if QUICK:
    eval_config = evaluator.EvalConfig(split="test", samples=400, batch_size=200,
                                       noise_sources=40, noise_draws=4,
                                       min_classifier_accuracy=0.85)
    clf_config = classifier.ClassifierConfig(steps=300, train_draws=4000, test_draws=1000)
results = report.evaluate_workdir(run.workdir, eval_config, data_dir=DATA_DIR,
                                  classifier_config=clf_config, every_checkpoint=False)
display(Markdown(open(os.path.join(run.workdir, "report.md")).read()))
display(Image(filename=os.path.join(run.workdir, "figures", "confusion.png")))

# %% [markdown]
# ## Translate an image
# With `UPLOAD = True` on Colab, a file picker asks for an image (grey or colour, any
# size: it is resized to the model's resolution). Otherwise a test image of domain X.

# %%
import dataclasses
import io

import numpy as np
import matplotlib.pyplot as plt

from jdbw import data, inference

translator = inference.Translator(method, state)
c = method.config
if IN_COLAB and UPLOAD:
    from google.colab import files
    name = next(iter(files.upload()))
    image = inference.prepare_input(inference.load_input(name), name, channels=c.channels_x,
                                    resolution=c.resolution, points=False)
else:
    x_test = data.load_domain(dataclasses.replace(specs["x"], split="test"),
                              data_dir=DATA_DIR)
    batch = next(data.make_batches({"x": x_test}, 1, seed=0, resolution=c.resolution,
                                   device_count=1, process_index=0, process_count=1))
    image = batch["x"]["image"][0]
outs = [translator.translate(image, "xy", seed=s) for s in range(4)]
fig, axes = plt.subplots(1, 5, figsize=(10, 2))
for ax, img, title in zip(axes, [image] + outs, ["input X"] + [f"G_xy, z{s}" for s in range(4)]):
    ax.imshow(np.squeeze((img + 1) / 2), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")
# jdbw.figures selects matplotlib's Agg backend (no screen), so show the figure as a PNG.
buf = io.BytesIO()
fig.savefig(buf, format="png", bbox_inches="tight")
plt.close(fig)
display(Image(data=buf.getvalue()))
