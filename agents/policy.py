"""What a policy is to the rollout engine: conversations in, sampled turns out, with the numbers
RL needs (token ids, logprobs and entropies of the distribution actually sampled from).

Two contracts. `Policy` works on conversations (any backend: an HTTP server, `OpenAIPolicy`);
`TokenPolicy` works on token ids, which is what training and branching need: the rollout keeps
each episode's exact ids, and a branch resumes from a cut of them. `HFPolicy` is both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agents.tokens import TokenPrompt

#: Where a turn ends: after a tool call or a final answer (the env reads either).
DEFAULT_STOP = ("</tool_call>", "</answer>")


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one turn. Names follow vLLM/TRL where they mean the same thing."""

    max_new_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    stop: tuple[str, ...] = DEFAULT_STOP
    seed: int | None = None

    @classmethod
    def of(cls, config: Any, seed: int | None = None) -> SamplingParams:
        """From a config's generation fields, named as in TRL (`max_completion_length`,
        `temperature`, `top_p`, `top_k`): `GRPOConfig`, `EvalConfig`."""
        return cls(max_new_tokens=config.max_completion_length, temperature=config.temperature,
                   top_p=config.top_p, top_k=config.top_k or 0, seed=seed)


@dataclass
class Completion:
    """One sampled turn.

    `token_ids` are exactly the ids the model produced (stop string included); `logprobs[i]` and
    `entropies[i]` belong to `token_ids[i]` under the sampling distribution (after temperature
    and top-p/top-k). `prompt_token_ids` are the ids the model was fed, when the backend knows
    them. `finish_reason`: "stop" (a stop string or EOS), "length" (max_new_tokens) or "error"
    (then `error` says why and the other fields may be empty).
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    prompt_token_ids: list[int] | None = None
    finish_reason: str = "stop"
    error: str | None = None


#: A conversation as the env observes it: {"messages": [...], "tools": [...]}, or just messages.
Conversation = Mapping[str, Any] | Sequence[Mapping[str, Any]]


@runtime_checkable
class Policy(Protocol):
    """Anything that samples the next assistant turn for a batch of conversations."""

    def generate(
        self,
        conversations: Sequence[Conversation],
        n: int = 1,
        sampling: SamplingParams | None = None,
    ) -> list[list[Completion]]:
        """For each conversation, `n` completions of the next assistant turn.

        A failure on one conversation is a Completion with finish_reason "error", never an
        exception that loses the rest of the batch.
        """
        ...


@runtime_checkable
class TokenPolicy(Protocol):
    """A policy on token ids: what `rollout`, `branch`/`branch_many`, AXPO's `explore` and the
    diagnostics need from it, so a trajectory records exactly the ids the model was fed and
    sampled (`Trajectory.sequence`) and a branch continues from a kept prefix of them. The
    trainers further need the model itself (`HFPolicy.model`, `forward_logits`) to update it.
    """

    tokenizer: Any  # decodes ids (a branch's joined turn) and finds the action tags in them
    patches_per_token: int  # image patches per image-pad id: how `TokenPrompt.prefix` cuts

    def prompt(self, conversation: Conversation) -> TokenPrompt:
        """An env observation rendered with the chat template, ready to sample."""
        ...

    def continue_prompt(self, prompt: TokenPrompt, completion: Completion,
                        new_messages: Sequence[dict], tools: Sequence[dict] | None = None
                        ) -> tuple[TokenPrompt, list[int]]:
        """`prompt` + the completion's own ids + the env's reply rendered, ready for the next
        turn; also returns the ids the env added."""
        ...

    def sample(self, prompts: Sequence[TokenPrompt], n: int = 1,
               sampling: SamplingParams | None = None) -> list[list[Completion]]:
        """`n` completions per prompt; a failure is an error Completion, not an exception."""
        ...

    def sample_shared(self, prompt: TokenPrompt, n: int,
                      sampling: SamplingParams | None = None) -> list[Completion]:
        """`n` completions of one prompt (a branch's kept prefix), sharing its prefill."""
        ...


def split_conversation(conversation: Conversation) -> tuple[list[dict], list[dict] | None]:
    """(messages, tools) from an env observation or a bare message list."""
    if isinstance(conversation, Mapping):
        return list(conversation["messages"]), conversation.get("tools") or None
    return list(conversation), None
