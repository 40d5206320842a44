"""Where the declarations are: every method and dataset, read from its own module.

A trainer module ``trainers/<x>.py`` that assigns ``METHOD = Method(...)`` at top level declares a
method; a dataset module ``datasets/<x>.py`` that assigns ``DATASET = Dataset(...)`` declares a
dataset. Modules outside the repository join through the environment variable
``PROGRAD_PLUGINS``: a ``:``-separated list of ``.py`` files or dotted module names, each
declaring a method, a dataset or both (``train.py`` imports them, so their Dassl classes
register too).

The catalog evaluates the declaration's expression on its own, with the names of
:mod:`experiments.declarations` and nothing else, instead of importing the module: the run
scripts and sweeps read it in milliseconds, without torch or Dassl. ``train.py`` imports the
modules, and a test checks that both readings agree. Standard library only.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from experiments import declarations
from experiments.declarations import Dataset, Method

ROOT = Path(__file__).resolve().parents[1]
PLUGINS_VARIABLE = "PROGRAD_PLUGINS"
# The top-level name that declares each kind, and the class its value must be.
KINDS = {"METHOD": Method, "DATASET": Dataset}


class CatalogError(ValueError):
    """A declaration that cannot be read; the message names the file and the fix."""


@dataclass(frozen=True)
class Source:
    """A module that declares something: its import name and its file."""

    module: str  # dotted name (import it to register its Dassl classes)
    path: Path


def _declared_names(tree: ast.Module) -> dict[str, ast.expr]:
    """The top-level ``METHOD = ...`` / ``DATASET = ...`` assignments of a module."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in KINDS:
                found[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id in KINDS and node.value is not None:
                found[node.target.id] = node.value
    return found


def _parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError) as error:
        raise CatalogError(f"cannot read the declarations of {path}: {error}") from error


def _evaluate(path: Path, name: str, expression: ast.expr) -> object:
    """The value of one declaration, evaluated with the declaration vocabulary only."""
    namespace = {key: value for key, value in vars(declarations).items() if key[0] != "_"}
    namespace["__builtins__"] = {}
    code = compile(ast.Expression(expression), str(path), "eval")
    try:
        value = eval(code, namespace)  # noqa: S307  (our own declaration, data only)
    except NameError as error:
        raise CatalogError(
            f"{path} line {expression.lineno}: {name} may use only literals and the names of "
            f"experiments/declarations.py ({error}); write the value out, or add the name there"
        ) from error
    except (TypeError, ValueError) as error:
        raise CatalogError(
            f"{path} line {expression.lineno}: {name} is not valid: {error}"
        ) from error
    expected = KINDS[name]
    if not isinstance(value, expected):
        raise CatalogError(
            f"{path} line {expression.lineno}: {name} must be a {expected.__name__}(...), "
            f"not {type(value).__name__}"
        )
    return value


def _plugin_sources(environ: dict[str, str]) -> Iterator[Source]:
    """The modules named by PROGRAD_PLUGINS, in order."""
    value = environ.get(PLUGINS_VARIABLE, "")
    for entry in (part.strip() for part in value.split(os.pathsep)):
        if not entry:
            continue
        if entry.endswith(".py"):
            path = Path(entry).expanduser().resolve()
            if not path.is_file():
                raise CatalogError(
                    f"{PLUGINS_VARIABLE} names {entry}, which is not a file; give .py files or "
                    f"dotted module names, separated by '{os.pathsep}'"
                )
            yield Source(f"prograd_plugin_{path.stem}", path)
            continue
        try:
            spec = importlib.util.find_spec(entry)
        except (ImportError, ValueError) as error:
            spec, reason = None, str(error)
        else:
            reason = "no such module"
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            raise CatalogError(
                f"{PLUGINS_VARIABLE} names the module {entry!r}, which cannot be found ({reason}); "
                f"give a .py file, or a module importable from the current directory"
            )
        yield Source(entry, Path(spec.origin))


@functools.cache
def _repository_sources() -> tuple[Source, ...]:
    """The repository's declaring modules, found once per process (the tables ask per cell)."""
    found = [
        Source(f"{folder}.{path.stem}", path)
        for folder in ("trainers", "datasets")
        for path in sorted((ROOT / folder).glob("*.py"))
    ]
    return tuple(source for source in found if declarations_of(source))


def sources(environ: dict[str, str] | None = None) -> list[Source]:
    """The modules that declare methods or datasets: the repository's, then the plugins."""
    plugins = list(_plugin_sources(dict(os.environ if environ is None else environ)))
    return [*_repository_sources(), *plugins]


@functools.cache
def _read(path: Path, stamp: float) -> dict[str, object]:
    tree = _parse(path)
    return {name: _evaluate(path, name, node) for name, node in _declared_names(tree).items()}


