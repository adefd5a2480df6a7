"""HyperOpt as an atune search algorithm (Ray Tune's ``ray.tune.search.hyperopt``).

Needs the ``hyperopt`` extra: ``pip install "atune[hyperopt]"``. See
:class:`~atune.search.hyperopt.HyperOptSearch`.
"""

from __future__ import annotations

from atune._extras import require

require("hyperopt", "hyperopt", "atune.search.hyperopt")

from atune.search.hyperopt.hyperopt_search import HyperOptSearch  # noqa: E402

__all__ = ["HyperOptSearch"]
