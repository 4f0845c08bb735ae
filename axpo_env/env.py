"""ToolUseEnv: one multi-turn tool-use episode on one task item, as a Gymnasium env."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym

from axpo_env import protocol
from axpo_env.errors import AxpoError, EpisodeEndedError, SnapshotError, ToolCallError
from axpo_env.prompt_formats import PromptFormat, get_prompt_format
from axpo_env.snapshot import EnvSnapshot
from axpo_env.spaces import UnicodeText, observation_space
from axpo_env.tasks import Task, TaskItem, load_task_class
from axpo_env.tools.base import Tool, ToolContext, ToolResult, resolve_tools

logger = logging.getLogger(__name__)

ToolSpec = str | Tool | Any

_ANSWER_RULE = (
    "To use a tool, write one call per turn as <tool_call>{\"name\": ..., \"arguments\": {...}}"
    "</tool_call>; its result comes back in the next message. When you know the answer, "
    "write it as <answer>...</answer>."
)
_ANSWER_RULES = {
    "hermes": _ANSWER_RULE,
    "qwen3_coder": (
        "To use a tool, write one call per turn as <tool_call>\n<function=NAME>\n"
        "<parameter=ARGUMENT>\nVALUE\n</parameter>\n</function>\n</tool_call>; its result "
        "comes back in the next message. When you know the answer, write it as "
        "<answer>...</answer>."
    ),
}


class ToolUseEnv(gym.Env[dict, str]):
    """A multimodal question answered over several turns with tools.

    Observation: ``{"messages": [...], "tools": [...]}``. ``messages`` is the conversation so far
    in the transformers chat format (``{"role", "content": [{"type": "text", "text"} |
    {"type": "image", "image": PIL.Image}]}``): a system prompt, the user's question with the
    task image, then assistant turns and ``tool`` results. ``tools`` are the tool schemas, for a
    chat template's ``tools=`` (set ``tools_in_prompt=True`` to also write them into the system
    prompt, Qwen3-style, for templates without tool support). Images are shared, never copied.

    Action: the agent's whole turn as text. It may think (ended by ``</think>``), then either
    call tools, ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, or answer,
    ``<answer>...</answer>`` (a last ``\\boxed{...}`` counts too). At most
    ``max_tool_calls_per_turn`` calls run per turn; a turn with more runs none of them.

    Step: a final answer ends the episode (``terminated``) with the task's score as reward. A
    tool call returns the tool's text and images as a ``tool`` message, reward 0. Malformed
    calls, unknown tools and bad arguments come back as an error message to the agent (the turn
    counts). Reaching ``max_turns`` without an answer is ``truncated``, reward 0.

    Info: ``task_id``, ``turn``, ``answer`` (extracted final answer or None), ``correct``,
    ``tool_calls``, ``tool_errors`` (calls that failed), ``format_errors`` (turns with neither a
    call nor an answer, or too long).

    Task: ``split``, ``data_dir`` and ``task_options`` (e.g. ``{"judge": fn}``) go to the `Task`.

    Prompt format: ``prompt_format="deepeyes"`` words the system prompt, question and tool
    replies as that checkpoint family was trained (see `axpo_env.prompt_formats`).

    Tool-call format: ``tool_call_format="hermes"`` (default) reads Hermes JSON calls (Qwen2.5,
    Qwen3, Qwen3-VL); ``"qwen3_coder"`` reads the XML calls of Qwen3.5, Qwen3.6 and Qwen3-Coder,
    ``<tool_call><function=NAME><parameter=ARG>VALUE</parameter></function></tool_call>`` (a
    tag a line), each value typed by the tool's JSON schema (see `axpo_env.protocol_xml`).
    The env's own system prompt, and its tool list with ``tools_in_prompt``, describe that
    format; write scripted calls with ``render_tool_call(..., tool_call_format=...)``.

    Snapshot/restore: ``snapshot()`` returns an immutable, picklable `EnvSnapshot`;
    ``restore(s)`` continues from it exactly, stateful tools (the Python session) included.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        task: Task | type[Task] | str,
        tools: Sequence[ToolSpec] | None = None,
        max_turns: int = 8,
        split: str | None = None,
        data_dir: str | Path | None = None,
        max_tool_calls_per_turn: int = 1,
        max_action_chars: int = 32_000,
        tools_in_prompt: bool = False,
        system_prompt: str | None = None,
        render_mode: str | None = None,
        task_options: Mapping[str, Any] | None = None,
        prompt_format: str | PromptFormat | None = None,
        tool_call_format: str = "hermes",
    ):
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.task = _make_task(task, split, data_dir, task_options or {})
        self.tools: list[Tool] = resolve_tools(
            tools if tools is not None else self.task.default_tools
        )
        self._tools_by_name = {t.name: t for t in self.tools}
        self.max_turns = max_turns
        self.max_tool_calls_per_turn = max_tool_calls_per_turn
        self.max_action_chars = max_action_chars
        self.tools_in_prompt = tools_in_prompt
        self.render_mode = render_mode
        self._system_prompt = system_prompt
        self.prompt_format = get_prompt_format(prompt_format)
        self.tool_call_format = protocol.check_tool_call_format(tool_call_format)
        self.observation_space = observation_space()
        self.action_space = UnicodeText(max_length=None)
        self._item: TaskItem | None = None
        self._state: EnvSnapshot | None = None

    # ----------------------------------------------------------------------------------------
    # Gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode. ``options={"task_id": ...}`` (or ``{"index": i}``) picks the item;
        otherwise it is drawn with the env's seeded RNG. ``options={"snapshot": s}`` continues
        from an `EnvSnapshot` (as `restore`), reachable through any wrapper."""
        super().reset(seed=seed)
        options = options or {}
        if "snapshot" in options:
            self.restore(options["snapshot"])
            return self._observation(), self._info()
        if "task_id" in options:
            index = self.task.index_of(str(options["task_id"]))
        elif "index" in options:
            index = int(options["index"])
        else:
            index = int(self.np_random.integers(len(self.task)))
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**31))
        self._item = item = self.task.episode_item(self.task.items[index], episode_seed)
        images = tuple(item.images)
        question = [{"type": "image", "image": im} for im in images]
        suffix = self.prompt_format.question_suffix if self.prompt_format else ""
        question.append({"type": "text", "text": item.question + suffix})
        messages = (
            _message("system", [{"type": "text", "text": self.system_prompt}]),
            _message("user", question),
        )
        ctx = ToolContext(images=images, task=item, seed=episode_seed)
        for t in self.tools:
            t.reset(ctx)
        self._state = EnvSnapshot(
            env_id=self.env_id, task_id=item.task_id, tool_names=self.tool_names,
            messages=messages, images=images, turn=0, tool_calls=0, tool_errors=0,
            format_errors=0, answer=None, reward=0.0, terminated=False, truncated=False,
            seed=episode_seed, tool_states=(),
        )
        info = self._info()
        info["isolation"] = self.isolation
        return self._observation(), info

    def step(self, action: str) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """Play one agent turn; see the class docstring for what it returns."""
        s = self._require_state()
        if s.done:
            raise EpisodeEndedError("the episode has ended; call reset() or restore() first")
        if not isinstance(action, str):
            raise TypeError(f"an action is the agent's turn as str, got {type(action).__name__}")
        messages = [*s.messages, _message("assistant", [{"type": "text", "text": action}])]
        images = list(s.images)
        calls, errors, format_errors = s.tool_calls, s.tool_errors, s.format_errors
        answer, reward, terminated = None, 0.0, False

        parsed = (
            protocol.ParsedTurn("", error=f"Your turn has {len(action)} characters; the limit "
                                f"is {self.max_action_chars}. Write a shorter turn.")
            if len(action) > self.max_action_chars
            else protocol.parse_turn(action, self.tool_call_format, self.tool_schemas)
        )
        if parsed.error:
            format_errors += 1
            messages.append(_message("user", [{"type": "text", "text": parsed.error}]))
        elif parsed.answer is not None:
            answer, terminated = parsed.answer, True
            reward = self._score(parsed.answer)
        elif len(parsed.calls) > self.max_tool_calls_per_turn:
            calls, errors = calls + len(parsed.calls), errors + len(parsed.calls)
            text = (f"Error: {len(parsed.calls)} tool calls in one turn; at most "
                    f"{self.max_tool_calls_per_turn} allowed. None was run.")
            messages.append(_message("tool", [{"type": "text", "text": text}]))
        else:
            for call in parsed.calls:
                result, failed = self._run_call(call, tuple(images))
                calls, errors = calls + 1, errors + failed
                messages.append(self._reply(result, first_index=len(images)))
                images.extend(result.images)

        turn = s.turn + 1
        self._state = EnvSnapshot(
            env_id=s.env_id, task_id=s.task_id, tool_names=s.tool_names,
            messages=tuple(messages), images=tuple(images), turn=turn, tool_calls=calls,
            tool_errors=errors, format_errors=format_errors, answer=answer, reward=reward,
            terminated=terminated, truncated=not terminated and turn >= self.max_turns,
            seed=s.seed, tool_states=(),
        )
        st = self._state
        return self._observation(), st.reward, st.terminated, st.truncated, self._info()

    def render(self) -> str | None:
        """``ansi``: the conversation as plain text, images as ``[image WxH]``."""
        if self.render_mode != "ansi" or self._state is None:
            return None
        lines = []
        for m in self._state.messages:
            parts = [p["text"] if p["type"] == "text" else "[image {}x{}]".format(*p["image"].size)
                     for p in m["content"]]
            lines.append(f"<{m['role']}> " + " ".join(parts))
        return "\n".join(lines)

    def close(self) -> None:
        for t in self.tools:
            t.close()

    # ----------------------------------------------------------------------------------------
    # Snapshot / restore

    def snapshot(self) -> EnvSnapshot:
        """The episode's state now: immutable, picklable, cheap (shares messages and images)."""
        s = self._require_state()
        return replace(s, tool_states=tuple(t.snapshot() for t in self.tools))

    def restore(self, snapshot: EnvSnapshot) -> None:
        """Continue from `snapshot`: every later step gives what it gave after the snapshot."""
        if not isinstance(snapshot, EnvSnapshot):
            raise SnapshotError(f"expected an EnvSnapshot, got {type(snapshot).__name__}")
        if snapshot.env_id != self.env_id:
            raise SnapshotError(
                f"snapshot is of env {snapshot.env_id!r}; this env is {self.env_id!r}")
        if snapshot.tool_names != self.tool_names:
            raise SnapshotError(f"snapshot was taken with tools {list(snapshot.tool_names)}; "
                                f"this env has {list(self.tool_names)}")
        try:
            item = self.task.items[self.task.index_of(snapshot.task_id)]
            item = self.task.episode_item(item, snapshot.seed)
        except KeyError:
            raise SnapshotError(f"snapshot's task {snapshot.task_id!r} is not in this env's "
                                f"{type(self.task).__name__} split {self.task.split!r}") from None
        if len(snapshot.tool_states) != len(self.tools):
            raise SnapshotError("snapshot has no tool states; take it with env.snapshot()")
        if self._item is None or self._item.task_id != item.task_id:
            ctx = ToolContext(images=tuple(item.images), task=item, seed=snapshot.seed)
            for t in self.tools:
                t.reset(ctx)
        for t, state in zip(self.tools, snapshot.tool_states):
            t.restore(state)
        self._item = item
        self._state = replace(snapshot, tool_states=())

    # ----------------------------------------------------------------------------------------

    @property
    def env_id(self) -> str:
        return self.spec.id if self.spec is not None else self.task.env_id

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tools)

    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        return [t.schema for t in self.tools]

    @property
    def isolation(self) -> dict[str, str]:
        """Which sandbox each code-running tool really uses (e.g. ``{"python": "bubblewrap"}``)."""
        return {t.name: t.isolation_active for t in self.tools if hasattr(t, "isolation_active")}

    @property
    def system_prompt(self) -> str:
        if self._system_prompt is not None:
            return self._system_prompt
        if self.prompt_format and self.prompt_format.system_prompt is not None:
            return self.prompt_format.system_prompt
        parts = [self.task.instructions]
        if self.tools_in_prompt and self.tools:
            parts.append(protocol.render_tools_block(self.tool_schemas, self.tool_call_format))
        parts.append(_ANSWER_RULES[self.tool_call_format])
        return "\n\n".join(parts)

    def _require_state(self) -> EnvSnapshot:
        if self._state is None:
            raise AxpoError("call reset() before step(), snapshot() or render()")
        return self._state

    def _score(self, answer: str) -> float:
        """The task's score of `answer`; a scorer that fails on hostile text scores 0 (logged)."""
        try:
            return float(self.task.score(self._item, answer))
        except Exception:
            logger.warning("%s failed to score an answer; scored 0", self.env_id,
                           exc_info=True)
            return 0.0

    def _run_call(self, call: protocol.ToolCall, images: tuple) -> tuple[ToolResult, bool]:
        """Run one call; every failure becomes an error result for the agent."""
        if call.error:
            return ToolResult(f"Error: {call.error}"), True
        tool = self._tools_by_name.get(call.name or "")
        if tool is None:
            return ToolResult(f"Error: unknown tool {call.name!r}. Available tools: "
                              f"{', '.join(self.tool_names) or 'none'}."), True
        ctx = ToolContext(images=images, task=self._item, seed=self._state.seed)
        try:
            return tool(call.arguments or {}, ctx), False
        except ToolCallError as e:
            return ToolResult(f"Error: {e}"), True
        except Exception as e:  # a tool bug must not end the episode or the training run
            logger.warning("tool %r raised", tool.name, exc_info=True)
            return ToolResult(f"Error: the tool {tool.name!r} failed: "
                              f"{type(e).__name__}: {str(e)[:300]}"), True

    def _reply(self, result: ToolResult, first_index: int) -> dict[str, Any]:
        if self.prompt_format and self.prompt_format.tool_message:
            return self.prompt_format.tool_message(result)
        return self._tool_message(result, first_index)

    @staticmethod
    def _tool_message(result: ToolResult, first_index: int) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "image", "image": im} for im in result.images]
        text = result.text
        if result.images and result.note_image_index:
            ids = ", ".join(str(first_index + i) for i in range(len(result.images)))
            text = f"{text}\n(image index {ids})".strip()
        content.append({"type": "text", "text": text})
        return _message("tool", content)

    def _observation(self) -> dict[str, Any]:
        # Fresh lists and dicts each time, so a caller that edits them cannot corrupt the episode;
        # images stay shared.
        messages = [
            {"role": m["role"], "content": [dict(p) for p in m["content"]]}
            for m in self._state.messages
        ]
        in_prompt = self.prompt_format and self.prompt_format.tools_in_system_prompt
        return {"messages": messages, "tools": [] if in_prompt else self.tool_schemas}

    def _info(self) -> dict[str, Any]:
        s = self._state
        return {
            "task_id": s.task_id, "turn": s.turn, "answer": s.answer,
            "correct": bool(s.terminated and s.reward >= 1.0 - 1e-9),
            "tool_calls": s.tool_calls, "tool_errors": s.tool_errors,
            "format_errors": s.format_errors,
        }


def _message(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"role": role, "content": content}


def _make_task(
    task: Task | type[Task] | str, split: str | None, data_dir: Any, options: Mapping[str, Any]
) -> Task:
    if isinstance(task, Task):
        if split is not None or data_dir is not None or options:
            raise ValueError(
                "pass split/data_dir/task_options to the Task itself when giving a Task instance")
        return task
    cls = load_task_class(task) if isinstance(task, str) else task
    return cls(split=split, data_dir=data_dir, **options)
