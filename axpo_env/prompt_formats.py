"""Prompt formats: the system prompt, question suffix and tool-reply wording a checkpoint was
trained with, so it works in our envs with no prompt engineering by the user.

`ToolUseEnv(..., prompt_format="deepeyes")` (or `gym.make(..., prompt_format=...)`) replaces
the env's own wording; the default (None) is the env's. A format never changes what a tool does,
only how the conversation says it: pair "deepeyes" with the `crop:deepeyes` tool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from axpo_env.tools.base import ToolResult

ToolMessage = Callable[[ToolResult], dict[str, Any]]


@dataclass(frozen=True)
class PromptFormat:
    """How an env words its prompts for one family of checkpoints.

    Attributes:
        name: what `prompt_format=` names it by.
        system_prompt: replaces the env's system prompt (a `system_prompt=` given to the env
            still wins).
        question_suffix: appended to the task's question text.
        tools_in_system_prompt: the system prompt already lists the tools, so observations carry
            no `tools` for a chat template to render a second time.
        tool_message: the message a tool result becomes (None: the env's `tool` message).
    """

    name: str
    system_prompt: str | None = None
    question_suffix: str = ""
    tools_in_system_prompt: bool = False
    tool_message: ToolMessage | None = None


# Source: Visual-Agent/DeepEyes, eval/eval_vstar.py and eval/eval_hrbench.py
# (`instruction_prompt_system`, `USER_PROMPT_V2`; the same texts as
# verl/workers/agent/envs/mm_process_engine/prompt.py SYSTEM_PROMPT_V2 / USER_PROMPT_V2), copied
# byte for byte, the source's `"required":["bbox"]` included: it is the text the model read.
DEEPEYES_SYSTEM_PROMPT = (
    "You are a helpful assistant.\n\n# Tools\nYou may call one or more functions to assist with "
    "the user query.\nYou are provided with function signatures within <tools></tools> XML tags:"
    '\n<tools>\n{"type":"function","function":{"name":"image_zoom_in_tool","description":"Zoom '
    "in on a specific region of an image by cropping it based on a bounding box (bbox) and an "
    'optional object label.","parameters":{"type":"object","properties":{"bbox_2d":{"type":'
    '"array","items":{"type":"number"},"minItems":4,"maxItems":4,"description":"The bounding '
    "box of the region to zoom in, as [x1, y1, x2, y2], where (x1, y1) is the top-left corner "
    'and (x2, y2) is the bottom-right corner."},"label":{"type":"string","description":"The '
    'name or label of the object in the specified bounding box (optional)."}},"required":'
    '["bbox"]}}}\n</tools>\n\n# How to call a tool\nReturn a json object with function name and '
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>\n\n**Example**:  \n'
    '<tool_call>  \n{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [10, 20, 100, 200], '
    '"label": "the apple on the desk"}}  \n</tool_call>'
)
DEEPEYES_USER_PROMPT = (
    "\nThink first, call **image_zoom_in_tool** if needed, then answer. Format strictly as:  "
    "<think>...</think>  <tool_call>...</tool_call> (if tools needed)  <answer>...</answer> "
)


def _deepeyes_tool_message(result: ToolResult) -> dict[str, Any]:
    """DeepEyes' reply, as its eval script sends it: a user turn `<tool_response>`, the cropped
    image, the user prompt again, `</tool_response>`. A result without an image (an error)
    is a user turn with its text, as DeepEyes' toolbox answers `Error: ...`."""
    if not result.images:
        return {"role": "user", "content": [{"type": "text", "text": result.text}]}
    content: list[dict[str, Any]] = [{"type": "text", "text": "<tool_response>"}]
    content += [{"type": "image", "image": im} for im in result.images]
    content += [{"type": "text", "text": DEEPEYES_USER_PROMPT},
                {"type": "text", "text": "</tool_response>"}]
    return {"role": "user", "content": content}


DEEPEYES = PromptFormat(
    name="deepeyes", system_prompt=DEEPEYES_SYSTEM_PROMPT,
    question_suffix=DEEPEYES_USER_PROMPT, tools_in_system_prompt=True,
    tool_message=_deepeyes_tool_message,
)

PROMPT_FORMATS: dict[str, PromptFormat] = {"deepeyes": DEEPEYES}


def get_prompt_format(spec: str | PromptFormat | None) -> PromptFormat | None:
    """A `PromptFormat` from its name (or itself); None stays None (the env's own wording)."""
    if spec is None or isinstance(spec, PromptFormat):
        return spec
    if spec in PROMPT_FORMATS:
        return PROMPT_FORMATS[spec]
    raise ValueError(f"unknown prompt_format {spec!r}; use one of {sorted(PROMPT_FORMATS)}, a "
                     "PromptFormat, or None for the env's own prompts")
