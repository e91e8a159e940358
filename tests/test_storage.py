"""Workdirs on object storage: a `gs://` workdir served offline by a local GCS emulator
(gcp-storage-emulator, in memory), reached by the same clients a Colab or TPU-VM run uses
(orbax through TensorStore's GCS driver, jdbw.storage through fsspec's gcsfs, tensorboardX
through google-cloud-storage), each pointed at the emulator by its documented variable."""

import json
import os
import socket

import numpy as np
import pytest
import helpers

from jdbw import data, storage, train
from jdbw import workdir as workdir_lib
from jdbw.errors import ConfigError
from jdbw.methods import jd

BUCKET = "jdbw-test"


def _send_generations(server):
  """GCS sends an object's generation with its bytes (the `x-goog-generation` header);
  TensorStore reads checkpoints by it, and the emulator leaves it out: added here."""
  from gcp_storage_emulator.handlers import objects
  plain = objects.download
  if getattr(plain, "sends_generation", False):
    return

  def download(request, response, storage, *args, **kwargs):
    plain(request, response, storage, *args, **kwargs)
    try:
      obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
    except Exception:   # not found: the handler has answered 404
      return
    response["x-goog-generation"] = str(obj["generation"])
    response["x-goog-metageneration"] = str(obj.get("metageneration", 1))

  download.sends_generation = True
  objects.download = download   # what objects.get calls for alt=media
  for _, handlers in server.HANDLERS:
    for verb, handler in list(handlers.items()):
      if handler is plain:
        handlers[verb] = download


@pytest.fixture(scope="module")
def bucket():
  """gs://<BUCKET> on an in-memory emulator of this process, for this module's tests."""
  emulator = pytest.importorskip("gcp_storage_emulator.server")
  import logging
  for name in ("gcp_storage_emulator", "gcsfs"):   # gcsfs: "no default credentials" notes
    logging.getLogger(name).setLevel(logging.ERROR)
  _send_generations(emulator)
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  server = emulator.create_server("localhost", port, in_memory=True, default_bucket=BUCKET)
  server.start()
  url = f"http://localhost:{port}"
  env = {"STORAGE_EMULATOR_HOST": url,            # gcsfs, google-cloud-storage
         "TENSORSTORE_GCS_HTTP_URL": url,         # orbax's TensorStore
         "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",  # TensorStore without credentials
         "GOOGLE_CLOUD_PROJECT": "test"}
  old = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  try:
    yield f"gs://{BUCKET}"
  finally:
    for k, v in old.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
    server.stop()


def test_storage_functions_agree_on_a_folder_and_a_bucket(bucket, tmp_path):
  """The same calls on a local folder and on gs:// give the same answers."""
  for root in (str(tmp_path / "local"), f"{bucket}/functions"):
    storage.makedirs(os.path.join(root, "a", "b"))
    workdir_lib.write_json_atomic(os.path.join(root, "a", "b", "r.json"), {"k": 1})
    workdir_lib.write_text_atomic(os.path.join(root, "a", "t.txt"), "text")
    assert workdir_lib.read_json(os.path.join(root, "a", "b", "r.json"), "w") == {"k": 1}
    assert storage.files_below(root) == ["a/b/r.json", "a/t.txt"], root
    assert sorted(storage.listdir(os.path.join(root, "a"))) == ["b", "t.txt"], root
    assert storage.isdir(os.path.join(root, "a")) and storage.isfile(
        os.path.join(root, "a", "t.txt"))
    storage.move(os.path.join(root, "a"), os.path.join(root, "moved"))
    assert storage.files_below(root) == ["moved/b/r.json", "moved/t.txt"], root
    storage.move(os.path.join(root, "moved", "t.txt"), os.path.join(root, "t2.txt"))
    storage.replace(os.path.join(root, "t2.txt"), os.path.join(root, "t3.txt"))
    assert storage.files_below(root) == ["moved/b/r.json", "t3.txt"], root
    with storage.open(os.path.join(root, "t3.txt")) as f:
      assert f.read() == "text"
    storage.remove(os.path.join(root, "t3.txt"))
    assert storage.files_below(root) == ["moved/b/r.json"], root
    assert not storage.exists(os.path.join(root, "a", "t.txt"))
    with pytest.raises(FileNotFoundError):
      storage.listdir(os.path.join(root, "nothing"))
    assert storage.absolute(root) == (root if root.startswith("gs://")
                                      else os.path.abspath(root))


