"""A stage's command line run inside the test process: ``python -m pipeline.<stage> overrides``
without a new Python (each one imports numpy, Hydra, maybe MLflow again). Not a test module.

The app runs as the command runs it (``stage_app``: Hydra composes conf/ from the overrides, the
same one-line errors and exit statuses), and what it changes in this process is put back: the
signal handlers, gc callback and unraisable hook ``stage_app`` installs (pipeline.exits), the
logging Hydra configures, Hydra's global state. What only a real process shows (how Python turns
``sys.exit("message")`` into stderr and exit 1, signals) stays with a subprocess test of its own.
"""

import gc
import logging
import signal
import sys

from hydra.core.global_hydra import GlobalHydra

from pipeline.exits import INTERRUPTING_SIGNALS


def run_app(main, *overrides):
    """``main()`` (a ``stage_app``) with ``overrides`` as its command line; its exit status, as
    SystemExit carries it: 0 when it returns, an integer as given, or None for sys.exit(None).
    ``sys.exit("message")`` is returned as the message, for the test to compare. The output
    goes where the test captures it (capsys)."""
    argv, handlers = sys.argv, {signum: signal.getsignal(signum) for signum in INTERRUPTING_SIGNALS}
    unraisablehook, gc_callbacks = sys.unraisablehook, gc.callbacks[:]
    loggers = {name: (logger.handlers[:], logger.level, logger.propagate, logger.disabled)
               for name, logger in all_loggers().items()}
    sys.argv = [main.__module__, *overrides]
    try:
        main()
        return 0
    except SystemExit as exit:
        return exit.code
    finally:
        sys.argv = argv
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        sys.unraisablehook, gc.callbacks[:] = unraisablehook, gc_callbacks
        for name, logger in all_loggers().items():  # Hydra's job logging: handlers on this test's stdout
            logger.handlers[:], level, logger.propagate, logger.disabled = loggers.get(name, ([], logging.NOTSET, True, False))
            logger.setLevel(level)
        GlobalHydra.instance().clear()


def all_loggers():
    manager = logging.getLogger().manager
    return {"": logging.getLogger(), **{name: logger for name, logger in manager.loggerDict.items()
                                        if isinstance(logger, logging.Logger)}}
