"""Build tiny local models with no hub access: random weights in a real architecture (Qwen3).

The text such a model writes is random, but its protocol is real: vLLM serves it exactly as it
serves a real checkpoint (tokenizer, chat template, /v1/models, streaming with usage). Building one
takes a few seconds; it is deterministic (fixed seed, fixed training text) and idempotent (a
directory that already holds a complete model is left alone).
"""

from __future__ import annotations

import inspect
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>")
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Standard-library modules whose docstrings make the (deterministic, offline) tokenizer corpus.
_CORPUS_MODULES = (
    "argparse", "collections", "csv", "dataclasses", "email", "functools", "http.server", "json",
    "logging", "pathlib", "random", "statistics", "string", "textwrap", "threading", "unittest",
)  # fmt: skip
_MARKER = ".inferbase-tiny.json"  # written last: its presence means the build completed


@dataclass(frozen=True, slots=True)
class TinySpec:
    """Shape of a tiny model. Defaults give ~0.5M parameters."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    seed: int = 0


def _corpus() -> Iterator[str]:
    import importlib

    for name in _CORPUS_MODULES:
        module = importlib.import_module(name)
        for _, obj in sorted(vars(module).items()):
            doc = inspect.getdoc(obj)
            if doc:
                yield doc
    # Make sure chat-ish words and digits are in the vocabulary too.
    yield "Hello! How can I help you today? The answer is 42. Sure, here is a short poem." * 4


def _train_tokenizer(spec: TinySpec):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        bos_token=None,
        pad_token="<pad>",
        unk_token=None,
        additional_special_tokens=["<|endoftext|>", "<|im_start|>"],
        chat_template=CHATML_TEMPLATE,
        model_max_length=spec.max_position_embeddings,
    )


def is_built(model_dir: str | Path) -> bool:
    return (Path(model_dir) / _MARKER).is_file()


def build_tiny_model(model_dir: str | Path, spec: TinySpec | None = None) -> Path:
    """Build a tiny Qwen3 model into `model_dir` unless it is already there; returns the dir."""
    spec = spec or TinySpec()
    out = Path(model_dir)
    if is_built(out):
        logger.info("tiny model already built at %s", out)
        return out
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer = _train_tokenizer(spec)
    tokenizer.save_pretrained(tmp)
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<pad>")
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        head_dim=spec.hidden_size // spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
        dtype="bfloat16",  # what vLLM would downcast to on the CPU anyway
    )
    torch.manual_seed(spec.seed)
    model = Qwen3ForCausalLM(config).to(dtype=torch.bfloat16)  # type: ignore[call-arg]
    model.save_pretrained(tmp)
    GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id).save_pretrained(tmp)
    (tmp / _MARKER).write_text(json.dumps(asdict(spec), indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    logger.info("built tiny model at %s (%d parameters)", out, model.num_parameters())
    return out
