"""pipeline.exits: how a stage process ends."""

import subprocess
import sys

import pytest

from tests.paths import REPO_ROOT

# A child holding 100,000 lists reports, from an atexit handler registered first (so run last),
# how many objects the interpreter's exit will leave out of its garbage collection.
CHILD = """
import atexit, gc, sys
atexit.register(lambda: print(gc.get_freeze_count()))
from pipeline.exits import exit_without_collecting
alive = [[] for _ in range(100_000)]
for _ in range(int(sys.argv[1])):
    exit_without_collecting()
"""


@pytest.mark.parametrize("calls", [0, 2])
def test_a_stage_process_exits_without_scanning_its_objects_for_garbage(calls):
    out = subprocess.run([sys.executable, "-c", CHILD, str(calls)], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout
    frozen = int(out)
    assert frozen > 100_000 if calls else frozen == 0
