"""The diffusion-forcing frame arithmetic: every count that follows from a shot's frames and settings.

SkyReels-V2 generates on the Wan VAE's grid: time is compressed by 4 with the first frame encoded on
its own, space by 8 and then patched 2x2, so a transformer token covers 16x16 pixels of one latent
frame. The rest follows from that grid and from how diffusion forcing walks a long shot in windows:

* ``latent = (pixel - 1) // 4 + 1``; a fresh or image shot is ``4k + 1`` frames.
* A continuing shot is generated as ``overlap_history + new`` frames whose first
  ``overlap_history`` are its parent's tail, so its ``new`` frames are a multiple of 4.
* With ``L`` latent frames, ``B`` per window and ``O`` of overlap, there are
  ``1 + (L - B - 1) // (B - O) + 1`` windows (one when ``L <= B``); window ``i`` holds
  ``min(L - i * (B - O), B)`` latent frames and, after the first, starts from ``O`` clean ones. The
  first starts from none (text-to-video), one (the image) or ``O`` (a continuing shot's parent tail).
* Every window and prefix must be a whole number of causal blocks, or the model leaves frames as
  noise (or drops the prefix).
* A window costs one transformer pass per row of its timestep matrix, two with classifier-free
  guidance.

The plan, the generators' checks and the out-of-memory fallback all ask this module; none of them
works these numbers out on its own. docs/frames.md explains them for users.

>>> [w.latent_frames for w in window_schedule(latent_frames=60, base_latent=25, overlap_latent=5,
...     first_prefix=0, steps=30, ar_step=0, causal_block_size=1)]
[25, 25, 20]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["fresh", "image", "continue"]
VAE_TEMPORAL_STRIDE = 4  # pixel frames per latent frame, after the first
# Pixels per token side (the VAE's 8x, then 2x2 patches); a film's sides are multiples of it.
SPATIAL_MULTIPLE = 16
END_IMAGE_LATENT_FRAMES = 1  # an end image is one picture, encoded alone: one latent frame
TEXT_TOKENS = 512  # umT5's window, which cross-attention reads on every pass


class Window(BaseModel):
    """One diffusion-forcing window: the latent frames it denoises together."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latent_frames: int = Field(description="latent frames in the window, prefix included")
    prefix_latent_frames: int = Field(description="clean latent frames it is conditioned on")
    denoise_steps: int = Field(
        description="rows of the per-frame timestep matrix: transformer calls without CFG"
    )


class WindowSettings(Protocol):
    """The generation settings the window schedule depends on (a plan's GenerationSettings has them)."""

    @property
    def base_num_frames(self) -> int: ...
    @property
    def overlap_history(self) -> int: ...
    @property
    def steps(self) -> int: ...
    @property
    def ar_step(self) -> int: ...
    @property
    def causal_block_size(self) -> int: ...
    @property
    def guidance_scale(self) -> float: ...


# --- the frame grid --------------------------------------------------------------------------------------------


def latent_count(pixel_frames: int) -> int:
    """Latent frames the VAE makes of ``pixel_frames`` frames.

    >>> latent_count(97), latent_count(17), latent_count(1)
    (25, 5, 1)
    """
    return (pixel_frames - 1) // VAE_TEMPORAL_STRIDE + 1


def pixel_count(latent_frames: int) -> int:
    """Pixel frames the VAE decodes from ``latent_frames`` latent frames: always ``4k + 1``."""
    return VAE_TEMPORAL_STRIDE * (latent_frames - 1) + 1


def is_four_k_plus_one(frames: int) -> bool:
    """Whether the VAE encodes ``frames`` frames without dropping any."""
    return frames >= 1 and (frames - 1) % VAE_TEMPORAL_STRIDE == 0


def not_four_k_plus_one(frames: int) -> str:
    """What is wrong with a frame count that is not ``4k + 1``, in the words every check uses."""
    return f"{frames} is not of the form 4k+1 (the video VAE encodes 1 + {VAE_TEMPORAL_STRIDE}k frames)"


def four_k_plus_one_around(frames: int) -> tuple[int, int]:
    """The ``4k + 1`` counts on either side of ``frames`` (the fix to suggest for a count that is not one).

    >>> four_k_plus_one_around(96)
    (93, 97)
    """
    lower = pixel_count(latent_count(frames))
    return lower, lower + VAE_TEMPORAL_STRIDE


def four_k_plus_one_at_most(frames: int) -> int | None:
    """The largest ``4k + 1`` count that is at most ``frames`` (None below 1)."""
    return pixel_count(latent_count(frames)) if frames >= 1 else None


