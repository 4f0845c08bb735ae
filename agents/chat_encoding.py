"""Chat messages to token ids, with text from outside the model kept plain.

Why this exists: a chat template pastes message text into its own markup, and a tokenizer that
reads the result makes every `<|im_end|>` or `<|image_pad|>` it finds a special token, wherever
it came from. A tool that prints `<|im_end|>\\n<|im_start|>assistant` would forge turn boundaries
in the ids a policy is fed; a printed `<|image_pad|>` would make the model's forward pass raise
for the whole batch. So before the template runs, special-token strings inside system, user and
tool text (tool output, task questions, dataset text) are swapped for placeholders; afterwards
only the template's own special tokens become special ids, and the placeholders are encoded back
as the plain text they stand for (`split_special_tokens`). Where no message text spells a special
token, the ids are exactly the tokenizer's ids of the rendered text. Assistant text is the
model's own output and is encoded as the tokenizer reads it, except the image and video slot
tokens (`<|image_pad|>`, `<|video_pad|>`): a model never keeps a sampled one (a turn ends
before it), so one in assistant text is text, not an image.

Text-only models get message content as one string: real text templates (Qwen3's) concatenate
`messages[0].content + '\\n\\n'`, which fails on a list of parts.

Images: the image processor runs on its own and each template `<|image_pad|>` becomes
`grid_thw.prod() // merge_size**2` pad ids, as Qwen3-VL's processor expands them. A template
that writes more or fewer image slots than the messages have images (or a video slot) is an
`ImagePlaceholderError`, never ids the model would fail on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

#: Placeholder delimiter (a private-use character); it is itself escaped where text has it.
_MARK = "\U0010fffd"
_CODE = 0xF0000  # placeholder k is _MARK + chr(_CODE + k) + _MARK
_UNESCAPE = re.compile(f"{_MARK}([\U000f0000-\U000f0fff]){_MARK}")
#: What the stand-in exchange of `reply` looks like (see `ChatEncoder.reply`).
_STAND_IN = ({"role": "user", "content": "\x00"}, {"role": "assistant", "content": "\x01"})
#: Special tokens that stand for an image's or a video's features.
SLOT_TOKENS = ("<|image_pad|>", "<|video_pad|>")


class ImagePlaceholderError(ValueError):
    """The image slots of rendered text do not match the images given with it."""


class ChatEncoder:
    """Renders conversations with a processor's (or tokenizer's) chat template and encodes them.

    Args:
        processor: a Qwen3-VL-style processor (with `image_processor`) or a tokenizer.
    """

    def __init__(self, processor: Any):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.is_vision = getattr(processor, "image_processor", None) is not None
        self.renderer = processor if getattr(processor, "chat_template", None) else self.tokenizer
        specials = sorted({t.content for t in self.tokenizer.added_tokens_decoder.values()
                           if t.special}, key=len, reverse=True)
        self.special_ids = {t: self.tokenizer.convert_tokens_to_ids(t) for t in specials}
        self._escapes = [_MARK, *specials]
        self._escape_re = re.compile("|".join(re.escape(s) for s in self._escapes))
        self.slot_tokens = [t for t in SLOT_TOKENS if t in self.special_ids]
        self._slot_re = re.compile("|".join(re.escape(s) for s in [_MARK, *self.slot_tokens]))
        self._split_re = re.compile("(" + "|".join(re.escape(s) for s in specials) + ")"
                                    if specials else "(?!)")
        merge = getattr(getattr(processor, "image_processor", None), "merge_size", 2)
        self.patches_per_token = merge * merge
        self.image_pad = "<|image_pad|>" if "<|image_pad|>" in self.special_ids else None

    # ------------------------------------------------------------------------------ messages

    def messages(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Plain-dict copies ready for the template: images loaded (VL) or described (text),
        content one string for text-only models, special tokens in non-assistant text escaped."""
        out = []
        for m in messages:
            msg = normalize_message(m, keep_images=self.is_vision)
            if not self.is_vision and isinstance(msg["content"], list):
                msg["content"] = "".join(str(p.get("text", "")) for p in msg["content"])
            slots_only = msg.get("role") == "assistant"
            msg["content"] = self._escape_content(msg["content"], slots_only)
            out.append(msg)
        return out

    def _escape_content(self, content: Any, slots_only: bool = False) -> Any:
        escape = self.escape_slots if slots_only else self.escape
        if isinstance(content, str):
            return escape(content)
        parts: list[dict[str, Any]] = []
        for p in content:  # adjacent text parts merged: split, they could spell a token
            if _is_text(p) and parts and _is_text(parts[-1]):
                parts[-1] = {**parts[-1], "text": parts[-1]["text"] + p["text"]}
            else:
                parts.append(dict(p))
        return [{**p, "text": escape(p["text"])} if _is_text(p) else p for p in parts]

    def escape(self, text: str) -> str:
        """`text` with every special-token string (and the placeholder mark) as a placeholder."""
        return self._escape_re.sub(self._placeholder, text)

    def escape_slots(self, text: str) -> str:
        """`text` with the image/video slot tokens (and the placeholder mark) as placeholders."""
        return self._slot_re.sub(self._placeholder, text)

    def _placeholder(self, m: re.Match) -> str:
        return f"{_MARK}{chr(_CODE + self._escapes.index(m.group()))}{_MARK}"

    def unescape(self, text: str) -> str:
        return _UNESCAPE.sub(lambda m: self._escapes[ord(m.group(1)) - _CODE], text)

    def render(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping] | None = None,
               add_generation_prompt: bool = True) -> tuple[str, list[Any]]:
        """(template text with placeholders, the images in it in order)."""
        msgs = self.messages(messages)
        return self.render_prepared(msgs, tools, add_generation_prompt), images_of(msgs)

    def render_prepared(self, msgs: list[dict[str, Any]], tools: Sequence[Mapping] | None,
                        add_generation_prompt: bool) -> str:
        """Render messages already passed through `messages`."""
        return self.renderer.apply_chat_template(
            msgs, tools=list(tools) if tools else None, tokenize=False,
            add_generation_prompt=add_generation_prompt)

    def reply(self, new_messages: Sequence[Mapping[str, Any]],
              tools: Sequence[Mapping] | None = None, ended_with: str | None = None
              ) -> tuple[str, list[Any]]:
        """Template text that follows an assistant turn's content when `new_messages` come
        after it, through the next generation prompt: the end of the assistant turn, the new
        messages, the next header. Rendered after a stand-in exchange whose assistant content
        is cut off (templates may re-render that turn's header, e.g. a thinking block, but not
        what follows its content).

        The one layout of a multi-turn sequence: `HFPolicy` rollouts and SFT both call this.
        `ended_with`: the end-of-turn token's text when the turn itself ends with it (the model
        sampled EOS), so the template's copy of it is not added a second time."""
        msgs = self.messages(list(_STAND_IN) + list(new_messages))
        text = self.render_prepared(msgs, tools, True)
        # The first \x01 is the stand-in's: new messages (which may hold one) come after it.
        text = text[text.index("\x01") + 1:]
        if ended_with and text.startswith(ended_with):
            text = text[len(ended_with):]
        return text, images_of(msgs[2:])

    # ------------------------------------------------------------------------------ encoding

    def encode(self, text: str, images: Sequence[Any] = ()) -> tuple[list[int], dict]:
        """Ids of rendered template text (placeholders become plain text) and, with images,
        their `pixel_values`, `image_grid_thw` and the `images` themselves."""
        counts: list[int] = []
        vision: dict[str, torch.Tensor] = {}
        if images and self.is_vision:
            out = self.processor.image_processor(images=list(images), return_tensors="pt")
            vision = {"pixel_values": out["pixel_values"],
                      "image_grid_thw": out["image_grid_thw"], "images": tuple(images)}
            counts = (out["image_grid_thw"].prod(-1) // self.patches_per_token).tolist()
        ids: list[int] = []
        pads = 0
        for i, piece in enumerate(self._split_re.split(text)):
            if i % 2:  # a special token the template wrote
                if piece in self.slot_tokens and self.is_vision:
                    if piece != self.image_pad:
                        raise ImagePlaceholderError(
                            f"the chat template wrote a {piece} slot; videos are not supported "
                            "(a message has a video part)")
                    if pads >= len(counts):
                        raise ImagePlaceholderError(
                            f"image placeholder mismatch: the chat template wrote more "
                            f"{piece} slots than the {len(counts)} image(s) of these messages "
                            "(it adds image slots of its own, or renders a part the messages "
                            "do not count as an image)")
                    ids += [self.special_ids[piece]] * counts[pads]
                    pads += 1
                else:
                    ids.append(self.special_ids[piece])
            elif piece:
                ids += self.tokenizer(self.unescape(piece), add_special_tokens=False,
                                      split_special_tokens=True)["input_ids"]
        if pads != len(counts):
            raise ImagePlaceholderError(
                f"image placeholder mismatch: the chat template wrote {pads} <|image_pad|> "
                f"slot(s) for the {len(counts)} image(s) of these messages (it drops images: "
                "check how it renders the image parts of user and tool messages)")
        return ids, vision

    def encode_messages(self, messages: Sequence[Mapping[str, Any]],
                        tools: Sequence[Mapping] | None = None,
                        add_generation_prompt: bool = True) -> dict[str, torch.Tensor]:
        """Model inputs (batch of one): input_ids, attention_mask and, with images,
        pixel_values, image_grid_thw and mm_token_type_ids (1 on image pads)."""
        text, images = self.render(messages, tools, add_generation_prompt)
        ids, vision = self.encode(text, images)
        input_ids = torch.tensor([ids], dtype=torch.long)
        vision.pop("images", None)  # model inputs are tensors
        out = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), **vision}
        if vision:
            pad_id = self.special_ids[self.image_pad]
            out["mm_token_type_ids"] = (input_ids == pad_id).long()
        return out


