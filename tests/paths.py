"""Where the repository's pieces are, for tests."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"
SHARED_MNIST = REPO_ROOT.parent / "shared" / "mnist"
