"""pipeline.exits: how a stage process ends."""

import os
import signal
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


# A child in which the signal comes while Python runs a weakref callback or a __del__ (the
# callback sends it, so it comes there every time), where an exception cannot propagate: Python
# prints it ("Exception ignored in ...", a traceback) and goes on. sys.argv: where, the signal.
SIGNAL_IN_CALLBACK = """
import atexit, gc, signal, sys, time, weakref
from pipeline.exits import handle_interrupts, report_interrupt

def callback(*_):
    signal.raise_signal(signal.Signals[sys.argv[2]])
    print("the callback ran to its end", flush=True)

class Node:
    pass

class Garbage(Node):
    def __del__(self):
        if sys.argv[1] == "__del__ failing otherwise":
            raise ValueError("not an interrupt")
        callback()

def cycle(kind):  # garbage that only the collector finds
    a, b = kind(), kind()
    a.b, b.a = b, a
    return a

handle_interrupts()
handle_interrupts()  # as stage_app does: in the launcher, then again in the task
try:
    if sys.argv[1] == "weakref callback, collecting":
        ref = weakref.ref(cycle(Node), callback)
        gc.collect()
    elif sys.argv[1] == "__del__, collecting":
        cycle(Garbage)
        gc.collect()
    elif sys.argv[1] == "__del__, not collecting":
        Garbage()  # freed as soon as made
    elif sys.argv[1] == "__del__ failing otherwise":
        Garbage()
        sys.exit(0)
    elif sys.argv[1] == "atexit":
        atexit.register(print, "the exit went on", flush=True)
        atexit.register(callback)
        sys.exit(0)
    for _ in range(500):  # where the stage would be
        time.sleep(0.01)
    print("not interrupted", flush=True)
except KeyboardInterrupt as interrupt:
    sys.exit(report_interrupt(interrupt))
"""


def run_signal_in_callback(where, signum):
    return subprocess.run([sys.executable, "-c", SIGNAL_IN_CALLBACK, where, signum.name], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow  # a process per signal: the marker's Ctrl-C tests
@pytest.mark.parametrize("signum, how", [(signal.SIGINT, "Ctrl-C (SIGINT)"), (signal.SIGTERM, "SIGTERM")])
@pytest.mark.parametrize("where", ["weakref callback, collecting", "__del__, collecting", "__del__, not collecting"])
def test_a_signal_in_a_callback_python_cannot_raise_from_still_interrupts_in_one_line(where, signum, how):
    # Before: "Exception ignored in: <function callback>", a traceback, and the stage ran on
    # (not interrupted, exit 0): the signal was lost.
    child = run_signal_in_callback(where, signum)

    assert (child.returncode, child.stderr) == (128 + signum, f"interrupted by {how}: no outputs written\n")
    assert "not interrupted" not in child.stdout
    # A collection's callbacks and finalizers finish; a __del__ outside one is where Python raises.
    assert ("the callback ran to its end" in child.stdout) == ("not collecting" not in where)


@pytest.mark.slow
def test_a_signal_in_an_atexit_callback_stops_that_callback_only_and_silently():
    child = run_signal_in_callback("atexit", signal.SIGINT)

    assert (child.returncode, child.stdout, child.stderr) == (0, "the exit went on\n", "")


def test_other_exceptions_python_cannot_raise_are_still_printed():
    child = run_signal_in_callback("__del__ failing otherwise", signal.SIGINT)

    assert child.returncode == 0
    assert "Exception ignored in" in child.stderr and "ValueError: not an interrupt" in child.stderr


# A child started with SIGINT and SIGTERM blocked (a mask is inherited), whose resender thread is
# held at its first call (before a line of its own runs), prints which of the two that thread,
# then the main thread, blocks once handle_interrupts returned.
THREAD_MASKS = """
import signal, sys, threading
from pipeline import exits

held, checked = threading.Event(), threading.Event()

def hold(frame, event, arg):
    if threading.current_thread() is not threading.main_thread() and not checked.is_set():
        held.set()
        checked.wait()

def blocked(thread_id):
    with open(f"/proc/self/task/{thread_id}/status") as status:
        mask = int(next(line for line in status if line.startswith("SigBlk:")).split()[1], 16)
    return [signum.name for signum in exits.INTERRUPTING_SIGNALS if mask >> (signum - 1) & 1]

threading.settrace(hold)
exits.handle_interrupts()
held.wait()
[resender] = [thread for thread in threading.enumerate() if thread.name == exits._RESENDER]
print(blocked(resender.native_id), blocked(threading.get_native_id()))
checked.set()
"""


def blocking_interrupts():
    """A preexec_fn: the child starts with SIGINT and SIGTERM blocked, as its parent's mask."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def test_only_the_main_thread_can_take_a_kill_or_ctrl_c_from_the_start():
    # A signal sent to the process goes to any thread not blocking it. Before: the resender
    # blocked both only once it ran, and a SIGINT it took then left the stage waiting in a read
    # (CI: the train stage interrupted while it read provenance.json never ended); and a stage
    # started with both blocked kept them blocked: no Ctrl-C or kill reached it.
    out = subprocess.run([sys.executable, "-c", THREAD_MASKS], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=60, check=True, preexec_fn=blocking_interrupts).stdout

    assert out == "['SIGINT', 'SIGTERM'] []\n"


@pytest.mark.slow  # a stage process, like the other Ctrl-C tests
def test_a_stage_started_with_a_kill_waiting_behind_a_blocked_mask_ends_in_one_line():
    def blocked_with_sigterm_waiting():  # as a parent that blocked them and was sent one may leave it
        blocking_interrupts()
        os.kill(os.getpid(), signal.SIGTERM)

    child = subprocess.run([sys.executable, "-m", "pipeline.gradcheck"], cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=60, preexec_fn=blocked_with_sigterm_waiting)

    assert (child.returncode, child.stderr, child.stdout) == (143, "interrupted by SIGTERM: no outputs written\n", "")
