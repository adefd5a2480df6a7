"""Weights & Biases: ``WandbLoggerCallback`` and ``setup_wandb`` (Ray's
``ray.air.integrations.wandb``).

Needs the ``wandb`` extra (``pip install "atune[wandb]"``). Two ways to track trials:

* :class:`WandbLoggerCallback`, given to ``RunConfig(callbacks=[...])``, logs from the
  driver: one W&B run per trial (id = trial id, name = trial name, group = the
  experiment's name unless ``group=``), with the trial's config as the run config and
  each result, flattened with ``/``, logged with ``run.log``: numbers and W&B data types
  only; ``done``, ``should_checkpoint``, ``config`` (unless ``log_config=True``) and
  ``excludes`` are left out, and ``trial_id``, ``experiment_tag``, ``node_ip``,
  ``hostname``, ``pid`` and ``date`` go to the run config instead. Ray Tune runs each
  trial's W&B run in a process of its own; atune keeps them all in the driver process
  (``reinit="create_new"``) and calls W&B from a worker thread, never from the event loop.
* :func:`setup_wandb`, called inside the trainable, starts a W&B run for the trial and
  returns it.

Offline use (no account, no network): ``WANDB_MODE=offline``; runs then go to
``<dir>/wandb/offline-run-*`` and ``wandb sync`` uploads them later. The run directory is
``WANDB_DIR`` when set, else the trial directory.

W&B starts a helper process (``wandb-core``) on first use. When the experiment ends and
no other W&B run of the process is still open, the callback shuts it down
(``wandb.teardown()``), so it does not outlive ``fit()``.
"""

from __future__ import annotations

import os
from numbers import Number
from typing import TYPE_CHECKING, Any

from atune._extras import require
from atune._flatten import flatten_dict
from atune.errors import ConfigError
from atune.logger.logger import LoggerCallback

require("wandb", "wandb", "atune.integrations.wandb")

import numpy as np  # noqa: E402
import wandb  # noqa: E402
from wandb.sdk.data_types.base_types.wb_value import WBValue  # noqa: E402

if TYPE_CHECKING:
    from atune._trial import Trial

__all__ = ["WandbLoggerCallback", "setup_wandb"]

WANDB_ENV_VAR = "WANDB_API_KEY"
WANDB_PROJECT_ENV_VAR = "WANDB_PROJECT_NAME"
WANDB_GROUP_ENV_VAR = "WANDB_GROUP_NAME"

_EXCLUDED_RESULTS = ("done", "should_checkpoint")
_CONFIG_RESULTS = (
    "trial_id",
    "experiment_tag",
    "node_ip",
    "experiment_id",
    "hostname",
    "pid",
    "date",
)


def _set_api_key(api_key_file: str | None, api_key: str | None) -> None:
    """Put the API key (given, or read from a file) into ``WANDB_API_KEY``."""
    if api_key_file and api_key:
        raise ConfigError(
            f"W&B: give api_key or api_key_file, not both (api_key_file={api_key_file!r})"
        )
    if api_key_file:
        path = os.path.expanduser(api_key_file)
        try:
            with open(path) as f:
                api_key = f.readline().strip()
        except OSError as exc:
            raise ConfigError(f"W&B: cannot read api_key_file={path!r}: {exc}") from exc
    if api_key:
        os.environ[WANDB_ENV_VAR] = api_key


def _is_loggable(value: Any) -> bool:
    if isinstance(value, np.ndarray) and value.size == 1:
        return isinstance(value.item(), Number)
    if isinstance(value, (list, tuple)) and value:
        return isinstance(value[0], WBValue)
    return isinstance(value, (Number, WBValue))


