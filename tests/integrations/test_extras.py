"""Each integration (loggers, search algorithms), imported without its extra, names the
``pip install`` line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("atune.logger.tensorboardx", "tensorboardX", "tensorboard"),
        ("atune.integrations.mlflow", "mlflow", "mlflow"),
        ("atune.integrations.wandb", "wandb", "wandb"),
        ("atune.search.optuna", "optuna", "optuna"),
        ("atune.search.hyperopt", "hyperopt", "hyperopt"),
    ],
)
def test_import_without_the_extra_names_it(module: str, blocked: str, extra: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == {blocked!r} or name.startswith({blocked!r} + "."):
                    raise ImportError("No module named {blocked!r} (blocked)")
        sys.meta_path.insert(0, Block())
        try:
            import {module}
        except ImportError as exc:
            print(exc)
        else:
            print("imported")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f'pip install "atune[{extra}]"' in out.stdout, out.stdout + out.stderr


def test_tbx_logger_callback_from_atune_logger_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "tensorboardX" or name.startswith("tensorboardX."):
                    raise ImportError("blocked")
        sys.meta_path.insert(0, Block())
        import atune.logger
        print(atune.logger.LoggerCallback.__name__)
        try:
            from atune.logger import TBXLoggerCallback
        except ImportError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("LoggerCallback\n"), out.stdout + out.stderr
    assert 'pip install "atune[tensorboard]"' in out.stdout
