"""VLLMPolicy: rollouts sampled by vLLM, for evaluation and for training (`use_vllm=True`).

    policy = VLLMPolicy.from_pretrained("Qwen/Qwen3-VL-2B-Thinking")        # engine in-process
    policy = VLLMPolicy.from_server("http://gpu-box:8000", "Qwen/...")      # agents.vllm_server
    trajectories = rollout("AXPO-MathVista-v0", policy, ["8", "11"], group_size=4)

It is a `TokenPolicy` like `HFPolicy`, with the same prompts (`ChatTokenPolicy`), so `rollout`,
`branch_many`, AXPO's `explore`, eval and the viewer use it unchanged: a trajectory records the
ids the model was fed (checked against what vLLM fed it), the ids it sampled, their logprobs
under the distribution sampled from, and the images. A branch's K continuations of one kept
prefix go to vLLM together and pay only their suffix (automatic prefix caching).

A failure of one prompt (too long, an image vLLM expands differently) is an error completion;
a failure of the engine itself (server down, wrong answer) raises `EngineError`, so training
stops at the step, with its last checkpoint intact.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.chat_policy import ChatTokenPolicy, eos_ids
from agents.policy import Completion, SamplingParams
from agents.tokens import TokenPrompt
from agents.vllm_engine import EngineError, EngineSettings, LocalEngine, RemoteEngine

__all__ = ["EngineError", "EngineSettings", "VLLMPolicy"]


class VLLMPolicy(ChatTokenPolicy):
    """A token policy whose samples come from a vLLM engine (`LocalEngine` or `RemoteEngine`).

    Args:
        engine: the engine; its model must be the one `processor` belongs to.
        processor: the model's processor (VL) or tokenizer (text), as
            `agents.pretrained.load_processor` loads it.
        generation_config: the model's (for its EOS ids); None: the tokenizer's EOS only.
        render_tools: as `HFPolicy`.
    """

    def __init__(self, engine: Any, processor: Any, generation_config: Any = None,
                 render_tools: bool = True):
        tokenizer = getattr(processor, "tokenizer", processor)
        super().__init__(processor, eos_ids(generation_config, tokenizer),
                         engine.max_model_len, render_tools)
        self.engine = engine

    @classmethod
    def from_pretrained(cls, path: str | Path, settings: EngineSettings | None = None,
                        render_tools: bool | None = None) -> VLLMPolicy:
        """An engine in this process on the checkpoint dir (or hub name) `path`;
        `render_tools` None: as the checkpoint records, as `HFPolicy.from_pretrained`."""
        from agents.pretrained import load_generation_config, load_processor, recorded_render_tools

        engine = LocalEngine(path, settings or EngineSettings())
        tools = recorded_render_tools(path) if render_tools is None else render_tools
        return cls(engine, load_processor(path), load_generation_config(path), tools)

    @classmethod
    def from_server(cls, base_url: str, path: str | Path, timeout_s: float = 600.0,
                    render_tools: bool | None = None) -> VLLMPolicy:
        """A running `python -m agents.vllm_server` at `base_url`; `path` is the same model's
        checkpoint (for its processor, EOS ids and recorded prompt settings)."""
        from agents.pretrained import load_generation_config, load_processor, recorded_render_tools

        engine = RemoteEngine(base_url, timeout_s)
        tools = recorded_render_tools(path) if render_tools is None else render_tools
        return cls(engine, load_processor(path), load_generation_config(path), tools)

    # ------------------------------------------------------------------------------ sampling

    def sample(self, prompts: Sequence[TokenPrompt | Completion], n: int = 1,
               sampling: SamplingParams | None = None) -> list[list[Completion]]:
        """`n` completions per prompt, all in one engine call (vLLM batches them). Raises
        `EngineError` when the engine fails as a whole."""
        sampling = sampling or SamplingParams()
        out: list[list[Completion]] = [[] for _ in prompts]
        requests, owners = [], []
        for i, p in enumerate(prompts):
            if isinstance(p, Completion):
                out[i] = [p] * n
            elif (error := self.too_long(p, sampling)) is not None:
                out[i] = [error] * n
            else:
                try:
                    request = self.request(p)
                except ValueError as e:
                    out[i] = [Completion("", finish_reason="error", error=str(e))] * n
                    continue
                seed = None if sampling.seed is None else sampling.seed * 1_000_003 + 7919 * i
                requests.append({**request, "n": n, "seed": seed})
                owners.append(i)
        if requests:
            results = self.engine.generate(requests, self._wire(sampling))
            for i, samples in zip(owners, results):
                out[i] = [self._completion(prompts[i], s, sampling) for s in samples]
        return out

    def sample_shared(self, prompt: TokenPrompt, n: int, sampling: SamplingParams | None = None
                      ) -> list[Completion]:
        """`n` completions of one prompt: vLLM prefills it once and the others hit its prefix
        cache."""
        return self.sample([prompt], n=n, sampling=sampling)[0]

    def request(self, prompt: TokenPrompt) -> dict[str, Any]:
        """The engine's view of a prompt: each image's run of pad ids folded to one pad (vLLM
        expands it again from the image), and the images."""
        counts = prompt.image_pad_counts(self.patches_per_token)
        if not counts:
            return {"ids": list(prompt.ids), "images": []}
        if len(prompt.images) != len(counts):
            raise ValueError(f"the prompt has {len(counts)} image(s) but holds "
                             f"{len(prompt.images)} (TokenPrompt.images): vLLM needs the images")
        ids, k, j = [], 0, 0
        while j < len(prompt.ids):
            t = prompt.ids[j]
            if t == self.image_pad_id:
                run = counts[k] if k < len(counts) else 0
                if run == 0 or prompt.ids[j:j + run] != [t] * run:
                    raise ValueError("the prompt's image pad ids do not match its images")
                ids.append(t)
                j, k = j + run, k + 1
            else:
                ids.append(t)
                j += 1
        return {"ids": ids, "images": list(prompt.images)}

    def _wire(self, sampling: SamplingParams) -> dict[str, Any]:
        return {"max_new_tokens": sampling.max_new_tokens, "temperature": sampling.temperature,
                "top_p": sampling.top_p, "top_k": sampling.top_k, "stop": list(sampling.stop),
                "stop_token_ids": list(self.eos_ids)}

    def _completion(self, prompt: TokenPrompt, sample: dict[str, Any],
                    sampling: SamplingParams) -> Completion:
        fed = sample["prompt_token_ids"]
        if fed and fed != prompt.ids:
            return Completion("", finish_reason="error", error=(
                f"vLLM fed the model {len(fed)} prompt ids where the processor made "
                f"{len(prompt.ids)}: its image preprocessing differs from this processor's"))
        ids = list(sample["token_ids"])
        end, reason = self.turn_end(ids, sampling.stop)
        if end == len(ids) and reason == "length" and sample["finish_reason"] == "stop":
            reason = "stop"  # vLLM stopped on an id we do not know as EOS (its own config's)
        ids = ids[:end]
        return Completion(text=self.tokenizer.decode(ids, skip_special_tokens=False),
                          token_ids=ids, logprobs=[float(x) for x in sample["logprobs"][:end]],
                          entropies=[float(x) for x in sample["entropies"][:end]],
                          prompt_token_ids=list(prompt.ids), finish_reason=reason)

    # ------------------------------------------------------------------------------ training

    def update_weights(self, model: Any) -> None:
        """Load a transformers model's current weights into the engine (after an optimizer
        step); its prefix cache is dropped."""
        self.engine.update_weights(model.state_dict().items())

    def close(self) -> None:
        self.engine.close()
