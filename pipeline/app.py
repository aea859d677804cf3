"""The stages' entry point: ``stage_app`` is ``hydra.main`` on conf/, with one exit code, 2, for
every config error, one line for every failure the user can act on, and SIGTERM handled like
Ctrl-C (pipeline.exits). What makes a config valid is pipeline.config's schema.
"""

import functools
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import hydra
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from pipeline.config import ConfigError
from pipeline.exits import exit_if_reported, exit_without_collecting, handle_interrupts, report_interrupt

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
EXIT_CONFIG_ERROR = 2

# What Hydra raises for a bad override or conf file: a misspelt key, a wrong type, an unknown
# group option, override syntax.
COMPOSITION_ERRORS = (ConfigCompositionException, OverrideParseException, OmegaConfBaseException)


def stage_app(config_name):
    """``@hydra.main`` on conf/<config_name>.yaml, with every config error one line and exit 2.

    Hydra reports its own composition errors with exit 1, and so any exception once the task has
    started. Its HYDRA_FULL_ERROR switch lets exceptions through instead: it is on while Hydra
    composes, so that a composition error reaches us, and as the user set it while the task runs,
    so that the task's own failures are reported as before. A ConfigError from the task (from
    ``validated``) exits 2 too. With HYDRA_FULL_ERROR=1 set by the user, Hydra's full tracebacks.

    Other failures the user can act on, and Ctrl-C or SIGTERM: one line each (pipeline.exits).
    """

    def decorate(task):
        user_setting = {}  # HYDRA_FULL_ERROR as the user set it: None if unset

        @functools.wraps(task)
        def in_task(cfg):
            handle_interrupts()  # again: a launcher's worker process runs only this
            exit_without_collecting()
            with _environment("HYDRA_FULL_ERROR", user_setting.get("value")):
                try:
                    return task(cfg)
                except ConfigError as error:
                    print(error, file=sys.stderr)
                    sys.exit(EXIT_CONFIG_ERROR)
                except Exception as error:
                    exit_if_reported(error)
                    raise

        app = hydra.main(version_base=None, config_path=str(CONF_DIR), config_name=config_name)(in_task)

        @functools.wraps(task)
        def main():
            exit_without_collecting()
            user_setting["value"] = os.environ.get("HYDRA_FULL_ERROR")
            try:
                handle_interrupts()  # in the try: a signal that waited may come at once
                if user_setting["value"] == "1":
                    return app()
                with _environment("HYDRA_FULL_ERROR", "1"):
                    try:
                        return app()
                    except COMPOSITION_ERRORS as error:
                        print(f"invalid config: {composition_error_line(error)}", file=sys.stderr)
                        sys.exit(EXIT_CONFIG_ERROR)
            except KeyboardInterrupt as interrupt:
                sys.exit(report_interrupt(interrupt))
            except Exception as error:  # raised outside a job: by a sweep's callback, say
                exit_if_reported(error)
                raise

        return main

    return decorate


@contextmanager
def _environment(name, value):
    """``os.environ[name]`` set to ``value`` (None: unset) for the block, then as it was."""
    before = os.environ.pop(name, None)
    os.environ.update({} if value is None else {name: value})
    try:
        yield
    finally:
        os.environ.pop(name, None)
        os.environ.update({} if before is None else {name: before})


def composition_error_line(error):
    """One line for a Hydra composition error, naming the key, override or config file."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options is not None:
        group_name, _, option = error.missing_cfg_file.rpartition("/")
        return f"{group_name}={option}: no such option, conf/{group_name}/ has {', '.join(error.options)}"
    cause = error if isinstance(error, OmegaConfBaseException) else error.__cause__
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        return f"{cause.full_key}: {_first_line(cause.msg or str(cause))}"
    if isinstance(error, OverrideParseException):
        return f"{error.override}: {_first_line(error.message)}"
    return _first_line(str(error))


def _first_line(text):
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")
