"""Run planning without models: run names, base groups for QLoRA adapters, suites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.zoo.adapters import load_suite, resolve_adapters
from harness.errors import HarnessError
from harness.run.matrix import base_groups, run_id_for
from harness.spec import ModelSpec, RunSpec


def adapter_folder(root: Path, name: str, load_in_4bit: bool | None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    if load_in_4bit is not None:
        (folder / "card.json").write_text(json.dumps({"load_in_4bit": load_in_4bit}))
    return folder


def test_qlora_adapters_get_their_own_4bit_base(tmp_path: Path) -> None:
    adapters = resolve_adapters([adapter_folder(tmp_path, "lora", False), adapter_folder(tmp_path, "qlora", True), adapter_folder(tmp_path, "plain", None)])
    spec = RunSpec(tasks=("hcm_qa",), model=ModelSpec(name="smollm2-135m"), adapters=tuple(adapters))
    plain, four_bit = base_groups(spec)
    assert [a.name for a in plain.adapters] == ["lora", "plain"] and plain.include_base and not plain.model.load_in_4bit
    assert [a.name for a in four_bit.adapters] == ["qlora"] and not four_bit.include_base and four_bit.model.load_in_4bit


def test_a_run_is_named_by_its_arguments() -> None:
    spec = RunSpec(tasks=("hcm_qa",), model=ModelSpec(name="smollm2-135m"), limit=4)
    assert run_id_for(spec) == run_id_for(RunSpec(tasks=("hcm_qa",), model=ModelSpec(name="smollm2-135m"), limit=4))
    assert run_id_for(spec) != run_id_for(spec.model_copy(update={"limit": 5}))


def test_zoo_folder_expands_and_names_stay_unique(tmp_path: Path) -> None:
    adapter_folder(tmp_path / "a", "lora_r8", None)
    adapter_folder(tmp_path / "b", "lora_r8", None)
    names = [a.name for a in resolve_adapters([tmp_path])]
    assert len(names) == 2 and len(set(names)) == 2


def test_missing_adapter_path_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="does not exist"):
        resolve_adapters([tmp_path / "nope"])


def test_ranks_suite_names_every_lora_rank() -> None:
    suite = load_suite("ranks")
    assert suite.tasks == ("resume_json",)
    assert [Path(a).name for a in suite.adapters] == [f"lora_r{r}" for r in (1, 2, 4, 8, 16, 32, 64)]
    with pytest.raises(HarnessError, match="Did you mean 'ranks'"):
        load_suite("rank")
