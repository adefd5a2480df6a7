"""``diagnose_serialization``: find the variables that keep a trainable from pickling.

Trials run in Ray actors, so the trainable is pickled with ``cloudpickle`` and shipped to
them. A function or class defined in a script or notebook is pickled *by value*, together
with the globals and closure variables it uses; one lock, open file or client among them
makes the whole trainable unpicklable. This module names the culprits.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal, TextIO

__all__ = ["diagnose_serialization"]

_Dumps = Callable[[Any], bytes]
_SKIPPED_MODULE_PREFIXES = ("atune.", "ray.", "builtins")


def _dumps_function() -> _Dumps:
    """``ray.cloudpickle.dumps``, else ``cloudpickle.dumps``, else ``pickle.dumps``."""
    try:
        from ray import cloudpickle as ray_cloudpickle
    except ImportError:
        pass
    else:
        dumps: _Dumps = ray_cloudpickle.dumps
        return dumps
    try:
        import cloudpickle
    except ImportError:
        import pickle

        return pickle.dumps
    dumps = cloudpickle.dumps
    return dumps


def _closure_vars(function: Callable[..., Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Globals and nonlocals a function uses; ``({}, {})`` for what has no Python code."""
    try:
        closure = inspect.getclosurevars(function)
    except TypeError:
        return {}, {}
    nonlocals = {k: v for k, v in closure.nonlocals.items() if k != "__class__"}
    return dict(closure.globals), nonlocals


def _functions_of_class(cls: type) -> list[Callable[..., Any]]:
    """The Python functions defined in ``cls`` and its user-defined bases."""
    functions: list[Callable[..., Any]] = []
    for klass in cls.__mro__:
        if klass is object or klass.__module__.startswith(_SKIPPED_MODULE_PREFIXES):
            continue
        for member in vars(klass).values():
            if isinstance(member, staticmethod | classmethod):
                member = member.__func__
            if isinstance(member, property):
                functions.extend(f for f in (member.fget, member.fset, member.fdel) if f)
            elif inspect.isfunction(member):
                functions.append(member)
    return functions


def _scope_of(trainable: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Globals and nonlocals used by a function, a class's methods, or an object's class."""
    if inspect.ismethod(trainable):
        trainable = trainable.__func__
    if inspect.isfunction(trainable):
        return _closure_vars(trainable)
    cls = trainable if inspect.isclass(trainable) else type(trainable)
    globals_: dict[str, Any] = {}
    nonlocals: dict[str, Any] = {}
    for function in _functions_of_class(cls):
        function_globals, function_nonlocals = _closure_vars(function)
        globals_.update(function_globals)
        nonlocals.update(function_nonlocals)
    return globals_, nonlocals


def _check_variables(
    kind: str, variables: dict[str, Any], dumps: _Dumps, file: TextIO | None
) -> set[str]:
    """Pickle each variable, print one PASSED/FAILED line each, return the failing names."""
    failed: set[str] = set()
    if not variables:
        return failed
    print(f"Detected {len(variables)} {kind} variables. Checking serializability...", file=file)
    for name, value in variables.items():
        try:
            dumps(value)
        except Exception as exc:
            failed.add(name)
            print(f"   {value!r}[name={name!r}]... FAILED", file=file)
            print(f"      {type(exc).__name__}: {exc}", file=file)
        else:
            print(f"   {value!r}[name={name!r}]... PASSED", file=file)
    return failed


def diagnose_serialization(
    trainable: Any, *, print_file: TextIO | None = None
) -> Literal[True] | set[str]:
    """Check that ``trainable`` pickles; if not, name the variables that stop it.

    It pickles the trainable as Ray would (``ray.cloudpickle``; ``cloudpickle`` or
    ``pickle`` when Ray is missing). If that fails, it inspects the globals and nonlocals
    the trainable uses (for a class: those of its methods) and pickles each one, printing
    a PASSED or FAILED line per variable and a summary. Output goes to stdout: this is a
    tool to run by hand, in a script or notebook.

    Example::

        lock = threading.Lock()

        def train_fn(config):
            with lock:  # the lock cannot be pickled
                ...

        diagnose_serialization(train_fn)  # -> {"lock"}

    Args:
        trainable: A function, a class (for example a ``Trainable`` subclass) or another
            callable.
        print_file: Where the report goes (default: stdout). ``Tuner(...)`` puts it into
            the error it raises for a trainable that does not serialise.

    Returns:
        True if the trainable pickles; otherwise the set of names of the variables that
        failed (empty if none of them failed on its own).
    """
    dumps = _dumps_function()
    print(f"Trying to serialize {trainable!r}...", file=print_file)
    try:
        dumps(trainable)
    except Exception as exc:
        print(f"Serialization failed: {type(exc).__name__}: {exc}", file=print_file)
    else:
        print("Serialization succeeded!", file=print_file)
        return True

    print(f"Inspecting the variables that {trainable!r} uses...", file=print_file)
    globals_, nonlocals = _scope_of(trainable)
    failed = _check_variables("global", globals_, dumps, print_file)
    failed |= _check_variables("nonlocal", nonlocals, dumps, print_file)
    if failed:
        print(
            f"Variable(s) {sorted(failed)} cannot be serialized. Create them inside the "
            "trainable (or in setup() for a class) instead of capturing them from the "
            "enclosing scope.",
            file=print_file,
        )
    else:
        print(
            "No single variable failed to serialize, yet the trainable did. Check its "
            "default arguments, class attributes and decorators.",
            file=print_file,
        )
    return failed
