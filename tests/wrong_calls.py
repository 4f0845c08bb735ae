"""A scripted token-level policy that makes AXPO trigger: every rollout's tool call is wrong,
and of each block of resamples (continuing the kept `<tool_call>`) the first call is right.

Subclasses set `CALL` (the call's JSON after `<tool_call>`, `%s` for the argument that varies),
`THINK`, `WRONG`, `RIGHT`, and `reply_to(tool_response)`, the answer after seeing the result.
Ids are scored by the model, so the confidences AXPO ranks by are real."""

from __future__ import annotations

from agents.hf import HFPolicy
from agents.policy import Completion


class WrongCallsThenRight(HFPolicy):
    CALL: str
    THINK: str
    WRONG: object
    RIGHT: object

    def reply_to(self, tool_response: str) -> str:
        raise NotImplementedError

    def _scored(self, prompt, text):
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        logprobs, entropies = self.score(prompt.extend(ids),
                                         range(len(prompt), len(prompt) + len(ids)), None)
        return Completion(text, ids, logprobs, entropies, list(prompt.ids))

    def sample(self, prompts, n=1, sampling=None):
        out = []
        for p in prompts:
            seen = self.tokenizer.decode(p.ids)
            if "<tool_response>" not in seen:
                text = f"<think>{self.THINK}</think>\n<tool_call>" + self.CALL % (self.WRONG,)
            else:
                text = f"<answer>{self.reply_to(seen.rsplit('<tool_response>', 1)[1])}</answer>"
            out.append([self._scored(p, text)] * n)
        return out

    def sample_shared(self, prompt, n, sampling=None):
        return [self._scored(prompt, self.CALL % (self.RIGHT if i == 0 else self.WRONG,))
                for i in range(n)]
