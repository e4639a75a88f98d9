"""Tiny random models and adapters for the model/engine tests, built offline in a second.

Every model is saved to a temporary folder and loaded back through `load_base(ModelSpec(name=folder))`,
so the real loading path is exercised. Import the fixtures into a test module to use them:
`from helpers_models import tiny_llama, tiny_t5, tiny_bert, adapter_factory  # noqa: F401`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "[CLS]", "[SEP]"]  # ids 0..5
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a resume lists name email phone experience education and skills",
    "summarise the dialogue between two people about a meeting tomorrow",
    "which museum in ho chi minh city shows the history of the war",
    "yes no positive negative entailment not entailment",
    "json fields name email skills python java sql data analysis",
    "hello world! how are you today? fine, thanks: 1 2 3 4 5 6 7 8 9 0 {} [] \" ' . , ; -",
]


def build_tokenizer(folder: Path, kind: str) -> Any:
    """A byte-level BPE tokenizer trained on a few sentences; post-processing per model kind."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    if kind == "seq2seq":
        tok.post_processor = processors.TemplateProcessing(single="$A <eos>", pair="$A $B <eos>",
                                                           special_tokens=[("<eos>", 1)])
    elif kind == "encoder":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 4), ("[SEP]", 5)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   unk_token="<unk>", model_max_length=128)
    fast.save_pretrained(str(folder))
    return fast


def make_llama(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer(folder, "causal")
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=False,
                         initializer_range=0.2)  # wide init: clear argmax margins, stable greedy text
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder


def make_t5(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tok = build_tokenizer(folder, "seq2seq")
    config = T5Config(vocab_size=len(tok), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
                      num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, initializer_factor=1.0,
                      tie_word_embeddings=False)  # tied: a random T5 just repeats its start token (pad)
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    with torch.no_grad():  # a random T5 favours its start token (pad); real ones never emit pad
        model.lm_head.weight[0].zero_()
    model.save_pretrained(str(folder))
    return folder


def make_bert(folder: Path, seed: int = 0, num_labels: int = 2) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tok = build_tokenizer(folder, "encoder")
    config = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128, num_labels=num_labels, pad_token_id=0)
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(str(folder))
    return folder


_TASK = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "encoder": "SEQ_CLS"}
_LINEAR = {"causal": ["q_proj", "v_proj"], "seq2seq": ["q", "v"], "encoder": ["query", "value"]}
_FF = {"causal": ["down_proj"], "seq2seq": ["wo"], "encoder": ["output.dense"]}


def _auto_class(kind: str) -> Any:
    import transformers

    return {"causal": transformers.AutoModelForCausalLM, "seq2seq": transformers.AutoModelForSeq2SeqLM,
            "encoder": transformers.AutoModelForSequenceClassification}[kind]


def make_adapter(base_dir: Path, out: Path, kind: str, method: str = "lora", seed: int = 1, r: int = 4,
                 **extra: Any) -> Path:
    """Save a NON-trivial adapter of `method` (lora, dora, ia3, prompt) for the base in base_dir."""
    import torch
    from peft import IA3Config, LoraConfig, PromptTuningConfig, get_peft_model

    torch.manual_seed(seed)
    model = _auto_class(kind).from_pretrained(str(base_dir))
    save = ["classifier"] if kind == "encoder" else None
    if method in ("lora", "dora"):
        # init_lora_weights=False: random A AND B; PEFT's default (B = 0) is an exact no-op.
        extra.setdefault("init_lora_weights", False)
        extra.setdefault("target_modules", _LINEAR[kind])
        config: Any = LoraConfig(r=r, lora_alpha=2 * r, task_type=_TASK[kind], use_dora=method == "dora",
                                 modules_to_save=save, **extra)
    elif method == "ia3":
        config = IA3Config(target_modules=_LINEAR[kind] + _FF[kind], feedforward_modules=_FF[kind],
                           task_type=_TASK[kind], modules_to_save=save)
    else:
        config = PromptTuningConfig(num_virtual_tokens=4, task_type=_TASK[kind])
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "ia3_l" in name:  # IA3 starts at ones, a no-op: perturb it
                param.add_(torch.randn_like(param) * 0.5)
            if "classifier" in name and "modules_to_save" in name:
                param.add_(torch.randn_like(param) * 0.5)
    peft_model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_t5(tmp_path_factory.mktemp("tiny_t5"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bert(tmp_path_factory.mktemp("tiny_bert"))


AdapterFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def adapter_factory(tmp_path_factory: pytest.TempPathFactory) -> AdapterFactory:
    """adapter_factory(base_dir, kind, method="lora", seed=1, **extra) -> a saved adapter folder (cached)."""
    made: dict[tuple, Path] = {}

    def factory(base_dir: Path, kind: str, method: str = "lora", seed: int = 1, **extra: Any) -> Path:
        key = (str(base_dir), kind, method, seed, repr(sorted(extra.items())))
        if key not in made:
            out = tmp_path_factory.mktemp(f"{method}_{kind}_{seed}")
            made[key] = make_adapter(base_dir, out, kind, method, seed, **extra)
        return made[key]

    return factory


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Any:
    """Tiny models on a shared 2-core box: one torch thread is ~15x faster than two (no spin-waits)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
