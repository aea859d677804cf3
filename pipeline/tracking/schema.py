"""The names of what the project records in MLflow, in one place: the metrics, params, tags,
artifact paths and environment variables that the train and evaluate stages write and the sweep
callback and the comparison report read back. No imports: every layer may use it.
"""

# --- environment: a sweep hands its jobs the store's experiment and its own run ---------------
EXPERIMENT_ID_VARIABLE = "MLFLOW_EXPERIMENT_ID"
SWEEP_RUN_VARIABLE = "HANDGRAD_SWEEP_RUN_ID"

# --- sources (tag mlflow.source.name): the module that made the run --------------------------
SOURCE_TRAIN = "pipeline.train"
SOURCE_EVALUATE = "pipeline.evaluate"
SOURCE_SWEEP = "experiments.sweep"
SOURCE_COMPARE = "experiments.compare"

# --- metrics ----------------------------------------------------------------------------------
TRAIN_LOSS = "train/loss"  # the mean of every tracking.log_every steps, at the later step
TRAIN_LOSS_EPOCH = "train/loss_epoch"
TRAIN_ACCURACY = "train/accuracy"
TRAIN_PENALTY = "train/penalty"  # weight decay's λ||W||², per epoch, beside the data term
VAL_LOSS = "val/loss"
VAL_ACCURACY = "val/accuracy"  # one per epoch: its last step is the epochs completed
# What the registry chooses a run's model by: the validation accuracy's last point (the final W's,
# as metrics.json's val.accuracy), never a test metric.
SELECTION_METRIC = VAL_ACCURACY
EPOCH_SECONDS = "time/epoch_seconds"
MAX_STABLE_LR = "linear/max_stable_lr"
LEAST_SQUARES_LOSS = "linear/least_squares_loss"
FINAL_PREFIX = "final/"  # + a key of metrics.json flattened with dots: final/val.accuracy
TEST_LOSS = "test/loss"
TEST_ACCURACY = "test/accuracy"


def final(key):
    """The metric of metrics.json's ``key`` (dotted: ``train.loss``) at the end of training."""
    return FINAL_PREFIX + key



def test_precision(digit):
    return f"test/precision/{digit}"


def test_recall(digit):
    return f"test/recall/{digit}"


# --- params: the stage's config flattened with dots, plus these ---------------------------------
MODEL_NAME = "model.name"
LR = "optim.lr"
EPOCHS = "optim.epochs"
BATCH_SIZE = "optim.batch_size"
TRAIN_ROWS = "data.train_rows"
VAL_ROWS = "data.val_rows"
SWEEP_GRID = "sweep.grid"
SWEEP_DIR = "sweep.dir"

# --- tags ---------------------------------------------------------------------------------------
VARIANT = "variant"
DIVERGED = "diverged"  # "true" or "false"
DIVERGED_AT_STEP = "diverged_at_step"
SWEEP_ID = "sweep.id"  # on a sweep's run and on each of its jobs' runs
SWEEP_PARENT = "sweep.parent"  # "true" on a sweep's own run
PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's UI nests a job's run under its sweep's
RUN_NAME = "mlflow.runName"
HYDRA_SWEEP_DIR = "hydra.sweep.dir"
HYDRA_JOB_NUM = "hydra.job.num"
DVC_EXP_NAME = "dvc.exp_name"
DATA_SOURCE = "data.source"
DATA_SHA256_PREFIX = "data.sha256."  # + a data file's name
TRAINED_BY_RUN = "trained_by_run"
TRAINED_BY_RUN_NOTE = "trained_by_run.note"
COMPARISON_OF = "comparison.of"
ERROR = "error"

# --- artifacts ----------------------------------------------------------------------------------
WEIGHTS_DIR = "weights"  # <parameter>_epoch_<epoch>.npy: W_epoch_0001.npy, b1_epoch_0001.npy, ...
WEIGHTS_IMAGE_KEY = "W"  # a one-layer model's W; a hidden layer's pictures are keyed W1 and W2
LOSS_CURVE = "plots/loss_curve.png"
PROVENANCE = "data/provenance.json"
EVALUATION_DIR = "evaluation"
COMPARISON_DIR = "comparison"

# --- the MLflow Model of a run and the Model Registry (pipeline.served_model, pipeline.registry) --
LOGGED_MODEL = "model"  # the name of each run's LoggedModel: runs:/<run id>/model
REGISTERED_MODEL_PREFIX = "handgrad-"  # + the variant: the registered model's name
CHAMPION_ALIAS = "champion"  # on the registered version with the best SELECTION_METRIC so far
SELECTION_TAG = "val_accuracy"  # on a registered version: its run's SELECTION_METRIC