def test_the_lock_on_a_bucket_refuses_a_second_trainer_and_says_what_it_cannot(bucket,
                                                                               caplog):
  wd = f"{bucket}/locked"
  storage.makedirs(wd)
  with caplog.at_level("WARNING"):
    lock = workdir_lib.WorkdirLock(wd)
    lock.acquire()
  said = [r.getMessage() for r in caplog.records if "atomic create" in r.getMessage()]
  assert len(said) == 1 and wd in said[0] and "\n" not in said[0]
  with pytest.raises(ConfigError) as e:
    workdir_lib.WorkdirLock(wd).acquire()   # this process holds it: alive, refused
  helpers.one_line(e, "--workdir", wd, "in use by another trainer")
  lock.release()
  assert not storage.exists(f"{wd}/{workdir_lib.LOCK}")
  # A dead run's lock (a PID of this host that has exited) is taken over.
  import subprocess
  import sys
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  with storage.open(f"{wd}/{workdir_lib.LOCK}", "w") as f:
    json.dump({"host": socket.gethostname(), "pid": dead.pid, "pid_start": None}, f)
  lock = workdir_lib.WorkdirLock(wd)
  lock.acquire()
  lock.release()


@pytest.mark.slow
def test_a_run_on_a_bucket_writes_resumes_exactly_and_evaluates(bucket):
  """A tiny JD run with its workdir on gs:// writes config, checkpoints with their
  checksums, events and figures there; resumed, it ends where a straight run ends; the
  evaluation writes its metrics and report there too."""
  specs = {"x": data.DomainSpec(source="digits", name="x"),
           "y": data.DomainSpec(source="digits", classes="0:0.5", transform="sr", name="y")}
  method = jd.JD(jd.JDConfig(g_features=4, d_features=2, w_features=2, d_steps=1))
  wd = f"{bucket}/run"
  run = train.RunConfig(workdir=wd, steps=2, batch_size=4, checkpoint_every=2, log_every=1,
                        figure_every=2)
  helpers.resume_matches_straight(method, run, specs, 4)
  files = storage.files_below(wd)
  assert "config.json" in files and "figures/figure3_weights.png" in files, files
  assert {"checkpoint_checksums/2.json", "checkpoint_checksums/4.json"} <= set(files), files
  assert any(f.startswith("checkpoints/4/state/") for f in files), files
  assert len([f for f in files if f.startswith("tb/events")]) == 2, files   # one per run
  assert "lock" not in files and not any(".write_probe." in f for f in files), files
  with storage.open(f"{wd}/figures/figure3_weights.png", "rb") as f:
    assert f.read(4) == b"\x89PNG"
  res = helpers.evaluate_small(wd)
  assert res["step"] == 4 and np.isfinite(res["scalars"]["class_consistency_xy"])
  assert {"metrics.json", "report.md", "figures/confusion.png"} <= set(storage.files_below(wd))
  with storage.open(f"{wd}/metrics.json") as f:
    assert json.load(f)["step"] == 4


def test_a_url_whose_client_is_missing_is_refused_in_one_line():
  import importlib.util
  if importlib.util.find_spec("s3fs") is not None:
    pytest.skip("s3fs is installed here: s3:// has its client")
  with pytest.raises(ConfigError) as e:
    workdir_lib.check_writable("s3://jdbw-none/run")
  helpers.one_line(e, "s3://jdbw-none/run", "s3fs")
