"""Import an optional dependency, or fail with the ``pip install`` line that brings it.

atune's integrations (TensorBoard, MLflow, Weights & Biases) each need a library that is
not installed with atune itself but with an extra (``pip install "atune[mlflow]"``).
Importing an integration without its extra raises :class:`ImportError` naming that line,
so the fix is in the message.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or raise ImportError that says which atune extra installs it.

    Args:
        module: The module to import (``"tensorboardX"``).
        extra: atune's extra that installs it (``"tensorboard"``).
        what: The atune module that needs it, for the message.

    Raises:
        ImportError: ``module`` is not installed (chained to the original error).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f'{what} needs {module}, which is not installed: pip install "atune[{extra}]"'
        ) from exc
