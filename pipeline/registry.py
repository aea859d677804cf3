"""The MLflow Model Registry: the best model of each variant as a version of ``handgrad-<variant>``.

    register_best(uri, sweep_run_id="...")     # the end of a sweep (experiments.sweep's callback)
    register_best(uri, run_ids=[...])          # the pipeline's own runs (evaluate, tracking.register)

Among the given runs that FINISHED with a logged model (pipeline.served_model), the one with
the highest validation accuracy (schema.SELECTION_METRIC; never the test accuracy, which would
make the test split a selection criterion) of each variant (tag ``variant``) becomes a version of
the registered model ``handgrad-<variant>``, tagged with that accuracy; a run already
registered is not registered twice. The alias ``champion`` moves to it only when it beats the
accuracy of the version holding it, so ``models:/handgrad-softmax@champion`` always names the
best model registered so far.
"""

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.tracking import schema

PROJECT = schema.REGISTERED_MODEL_PREFIX.rstrip("-")
ALIAS = schema.CHAMPION_ALIAS
SELECTION_METRIC = schema.SELECTION_METRIC
ACCURACY_TAG = schema.SELECTION_TAG


@dataclass(frozen=True)
class Registration:
    name: str  # handgrad-<variant>
    version: str
    run_id: str
    val_accuracy: float
    champion: bool  # whether the alias points to this version now
    holder: tuple = None  # (version, val accuracy) of the version keeping the alias, when not this one

    def __str__(self):
        if self.champion:
            verdict = f"now @{ALIAS}"
        else:
            version, accuracy = self.holder
            verdict = f"@{ALIAS} stays on version {version} (val accuracy {accuracy:.2%}, not beaten)"
        return f"{self.name} version {self.version} (run {self.run_id}, val accuracy {self.val_accuracy:.2%}): {verdict}"


def registered_name(variant):
    return schema.REGISTERED_MODEL_PREFIX + variant


def register_best(uri, sweep_run_id=None, run_ids=None):
    """Register the best run of each variant among a sweep's jobs or ``run_ids``; one
    Registration per variant, best first. Runs without a model or not FINISHED are passed over."""
    client = MlflowClient(uri, registry_uri=uri)
    runs = sweep_runs(client, sweep_run_id) if sweep_run_id else [client.get_run(run_id) for run_id in run_ids or ()]
    best = {}
    for run in runs:
        variant, accuracy = run.data.tags.get(schema.VARIANT), run.data.metrics.get(SELECTION_METRIC)
        if run.info.status != "FINISHED" or variant is None or accuracy is None or not logged_model_id(run):
            continue
        if variant not in best or accuracy > best[variant][1]:
            best[variant] = (run, accuracy)
    registrations = [register_run(client, run, variant, accuracy) for variant, (run, accuracy) in best.items()]
    return sorted(registrations, key=lambda r: -r.val_accuracy)


def sweep_runs(client, sweep_run_id):
    """The jobs' runs of the sweep whose own run is ``sweep_run_id``."""
    experiment_id = client.get_run(sweep_run_id).info.experiment_id
    found = client.search_runs([experiment_id], f"tags.`{schema.SWEEP_ID}` = '{sweep_run_id}'", max_results=10_000)
    return [run for run in found if run.info.run_id != sweep_run_id]


def logged_model_id(run):
    """The id of the run's last logged model, None if it has none."""
    outputs = run.outputs.model_outputs if run.outputs else []
    return max(outputs, key=lambda output: output.step).model_id if outputs else None


def register_run(client, run, variant, accuracy):
    """Run ``run``'s model as a version of ``handgrad-<variant>`` (its existing version if it
    has one), with the alias moved to it if it beats the holder's validation accuracy."""
    name, run_id = registered_name(variant), run.info.run_id
    try:
        client.create_registered_model(name, tags={schema.VARIANT: variant}, description=f"{PROJECT}, variant {variant}: best by validation accuracy")
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = existing[0]
    else:
        model_id = logged_model_id(run)
        version = client.create_model_version(
            name, f"models:/{model_id}", run_id=run_id, model_id=model_id,
            tags={ACCURACY_TAG: repr(accuracy), schema.VARIANT: variant},
        )
    number = str(version.version)  # an int when just created, a string when searched
    holder = alias_holder(client, name)
    held = float(holder.tags.get(ACCURACY_TAG, "-inf")) if holder else None
    if holder is None or str(holder.version) == number or accuracy > held:
        client.set_registered_model_alias(name, ALIAS, number)
        return Registration(name, number, run_id, accuracy, True)
    return Registration(name, number, run_id, accuracy, False, (str(holder.version), held))


def alias_holder(client, name):
    """The version of ``name`` that holds the alias, None if none does."""
    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise
