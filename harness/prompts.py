"""Renders a task's prompt for one example: a plain template, or the model's chat template.

Templates are Python format strings whose placeholders are the task's input field names. Values
are substituted once and never re-parsed, so braces inside a resume or a JSON reference are safe.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

from harness.errors import HarnessError
from harness.spec import Example, TaskSpec

FEW_SHOT_SEPARATOR = "\n\n"


def template_fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def check_template(task: TaskSpec, name: str) -> str:
    if name not in task.prompts:
        raise HarnessError(f"Task '{task.name}' has no prompt '{name}'; choose one of {', '.join(sorted(task.prompts))}.")
    template = task.prompts[name]
    unknown = template_fields(template) - set(task.fields.inputs)
    if unknown:
        raise HarnessError(
            f"Prompt '{name}' of task '{task.name}' uses {sorted(unknown)}, which are not input fields {list(task.fields.inputs)}."
        )
    return template


def render_plain(task: TaskSpec, example: Example, name: str) -> str:
    return check_template(task, name).format(**example.inputs)


def target_text(task: TaskSpec, example: Example) -> str:
    """What a model should answer: the first reference, or the verbalised label."""
    if task.choices and example.label is not None:
        return task.choices[example.label]
    return " " + example.references[0] if example.references else ""


def render(
    task: TaskSpec,
    example: Example,
    name: str | None = None,
    tokenizer: Any | None = None,
    shots: Sequence[Example] = (),
) -> str:
    """The full prompt: few-shot demonstrations, then the example, through the chat template if asked."""
    name = name or task.default_prompt
    demonstrations = [render_plain(task, shot, name) + target_text(task, shot) for shot in shots]
    body = FEW_SHOT_SEPARATOR.join([*demonstrations, render_plain(task, example, name)])
    if name in task.chat_prompts and tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": body}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return body


def classify_texts(task: TaskSpec, example: Example) -> tuple[str, str | None]:
    """Encoder inputs: the first input field, and the second as a text pair when the task has one."""
    values = [example.inputs[field] for field in task.fields.inputs]
    return values[0], (values[1] if len(values) > 1 else None)
