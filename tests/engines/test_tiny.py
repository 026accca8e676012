from __future__ import annotations

import json

from transformers import AutoConfig, AutoTokenizer

from serving.engines.tiny import SPECIAL_TOKENS, TinySpec, build_tiny_model


def test_tiny_model_is_complete_deterministic_and_built_once(tmp_path):
    spec = TinySpec(vocab_size=600, hidden_size=32, intermediate_size=64, seed=3)
    a = build_tiny_model(tmp_path / "a", spec)
    tok = AutoTokenizer.from_pretrained(a)
    assert all(t in tok.get_vocab() for t in SPECIAL_TOKENS)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)  # fmt: skip
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    cfg = AutoConfig.from_pretrained(a)
    assert cfg.model_type == "qwen3" and cfg.tie_word_embeddings and cfg.num_key_value_heads == 2
    gen = json.loads((a / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tok.convert_tokens_to_ids("<|im_end|>")
    assert gen["pad_token_id"] == tok.convert_tokens_to_ids("<pad>")

    weights = a / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    build_tiny_model(a, spec)  # idempotent: already built, left alone
    assert weights.stat().st_mtime_ns == mtime
    b = build_tiny_model(tmp_path / "b", spec)  # same seed and text: same bytes
    assert (b / "model.safetensors").read_bytes() == weights.read_bytes()
    assert (b / "tokenizer.json").read_text() == (a / "tokenizer.json").read_text()