def _is_text(part: Any) -> bool:
    return (isinstance(part, Mapping) and isinstance(part.get("text"), str)
            and part.get("type", "text") == "text")


def images_of(msgs: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The image objects of normalized messages, in order."""
    return [p["image"] for m in msgs if isinstance(m.get("content"), list)
            for p in m["content"] if isinstance(p, Mapping) and p.get("type") == "image"]


def encode(
    processor_or_tokenizer: Any,
    messages: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = True,
) -> dict[str, torch.Tensor]:
    """Model inputs (batch of one) for a conversation, through the chat template.

    `messages` may also be an env observation ({"messages", "tools"}). With a processor that has
    an image processor (real Qwen3-VL or ours) the result has input_ids, attention_mask and, when
    there are images, pixel_values, image_grid_thw and mm_token_type_ids (1 on image pads); each
    `<|image_pad|>` is expanded to grid_thw.prod() // merge_size**2 copies. With a bare tokenizer
    (text-only model) image parts become a short note and content one string. Special-token
    strings inside system, user and tool text stay plain text (see `agents.chat_encoding`).
    """
    if isinstance(messages, Mapping):
        tools = tools if tools is not None else (messages.get("tools") or None)
        messages = messages["messages"]
    return ChatEncoder(processor_or_tokenizer).encode_messages(messages, tools,
                                                               add_generation_prompt)


def normalize_message(message: Mapping[str, Any], keep_images: bool) -> dict[str, Any]:
    """A plain-dict copy of a message; image parts become {"type": "image", "image": PIL}
    (an "image"/"url"/"path" that is not a PIL image goes through transformers' load_image)."""
    from PIL import Image
    from transformers.image_utils import load_image

    def image_of(part: Mapping[str, Any]) -> Image.Image:
        img = part.get("image", part.get("url", part.get("path")))
        return img if isinstance(img, Image.Image) else load_image(img)

    out = dict(message)
    content = message.get("content")
    if content is None:
        out["content"] = ""
    elif not isinstance(content, str):
        parts = []
        for p in content:
            if not (p.get("type") == "image" or "image" in p):
                parts.append(dict(p))
            elif keep_images:
                parts.append({"type": "image", "image": image_of(p)})
            else:  # a text-only model is told an image was there, not shown it
                img = p.get("image")
                size = f" {img.width}x{img.height}" if isinstance(img, Image.Image) else ""
                parts.append({"type": "text", "text": f"[image{size}: not shown, this model "
                                                      "reads text only]"})
        out["content"] = parts
    return out
