"""The prompt statistics every routing call computes (inferroute.features.text_stats): the fast
paths give exactly what the plain definitions give, so a router trained before them routes the
same."""

from __future__ import annotations

import re

import numpy as np
import pytest

from inferroute.features import STAT_NAMES, char_counts, text_stats

TEXTS = [
    "",
    "Hi!",
    "What is 2 + 2? Answer in one word.",
    "def f(x):\n    return x;\n\nclass A {\n  function g() => 1;\n}\n```py\n#include <x>\n```",
    "Undefined behaviour: redefine, subclass, returns, dysfunction; equations = 3*x; Solve it.",
    "Solve the equation $x^2 = 4$ and \\frac{1}{2}; RE-SOLVE; résolve 12 =7",
    "Question?\n(A) one\nB) two\nC. three\n D: four",
    "Zeichen: ÄÖÜ ß é ǅ Ⅻ ² ½ ٣٤ 𝟘 中文 🙂 \x1c\x1d\x85\xa0 \u2003",
    "a lone surrogate \ud800 survives",
    "x" * 5000 + " 1+1 " + "Y;" * 300 + "\n",
]

# the statistics' plain definitions: a loop over the characters, word-boundary regexes
_CODE = re.compile(r"```|\bdef |\bclass |\breturn\b|#include|;\s*$|\bfunction\b|=>|\{\s*$", re.M)
_MATH = re.compile(r"[=+\-*/^]\s*\d|\d\s*[=+\-*/^]|\\frac|\$|\bsolve\b|\bequation\b", re.I)


def _reference(t: str) -> list[float]:
    n = max(len(t), 1)
    return [
        np.log1p(len(t)),
        np.log1p(len(t.split())),
        np.log1p(t.count("\n")),
        sum(c.isdigit() for c in t) / n,
        sum(c.isupper() for c in t) / n,
        sum((not c.isalnum()) and (not c.isspace()) for c in t) / n,
        np.log1p(len(_CODE.findall(t))),
        np.log1p(len(_MATH.findall(t))),
        np.log1p(t.count("?")),
        float(len(re.findall(r"(^|\n)\s*\(?[A-D][).:]\s", t, re.M)) >= 3),
        sum(ord(c) > 127 for c in t) / n,
        np.log1p(1),
    ]


@pytest.mark.parametrize("text", TEXTS)
def test_text_stats_equal_their_plain_definitions(text: str) -> None:
    got = text_stats([text])[0]
    want = np.asarray(_reference(text), dtype=np.float32)
    assert got.shape == (len(STAT_NAMES),)
    np.testing.assert_array_equal(got, want)


def test_char_counts_count_unicode_digits_capitals_punctuation_and_non_ascii() -> None:
    # "٣" is an Arabic-Indic digit, "Ä" and "Ǆ" capitals, "¿" punctuation, "\u2003" a space
    assert char_counts("a1٣ÄǄ¿\u2003!") == (2, 2, 2, 5)
    assert char_counts("") == (0, 0, 0, 0)


def test_code_markers_need_a_word_boundary() -> None:
    stats = text_stats(["subclass redefine returns", "class A: def f(): return 1"])
    code = STAT_NAMES.index("code_markers")
    assert stats[0, code] == 0.0
    assert stats[1, code] == pytest.approx(np.log1p(3))
