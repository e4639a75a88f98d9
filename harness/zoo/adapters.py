"""Finds adapters on disk: a PEFT folder, or a zoo folder holding many; and named suites.

An adapter folder is one that holds `adapter_config.json`. A zoo folder is searched
recursively, so `--adapter adapters_zoo/smollm2-135m/resume_json` picks up every recipe trained
for that task. Names are the folder's path inside the zoo (or its own name elsewhere), and stay
unique within a run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from harness.errors import HarnessError
from harness.registry import PROJECT_ROOT, read_yaml, suggest, validation_message
from harness.spec import AdapterSpec, Frozen

ZOO_DIR = PROJECT_ROOT / "adapters_zoo"
SUITES_DIR = ZOO_DIR / "suites"
CONFIG_FILE = "adapter_config.json"


class Suite(Frozen):
    """A named sweep: which adapters (paths or zoo folders) on which tasks."""

    name: str
    description: str = ""
    tasks: tuple[str, ...]
    adapters: tuple[str, ...]
    model: str | None = None


def find_adapter_folders(path: Path) -> list[Path]:
    if not path.exists():
        raise HarnessError(f"Adapter path '{path}' does not exist; pass a PEFT adapter folder or a zoo folder.")
    if not os.access(path, os.R_OK | os.X_OK):
        raise HarnessError(f"Adapter path '{path}' is not readable; fix its permissions.")
    if (path / CONFIG_FILE).is_file():
        return [path]
    folders = sorted(config.parent for config in path.rglob(CONFIG_FILE) if "checkpoint-" not in str(config))
    if not folders:
        raise HarnessError(f"'{path}' holds no adapter ({CONFIG_FILE} not found in it or below); pass a PEFT adapter folder.")
    return folders


def adapter_name(folder: Path) -> str:
    resolved = folder.resolve()
    try:
        return str(resolved.relative_to(ZOO_DIR.resolve()))
    except ValueError:
        return resolved.name


def resolve_adapters(paths: Sequence[Path], allow_pickle: bool = False, keep_bad: bool = False) -> list[AdapterSpec]:
    """AdapterSpecs for the given folders, zoo folders expanded, each once, names unique.

    With `keep_bad`, a path that is missing, empty or unreadable still becomes an AdapterSpec: the
    runner fails that adapter's cells with the reason and runs the rest of the matrix.
    """
    specs: list[AdapterSpec] = []
    seen: set[Path] = set()
    names: set[str] = set()
    for path in paths:
        for folder in _folders_or_bad(path, keep_bad):
            if folder.resolve() in seen:
                continue
            seen.add(folder.resolve())
            name = adapter_name(folder)
            while name in names:  # two folders called lora_r8 in different places
                name = f"{name}~{len(names)}"
            names.add(name)
            specs.append(AdapterSpec(path=folder.resolve(), name=name, allow_pickle=allow_pickle))
    return specs


def _folders_or_bad(path: Path, keep_bad: bool) -> list[Path]:
    try:
        return find_adapter_folders(path)
    except (HarnessError, OSError):  # OSError: a folder we may not list
        if not keep_bad:
            raise
        return [path]


def load_suite(name_or_path: str) -> Suite:
    path = Path(name_or_path)
    if not path.is_file():
        path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = [p.stem for p in SUITES_DIR.glob("*.yaml")] if SUITES_DIR.is_dir() else []
        raise HarnessError(f"Unknown suite '{name_or_path}'.{suggest(name_or_path, known)} Suites live in '{SUITES_DIR}'.")
    try:
        return Suite.model_validate(read_yaml(path))
    except ValidationError as error:
        raise HarnessError(validation_message(path, error))


def suite_adapter_paths(suite: Suite) -> list[Path]:
    """Suite adapter entries are relative to the project root (or absolute)."""
    return [Path(entry) if Path(entry).is_absolute() else PROJECT_ROOT / entry for entry in suite.adapters]