def declarations_of(source: Source) -> dict[str, object]:
    """{"METHOD": Method, "DATASET": Dataset} as far as the module declares them."""
    return _read(source.path, source.path.stat().st_mtime)


def _collect(kind: str, key: str, environ: dict[str, str] | None) -> dict[str, object]:
    found: dict[str, tuple[object, Source]] = {}
    for source in sources(environ):
        value = declarations_of(source).get(kind)
        if value is None:
            continue
        name = value.name
        if name in found:
            raise CatalogError(
                f"{kind} {name!r} is declared twice, in {found[name][1].path} and {source.path}; "
                f"give one of them another name"
            )
        found[name] = (value, source)
    ordered = sorted(found.values(), key=lambda item: (getattr(item[0], key), item[0].name))
    return {value.name: value for value, _ in ordered}


def methods(environ: dict[str, str] | None = None) -> dict[str, Method]:
    """Every declared method by name, in table-row order."""
    return _collect("METHOD", "row", environ)  # type: ignore[return-value]


def datasets(environ: dict[str, str] | None = None) -> dict[str, Dataset]:
    """Every declared dataset by name, in table-column order."""
    return _collect("DATASET", "column", environ)  # type: ignore[return-value]


def datasets_in(group: str, environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The names of the datasets of one group (declarations.GROUPS), in column order."""
    if group not in declarations.GROUPS:
        raise CatalogError(f"unknown dataset group {group!r}; use one of {declarations.GROUPS}")
    return tuple(name for name, data in datasets(environ).items() if group in data.groups)


def dataset_by_registry_name(name: str) -> Dataset | None:
    """The dataset whose Dassl registry name (DATASET.NAME, e.g. "Caltech101") is ``name``."""
    for dataset in datasets().values():
        if dataset.layout.name == name:
            return dataset
    return None


def dataset_declared_in(path: Path) -> Dataset:
    """The ``DATASET`` declared by the module file ``path``, read alone (no other module)."""
    path = Path(path).resolve()
    declared = _read(path, path.stat().st_mtime).get("DATASET")
    if declared is None:
        raise CatalogError(
            f"{path} declares no dataset; add a top-level DATASET = Dataset(...) to it"
        )
    return declared  # type: ignore[return-value]


def dataset(name: str, environ: dict[str, str] | None = None) -> Dataset:
    """The declaration of the dataset named ``name`` (its configs/datasets/<name>.yaml stem)."""
    declared = datasets(environ)
    if name not in declared:
        raise CatalogError(
            f"no dataset is declared with the name {name!r}; declared: {', '.join(declared)}. "
            f"Declare it with DATASET = Dataset(name={name!r}, ...) in its module"
        )
    return declared[name]


def source_dataset(environ: dict[str, str] | None = None) -> str:
    """The name of the one dataset of the XD_SOURCE group (the xd protocol trains on it)."""
    sources_found = datasets_in(declarations.XD_SOURCE, environ)
    if len(sources_found) != 1:
        raise CatalogError(
            f"exactly one dataset must be in the group {declarations.XD_SOURCE!r}; found "
            f"{len(sources_found)} ({', '.join(sources_found) or 'none'}). Fix the groups of the "
            f"DATASET declarations"
        )
    return sources_found[0]


def display_name(name: str, environ: dict[str, str] | None = None) -> str:
    """A dataset's name in the tables ("oxford_flowers" -> "Flowers102"); unknown names as given."""
    declared = datasets(environ).get(name)
    return name if declared is None else declared.display


def dataset_order(names: Iterable[str], environ: dict[str, str] | None = None) -> list[str]:
    """The distinct ``names`` in column order: declared datasets first, then the rest by name."""
    columns = {name: position for position, name in enumerate(datasets(environ))}
    return sorted(set(names), key=lambda name: (columns.get(name, len(columns)), name))


def import_all(environ: dict[str, str] | None = None) -> None:
    """Import every declaring module, so that its Dassl trainer or dataset class registers.

    Raises:
        CatalogError: a module of PROGRAD_PLUGINS that fails to import, naming it and the error
            (the repository's own modules raise as they are).
    """
    import sys

    methods(environ), datasets(environ)  # every declaration is read (and checked) first
    for source in sources(environ):
        if source.module in sys.modules:
            continue
        plugin = source not in _repository_sources()
        try:
            if source.module.startswith("prograd_plugin_"):
                spec = importlib.util.spec_from_file_location(source.module, source.path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[source.module] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(source.module)
        except Exception as error:
            sys.modules.pop(source.module, None)
            if not plugin:
                raise
            raise CatalogError(
                f"{PLUGINS_VARIABLE} module {source.path} failed to import "
                f"({type(error).__name__}: {error}); fix it, or take it out of {PLUGINS_VARIABLE}"
            ) from error
