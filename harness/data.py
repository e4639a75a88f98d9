"""Loads a task's examples: the local mirror under HARNESS_DATA_DIR first, the public dataset second.

Every row, whatever its file format, becomes one typed `Example` (id, inputs, references, label).
The quirks of each mirrored file (BOMs, unquoted TSVs, reordered columns) are declared in the
task's YAML (`dataset.tsv`), not special-cased here.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.spec import Example, TaskSpec

Row = dict[str, Any]


def data_dir() -> Path | None:
    """The local data mirror, or None when HARNESS_DATA_DIR is not set."""
    value = os.environ.get("HARNESS_DATA_DIR")
    return Path(value).expanduser().resolve() if value else None


def load_examples(task: TaskSpec, split: str | None = None, limit: int | None = None) -> list[Example]:
    """The examples of one split of a task (the task's eval split by default), at most `limit`."""
    split = split or task.eval_split
    examples = _cached_examples(task, split)
    return list(examples[:limit] if limit else examples)


def split_sizes(task: TaskSpec) -> dict[str, int]:
    """Examples per split, from a manifest keyed by the source files' size and mtime (listing tasks
    must not parse every split); a split whose source changed, or that has no file, is counted once."""
    manifest = _manifest_path()
    try:
        known = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    sizes, changed = {}, False
    for split in task.splits:
        key = _size_key(task, split)
        if key is None or key not in known:
            sizes[split] = len(_cached_examples(task, split))
            if key is not None:
                known[key], changed = sizes[split], True
        else:
            sizes[split] = int(known[key])
    if changed:
        _write_manifest(manifest, known)
    return sizes


def _manifest_path() -> Path:
    cache = os.environ.get("HARNESS_CACHE")
    return (Path(cache) if cache else Path.home() / ".cache" / "harness") / "split_sizes.json"


def _size_key(task: TaskSpec, split: str) -> str | None:
    """The task spec's hash plus the identity (path, size, mtime) of the files the split comes from.

    A python-format task is keyed by its folder's code and the data dir it is given (its generator
    is seeded; a loader reading a mirrored file sees the mirror, which is not edited in place).
    """
    from harness.spec import stable_hash

    root = data_dir()
    if task.dataset.format == "python" and task.folder is not None:
        sources = sorted(Path(task.folder).glob("*.py"))
    elif root is not None and split in task.dataset.local:
        sources = [root / task.dataset.local[split]]
    else:
        return None  # the hub: no file to key on
    try:
        stats = [(str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns) for path in sources]
    except OSError:
        return None
    return stable_hash([task.content_hash(), split, str(root), stats])


def _write_manifest(path: Path, known: dict[str, int]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known), encoding="utf-8")
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    except OSError:
        pass  # a read-only cache only costs speed


# (task content hash, data dir, split) -> examples; specs hold dicts, so they are not hashable themselves
_EXAMPLES: dict[tuple[str, str, str], tuple[Example, ...]] = {}


def forget_examples() -> None:
    """Drop the examples this process has parsed (a long-lived process after its data changed; tests)."""
    _EXAMPLES.clear()


def _cached_examples(task: TaskSpec, split: str) -> tuple[Example, ...]:
    if split not in task.splits:
        raise HarnessError(f"Task '{task.name}' has no split '{split}'; choose one of {', '.join(task.splits)}.")
    cache_key = (task.content_hash(), str(data_dir()), split)
    if cache_key not in _EXAMPLES:
        rows = load_rows(task, split)
        _EXAMPLES[cache_key] = tuple(row_to_example(task, split, index, row) for index, row in enumerate(rows))
    return _EXAMPLES[cache_key]


def load_rows(task: TaskSpec, split: str) -> list[Row]:
    source = task.dataset
    if source.format == "python":
        return _python_rows(task, split)
    root = data_dir()
    if root is not None and split in source.local:
        return _read_local(task, root / source.local[split])
    if source.hf_id:
        return _hub_rows(task, split)
    raise HarnessError(
        f"Task '{task.name}' reads split '{split}' from a local mirror: set HARNESS_DATA_DIR to the folder that "
        f"holds '{source.local.get(split, '?')}'."
    )


def _read_local(task: TaskSpec, path: Path) -> list[Row]:
    if not path.is_file():
        raise HarnessError(f"Data file '{path}' for task '{task.name}' does not exist; check HARNESS_DATA_DIR.")
    rows = read_jsonl(path) if task.dataset.format == "jsonl" else read_tsv(path, task)
    rename = task.dataset.rename
    if rename:
        rows = [{rename.get(key, key): value for key, value in row.items()} for row in rows]
    return rows