def _clean(value: Any) -> Any:
    """A value W&B can store in a config: containers kept, anything odd as a string."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _init_kwargs(trial_id: str | None, name: str | None, directory: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "id": trial_id,
        "name": name,
        "reinit": "create_new",
        "allow_val_change": True,
    }
    if directory and not os.environ.get("WANDB_DIR"):
        os.makedirs(directory, exist_ok=True)
        kwargs["dir"] = directory
    return kwargs


class WandbLoggerCallback(LoggerCallback):
    """Logs each trial as a W&B run (module docstring).

    Args:
        project: The W&B project; None: ``WANDB_PROJECT_NAME`` (one of them is required).
        group: The W&B group; None: ``WANDB_GROUP_NAME``, else the experiment's name.
        api_key_file: A file whose first line is the W&B API key.
        api_key: The W&B API key (else ``WANDB_API_KEY`` or ``wandb login``'s).
        excludes: Result keys (flattened, ``a/b``) not to log.
        log_config: Also log each result's ``config`` (for schedulers that change it).
        upload_checkpoints: Log each committed checkpoint as a W&B artifact
            (``save_checkpoints`` is accepted as its older name).
        **kwargs: Passed to ``wandb.init()`` (they override the defaults above).
    """

    def __init__(
        self,
        project: str | None = None,
        group: str | None = None,
        api_key_file: str | None = None,
        api_key: str | None = None,
        excludes: list[str] | None = None,
        log_config: bool = False,
        upload_checkpoints: bool = False,
        save_checkpoints: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if api_key_file and api_key:
            raise ConfigError(
                f"WandbLoggerCallback: give api_key or api_key_file, not both "
                f"(api_key_file={api_key_file!r})"
            )
        self.project = project
        self.group = group
        self.api_key_file = api_key_file
        self.api_key = api_key
        self.excludes = list(excludes or [])
        self.log_config = log_config
        self.upload_checkpoints = upload_checkpoints or save_checkpoints
        self.kwargs = kwargs
        self._runs: dict[str, Any] = {}
        self._exclude: tuple[str, ...] = ()

    def log_setup(self, **info: Any) -> None:
        """Sets the API key and checks that a project is named."""
        _set_api_key(self.api_key_file, self.api_key)
        self.project = self.project or os.environ.get(WANDB_PROJECT_ENV_VAR)
        if not self.project:
            raise ConfigError(
                "WandbLoggerCallback needs a project: pass project=... or set "
                f"{WANDB_PROJECT_ENV_VAR}"
            )
        self.group = self.group or os.environ.get(WANDB_GROUP_ENV_VAR)
        excluded = [*_EXCLUDED_RESULTS, *self.excludes]
        if not self.log_config:
            excluded.append("config")
        self._exclude = tuple(excluded)

    def log_trial_start(self, trial: Trial) -> None:
        """Starts the trial's W&B run (once; a retry goes on logging to it)."""
        if trial.trial_id in self._runs:
            return
        config = {k: v for k, v in trial.config.items() if k != "callbacks"}
        kwargs = _init_kwargs(trial.trial_id, str(trial), trial.path)
        kwargs.update(
            project=self.project,
            group=self.group or os.path.basename(trial.experiment_path.rstrip("/\\")),
            config=_clean(config),
        )
        kwargs.update(self.kwargs)
        self._runs[trial.trial_id] = wandb.init(**kwargs)

    def _split(self, result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        log: dict[str, Any] = {}
        config: dict[str, Any] = {}
        for key, value in flatten_dict(result, delimiter="/").items():
            key = str(key)
            if any(key == item or key.startswith(item + "/") for item in _CONFIG_RESULTS):
                config[key] = _clean(value)
            elif any(key == item or key.startswith(item + "/") for item in self._exclude):
                continue
            elif _is_loggable(value):
                log[key] = value
        return log, config

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        """Logs the result's numbers (and W&B values) with ``run.log``."""
        if trial.trial_id not in self._runs:
            self.log_trial_start(trial)
        run = self._runs[trial.trial_id]
        log, config = self._split(result)
        if config:
            run.config.update(config, allow_val_change=True)
        run.log(log)

    def log_trial_save(self, trial: Trial) -> None:
        """Logs the trial's newest checkpoint as an artifact, if ``upload_checkpoints``."""
        checkpoint = trial.checkpoint
        run = self._runs.get(trial.trial_id)
        if not self.upload_checkpoints or checkpoint is None or run is None:
            return
        artifact = wandb.Artifact(name=f"checkpoint_{trial}", type="model")
        artifact.add_dir(checkpoint.path)
        run.log_artifact(artifact)

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        """Finishes the trial's run (exit code 1 when it failed)."""
        run = self._runs.pop(trial.trial_id, None)
        if run is not None:
            run.finish(exit_code=1 if failed else 0)

    def log_experiment_end(self) -> None:
        """Finishes any run left, and shuts W&B's helper process down if nothing else uses it."""
        for run in self._runs.values():
            run.finish(exit_code=1)
        self._runs.clear()
        if wandb.run is None:
            wandb.teardown()


def setup_wandb(
    config: dict[str, Any] | None = None, rank_zero_only: bool = True, **kwargs: Any
) -> Any:
    """Start a W&B run for the running trial and return it (call it inside the trainable).

    The run's id is the trial id, its name the trial name, its group the experiment's
    name, and its directory the trial directory (unless ``WANDB_DIR`` is set); ``kwargs``
    (passed to ``wandb.init()``) override them. Finish it with ``run.finish()``.

    Args:
        config: Logged as the run config. Its ``"wandb"`` key, if any, is not: it holds
            ``wandb.init()`` arguments, plus ``api_key`` or ``api_key_file``.
        rank_zero_only: Accepted for Ray compatibility; atune runs no distributed
            workers, so every call starts a run.
        **kwargs: Passed to ``wandb.init()``; they win over the ``"wandb"`` config key.

    Returns:
        The ``wandb.Run``.
    """
    from atune.context import get_context

    context = get_context()
    config = dict(config or {})
    init = dict(config.pop("wandb", None) or {})
    _set_api_key(init.pop("api_key_file", None), init.pop("api_key", None))
    init.setdefault("project", os.environ.get(WANDB_PROJECT_ENV_VAR))
    init.setdefault("group", os.environ.get(WANDB_GROUP_ENV_VAR) or context.get_experiment_name())
    arguments = _init_kwargs(
        context.get_trial_id(), context.get_trial_name(), context.get_trial_dir()
    )
    arguments.update(config=_clean(config), **init)
    arguments.update(kwargs)
    return wandb.init(**arguments)
