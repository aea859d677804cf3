"""How a stage ends when it cannot finish: one line and a documented exit status, never a
traceback, for what the user can act on; and SIGTERM handled like Ctrl-C. Used by
``app.stage_app``, the wrapper of every stage (and ``experiments.ui`` for its exit).

- ``exit_if_reported``: an error carrying ``exit_status`` (a store that does not answer, a bad
  input file) is printed as it is, and that is the exit status; an OSError naming a file (a full
  disk, a read-only folder) is ``<file>: <cause>``, exit 1.
- ``handle_interrupts``: SIGINT (Ctrl-C) and SIGTERM (``kill``, ``timeout``, SLURM, ``docker
  stop``) raise ``Interrupted``, a KeyboardInterrupt, where the stage is: it unwinds like Ctrl-C
  (MLflow runs end KILLED, no output is half-written). Not where Python cannot raise (a weakref
  callback or ``__del__``, which the garbage collector runs anywhere): Python would print it with
  a traceback and go on as if no signal came. There the signal is sent again once out of it.
- ``report_interrupt``: then what only the launching process can end is ended (``on_interrupt``:
  a sweep's runs), one line says what is left, and the exit status is 128 + the signal's
  number: 130 for Ctrl-C, 143 for SIGTERM.
- ``exit_without_collecting``: and however it ends, the interpreter's exit does not scan what the
  process imported for garbage.
"""

import atexit
import gc
import queue
import signal
import sys
import threading

from pipeline.files import WRITTEN_SETS

EXIT_INTERRUPTED = 128  # + the signal's number
INTERRUPTING_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_if_reported(error):
    """Exit with one line for an error the user can act on; return for any other."""
    if getattr(error, "exit_status", None) is not None:
        print(error, file=sys.stderr)
        sys.exit(error.exit_status)
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        print(f"{error.filename}: {error.strerror}", file=sys.stderr)
        sys.exit(1)


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM, raised wherever the stage was."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# Signals to send the main thread again, by a thread of their own: whatever the main thread
# does to re-raise one (even _thread.interrupt_main) is acted on in the code it is running, the
# code that swallows it. A SimpleQueue's put is safe in gc callbacks and __del__ methods.
_TO_RESEND = queue.SimpleQueue()
_RESENDER = "pipeline.exits: interrupts sent again"
_collecting = False  # the garbage collector is running its callbacks: an exception now is lost
_came_while_collecting = set()


def _raise_interrupted(signum, frame):
    if _collecting:
        _came_while_collecting.add(signum)
    else:
        raise Interrupted(signum)


def _resend_after_collections(phase, info):
    """A gc.callbacks entry: a signal that came while the collector ran its weakref callbacks and
    finalizers is sent again after it, not raised in them (they finish their work too)."""
    global _collecting
    _collecting = phase == "start"
    while not _collecting and _came_while_collecting:
        _TO_RESEND.put(_came_while_collecting.pop())


def _resend_forever(main_thread_id):
    while True:  # in the main thread, the signal is raised in the stage's code or swallowed again
        signal.pthread_kill(main_thread_id, _TO_RESEND.get())


class _ResendSwallowedInterrupts:
    """A sys.unraisablehook: a KeyboardInterrupt that Python swallowed anyway (raised in a
    ``__del__`` or weakref callback run outside a collection, or in a gc callback) is not printed
    but sent again, while the main thread runs; after (atexit callbacks), dropped: it stopped the
    callback it came in. Anything else goes to the hook that was there."""

    def __init__(self, previous):
        self.previous = previous

    def __call__(self, unraisable):
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            self.previous(unraisable)
        elif threading.main_thread().is_alive():
            _TO_RESEND.put(getattr(unraisable.exc_value, "signum", signal.SIGINT))


def handle_interrupts():
    """SIGINT and SIGTERM raise Interrupted in the main thread (signals go nowhere else), never
    where Python would swallow it. Called again, it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in INTERRUPTING_SIGNALS:
        signal.signal(signum, _raise_interrupted)
    if _resend_after_collections not in gc.callbacks:
        gc.callbacks.append(_resend_after_collections)
    if not isinstance(sys.unraisablehook, _ResendSwallowedInterrupts):
        sys.unraisablehook = _ResendSwallowedInterrupts(sys.unraisablehook)
    # The kernel hands a kill or Ctrl-C to any thread not blocking it, and one taken elsewhere
    # leaves a main thread waiting in a read for good: the resender is born blocking both, and the
    # main thread unblocks them, even if the process started with them blocked (a mask is
    # inherited from the parent); one that waited comes now, to the handler above.
    signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTING_SIGNALS)
    try:
        if not any(thread.name == _RESENDER for thread in threading.enumerate()):  # one a process
            threading.Thread(target=_resend_forever, args=(threading.get_ident(),), name=_RESENDER, daemon=True).start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTING_SIGNALS)


_INTERRUPT_CLEANUPS = []


def on_interrupt(cleanup):
    """Have ``cleanup()`` called when the stage is interrupted, before the message: it ends what
    only the launching process can end (a sweep's runs) and returns a note for the message, or
    None. Returns the function that cancels it."""
    _INTERRUPT_CLEANUPS.append(cleanup)
    return lambda: cleanup in _INTERRUPT_CLEANUPS and _INTERRUPT_CLEANUPS.remove(cleanup)


def report_interrupt(interrupt):
    """Run the cleanups, print one line, return the exit status: 128 + the signal's number.

    The line says what the unwinding left: whether a set of outputs was written
    (files.write_set), then the notes added to the exception (``MLflow run <id> marked
    KILLED``); a cleanup's notes, when there are some (a sweep's), take their place.
    """
    signum = getattr(interrupt, "signum", signal.SIGINT)
    cleanup_notes = []
    for cleanup in list(_INTERRUPT_CLEANUPS):
        try:
            cleanup_notes.append(cleanup())
        except KeyboardInterrupt:  # pressed again: stop cleaning up, still no traceback
            cleanup_notes.append("cleanup interrupted, some MLflow runs may stay RUNNING")
    cleanup_notes = [note for note in cleanup_notes if note]
    written = f"outputs written to {', '.join(map(str, WRITTEN_SETS))} before it" if WRITTEN_SETS else "no outputs written"
    notes = cleanup_notes or [written, *getattr(interrupt, "__notes__", [])]
    how = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name
    print(f"interrupted by {how}: {'; '.join(notes)}", file=sys.stderr)
    return EXIT_INTERRUPTED + signum


def exit_without_collecting():
    """At the interpreter's exit, no cyclic garbage collection of the objects alive then.

    Python collects garbage as it ends, scanning every object again: with MLflow imported,
    hundreds of thousands that the process's end frees anyway, and the slowest part of a tracked
    stage's (or the UI server's) exit. Freezing them (``gc.freeze``) skips that; atexit handlers
    (MLflow ending its run, logging flushing) still run, and files are written and closed
    before."""
    atexit.unregister(gc.freeze)  # once, however often a process runs a stage (tests, workers)
    atexit.register(gc.freeze)
