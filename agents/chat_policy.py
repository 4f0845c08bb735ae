"""ChatTokenPolicy: the chat-template half of a token-level policy, shared by every backend.

A token policy renders env observations into ids (`prompt`), appends the env's replies to a
sequence without re-tokenizing what the model wrote (`continue_prompt`), and cuts a sampled row
where the turn really ended (`turn_end`). None of that depends on what samples: `HFPolicy`
(transformers) and `VLLMPolicy` (vLLM) both inherit it, so a trajectory's ids mean the same
whichever engine produced them, and a checkpoint trained on one is evaluated on the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.chat_encoding import ChatEncoder
from agents.policy import Completion, Conversation, SamplingParams, split_conversation
from agents.tokens import TokenPrompt


class ChatTokenPolicy:
    """Prompts and turn boundaries of a token policy; subclasses add `sample`/`sample_shared`.

    Args:
        processor: the model's processor (VL models) or tokenizer (text models).
        eos_ids: ids that end a turn (`eos_ids` reads them from a generation config).
        max_context: tokens the model may see. A prompt that leaves no room for
            `max_new_tokens` is an error completion, never silently truncated.
        render_tools: pass the env's tool schemas to the chat template (`tools=`). False keeps
            prompts short for tiny models that know their tools from training; the system
            prompt then has to name them.
    """

    def __init__(self, processor: Any, eos_ids: list[int], max_context: int,
                 render_tools: bool = True):
        self.render_tools = render_tools
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.is_vision = getattr(processor, "image_processor", None) is not None
        self.max_context = max_context
        self.eos_ids = eos_ids
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.eos_ids[0]
        merge = getattr(getattr(processor, "image_processor", None), "merge_size", 2)
        self.patches_per_token = merge * merge  # image patches per image-pad token
        self.chat = ChatEncoder(processor)
        self.image_pad_id = self.chat.special_ids.get("<|image_pad|>")
        #: Ids that stand for an image's or video's features: a sampled one would make the next
        #: forward pass raise, so a turn ends before it (see `turn_end`).
        self.vision_slot_ids = {self.chat.special_ids[t] for t in ("<|image_pad|>",
                                "<|video_pad|>") if t in self.chat.special_ids}

    # ------------------------------------------------------------------------------ prompts

    def prompt(self, conversation: Conversation) -> TokenPrompt:
        """Render a conversation with the chat template (tools as `tools=`), ready to sample."""
        messages, tools = split_conversation(conversation)
        tools = tools if self.render_tools else None
        template = _template_text(self.processor)
        if tools and template is not None and "tools" not in template:
            raise ValueError("this model's chat template ignores tools=; use a tool-capable "
                             "template or make the env with tools_in_prompt=True")
        text, images = self.chat.render(messages, tools, add_generation_prompt=True)
        return TokenPrompt([], image_pad_id=self.image_pad_id).extend(
            *self.encode_text(text, images))

    def encode_text(self, text: str, images: Sequence[Any] = ()) -> tuple[list[int], dict]:
        """Ids (and vision inputs) of template text from `ChatEncoder.render`/`reply`; image
        pads are expanded as the processor does. Used for the env's part of a multi-turn token
        sequence."""
        return self.chat.encode(text, images if self.is_vision else ())

    def continue_prompt(self, prompt: TokenPrompt, completion: Completion,
                        new_messages: Sequence[dict], tools: Sequence[dict] | None = None
                        ) -> tuple[TokenPrompt, list[int]]:
        """`prompt` + the completion's own ids + the env's reply, ready for the next turn.

        The generated ids are kept as they are (never re-tokenized); only the env's part is
        rendered: the template's end of the assistant turn (unless the model emitted EOS
        itself), the new messages, and the next generation prompt. Returns the new prompt and
        the ids the env added."""
        last = completion.token_ids[-1:]
        ended = self.tokenizer.decode(last) if last and last[0] in self.eos_ids else None
        text, images = self.chat.reply(new_messages, tools if self.render_tools else None,
                                       ended_with=ended)
        ids, vision = self.encode_text(text, images)
        return prompt.extend(completion.token_ids).extend(ids, vision), ids

    # ------------------------------------------------------------------------------ sampling

    def sample(self, prompts: Sequence[TokenPrompt | Completion], n: int = 1,
               sampling: SamplingParams | None = None) -> list[list[Completion]]:
        raise NotImplementedError

    def generate(self, conversations: Sequence[Conversation], n: int = 1,
                 sampling: SamplingParams | None = None) -> list[list[Completion]]:
        """`Policy.generate`: render each conversation, then `sample`."""
        prompts: list[TokenPrompt | Completion] = []
        for conv in conversations:
            try:
                prompts.append(self.prompt(conv))
            except Exception as e:  # one bad conversation must not sink the batch
                prompts.append(Completion("", finish_reason="error",
                                          error=f"{type(e).__name__}: {e}"))
        return self.sample(prompts, n=n, sampling=sampling)

    def too_long(self, prompt: TokenPrompt, sampling: SamplingParams) -> Completion | None:
        """The error completion of a prompt that leaves no room for `max_new_tokens`."""
        if len(prompt) + sampling.max_new_tokens <= self.max_context:
            return None
        return Completion("", finish_reason="error", error=(
            f"prompt of {len(prompt)} tokens + max_new_tokens {sampling.max_new_tokens} "
            f"exceeds the model's context of {self.max_context}"))

    def turn_end(self, ids: Sequence[int], stop: Sequence[str]) -> tuple[int, str]:
        """How many of a sampled row's ids the turn keeps, and its finish reason.

        Cut where generation really stopped: after the first stop string, else after the first
        EOS (kept: the model chose it), else at max_new_tokens ("length"). A sampled image/video
        slot token (`<|image_pad|>`, `<|video_pad|>`) has no image behind it and would make
        every later forward pass over these ids raise: the turn ends just before it ("stop";
        the ids kept are exactly the sampled ones)."""
        ids = list(ids)
        slot = next((j for j, t in enumerate(ids) if t in self.vision_slot_ids), None)
        if slot is not None:  # an image slot without an image: end the turn before it
            ids = ids[:slot]
        eos = next((j for j, t in enumerate(ids) if t in self.eos_ids), None)
        searched = ids if eos is None else ids[:eos]
        end = _stop_end(self.tokenizer, searched, stop)
        if end is not None:
            return end, "stop"
        if eos is not None:
            return eos + 1, "stop"
        return len(ids), "length" if slot is None else "stop"


def eos_ids(generation_config: Any, tokenizer: Any) -> list[int]:
    """The ids that end a turn: the generation config's EOS ids, plus the tokenizer's."""
    ids = getattr(generation_config, "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _stop_end(tokenizer: Any, ids: list[int], stops: Sequence[str]) -> int | None:
    """Token count after which the earliest stop string is complete, or None."""
    if not stops or not ids:
        return None
    text = tokenizer.decode(ids, skip_special_tokens=False)
    hits = [text.find(s) + len(s) for s in stops if s in text]
    if not hits:
        return None
    target = min(hits)
    lo, hi = 1, len(ids)  # smallest prefix whose text reaches `target` characters
    while lo < hi:
        mid = (lo + hi) // 2
        if len(tokenizer.decode(ids[:mid], skip_special_tokens=False)) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _template_text(processor: Any) -> str | None:
    template = getattr(processor, "chat_template", None)
    if template is None:
        template = getattr(getattr(processor, "tokenizer", None), "chat_template", None)
    return template if isinstance(template, str) else None
