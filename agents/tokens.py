"""TokenPrompt: token ids and the images among them, the unit a token-level policy works on.

A rollout's whole sequence is one `TokenPrompt` grown turn by turn (`extend`), and a branch starts
from a cut of it (`prefix`), so the ids trained on are exactly the ids the model was fed. Image
inputs stay tensors; torch is imported only where images are joined, so code that merely passes
prompts around (the rollout loop) imports no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass
class TokenPrompt:
    """Token ids to feed the model, and the vision inputs of the images among them, in order:
    `pixel_values`/`image_grid_thw` for a transformers forward pass, and the `images`
    themselves (PIL) for an engine that preprocesses them on its own (vLLM)."""

    ids: list[int]
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    image_pad_id: int | None = field(default=None, repr=False)
    images: tuple[Any, ...] = field(default=(), repr=False)

    def image_pad_counts(self, patches_per_token: int = 4) -> list[int]:
        """How many pad ids each image spans in `ids` (its grid's patches / merge**2)."""
        if self.image_grid_thw is None:
            return []
        return (self.image_grid_thw.prod(-1) // patches_per_token).tolist()

    def __len__(self) -> int:
        return len(self.ids)

    def prefix(self, length: int, patches_per_token: int = 4) -> TokenPrompt:
        """The first `length` ids with the vision inputs of the images inside them."""
        if self.pixel_values is None or self.image_pad_id is None:
            return TokenPrompt(self.ids[:length], None, None, self.image_pad_id)
        pads = sum(1 for t in self.ids[:length] if t == self.image_pad_id)
        per_image = self.image_pad_counts(patches_per_token)
        images = 0
        while images < len(per_image) and sum(per_image[:images + 1]) <= pads:
            images += 1
        patches = int(self.image_grid_thw[:images].prod(-1).sum())
        return TokenPrompt(self.ids[:length], self.pixel_values[:patches] if images else None,
                           self.image_grid_thw[:images] if images else None, self.image_pad_id,
                           self.images[:images])

    def extend(self, ids: Sequence[int], vision: dict[str, torch.Tensor] | None = None
               ) -> TokenPrompt:
        """This prompt followed by `ids` (and the images `vision` holds for them)."""
        pv, grid, images = self.pixel_values, self.image_grid_thw, self.images
        if vision and vision.get("pixel_values") is not None:
            import torch  # only where there are images, i.e. tensors already

            pv = vision["pixel_values"] if pv is None else torch.cat([pv, vision["pixel_values"]])
            new_grid = vision["image_grid_thw"]
            grid = new_grid if grid is None else torch.cat([grid, new_grid])
            images = (*images, *vision.get("images", ()))
        return TokenPrompt([*self.ids, *ids], pv, grid, self.image_pad_id, images)
