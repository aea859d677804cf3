"""The registry: the best run of each variant by validation accuracy, the alias on the best so far."""

from pipeline.registry import ACCURACY_TAG, ALIAS, alias_holder, register_best
from pipeline.tracking import schema
from tests.model_helpers import logged_run, new_run


def champion(store, variant):
    holder = alias_holder(store.client, f"handgrad-{variant}")
    return holder and (str(holder.version), holder.run_id)


def test_a_sweep_registers_its_best_finished_run_of_each_variant(mlflow_store):
    store = mlflow_store
    sweep = new_run(store, {"sweep.parent": "true"})
    in_sweep = {"sweep.id": sweep}
    good = logged_run(store, "softmax", 0.90, in_sweep)
    logged_run(store, "softmax", 0.80, in_sweep)
    peaked = logged_run(store, "softmax", 0.85, in_sweep)
    store.client.log_metric(peaked, schema.VAL_ACCURACY, 0.98, step=1)  # better once, worse at the end
    linear = logged_run(store, "linear", 0.70, in_sweep)
    logged_run(store, "softmax", 0.99, in_sweep, status="FAILED")  # diverged: never registered
    logged_run(store, "softmax", 0.95, {"sweep.id": "another sweep"})
    no_model = new_run(store, {"variant": "softmax", **in_sweep})
    store.client.log_metric(no_model, schema.VAL_ACCURACY, 0.97)
    store.client.log_metric(good, schema.TEST_ACCURACY, 0.10)  # the test accuracy plays no part
    store.client.set_terminated(no_model)

    registrations = register_best(store.uri, sweep_run_id=sweep)

    assert [(r.name, r.version, r.run_id, r.val_accuracy, r.champion) for r in registrations] == [
        ("handgrad-softmax", "1", good, 0.90, True), ("handgrad-linear", "1", linear, 0.70, True)]
    assert champion(store, "softmax") == ("1", good) and champion(store, "linear") == ("1", linear)
    version = store.client.get_model_version("handgrad-softmax", "1")
    assert version.tags[ACCURACY_TAG] == "0.9" and version.source.startswith("models:/m-")
    assert str(registrations[0]) == f"handgrad-softmax version 1 (run {good}, val accuracy 90.00%): now @{ALIAS}"


def test_the_alias_moves_only_to_a_better_model_and_a_run_is_registered_once(mlflow_store):
    store = mlflow_store
    first = logged_run(store, "softmax", 0.90)
    assert register_best(store.uri, run_ids=[first])[0].champion
    worse = logged_run(store, "softmax", 0.85)
    [registration] = register_best(store.uri, run_ids=[worse])
    assert (registration.version, registration.champion) == ("2", False)
    assert champion(store, "softmax") == ("1", first)
    assert str(registration) == f"handgrad-softmax version 2 (run {worse}, val accuracy 85.00%): @champion stays on version 1 (val accuracy 90.00%, not beaten)"
    assert register_best(store.uri, run_ids=[first, worse])[0].version == "1"  # not registered again
    tie = logged_run(store, "softmax", 0.90)
    assert not register_best(store.uri, run_ids=[tie])[0].champion  # a tie does not beat the holder
    assert champion(store, "softmax") == ("1", first)
    better = logged_run(store, "softmax", 0.93)
    assert register_best(store.uri, run_ids=[better])[0].champion
    assert champion(store, "softmax") == ("4", better)
    assert len(store.client.search_model_versions("name = 'handgrad-softmax'")) == 4


def test_nothing_to_register_registers_nothing(mlflow_store):
    sweep = new_run(mlflow_store, {"sweep.parent": "true"})
    assert register_best(mlflow_store.uri, sweep_run_id=sweep) == []
    assert mlflow_store.client.search_registered_models() == []
