"""The Searcher base class and SearchGenerator, with a toy searcher."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest

import atune as tune
import atune.search
from atune.errors import ConfigError
from atune.search import FINISHED, Searcher, SearchGenerator, Suggestion, uniform


class Counter(Searcher):
    """Suggests x = 0, 1, 2, ... up to ``limit``, then FINISHED; records what it hears."""

    def __init__(self, limit: int = 100, metric: str | None = None, mode: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self.limit = limit
        self.next_x = 0
        self.results: list[tuple[str, dict[str, Any]]] = []
        self.completed: list[tuple[str, dict[str, Any] | None, bool]] = []
        self.space: dict[str, Any] | None = None

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        self.space = config
        self._metric, self._mode = metric, mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | Literal["FINISHED"] | None:
        if self.next_x >= self.limit:
            return Searcher.FINISHED
        self.next_x += 1
        return {"x": self.next_x - 1, "nested": {"y": float(self.next_x)}}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.results.append((trial_id, result))

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        self.completed.append((trial_id, result, error))

    def get_state(self) -> dict[str, Any]:
        return {"next_x": self.next_x}

    def set_state(self, state: dict[str, Any]) -> None:
        self.next_x = state["next_x"]


class Minimal(Searcher):
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        return None

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        pass


def test_finished_is_one_shared_sentinel() -> None:
    assert Searcher.FINISHED is FINISHED is atune.search.FINISHED
    assert FINISHED == "FINISHED"


def test_searcher_is_abstract() -> None:
    class NoSuggest(Searcher):
        def on_trial_complete(self, trial_id: str, result: Any = None, error: bool = False) -> None:
            pass

    with pytest.raises(TypeError):
        NoSuggest()  # type: ignore[abstract]


def test_defaults_of_the_optional_methods(tmp_path: Path) -> None:
    searcher = Minimal(metric="loss", mode="min")
    assert (searcher.metric, searcher.mode) == ("loss", "min")
    assert searcher.set_search_properties("m", "max", {}) is False
    assert searcher.set_max_concurrency(4) is False
    with pytest.raises(NotImplementedError):
        searcher.add_evaluated_point({"x": 1}, 1.0)
    with pytest.raises(NotImplementedError):
        searcher.get_state()
    with pytest.raises(NotImplementedError):
        searcher.save(tmp_path / "state.json")
    searcher.save_to_dir(tmp_path)  # nothing to save: skipped quietly
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("metric", "mode", "message"),
    [
        ("loss", "avg", "mode must be 'min' or 'max', got 'avg'"),
        (["a", "b"], ["min"], "a list mode needs a list metric of the same length"),
        (["a"], ["best"], "every mode must be 'min', 'max' or 'obs', got 'best'"),
        (["a"], "min", "metric and mode must both be str or both lists"),
    ],
)
def test_mode_is_validated(metric: Any, mode: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Minimal(metric=metric, mode=mode)


def test_save_and_restore_as_json(tmp_path: Path) -> None:
    searcher = Counter()
    searcher.suggest("a")
    searcher.suggest("b")
    path = tmp_path / "searcher.json"
    searcher.save(path)
    assert json.loads(path.read_text()) == {"next_x": 2}
    other = Counter()
    other.restore(path)
    assert other.next_x == 2


def test_save_to_dir_and_restore_from_dir_pick_the_newest(tmp_path: Path) -> None:
    searcher = Counter()
    searcher.save_to_dir(tmp_path, "2024-01-01_00-00-00")
    searcher.suggest("a")
    searcher.save_to_dir(tmp_path, "2024-01-02_00-00-00")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "searcher-state-2024-01-01_00-00-00.json",
        "searcher-state-2024-01-02_00-00-00.json",
    ]
    other = Counter()
    other.restore_from_dir(tmp_path)
    assert other.next_x == 1
    with pytest.raises(RuntimeError, match="no searcher state"):
        Counter().restore_from_dir(tmp_path / "missing")


def test_add_evaluated_trials_feeds_add_evaluated_point() -> None:
    class Trial:
        def __init__(self, config: dict[str, Any], last: dict[str, Any], status: str) -> None:
            self.config, self.last_result, self.status = config, last, status

    seen: list[tuple[dict[str, Any], float, bool, bool]] = []

    class Warm(Minimal):
        def add_evaluated_point(
            self,
            parameters: dict[str, Any],
            value: float,
            error: bool = False,
            pruned: bool = False,
            intermediate_values: list[float] | None = None,
        ) -> None:
            seen.append((parameters, value, error, pruned))

    trials = [
        Trial({"x": 1}, {"loss": 0.5, "done": True}, "TERMINATED"),
        Trial({"x": 2}, {"loss": 0.7}, "TERMINATED"),
        Trial({"x": 3}, {"other": 1}, "TERMINATED"),
        Trial({"x": 4}, {"loss": 9.0}, "ERROR"),
    ]
    Warm().add_evaluated_trials(trials, "loss")
    assert seen == [
        ({"x": 1}, 0.5, False, False),
        ({"x": 2}, 0.7, False, True),
        ({"x": 4}, 9.0, True, False),
    ]
    with pytest.raises(NotImplementedError):
        Minimal().add_evaluated_trials(trials, "loss")


def generator(searcher: Searcher, num_samples: int = 3, space: Any = None) -> SearchGenerator:
    gen = SearchGenerator(searcher)
    gen.set_search_properties("loss", "min", {"lr": 0.1} if space is None else space, num_samples)
    return gen


def test_search_generator_tags_merges_and_counts() -> None:
    searcher = Counter()
    gen = generator(searcher, num_samples=2)
    assert searcher.space == {"lr": 0.1} and searcher.metric == "loss"
    assert gen.total_samples == 2
    first = gen.next_trial("t1")
    assert isinstance(first, Suggestion)
    assert first.config == {"lr": 0.1, "x": 0, "nested": {"y": 1.0}}
    assert first.experiment_tag == "1_lr=0.1000,y=1.0000,x=0"
    assert first.evaluated_params == {"x": 0, "nested/y": 1.0}
    second = gen.next_trial("t2")
    assert isinstance(second, Suggestion) and second.experiment_tag.startswith("2_")
    assert gen.next_trial("t3") == FINISHED
    assert searcher.next_x == 2  # num_samples stops the search without asking again


def test_search_generator_ends_when_the_searcher_finishes() -> None:
    gen = generator(Counter(limit=1), num_samples=-1)
    assert gen.total_samples is None
    assert isinstance(gen.next_trial("a"), Suggestion)
    assert gen.next_trial("b") == FINISHED
    assert gen.next_trial("c") == FINISHED


def test_search_generator_passes_none_through() -> None:
    gen = generator(Minimal())
    assert gen.next_trial("a") is None


def test_search_generator_forwards_results_and_completions() -> None:
    searcher = Counter()
    gen = generator(searcher)
    gen.next_trial("a")
    gen.on_trial_result("a", {"loss": 1.0})
    gen.on_trial_complete("a", {"loss": 0.5})
    gen.on_trial_complete("b", None, error=True)
    assert searcher.results == [("a", {"loss": 1.0})]
    assert searcher.completed == [("a", {"loss": 0.5}, False), ("b", None, True)]
    assert SearchGenerator.needs_intermediate_results is True


def test_search_generator_state_round_trip() -> None:
    gen = generator(Counter(), num_samples=3)
    gen.next_trial("a")
    state = json.loads(json.dumps(gen.get_state()))
    assert state == {"counter": 1, "finished": False, "searcher": {"next_x": 1}}
    restored = generator(Counter(), num_samples=3)
    restored.set_state(state)
    suggestion = restored.next_trial("b")
    assert isinstance(suggestion, Suggestion)
    assert suggestion.config["x"] == 1 and suggestion.experiment_tag.startswith("2_")
    with pytest.raises(ConfigError, match="not a SearchGenerator state"):
        restored.set_state({})


def test_search_generator_rejects_domains_a_searcher_would_ignore() -> None:
    with pytest.raises(ConfigError, match="Minimal already has a search space of its own"):
        generator(Minimal(), space={"lr": uniform(0, 1)})
    # Constants alone are fine.
    assert SearchGenerator(Minimal()).set_search_properties(None, None, {"a": 1}, 1) is False


def test_search_generator_validates_its_input() -> None:
    with pytest.raises(ConfigError, match="SearchGenerator needs a Searcher, got int"):
        SearchGenerator(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="param_space must be a dict"):
        SearchGenerator(Counter()).set_search_properties(None, None, [1], 1)  # type: ignore[arg-type]

    class Bad(Minimal):
        def suggest(self, trial_id: str) -> Any:
            return [1]

    with pytest.raises(ConfigError, match=r"Bad.suggest returned \[1\]"):
        generator(Bad()).next_trial("a")


def test_search_generator_supports_old_set_search_properties_signature() -> None:
    class Old(Minimal):
        def set_search_properties(self, metric: Any, mode: Any, config: Any) -> bool:  # type: ignore[override]
            self.got = (metric, mode, config)
            return True

    searcher = Old()
    generator(searcher)
    assert searcher.got == ("loss", "min", {"lr": 0.1})


def test_a_metric_set_on_the_searcher_and_tuneconfig_differently_names_both(
    storage: str,
) -> None:
    from atune.search import ConcurrencyLimiter, Repeater

    class Fixed(Searcher):
        def suggest(self, trial_id: str) -> Any:
            return {"x": 1}

        def on_trial_complete(self, trial_id: str, result: Any = None, error: bool = False) -> None:
            pass

    for wrap in (lambda s: s, lambda s: ConcurrencyLimiter(s, 1), lambda s: Repeater(s, 2)):
        tuner = tune.Tuner(
            lambda config: {"loss": 1.0},
            tune_config=tune.TuneConfig(
                metric="acc",
                mode="min",
                search_alg=wrap(Fixed(metric="loss", mode="min")),
                backend="local",
            ),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        with pytest.raises(
            ValueError, match=r"Fixed \(metric='loss'\) and on TuneConfig \(metric='acc'\)"
        ):
            tuner.fit()
