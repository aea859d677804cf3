"""Reading runs back, and logging a report into a run: for experiments.compare."""

from pipeline.tracking import schema
from pipeline.tracking.store import TrackingError, absent_database, connect, ensure_experiment, import_mlflow
from pipeline.tracking.writer import system_tags


def search_runs(uri, filter_string="", experiment_name=None):
    """The runs matching ``filter_string`` (MLflow's search syntax) in experiment
    ``experiment_name``, or in every experiment when None, as ``mlflow.search_runs`` gives them:
    a pandas DataFrame, one row per run, with columns ``run_id``, ``experiment_id``, ``status``,
    ``start_time``, ``end_time``, ``params.<key>``, ``metrics.<key>`` (latest value) and
    ``tags.<key>``. TrackingError if ``experiment_name`` does not exist. A sqlite store that does
    not exist has no runs, and is not created (MLflow would, to find none)."""
    if absent_database(uri) is not None:
        if experiment_name is not None:
            raise TrackingError(f"there is no MLflow experiment {experiment_name!r} in {uri}: no store there yet")
        import pandas

        return pandas.DataFrame()
    import_mlflow(uri)
    import mlflow

    experiment_ids, everywhere = None, True
    if experiment_name is not None:
        experiment = connect(uri)[0].get_experiment_by_name(experiment_name)
        if experiment is None:
            raise TrackingError(f"there is no MLflow experiment {experiment_name!r} in {uri}")
        experiment_ids, everywhere = [experiment.experiment_id], False
    mlflow.set_tracking_uri(uri)  # mlflow.search_runs reads the process-wide URI
    return mlflow.search_runs(experiment_ids, filter_string, search_all_experiments=everywhere)


def metric_histories(uri, run_ids, key):
    """Every logged value of metric ``key`` of each run: a pandas DataFrame with columns
    ``run_id``, ``step``, ``value``, sorted by run and step (none for a run that has not logged
    it)."""
    import pandas as pd

    client, _ = connect(uri)
    rows = [(run_id, m.step, m.value) for run_id in run_ids for m in client.get_metric_history(run_id, key)]
    return pd.DataFrame(rows, columns=["run_id", "step", "value"]).sort_values(["run_id", "step"], ignore_index=True)


def log_summary(uri, paths, artifact_path, run_id=None, experiment_name=None, run_name=None, tags=None):
    """Log ``paths`` as artifacts under ``artifact_path`` of run ``run_id`` (its status untouched)
    or, when None, of the run of experiment ``experiment_name`` (created if absent) that carries
    ``tags``, a new one named ``run_name`` and ended FINISHED (FAILED if the logging fails) if
    there is none. Returns the run's (id, experiment id)."""
    client, _ = connect(uri)
    created = False
    if run_id is None:
        experiment_id = ensure_experiment(client, uri, experiment_name)
        found = [run for run in client.search_runs([experiment_id], max_results=1000)
                 if all(run.data.tags.get(key) == value for key, value in tags.items())]
        if found:
            run_id = found[0].info.run_id
        else:
            run_id = client.create_run(experiment_id, run_name=run_name, tags={**system_tags(schema.SOURCE_COMPARE), **tags}).info.run_id
            created = True
    status = "FAILED"
    try:
        for path in paths:
            client.log_artifact(run_id, str(path), artifact_path=artifact_path)
        status = "FINISHED"
    finally:
        if created:
            client.set_terminated(run_id, status=status)
    return run_id, client.get_run(run_id).info.experiment_id
