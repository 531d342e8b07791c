"""Prompts encoded once per render, so the 11 GB umT5 text encoder can leave the GPU before the first shot.

render() hands the generator the prompts of every shot it is about to make
(:meth:`storyreel.generate.Generator.prepare_prompts`). :class:`PromptEmbeddings` encodes each distinct
text once, with the pipeline's own ``encode_prompt`` (the same tokenizer padding, truncation and
zeroed tail as when the pipeline encodes it itself, one text at a time, so the embeddings are the
same to the bit), keeps the embeddings on the CPU (4 MB each at umT5-XXL's size), and moves the text
encoder to the CPU. Each pipeline call then gets ``prompt_embeds`` and ``negative_prompt_embeds``.

A text that was not handed over in advance (a direct ``generate`` call, a cache entry that turned
out unusable) is encoded when needed: the encoder comes back to the device for it and leaves again,
so every embedding is computed on the same device in the same precision.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class PromptEmbeddings:
    """Text embeddings by text, and where the text encoder is kept between uses."""

    def __init__(self, pipeline: Any, device: torch.device, max_tokens: int, park: bool):
        self.pipeline = pipeline  # any of the loaded pipelines: they share the tokenizer and text encoder
        self.device = device
        self.max_tokens = max_tokens
        self.park = park  # move the text encoder to the CPU between uses (False: the CPU, or offloading)
        self.embeddings: dict[str, torch.Tensor] = {}  # text -> (1, max_tokens, text dim) on the CPU
        self.parked = False

    def encode(self, texts: Iterable[str]) -> int:
        """Encode every text not encoded yet, then park the text encoder. Returns how many were encoded."""
        missing = list(dict.fromkeys(text for text in texts if text not in self.embeddings))
        if missing:
            self._unpark()
            for text in missing:
                self.embeddings[text] = self._encode_one(text)
        self._park()
        return len(missing)

    def on_device(self, text: str) -> torch.Tensor:
        """``text``'s embedding on the device, encoding it first if it was not handed over in advance."""
        if text not in self.embeddings:
            self.encode([text])
        return self.embeddings[text].to(self.device)

    def _encode_one(self, text: str) -> torch.Tensor:
        import torch

        with torch.no_grad():
            embeds, _ = self.pipeline.encode_prompt(
                prompt=text,
                do_classifier_free_guidance=False,
                num_videos_per_prompt=1,
                max_sequence_length=self.max_tokens,
                device=self.device,
            )
        return embeds.to("cpu")

    def _park(self) -> None:
        if self.park and not self.parked:
            self.pipeline.text_encoder.to("cpu")
            self.parked = True
            if self.device.type == "cuda":
                import torch

                torch.cuda.empty_cache()

    def _unpark(self) -> None:
        if self.parked:
            self.pipeline.text_encoder.to(self.device)
            self.parked = False

    def stop_parking(self) -> None:
        """Offloading's hooks place the text encoder from now on (they start from weights on the CPU)."""
        self.park = self.parked = False
