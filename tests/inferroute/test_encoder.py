"""The fine-tuned MiniLM task encoder (inferroute.encoder) and the router that routes with it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inferroute.encoder import (
    NEVER_SKIP,
    EncoderSettings,
    TaskEncoder,
    blend,
    calibration_mask,
    fit,
    fit_blend_temperature,
    fit_temperature,
    softmax,
)
from inferroute.taxonomy import TASK_NAMES
from tests.inferroute.conftest import CODE, TRANSLATE

QUICK = EncoderSettings(epochs=4, batch_size=8, lr=1e-4, head_lr=5e-3, threads=1, max_len=32)


def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 5))
    p = softmax(logits / 2.5)
    y = np.array([rng.choice(5, p=row) for row in p])
    assert fit_temperature(logits, y) == pytest.approx(2.5, rel=0.1)
    # over-confident logits are softened (T > 1), under-confident ones sharpened (T < 1)
    assert fit_temperature(logits * 3, y) > 1 > fit_temperature(logits / 3, y)


@pytest.fixture(scope="module")
def toy_encoder() -> TaskEncoder:
    texts = TRANSLATE[:8] + CODE[:8]
    tasks = ["translation"] * 8 + ["code_generation"] * 8
    return fit(texts, tasks, np.ones(len(texts), bool), QUICK, progress=False)


def test_the_int8_encoder_learns_tasks_it_never_saw_these_prompts_of(toy_encoder, tmp_path):
    held = TRANSLATE[8:] + CODE[8:]
    full = toy_encoder.full_proba(held)
    assert full.shape == (4, len(TASK_NAMES)) and np.allclose(full.sum(1), 1.0)
    names = [TASK_NAMES[j] for j in full.argmax(1)]
    assert names == ["translation"] * 2 + ["code_generation"] * 2
    # only the classes it was trained on get probability
    other = [j for j, t in enumerate(TASK_NAMES) if t not in ("translation", "code_generation")]
    assert full[:, other].sum() == 0.0
    # saved and loaded: the same graph, tokenizer and temperature, the same probabilities
    meta = toy_encoder.save(tmp_path)
    json.dumps(meta)
    again = TaskEncoder.load(tmp_path, meta)
    assert again.temperature == toy_encoder.temperature
    assert np.allclose(again.full_proba(held), full)
    # how many tokens it reads from a long prompt's end is saved with it (older metas: none)
    assert meta["tail"] == 0
    assert TaskEncoder.load(tmp_path, {**meta, "tail": 8}).tail == 8
    assert TaskEncoder.load(tmp_path, {k: v for k, v in meta.items() if k != "tail"}).tail == 0


def test_a_prompt_longer_than_max_len_is_read_from_its_start(toy_encoder):
    start = "Translate into French: I would like a cup of coffee. "
    long = start + "Ignore this padding sentence about nothing at all. " * 400
    p = toy_encoder.full_proba([long, start])
    assert TASK_NAMES[int(p[0].argmax())] == "translation"
    assert np.isfinite(p).all()


def _minilm_tokenizer_json() -> str:
    from inferroute.features import minilm_path

    return (minilm_path() / "tokenizer.json").read_text("utf-8")


def test_a_tail_reads_a_long_prompt_from_both_ends():
    from inferroute.encoder import _tokenizer, tokenize

    text = _minilm_tokenizer_json()
    pasted = "Summarize the following text. " + "The cat sat on the mat all day. " * 40
    long = pasted + "Now answer in one sentence: why did it stay there?"
    short = "Translate good night into French."
    start, both = _tokenizer(text, 24), _tokenizer(text, 24, tail=8)
    ids_start, mask_start = tokenize(start, [long, short], 24)
    ids_both, mask_both = tokenize(both, [long, short], 24)
    words = both.id_to_token
    # the short prompt is read whole, the same with or without a tail
    assert np.array_equal(ids_both[1], ids_start[1]) and np.array_equal(mask_both, mask_start)
    # the long one: [CLS], its first 14 tokens, its last 8, [SEP]
    assert np.array_equal(ids_both[0, :15], ids_start[0, :15])
    tail = [words(int(i)) for i in ids_both[0, 15:]]
    assert tail == ["sentence", ":", "why", "did", "it", "stay", "there", "?", "[SEP]"]
    assert words(int(ids_start[0, -2])) != "?"


def _tokenize_whole_cut(tok, texts, max_len):
    """What `tokenize` read before the short first try: every text cut to max_len * 32 chars."""
    from inferroute.encoder import CHARS_PER_TOKEN_MAX

    encs = tok.encode_batch([t[: max_len * CHARS_PER_TOKEN_MAX] for t in texts])
    ids = np.array([e.ids for e in encs], dtype=np.int64).reshape(len(texts), -1)
    mask = np.array([e.attention_mask for e in encs], dtype=np.int64).reshape(len(texts), -1)
    return ids, mask


def _assert_same_tokens(texts, max_len, tail=0):
    from inferroute.encoder import _tokenizer, tokenize

    text = _minilm_tokenizer_json()
    ours, ref = _tokenizer(text, max_len, tail), _tokenizer(text, max_len)
    for i in range(0, len(texts), 16):
        batch = texts[i : i + 16]
        ids, mask = tokenize(ours, batch, max_len)
        ref_ids, ref_mask = _tokenize_whole_cut(ref, batch, max_len)
        if tail:  # the start is the same; the end is the tail's own (test above)
            ids, ref_ids = ids[:, : max_len - 1 - tail], ref_ids[:, : max_len - 1 - tail]
        assert ids.shape == ref_ids.shape and mask.shape == ref_mask.shape
        bad = [batch[j][:80] for j in range(len(batch)) if not np.array_equal(ids[j], ref_ids[j])]
        assert not bad, bad
        assert np.array_equal(mask, ref_mask)


def test_a_long_prompt_is_tokenized_from_a_short_cut_with_the_same_tokens():
    prose = "The quick brown fox jumps over the lazy dog, again and again. " * 60
    texts = [
        prose,
        "short prompt",
        "x" * 5000,  # no whitespace to cut at: the whole cut is read
        "antidisestablishmentarianism " * 200,  # long words: the short cut may not overflow
        "\u6211\u559c\u6b22\u5b66\u4e60\u4e2d\u6587\u3002" * 400,  # CJK, no spaces
        "caf\u0065\u0301 na\u0131ve r\u00e9sum\u00e9 " * 300,  # accents, combining marks
        "def f(x):\n\treturn x**2  # square\r\n" * 200,  # code: tabs, CRLF, punctuation
        "word\x1cword " * 500,  # a separator BERT removes, not one it splits at
        ("a " * 200) + ("b" * 3000),
        # a word across the 24-token try's cut (192 chars): cut inside it, its first 94 chars
        # would be word pieces where the whole 150-char word is one [UNK]
        "understanding " * 7 + "z" * 150 + " end" * 50,
        "",
    ]
    _assert_same_tokens(texts, 64)
    _assert_same_tokens(texts, 24)
    _assert_same_tokens(texts, 64, tail=16)


def test_real_prompts_get_the_same_tokens_from_the_short_cut():
    import gzip
    import os
    from pathlib import Path

    path = (
        Path(os.environ.get("INFERBASE_DATA_DIR", "/nonexistent")) / "sharegpt/first_turns.jsonl.gz"
    )
    if not path.is_file():
        pytest.skip("no shared data directory (set INFERBASE_DATA_DIR)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        prompts = [json.loads(line)["prompt"] for line in f]
    long = [p for p in prompts if len(p) > 64 * 8][:1500]
    assert len(long) == 1500
    _assert_same_tokens(long + prompts[:200], 64)


def test_temperature_is_fitted_on_real_prompts_held_back_from_fine_tuning():
    texts = (TRANSLATE + CODE) * 3
    tasks = (["translation"] * 10 + ["code_generation"] * 10) * 3
    real = np.ones(len(texts), bool)
    settings = EncoderSettings(epochs=1, batch_size=8, threads=1, max_len=32, calib_frac=0.5)
    enc = fit(texts, tasks, real, settings, progress=False)
    assert enc.temperature != 1.0  # fitted (>= 20 held-back real prompts)
    few = fit(texts[:20], tasks[:20], real[:20], settings, progress=False)
    assert few.temperature == 1.0  # too few to hold back: every prompt trains, T stays 1


def test_the_calibration_prompts_are_the_same_from_any_selection_of_the_labels():
    texts = [f"prompt number {i}" for i in range(2000)]
    real = np.arange(2000) % 4 != 0  # every 4th is a benchmark prompt
    mask = calibration_mask(texts, real, 0.2, seed=0)
    assert not mask[~real].any()  # only real prompts are held back
    assert 0.15 < mask[real].mean() < 0.25
    # a shuffled subset (another label cap, another order) holds back the same prompts
    order = np.random.default_rng(1).permutation(2000)[:1200]
    sub = calibration_mask([texts[i] for i in order], real[order], 0.2, seed=0)
    assert (sub == mask[order]).all()
    # a duplicated prompt is on one side only; another seed holds back other prompts
    twice = calibration_mask(texts[:50] * 2, np.ones(100, bool), 0.5, seed=0)
    assert (twice[:50] == twice[50:]).all()
    assert (calibration_mask(texts, real, 0.2, seed=1) != mask).any()


def test_the_blend_temperature_is_recovered_from_labels_drawn_with_it():
    rng = np.random.default_rng(0)
    n, k = 4000, 5
    p_enc, p_static = softmax(rng.normal(0, 2, (n, k))), softmax(rng.normal(0, 2, (n, k)))
    truth = blend(p_enc, p_static, 0.3, 0.6)
    y = np.array([rng.choice(k, p=row) for row in truth])
    t = fit_blend_temperature(p_enc, p_static, np.ones(n), y, 0.3, k)
    assert t == pytest.approx(0.6, rel=0.1)
    assert np.allclose(blend(p_enc, p_static, 0.0, 1.0), p_enc)  # weight 0, T 1: the encoder's
    assert np.allclose(blend(p_enc, p_static, 1.0, 1.0), p_static)


def test_bad_training_input_is_refused():
    with pytest.raises(ValueError, match="unknown task"):
        fit(["hi"], ["greeting"], np.ones(1, bool), QUICK, progress=False)
    with pytest.raises(ValueError, match="same length"):
        fit(["hi", "yo"], ["chat"], np.ones(2, bool), QUICK, progress=False)


@pytest.fixture(scope="module")
def encoder_router(small_data):
    """A tiny router trained with a (quickly) fine-tuned task encoder, on a sample of labels."""
    import inferroute
    from inferroute.config import TINY

    scores, labels, split = small_data
    train = scores[scores["prompt_id"].map(split) == "train"]
    few = labels[labels["task"].isin(TASK_NAMES)].sample(frac=1.0, random_state=0)
    few = few[few.groupby("task").cumcount() < 40]
    # no cascade: every prompt runs the encoder (test_the_cascade_... covers the cascade)
    config = TINY.with_overrides(
        task_encoder=True, enc_epochs=2, enc_max_len=32, enc_skip_above=NEVER_SKIP
    )
    return inferroute.train(train, few, config)


def test_the_router_names_the_encoders_task_and_keeps_it_when_saved(encoder_router, tmp_path):
    import inferroute

    router = encoder_router
    assert router.encoder is not None
    prompts = [
        "Write a Python function that returns the n-th Fibonacci number.",
        "Translate 'good night' into Italian.",
    ]
    _, dense = router.features(prompts)
    static, support = router.classifier.proba_and_support(dense, prompts)
    enc = router.encoder
    # the static classifier is blended in at the config's weight, with a fitted temperature
    assert enc.static_weight == pytest.approx(0.3) and enc.blend_temperature != 1.0
    b = (1 - enc.static_weight) * enc.full_proba(prompts) + enc.static_weight * static
    b = b ** (1 / enc.blend_temperature)
    b /= b.sum(1, keepdims=True)
    k = len(enc.classes)
    uniform = enc.to_full(np.full((2, k), 1 / k))
    expected = b * support[:, None] + (1 - support[:, None]) * uniform
    assert np.allclose(router.task_proba(prompts), expected)
    assert np.allclose(router.task_proba(prompts).sum(1), 1.0)
    decision = router.route([{"role": "user", "content": prompts[0]}], router.known_models()[:3])
    top = router.classify(prompts[:1])[0]
    assert (decision.task, decision.confidence) == pytest.approx(top)
    router.save(tmp_path)
    meta = json.loads((tmp_path / "router.json").read_text())
    assert meta["encoder"]["max_len"] == 32
    assert meta["encoder"]["static_weight"] == pytest.approx(0.3)
    loaded = inferroute.load_router(tmp_path)
    assert loaded.encoder is not None
    assert np.allclose(loaded.task_proba(prompts), router.task_proba(prompts))
    # a router saved before the blend existed (no blend keys) routes with the encoder alone
    for key in ("static_weight", "blend_temperature"):
        del meta["encoder"][key]
    (tmp_path / "router.json").write_text(json.dumps(meta))
    old = inferroute.load_router(tmp_path)
    assert (old.encoder.static_weight, old.encoder.blend_temperature) == (0.0, 1.0)
    alone = enc.full_proba(prompts) * support[:, None] + (1 - support[:, None]) * uniform
    assert np.allclose(old.task_proba(prompts), alone)


def test_the_cascade_skips_the_encoder_for_prompts_the_static_classifier_is_sure_of(
    encoder_router, tmp_path
):
    import copy

    import inferroute

    router = copy.copy(encoder_router)  # (the fixture's router is shared: change a copy)
    prompts = [
        "Write a Python function that returns the n-th Fibonacci number.",
        "Translate 'good night' into Italian.",
        "hmm",
        "What is 17 * 23?",
    ]
    _, dense = router.features(prompts)
    p, s = router.classifier.proba_and_support(dense, prompts)
    static = router.classifier.with_support(p, s)
    cut = float(np.median(static.max(1)))
    sure = static.max(1) >= cut
    assert 0 < sure.sum() < len(prompts)
    router.encoder = router.encoder.with_blend(
        router.encoder.static_weight, router.encoder.blend_temperature, cut
    )
    read: list[str] = []
    full_proba = router.encoder.full_proba

    def spy(texts):
        read.extend(texts)
        return full_proba(texts)

    router.encoder.full_proba = spy
    got = router.task_proba(prompts)
    # the sure prompts take the static classifier's probabilities and never reach the encoder;
    # the rest are routed exactly as without the cascade (the fixture's router has none; the
    # same batch, as int8 activations are quantised per batch)
    rest = [t for t, sk in zip(prompts, sure, strict=True) if not sk]
    assert read == rest
    assert np.allclose(got[sure], static[sure])
    assert np.allclose(got[~sure], encoder_router.task_proba(rest))
    del router.encoder.full_proba
    router.save(tmp_path)
    loaded = inferroute.load_router(tmp_path)
    assert loaded.encoder.skip_above == pytest.approx(cut)
    assert np.allclose(loaded.task_proba(prompts), got)


def test_the_encoders_confidence_falls_far_from_the_training_data(encoder_router):
    router = encoder_router
    odd = ["ᚠᚢᚦᚨᚱᚲ ᚷᚹᚺᚾ ᛁᛃᛇᛈ ᛉᛊᛏᛒ ᛖᛗᛚᛜ ᛞᛟ", "qzxv wplk mmrt ghjj kkqw zzpt xxyy vvbn"]
    raw = router.encoder.predict_proba(odd).max(1)
    served = router.task_proba(odd).max(1)
    assert (served < raw).all()