def read_jsonl(path: Path) -> list[Row]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                # error.msg alone is cut ("Invalid control character at"): add where, as json prints it
                raise HarnessError(f"Line {number} of '{path}' is not valid JSON ({error.msg}: column {error.colno}); fix or remove it.")
    return rows


def read_tsv(path: Path, task: TaskSpec) -> list[Row]:
    options = task.dataset.tsv
    quoting = csv.QUOTE_NONE if options.quoting == "none" else csv.QUOTE_MINIMAL
    # Unquoted files can contain fields longer than csv's default limit of 128 KiB.
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding=options.encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=quoting)
        lines = list(reader)
    if options.header:
        header, body = lines[0], lines[1:]
    else:
        header, body = list(options.columns), lines
    if not header:
        raise HarnessError(f"Task '{task.name}' reads '{path}' without a header: list its columns in dataset.tsv.columns.")
    return [dict(zip(header, values)) for values in body if values]


def _hub_rows(task: TaskSpec, split: str) -> list[Row]:
    source = task.dataset
    hub_split = source.hf_splits.get(split, split)
    try:
        import datasets  # lazy: heavy import, and only users with hub access get here
    except ImportError as error:  # pragma: no cover - datasets is a pinned dependency
        raise HarnessError(f"The 'datasets' package is missing ({error}); reinstall harness.")
    try:
        dataset = datasets.load_dataset(source.hf_id, source.hf_config, split=hub_split)
    except Exception as error:  # the hub raises many types; all mean "not reachable or not there"
        raise HarnessError(
            f"Could not load '{source.hf_id}' split '{hub_split}' for task '{task.name}' from the hub ({type(error).__name__}); "
            "set HARNESS_DATA_DIR to a local mirror."
        )
    return [dict(row) for row in dataset]


def _python_rows(task: TaskSpec, split: str) -> list[Row]:
    function = load_task_function(task, task.dataset.python or "")
    rows = function(split, data_dir())
    if not isinstance(rows, list):
        raise HarnessError(f"Task '{task.name}': {task.dataset.python} must return a list of rows, not {type(rows).__name__}.")
    return rows


def load_task_function(task: TaskSpec, reference: str) -> Callable[..., Any]:
    """Import `file.py:function` from the task's folder (task plugins: generators, loaders, metrics)."""
    file_name, _, function_name = reference.partition(":")
    if task.folder is None or not function_name:
        raise HarnessError(f"Task '{task.name}': '{reference}' must be 'file.py:function' inside the task folder.")
    path = task.folder / file_name
    if not path.is_file():
        raise HarnessError(f"Task '{task.name}' names '{path}', which does not exist; add the file or fix dataset.python.")
    module = import_task_file(path)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise HarnessError(f"Task '{task.name}': '{path}' has no function '{function_name}'.")
    return function


@lru_cache(maxsize=None)
def import_task_file(path: Path) -> Any:
    """Import a task folder's Python file by path, once per process.

    Task folders are not packages, so a task file that is split into several files loads its
    siblings through this (e.g. tasks/resume_json/generate.py loads records.py and render.py); the
    cache keeps one module object per file, so the siblings share their classes.
    """
    module_name = f"harness_task_plugin_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def row_to_example(task: TaskSpec, split: str, index: int, row: Row) -> Example:
    fields = task.fields
    missing = [name for name in fields.inputs if name not in row]
    if missing:
        raise HarnessError(
            f"Task '{task.name}' split '{split}' row {index} has no field {missing[0]!r} (fields: {sorted(row)}); fix fields.inputs."
        )
    example_id = str(row[fields.id]) if fields.id and fields.id in row else f"{split}-{index:05d}"
    references = tuple(_as_text(row[name]) for name in fields.references if row.get(name) not in (None, ""))
    label = _as_label(task, row, index) if fields.label else None
    inputs = {name: _as_text(row[name]) for name in fields.inputs}
    return Example(id=example_id, inputs=inputs, references=references, label=label)


def _as_label(task: TaskSpec, row: Row, index: int) -> int:
    value = row.get(task.fields.label or "")
    try:
        label = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise HarnessError(f"Task '{task.name}' row {index}: label {value!r} is not an integer; fix fields.label.")
    if not 0 <= label < len(task.choices):
        raise HarnessError(f"Task '{task.name}' row {index}: label {label} has no entry in choices {list(task.choices)}.")
    return label


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def data_fingerprint(examples: list[Example]) -> str:
    """A hash of the examples' content, so a changed dataset never reuses old results."""
    from harness.spec import stable_hash

    return stable_hash([example.model_dump(mode="json") for example in examples])
