"""The MLflow Model of a run: logged, loaded and served, its answers the project's forward pass."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.exceptions import MlflowException

from pipeline import served_model
from pipeline.classifier import scores
from pipeline.served_model import log_model
from tests.model_helpers import new_run, real_digits, trained_params


def logged_softmax(store):
    """A softmax model logged into a RUNNING run of ``store``: (run id, model URI)."""
    run_id = new_run(store)
    return run_id, log_model(run_id, trained_params(), "softmax", real_digits()[0][4000:4003], store.uri)


@pytest.fixture(scope="module")
def logged_once(empty_store, tmp_path_factory):
    """(its store, run id, model URI) of one softmax model in a store of its own, logged once for
    the tests that only read it (they run on one worker: xdist_group "logged_once")."""
    store = empty_store(tmp_path_factory.mktemp("logged_once"))
    with pytest.MonkeyPatch.context() as patch:  # where MLflow's own functions look, while it is logged
        patch.setenv("MLFLOW_TRACKING_URI", store.uri)
        patch.setenv("MLFLOW_REGISTRY_URI", store.uri)
        run_id, model_uri = logged_softmax(store)
    return store, run_id, model_uri


@pytest.fixture
def logged(logged_once, monkeypatch):
    """The model of ``logged_once``, its store the one MLflow finds in this test: (run id, model
    URI). Read, never changed."""
    store, run_id, model_uri = logged_once
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", store.uri)
    return run_id, model_uri


@pytest.fixture(scope="module")
def loaded_once(logged_once):
    """The pyfunc of ``logged_once``, loaded once."""
    store, _, model_uri = logged_once
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store.uri)
        patch.setenv("MLFLOW_REGISTRY_URI", store.uri)
        return mlflow.pyfunc.load_model(model_uri)


READS_LOGGED_ONCE = pytest.mark.xdist_group("logged_once")


def model_folder(model_uri):
    return mlflow.artifacts.download_artifacts(model_uri)


MLP_FIELDS = {"name": "mlp", "output": "softmax", "loss": "cross_entropy", "bias": True, "hidden": 12,
              "activation": "relu", "init": "auto"}


def mlp_params():
    """A hidden-layer network fitted for a few full-batch steps: better than chance, any fit will do."""
    from pipeline.mlp_sgd import trainer
    from pipeline.initial import seeded_generators
    from pipeline.variants import build

    model = build(MLP_FIELDS)
    images, labels = real_digits()
    params = model.initial_params(784, 10, np.dtype(np.float32), np.random.default_rng(0))
    sgd = trainer(images[:4000], labels[:4000], params, model, 0.5, 100, seeded_generators(0)[1], 1e6)
    for _ in range(3):
        sgd.run_epoch()
    return sgd.params


@pytest.mark.parametrize("variant", ["softmax", "linear", "mlp"])
def test_the_loaded_model_predicts_exactly_the_forward_pass(mlflow_store, variant):
    run_id = new_run(mlflow_store)
    params, variant = (mlp_params(), MLP_FIELDS) if variant == "mlp" else (trained_params(), variant)
    model_uri = log_model(run_id, params, variant, real_digits()[0][:3], mlflow_store.uri)
    images, labels = real_digits()
    unseen = images[4000:]
    expected = scores(params, unseen, variant)
    for uri in (model_uri, f"runs:/{run_id}/model"):
        answer = mlflow.pyfunc.load_model(uri).predict(unseen.astype(np.float32))
        np.testing.assert_array_equal(answer["scores"], expected)
        np.testing.assert_array_equal(answer["digit"], expected.argmax(axis=1))
    assert np.mean(expected.argmax(axis=1) == labels[4000:]) > 0.75  # a real model on unseen real digits
    tags = mlflow_store.client.get_logged_model(model_uri.removeprefix("models:/")).tags
    assert tags["variant"] == (variant["name"] if isinstance(variant, dict) else variant)


@READS_LOGGED_ONCE
def test_the_run_lists_the_model_and_keeps_its_status(logged_once):
    store, run_id, model_uri = logged_once
    run = store.client.get_run(run_id)
    assert run.info.status == "RUNNING"
    assert [f"models:/{output.model_id}" for output in run.outputs.model_outputs] == [model_uri]
    model = store.client.get_logged_model(model_uri.removeprefix("models:/"))
    assert (model.name, model.source_run_id, model.experiment_id, model.tags["variant"]) == ("model", run_id, run.info.experiment_id, "softmax")
    assert model.params == {"model.name": "softmax"}


def test_the_models_fields_are_what_the_model_keeps(mlflow_store):
    # As the train stage logs it: conf/model/<name>.yaml's fields, not just a name.
    fields = {**MLP_FIELDS, "name": "linear", "output": "identity", "loss": "squared_error", "bias": False, "hidden": None}
    run_id = new_run(mlflow_store)
    model_uri = log_model(run_id, trained_params(), fields, real_digits()[0][:3], mlflow_store.uri)
    model = mlflow.pyfunc.load_model(model_uri)
    assert model.unwrap_python_model().fields == fields
    assert mlflow_store.client.get_logged_model(model_uri.removeprefix("models:/")).params == {
        "model.name": "linear", "model.output": "identity", "model.loss": "squared_error", "model.bias": "False",
        "model.hidden": "None", "model.activation": "relu", "model.init": "auto"}
    pixels = real_digits()[0][4000:4100]
    np.testing.assert_array_equal(model.predict(pixels.astype(np.float32))["scores"], scores(trained_params(), pixels, "linear"))


@READS_LOGGED_ONCE
def test_signature_example_and_requirements_are_what_the_model_needs(logged):
    folder = model_folder(logged[1])
    with open(os.path.join(folder, "MLmodel")) as f:
        mlmodel = yaml.safe_load(f)
    inputs, outputs = json.loads(mlmodel["signature"]["inputs"]), json.loads(mlmodel["signature"]["outputs"])
    assert inputs == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 784]}}]
    assert [(o["name"], o["tensor-spec"]) for o in outputs] == [
        ("digit", {"dtype": "int64", "shape": [-1]}), ("scores", {"dtype": "float32", "shape": [-1, 10]})]
    for file_name, key in (("input_example.json", None), ("serving_input_example.json", "inputs")):
        with open(os.path.join(folder, file_name)) as f:
            example = json.load(f)
        np.testing.assert_array_equal(example[key] if key else example, real_digits()[0][4000:4003])
    with open(os.path.join(folder, "requirements.txt")) as f:
        requirements = sorted(line.split("==")[0] for line in f.read().split())
    assert requirements == ["mlflow", "numpy"]
    shipped = sorted(os.listdir(os.path.join(folder, "code", "pipeline")))
    assert shipped == sorted(served_model.CODE_MODULES)


@pytest.mark.slow  # a fresh interpreter importing MLflow and loading the model: end to end
@READS_LOGGED_ONCE
def test_the_model_loads_where_this_repository_is_not(logged, tmp_path):
    # A process outside the repository, with the editable install's finder removed: `pipeline`
    # can only come from the code shipped inside the model.
    folder = model_folder(logged[1])
    script = f"""
import sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__ and "editable" not in repr(f)]
sys.path = [p for p in sys.path if p not in ("", {os.getcwd()!r})]
import mlflow, numpy as np
model = mlflow.pyfunc.load_model({folder!r})
import pipeline
assert pipeline.__file__.startswith({folder!r}), pipeline.__file__
try:
    import pipeline.train
except ImportError:
    pass
else:
    raise AssertionError("the repository's pipeline.train is reachable")
print(model.predict(np.zeros((1, 784), np.float32) + 255)["digit"][0])
"""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = scores(trained_params(), np.full((1, 784), 255, np.uint8), "softmax").argmax()
    assert result.stdout.split()[-1] == str(expected)


@pytest.mark.parametrize("bad, message", [
    (np.full((2, 784), np.nan, np.float32), "the pixels hold NaN values"),
    (np.full((2, 784), np.inf, np.float32), "pixels range over inf..inf, expected 0..255"),
    (np.full((2, 784), -1, np.float32), "pixels range over -1..-1, expected 0..255"),
    (np.full((2, 784), 256, np.float32), "pixels range over 256..256, expected 0..255"),
    (np.zeros((2, 783), np.float32), "Shape of input (2, 783) does not match expected shape (-1, 784)"),
    (np.zeros((2, 784), np.uint8), "dtype of input uint8 does not match expected dtype float32"),
])
@READS_LOGGED_ONCE
def test_bad_pixels_get_a_clear_error_not_an_answer(loaded_once, bad, message):
    with pytest.raises(MlflowException) as error:
        loaded_once.predict(bad)
    assert message in error.value.message


def test_a_diverged_model_is_not_logged(mlflow_store):
    run_id = new_run(mlflow_store)
    W = trained_params()["W"].copy()
    W[3, 5] = np.nan
    with pytest.raises(ValueError, match="parameter W holds NaN or infinite values"):
        log_model(run_id, {"W": W}, "softmax", real_digits()[0][:3], mlflow_store.uri)
    assert mlflow_store.client.get_run(run_id).outputs.model_outputs == []


def test_nothing_is_logged_when_tracking_is_off():
    from pipeline.tracking import DisabledRun

    assert log_model(DisabledRun(), trained_params(), "softmax", real_digits()[0][:3]) is None


# --- serving ------------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, payload):
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.mark.slow
def test_the_served_registered_model_answers_with_the_forward_pass(mlflow_store, tmp_path):
    logged = logged_softmax(mlflow_store)  # its own: the test registers it
    client = mlflow_store.client
    client.create_registered_model("handgrad-softmax")
    version = client.create_model_version("handgrad-softmax", logged[1], run_id=logged[0], model_id=logged[1].removeprefix("models:/"))
    client.set_registered_model_alias("handgrad-softmax", "champion", version.version)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/handgrad-softmax@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"),
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not answer /ping within 120 s"
                time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/invocations"
        images = real_digits()[0]
        for rows in (images[4000:4010], images[4000:5000]):
            status, answer = post(url, {"inputs": rows.tolist()})
            expected = scores(trained_params(), rows, "softmax")
            assert status == 200
            np.testing.assert_array_equal(np.array(answer["predictions"]["scores"], np.float32), expected)
            np.testing.assert_array_equal(answer["predictions"]["digit"], expected.argmax(axis=1))
        status, answer = post(url, {"inputs": images[:2, :783].tolist()})
        assert status == 400 and "Shape of input (2, 783) does not match expected shape (-1, 784)" in answer["message"]
        status, answer = post(url, {"inputs": (-images[:2].astype(int)).tolist()})
        assert status == 400 and "expected 0..255" in answer["message"]
    finally:
        server.terminate()
        server.wait(timeout=30)
