"""Prompts encoded once per render, so the 11 GB umT5 text encoder is on the GPU only while it encodes.

render() hands the generator the prompts of every shot it is about to make
(:meth:`storyreel.generate.Generator.prepare_prompts`). :class:`PromptEmbeddings` encodes each distinct
text once, with the pipeline's own ``encode_prompt`` (the same tokenizer padding, truncation and
zeroed tail as when the pipeline encodes it itself, one text at a time, so the embeddings are the
same to the bit), and keeps the embeddings on the CPU (4 MB each at umT5-XXL's size). Each pipeline
call then gets ``prompt_embeds`` and ``negative_prompt_embeds``.

On an accelerator the text encoder stays on the CPU from loading on (the generator places every other
weight) and comes to the device only to encode:

* whole, when it fits beside what the device already holds: it is moved there, encodes the texts and
  goes back to the CPU;
* streamed, when it does not (umT5-XXL's 11.4 GB in bf16 next to DF-14B's 28 GB on a 40 GB GPU, or on
  its own on an 8 GB one): its layers come to the device one at a time while it encodes, each
  prefetched on a CUDA stream while the one before computes (diffusers' group offloading), and leave
  after. A text then costs one copy of the weights over the bus (11.4 GB for umT5-XXL), and the device
  never holds more than a few layers of it.

A text that was not handed over in advance (a direct ``generate`` call, a cache entry that turned
out unusable) is encoded when needed, the same way, so every embedding is computed on the same
device in the same precision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

GIB = 2**30
# Room kept free beyond the weights when the text encoder comes to the device whole: its activations for one
# 512-token text are tens of MB; the rest is slack for the allocator's rounding and fragmentation.
ENCODE_HEADROOM = GIB


def device_room(device: torch.device) -> int | None:
    """Bytes this process can still allocate on ``device``: what the driver has free plus what torch holds
    unused, within a per-process limit (``torch.cuda.set_per_process_memory_fraction``). None where torch
    cannot tell (devices other than CUDA)."""
    import torch

    if device.type != "cuda":
        return None
    index = torch.cuda.current_device() if device.index is None else device.index  # "cuda": the current one
    free, total = torch.cuda.mem_get_info(index)
    allocated = torch.cuda.memory_allocated(index)
    unused_cache = torch.cuda.memory_reserved(index) - allocated
    limit = getattr(torch.cuda, "get_per_process_memory_fraction", lambda _index: 1.0)(index)
    return int(min(free + unused_cache, limit * total - allocated))


def weight_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


class PromptEmbeddings:
    """Text embeddings by text, and where the text encoder is kept between uses."""

    def __init__(
        self,
        pipeline: Any,
        device: torch.device,
        max_tokens: int,
        park: bool,
        room: Callable[[torch.device], int | None] | None = None,
    ):
        self.pipeline = pipeline  # any of the loaded pipelines: they share the tokenizer and text encoder
        self.device = device
        self.max_tokens = max_tokens
        # Keep the text encoder on the CPU between uses (False: the model runs on the CPU, or offloading hooks
        # place it). It starts there: the generator leaves it on the CPU when it places the other weights.
        self.park = park
        self.parked = park
        self.room = room or device_room  # bytes free on the device (None: unknown)
        self.streamed = False  # its layers pass through the device while it encodes (the module's docstring)
        self.placement = "cpu" if device.type == "cpu" else "offloading hooks" if not park else "not used yet"
        self.embeddings: dict[str, torch.Tensor] = {}  # text -> (1, max_tokens, text dim) on the CPU

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
        if self.park and not self.parked and not self.streamed:
            self.pipeline.text_encoder.to("cpu")
            self.parked = True
            if self.device.type == "cuda":
                import torch

                torch.cuda.empty_cache()

    def _unpark(self) -> None:
        if not self.parked:
            return
        encoder = self.pipeline.text_encoder
        need, room = weight_bytes(encoder) + ENCODE_HEADROOM, self.room(self.device)
        if room is None or need <= room:
            encoder.to(self.device)
            self.parked = False
            self.placement = f"on {self.device.type} while encoding, on the CPU between"
            return
        self._stream(encoder)
        self.park = self.parked = False
        self.streamed = True
        self.placement = (
            f"streamed through {self.device.type} layer by layer while encoding: {need / GIB:.1f} GiB did not fit "
            f"in the {room / GIB:.1f} GiB free"
        )

    def _stream(self, encoder: torch.nn.Module) -> None:
        import torch
        from diffusers.hooks import apply_group_offloading

        apply_group_offloading(
            encoder,
            onload_device=self.device,
            offload_device=torch.device("cpu"),
            offload_type="leaf_level",
            use_stream=self.device.type == "cuda",  # prefetch the next layer while one computes
        )

    def stop_parking(self) -> None:
        """Offloading's hooks place the text encoder from now on (they start from weights on the CPU); one
        streamed already keeps its own."""
        self.park = self.parked = False
        if not self.streamed:
            self.placement = "offloading hooks"
