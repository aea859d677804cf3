"""Where the repository's pieces are, for tests."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"
SHARED_MNIST = REPO_ROOT.parent / "shared" / "mnist"
# The options of model=..., as Hydra lists them when one is unknown: a new variant's conf file
# changes that line, not the tests that check it.
MODEL_OPTIONS = ", ".join(sorted(path.stem for path in (CONF_DIR / "model").glob("*.yaml")))
