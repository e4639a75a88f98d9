"""Discovers tasks (`tasks/*/task.yaml`) and adapter recipes; looks them up with "did you mean".

Modelled on lm-evaluation-harness's registry: discovery is lazy (YAML is parsed on first use),
two definitions of one name are refused, and an unknown name suggests the nearest known one.
Extra task folders come from `--include-path DIR` (repeatable) or `HARNESS_TASKS_PATH`
(os.pathsep-separated).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import HarnessError
from harness.spec import TaskSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TASKS_DIR = PROJECT_ROOT / "tasks"

SpecT = TypeVar("SpecT", bound=BaseModel)


def suggest(name: str, known: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest known name, or '' when nothing is close."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f" Did you mean '{matches[0]}'?" if matches else ""


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise HarnessError(f"'{path}' is not valid YAML{where}; fix its syntax.")
    except OSError as error:
        raise HarnessError(f"Cannot read '{path}' ({error.strerror}).")
    if not isinstance(data, dict):
        raise HarnessError(f"'{path}' must hold a YAML mapping of fields, not {type(data).__name__}.")
    return data


def validation_message(path: Path, error: ValidationError) -> str:
    """One sentence naming the file, the first bad field and what was expected."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(top level)"
    return f"'{path}': field '{field}': {first['msg']}."


class SpecRegistry(Generic[SpecT]):
    """Name -> spec, read lazily from `<folder>/<pattern>` files; duplicates refused."""

    def __init__(self, kind: str, model: type[SpecT], pattern: str, folders: Sequence[Path]) -> None:
        self.kind = kind
        self.model = model
        self.pattern = pattern
        self.folders = list(folders)
        self._paths: dict[str, Path] | None = None
        self._specs: dict[str, SpecT] = {}
        self._broken: dict[str, str] = {}  # name (the folder's, when the file cannot tell) -> why it is unusable

    def paths(self) -> dict[str, Path]:
        if self._paths is None:
            self._paths = self._discover()
        return self._paths

    def _discover(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for folder in self.folders:
            if not folder.is_dir():
                raise HarnessError(f"{self.kind.capitalize()} folder '{folder}' does not exist; fix --include-path or HARNESS_TASKS_PATH.")
            for path in sorted(folder.glob(self.pattern)):
                try:
                    name = self._name_of(path)
                except HarnessError as error:  # one bad file fails only its own entry, not the registry
                    self._broken[path.parent.name] = str(error)
                    continue
                if name in found:
                    raise HarnessError(
                        f"{self.kind.capitalize()} '{name}' is defined twice ('{found[name]}' and '{path}'); rename one."
                    )
                found[name] = path
        return found

    def _name_of(self, path: Path) -> str:
        data = read_yaml(path)
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise HarnessError(f"'{path}': field 'name' is missing; every {self.kind} needs a name.")
        return name

    def names(self) -> list[str]:
        return sorted(self.paths())

    def broken(self) -> dict[str, str]:
        """Entries whose file could not be read (name -> the error naming the file and line)."""
        self.paths()
        return dict(self._broken)

    def get(self, name: str) -> SpecT:
        if name in self._specs:
            return self._specs[name]
        paths = self.paths()
        if name not in paths and name in self._broken:
            raise HarnessError(self._broken[name])
        if name not in paths:
            raise HarnessError(f"Unknown {self.kind} '{name}'.{suggest(name, paths)} Run `harness {self.kind}s` to list them.")
        spec = self.load(paths[name])
        self._specs[name] = spec
        return spec

    def load(self, path: Path) -> SpecT:
        data = read_yaml(path)
        if "folder" in self.model.model_fields:
            data["folder"] = str(path.parent)  # task plugins and templates are found relative to it
        try:
            return self.model.model_validate(data)
        except ValidationError as error:
            raise HarnessError(validation_message(path, error))


def task_folders(include_paths: Sequence[Path] = ()) -> list[Path]:
    """The built-in tasks, then HARNESS_TASKS_PATH, then --include-path folders."""
    folders = [DEFAULT_TASKS_DIR]
    env = os.environ.get("HARNESS_TASKS_PATH", "")
    folders += [Path(part) for part in env.split(os.pathsep) if part]
    folders += list(include_paths)
    unique: list[Path] = []
    for folder in folders:
        resolved = folder.expanduser().resolve()
        if resolved not in unique:
            unique.append(resolved)
    return unique


def task_registry(include_paths: Sequence[Path] = ()) -> SpecRegistry[TaskSpec]:
    return SpecRegistry("task", TaskSpec, "*/task.yaml", task_folders(include_paths))
