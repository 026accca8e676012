"""The task taxonomy InferRoute classifies prompts into.

Source labels (MT-Bench categories, WizardLM skills, dataset of origin, ...) are mapped onto these
names by a data file (`data/task_map.yaml`), not by code.
"""

from __future__ import annotations

# name -> what belongs there
TASKS: dict[str, str] = {
    "code_generation": "write, complete, fix or explain code (HumanEval, MBPP, coding skills)",
    "analysis": "analyse a text, situation, argument or data and reason about it in depth",
    "math": "arithmetic, word problems, algebra, competition and applied maths (GSM8K, MATH)",
    "reasoning": "logic puzzles, commonsense and multi-step reasoning (ARC, Winogrande, BBH-style)",
    "closed_qa": "questions with one definite answer: factual or multiple-choice knowledge (MMLU)",
    "open_qa": "open-ended questions, advice and explanations with no single right answer",
    "summarization": "condense a given text",
    "extraction": "pull structured facts or fields out of a given text",
    "classification": "assign a label, sentiment or category to an input",
    "rewriting": "edit, paraphrase, proofread, change tone or format of a given text",
    "creative_writing": "stories, poems, lyrics, scripts and other creative text",
    "brainstorming": "generate lists of ideas, names or options",
    "chat": "conversation, role-play and persona following",
    "translation": "translate between languages",
    "other": "anything that fits none of the above",
}

TASK_NAMES: tuple[str, ...] = tuple(TASKS)
