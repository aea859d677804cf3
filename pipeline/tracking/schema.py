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
# MLflow's UI groups a run's charts into sections by the prefix before the first '/', sorted by
# name, with prefix-less metrics last (in "Model metrics"): so the names put the loss curves first,
# the accuracy curves second. Every curve is logged per epoch (step = epoch) except the per-step
# training loss (step = global step); a curve's final value is its last point.
TRAIN_LOSS = "loss/train_step"  # the mean of every tracking.log_every steps, at the later step
TRAIN_LOSS_EPOCH = "loss/train"
TRAIN_PENALTY = "loss/train_penalty"  # weight decay's λ||W||², per epoch, beside the data term
VAL_LOSS = "loss/val"
TRAIN_ACCURACY = "score/train_accuracy"
VAL_ACCURACY = "score/val_accuracy"  # its last point: the final W's (selection, registry)
# What the registry chooses a run's model by, never a test metric.
SELECTION_METRIC = VAL_ACCURACY
EPOCH_SECONDS = "time/epoch_seconds"  # one per completed epoch: its last step is the epochs done
# Summary metrics, one value each (step 0), for what has no curve; in the last section.
TEST_LOSS = "test_loss"
TEST_ACCURACY = "test_accuracy"
TRAIN_SECONDS = "train_seconds"
MAX_STABLE_LR = "max_stable_lr"  # the linear variant's 2/λ_max
LEAST_SQUARES_LOSS = "least_squares_loss"  # the linear variant's floor
# The test split's precision and recall per digit: one table (its rows: PER_DIGIT_COLUMNS), not
# twenty charts.
PER_DIGIT_TABLE = "evaluation/per_digit.json"
PER_DIGIT_COLUMNS = ("digit", "precision", "recall", "support")

# --- params: the run's settings, its config's keys under these (flattened with dots), plus the
# rows it trained and validated on. Not where files go, mirrors, timeouts or tracking options.
TRAIN_SETTINGS = ("model", "optim", "data.val_fraction", "data.split_seed", "dtype", "divergence")
EVALUATE_SETTINGS = ("model", "mistakes_shown")
MODEL_NAME = "model.name"
LR = "optim.lr"
EPOCHS = "optim.epochs"
BATCH_SIZE = "optim.batch_size"
TRAIN_ROWS = "data.train_rows"
VAL_ROWS = "data.val_rows"
SWEEP_GRID = "sweep.grid"
SWEEP_DIR = "sweep.dir"

# --- the data a run read: an MLflow dataset input (the runs table's Dataset column) -----------
DATASET_NAMES = {"canonical": "mnist", "packaged": "mnist-packaged"}  # by provenance.json's source
TRAINING, TESTING = "training", "testing"  # the input's context: which split


def dataset_name(source):
    """The dataset's name for provenance.json's ``source``: real MNIST or the packaged subset."""
    return DATASET_NAMES.get(source, f"mnist-{source}")


# --- tags ---------------------------------------------------------------------------------------
VARIANT = "variant"
DIVERGED = "diverged"  # "true" or "false"
DIVERGED_NAME_PREFIX = "diverged: "  # a diverged run's name starts with it, in the runs table
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
OUT_DIR = "out_dir"  # where the stage wrote its files (a sweep job's own folder)
TRAINED_BY_RUN = "trained_by_run"
TRAINED_BY_RUN_NOTE = "trained_by_run.note"
COMPARISON_OF = "comparison.of"
COMPARISONS_EXPERIMENT = "comparisons"  # where an experiment's comparison goes, not into it
ERROR = "error"

# --- artifacts ----------------------------------------------------------------------------------
WEIGHTS_DIR = "weights"  # <parameter>_epoch_<epoch>.npy: W_epoch_0001.npy, b1_epoch_0001.npy, ...
# The pictures of the weights after each epoch (the UI's step slider), keyed weights/<matrix>:
# weights/W for a one-layer model, weights/W1 and weights/W2 for a hidden layer's; the prefix
# makes them a section of their own, after the curves'.
WEIGHTS_IMAGE_PREFIX = "weights/"
WEIGHTS_FINAL_PICTURE = "W_final.png"  # a one-layer model's final W, larger, at the artifacts' root


def weights_image_key(matrix):
    """The image key of the pictures of weight matrix ``matrix`` (W, W1, W2)."""
    return WEIGHTS_IMAGE_PREFIX + matrix
LOSS_CURVE = "plots/loss_curve.png"
PROVENANCE = "data/provenance.json"
EVALUATION_DIR = "evaluation"
COMPARISON_DIR = "comparison"

# --- the MLflow Model of a run and the Model Registry (pipeline.served_model, pipeline.registry) --
LOGGED_MODEL = "model"  # the name of each run's LoggedModel: runs:/<run id>/model
REGISTERED_MODEL_PREFIX = "handgrad-"  # + the variant: the registered model's name
CHAMPION_ALIAS = "champion"  # on the registered version with the best SELECTION_METRIC so far
SELECTION_TAG = "val_accuracy"  # on a registered version: its run's SELECTION_METRIC