def nearest_side(pixels: int) -> int:
    """The side length on the token grid (a multiple of :data:`SPATIAL_MULTIPLE`) nearest to ``pixels``."""
    return round(pixels / SPATIAL_MULTIPLE) * SPATIAL_MULTIPLE


def generated_frames(mode: Mode, frames: int, overlap_history: int) -> int:
    """Pixel frames the model generates for a shot of ``frames`` own frames: a continuing shot's include the
    ``overlap_history`` frames of its parent it starts from."""
    return frames + (overlap_history if mode == "continue" else 0)


def frames_for_duration(seconds: float, fps: int) -> int:
    """The frames a duration asks for at ``fps`` (at least one), before they are snapped."""
    return max(1, round(seconds * fps))


def snap_frames(requested: int, mode: Mode, causal_block_size: int, at_most: int | None = None) -> int:
    """The valid frame count nearest to ``requested``; a tie goes to the longer, so rounding never cuts a shot short,
    unless the longer is past ``at_most`` (a shot's longest allowed length).

    A fresh or image shot has ``4(L - 1) + 1`` frames with ``L`` a multiple of the causal block size
    (at least 2 latent frames); a continuing shot has ``4K`` new frames with ``K`` a multiple of it.
    With windows and overlap of whole blocks, every window of such a shot is whole blocks.

    >>> snap_frames(96, "fresh", 1), snap_frames(84, "continue", 1), snap_frames(84, "continue", 5)
    (97, 84, 80)
    >>> snap_frames(1457, "fresh", 3), snap_frames(1457, "fresh", 3, at_most=1457)
    (1461, 1449)
    """
    block = causal_block_size
    if mode == "continue":
        low = max(block, requested // VAE_TEMPORAL_STRIDE // block * block)
        return VAE_TEMPORAL_STRIDE * _nearest_by(
            [low, low + block], lambda k: VAE_TEMPORAL_STRIDE * k, requested, at_most
        )
    minimum = block * math.ceil(2 / block)
    target_latent = (requested - 1) / VAE_TEMPORAL_STRIDE + 1
    low = max(minimum, math.floor(target_latent / block) * block)
    return pixel_count(_nearest_by([low, low + block], pixel_count, requested, at_most))


def _nearest_by(
    candidates: list[int], frames_of: Callable[[int], int], requested: int, at_most: int | None = None
) -> int:
    fitting = [c for c in candidates if at_most is None or frames_of(c) <= at_most] or candidates[:1]
    return min(fitting, key=lambda c: (abs(frames_of(c) - requested), -c))


def shortest_duration(footage: int, mode: Mode, fps: int, settings: WindowSettings) -> float:
    """The shortest duration, in hundredths of a second, that gives a shot at least ``footage`` frames of
    footage once snapped (its own frames, and a continuing shot's conditioning frames before them).

    >>> from types import SimpleNamespace
    >>> shortest_duration(37, "fresh", 30, SimpleNamespace(overlap_history=37, causal_block_size=1))
    1.23
    """
    prefix = generated_frames(mode, 0, settings.overlap_history)
    seconds = math.floor(max(1, footage - prefix) / fps * 100) / 100

    def snapped_footage(seconds: float) -> int:
        frames = snap_frames(frames_for_duration(seconds, fps), mode, settings.causal_block_size)
        return generated_frames(mode, frames, settings.overlap_history)

    while snapped_footage(seconds) < footage:
        seconds = round(seconds + 0.01, 2)
    return seconds


# --- windows ---------------------------------------------------------------------------------------------------


def whole_blocks(pixel_frames: int, causal_block_size: int) -> bool:
    """Whether ``pixel_frames`` frames are a whole number of causal blocks of latent frames."""
    return latent_count(pixel_frames) % causal_block_size == 0


@dataclass(frozen=True)
class SettingFault:
    """One way base_num_frames, overlap_history and causal_block_size do not work together."""

    setting: str  # the setting at fault
    message: str
    change: tuple[str, ...]  # the settings a fix may change


def window_setting_faults(
    base_num_frames: int, overlap_history: int, causal_block_size: int
) -> list[SettingFault]:
    """Every way a window length, an overlap and a causal block size do not work together: both lengths must be
    ``4k + 1``, the overlap shorter than the window, and both whole causal blocks (so that snapped shots are
    whole blocks).

    >>> [fault.message for fault in window_setting_faults(97, 21, 5)]
    ['overlap_history 21 is 6 latent frames, not a multiple of causal_block_size 5']
    """
    base, overlap, block = base_num_frames, overlap_history, causal_block_size
    faults = [
        SettingFault(key, f"{key} {not_four_k_plus_one(value)}", (key,))
        for key, value in (("base_num_frames", base), ("overlap_history", overlap))
        if not is_four_k_plus_one(value)
    ]
    if overlap >= base:
        message = f"overlap_history {overlap} must be smaller than base_num_frames {base}"
        faults.append(SettingFault("overlap_history", message, ("overlap_history", "base_num_frames")))
    for key, value in (("base_num_frames", base), ("overlap_history", overlap)):
        if not whole_blocks(value, block):
            message = f"{key} {value} is {latent_count(value)} latent frames, not a multiple of causal_block_size {block}"
            faults.append(SettingFault(key, message, (key,)))
    return faults


def window_settings_fit(base_num_frames: int, overlap_history: int, causal_block_size: int) -> bool:
    """Whether a window length, an overlap and a causal block size work together (:func:`window_setting_faults`)."""
    return not window_setting_faults(base_num_frames, overlap_history, causal_block_size)


@functools.lru_cache(maxsize=256)  # a setting written once for the film is checked once for each shot
def window_settings_fix(
    change: tuple[str, ...],
    base_num_frames: int,
    overlap_history: int,
    causal_block_size: int,
    *,
    max_base: int,
    max_block: int,
) -> str:
    """A fix for settings that do not :func:`window_settings_fit`, naming only values that make them fit: for
    each setting in ``change`` the values that work with the other two as written, then a causal_block_size
    that works with both frame counts. ``max_base`` and ``max_block`` bound what it may suggest.

    >>> window_settings_fix(("overlap_history",), 97, 21, 5, max_base=257, max_block=65)
    'use overlap_history 17 or 37, or another causal_block_size'
    """
    base, overlap, block = base_num_frames, overlap_history, causal_block_size
    parts = []
    for what in change:
        if what == "overlap_history":
            overlaps = [o for o in range(1, base, VAE_TEMPORAL_STRIDE) if window_settings_fit(base, o, block)]
            options = _preferred(overlaps, (17, 37), overlap)
        else:
            bases = [
                b
                for b in range(5, max_base + 1, VAE_TEMPORAL_STRIDE)
                if window_settings_fit(b, overlap, block)
            ]
            options = _preferred(bases, (97, 121, 77, 57), base)
        if options:
            parts.append(f"{what} " + " or ".join(str(o) for o in options))
    blocks = [b for b in range(1, max_block + 1) if window_settings_fit(base, overlap, b)]
    if blocks and block != 1:
        parts.append("another causal_block_size" if parts else f"causal_block_size {blocks[-1]}")
    if parts:
        return "use " + ", or ".join(parts)
    pairs = [(b, o) for b, o in ((97, 17), (121, 17), (97, 37)) if window_settings_fit(b, o, block)]
    if pairs:  # no one setting alone fits: the usual pair
        return f"use base_num_frames {pairs[0][0]} with overlap_history {pairs[0][1]}"
    return "use base_num_frames 97, overlap_history 17 and causal_block_size 1"


def _preferred(candidates: list[int], recommended: tuple[int, ...], near: int, count: int = 2) -> list[int]:
    """Up to ``count`` candidates: the recommended ones first, then those nearest to ``near``."""
    chosen = [value for value in recommended if value in candidates]
    chosen += sorted((c for c in candidates if c not in chosen), key=lambda c: (abs(c - near), -c))
    return chosen[:count]


def first_window_prefix(mode: Mode, overlap_latent: int) -> int:
    """Clean latent frames a shot's first window starts from: none fresh, the image's one, or the parent's tail."""
    return {"fresh": 0, "image": 1, "continue": overlap_latent}[mode]


def window_lengths(latent_frames: int, base_latent: int, overlap_latent: int) -> list[int]:
    """Latent frames in each window of a shot of ``latent_frames``, prefixes included.

    >>> window_lengths(60, 25, 5), window_lengths(25, 25, 5)
    ([25, 25, 20], [25])
    """
    if latent_frames <= base_latent:
        return [latent_frames]
    stride = base_latent - overlap_latent
    count = 1 + (latent_frames - base_latent - 1) // stride + 1
    return [min(latent_frames - i * stride, base_latent) for i in range(count)]


def timestep_rows(num_blocks: int, prefix_blocks: int, steps: int, ar_step: int) -> int:
    """Rows of the diffusion-forcing timestep matrix for one window.

    Each causal block counts the denoising steps it has taken. A row advances the first block by
    one; a later block advances by one once the block before it is fully denoised, and otherwise
    trails it by ``ar_step`` (so ``ar_step = 0`` moves every block together: synchronous). Prefix
    blocks start fully denoised. Rows are produced until every block has taken ``steps`` steps.
    This follows the rule of the reference ``generate_timestep_matrix``.

    Counted in closed form: the first block to denoise takes ``steps`` rows and each later one finishes
    ``min(ar_step, steps)`` rows after the block before it (it trails by ``ar_step``, but never waits past
    the row its predecessor finishes on). Stepping the rule row by row gives the same counts (checked over
    every window up to 25 blocks and 30 steps), but takes seconds for long asynchronous windows.

    >>> timestep_rows(25, 0, 30, 0), timestep_rows(5, 0, 30, 5), timestep_rows(5, 1, 30, 5)
    (30, 50, 45)
    """
    if steps < 1 or num_blocks < 1 or not 0 <= prefix_blocks <= num_blocks:
        raise ValueError(f"bad window: {num_blocks} blocks, {prefix_blocks} prefix, {steps} steps")
    noisy = num_blocks - prefix_blocks
    return 0 if noisy == 0 else steps + (noisy - 1) * min(ar_step, steps)


def window_schedule(
    *,
    latent_frames: int,
    base_latent: int,
    overlap_latent: int,
    first_prefix: int,
    steps: int,
    ar_step: int,
    causal_block_size: int,
) -> list[Window]:
    """The windows diffusion forcing runs to produce ``latent_frames`` latent frames.

    ``first_prefix`` is the first window's clean prefix (:func:`first_window_prefix`); every later window
    starts from ``overlap_latent``. Prefixes are cut to whole causal blocks, as the model does.
    """
    lengths = window_lengths(latent_frames, base_latent, overlap_latent)
    windows = []
    for length, prefix in zip(
        lengths, _given_prefixes(first_prefix, overlap_latent, len(lengths)), strict=True
    ):
        prefix -= prefix % causal_block_size
        rows = timestep_rows(length // causal_block_size, prefix // causal_block_size, steps, ar_step)
        windows.append(Window(latent_frames=length, prefix_latent_frames=prefix, denoise_steps=rows))
    return windows


def _given_prefixes(first: int, overlap_latent: int, count: int) -> list[int]:
    # The prefix each window is handed, before the model cuts it to whole blocks.
    return [first] + [overlap_latent] * (count - 1)


def shot_windows(
    mode: Mode, frames: int, settings: WindowSettings, *, end_image: bool = False
) -> list[Window]:
    """The windows of a shot of ``frames`` own frames: what the plan shows and the generator must run.

    A shot that ends on an ``end_image`` carries that image's one latent frame after its own in the last
    window (as the SkyReels-V2 reference does, whatever starts the shot), held clean (timestep 0) on every
    row: that window is one latent frame longer, with the rows of its own frames, and the frame is dropped
    before decoding. Earlier windows are as without an end image.

    >>> from types import SimpleNamespace
    >>> defaults = SimpleNamespace(base_num_frames=97, overlap_history=17, steps=30, ar_step=0,
    ...     causal_block_size=1, guidance_scale=6.0)
    >>> [(w.latent_frames, w.prefix_latent_frames) for w in shot_windows("continue", 84, defaults)]
    [(25, 5), (6, 5)]
    >>> [(w.latent_frames, w.denoise_steps) for w in shot_windows("image", 97, defaults, end_image=True)]
    [(26, 30)]
    >>> [(w.latent_frames, w.prefix_latent_frames) for w in shot_windows("fresh", 161, defaults, end_image=True)]
    [(25, 0), (22, 5)]
    """
    windows = _own_windows(mode, frames, settings)
    if end_image:
        last = windows[-1]
        windows[-1] = last.model_copy(update={"latent_frames": last.latent_frames + END_IMAGE_LATENT_FRAMES})
    return windows


def _own_windows(mode: Mode, frames: int, settings: WindowSettings) -> list[Window]:
    overlap_latent = latent_count(settings.overlap_history)
    return window_schedule(
        latent_frames=latent_count(generated_frames(mode, frames, settings.overlap_history)),
        base_latent=latent_count(settings.base_num_frames),
        overlap_latent=overlap_latent,
        first_prefix=first_window_prefix(mode, overlap_latent),
        steps=settings.steps,
        ar_step=settings.ar_step,
        causal_block_size=settings.causal_block_size,
    )


@dataclass(frozen=True)
class BlockMisfit:
    """A window, or the prefix it is handed, that is not a whole number of causal blocks."""

    window: int  # counted from 1
    part: Literal["window", "prefix"]
    latent_frames: int
    causal_block_size: int

    @property
    def whole_blocks(self) -> int:
        """The latent frames the model keeps of it: the rest is left as noise (a window) or cut away (a prefix)."""
        return self.latent_frames - self.latent_frames % self.causal_block_size


def block_misfit(mode: Mode, frames: int, settings: WindowSettings) -> BlockMisfit | None:
    """The first window or prefix of the shot that is not whole causal blocks, or None when all are.

    A shot :func:`snap_frames` made, with settings that :func:`window_settings_fit`, never has one.
    """
    block = settings.causal_block_size
    overlap_latent = latent_count(settings.overlap_history)
    lengths = window_lengths(
        latent_count(generated_frames(mode, frames, settings.overlap_history)),
        latent_count(settings.base_num_frames),
        overlap_latent,
    )
    prefixes = _given_prefixes(first_window_prefix(mode, overlap_latent), overlap_latent, len(lengths))
    for number, (length, prefix) in enumerate(zip(lengths, prefixes, strict=True), start=1):
        if length % block:
            return BlockMisfit(number, "window", length, block)
        if prefix % block:
            return BlockMisfit(number, "prefix", prefix, block)
    return None


def frames_in_windows(count: int, mode: Mode, settings: WindowSettings) -> int:
    """The most own frames a shot of this mode makes in ``count`` full windows (a shorter shot may not need them all).

    >>> from types import SimpleNamespace
    >>> defaults = SimpleNamespace(base_num_frames=97, overlap_history=17)
    >>> frames_in_windows(1, "fresh", defaults), frames_in_windows(1, "continue", defaults)
    (97, 80)
    """
    base_latent, overlap_latent = (
        latent_count(settings.base_num_frames),
        latent_count(settings.overlap_history),
    )
    generated = pixel_count(base_latent + (count - 1) * (base_latent - overlap_latent))
    return generated - (settings.overlap_history if mode == "continue" else 0)


def last_window_sliver(
    mode: Mode, windows: Sequence[Window], settings: WindowSettings
) -> tuple[int, int] | None:
    """When a shot's last window adds a sliver, at most a quarter of a window, at the cost of a whole one: the
    frames it adds, and the most own frames the shot could have in one window fewer. None otherwise.

    >>> from types import SimpleNamespace
    >>> defaults = SimpleNamespace(base_num_frames=97, overlap_history=17, steps=30, ar_step=0,
    ...     causal_block_size=1, guidance_scale=6.0)
    >>> last_window_sliver("continue", shot_windows("continue", 84, defaults), defaults)
    (4, 80)
    """
    if len(windows) < 2:
        return None
    new_latent = windows[-1].latent_frames - windows[-1].prefix_latent_frames
    if new_latent * 4 > latent_count(settings.base_num_frames):
        return None
    return VAE_TEMPORAL_STRIDE * new_latent, frames_in_windows(len(windows) - 1, mode, settings)


# --- what it costs ----------------------------------------------------------------------------------------------


def passes_per_step(guidance_scale: float) -> int:
    """Transformer passes per timestep-matrix row: classifier-free guidance runs a second, unconditional one."""
    return 2 if guidance_scale > 1 else 1


def dit_passes(windows: Sequence[Window], guidance_scale: float) -> int:
    """Transformer passes the windows take, every row of every window."""
    return sum(w.denoise_steps for w in windows) * passes_per_step(guidance_scale)


def transformer_flops(arch: tuple[int, int, int], latent_frames: int, width: int, height: int) -> float:
    """FLOPs of one transformer pass over a window of ``latent_frames`` at ``width`` x ``height``.

    ``arch`` is (width, layers, feed-forward width) (:data:`storyreel.models.ARCHITECTURES`). Per layer:
    self-attention projections 8Nd^2 and scores 4N^2d, cross-attention 4Nd^2 + 4Td^2 + 4NTd, feed-forward
    4Ndf, for N video tokens (one per 16x16 pixels of a latent frame) and T text tokens.
    """
    dim, layers, ffn = arch
    n = latent_frames * (height // SPATIAL_MULTIPLE) * (width // SPATIAL_MULTIPLE)
    t = TEXT_TOKENS
    per_layer = 12 * n * dim**2 + 4 * n * n * dim + 4 * t * dim**2 + 4 * n * t * dim + 4 * n * dim * ffn
    return float(layers * per_layer)


def schedule_flops(
    arch: tuple[int, int, int], windows: Sequence[Window], width: int, height: int, guidance_scale: float
) -> float:
    """Transformer FLOPs of running every window of a shot: each row of each window, each pass of a row."""
    per_row = sum(w.denoise_steps * transformer_flops(arch, w.latent_frames, width, height) for w in windows)
    return per_row * passes_per_step(guidance_scale)
