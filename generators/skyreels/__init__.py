"""The SkyReels-V2 generator: every shot made by SkyReels-V2 diffusion forcing, through diffusers 0.42.1.

The model folder's ``model_index.json`` decides what runs:

* a **diffusion-forcing** folder (``SkyReelsV2DiffusionForcing*Pipeline``) gives three pipelines over
  one set of loaded weights: a fresh shot is DF text-to-video; an ``image:`` shot is DF
  image-to-video, synchronous, so that the image stays the first frame; a continuing shot is DF
  video-to-video from its parent's last ``overlap_history`` frames (the exact frames the parent
  generated) with its own prompt, of which only the new frames are kept; a shot with an end image, of any
  of these kinds, holds that image's latent frame clean in its last window (quirk 11);
* a **plain** text-to-video or image-to-video folder (``SkyReelsV2Pipeline``,
  ``SkyReelsV2ImageToVideoPipeline``) runs fresh or image shots that fit in one window.

Every shot runs exactly the windows ``storyreel plan`` shows. The plan is checked before a step is
spent (``check_runnable``), and the run is watched while it happens: a forward hook counts the
transformer passes, the step callback records each window's latent frames, clean prefix and
timestep rows, and any difference from the plan is a :class:`GenerationError`, not a quietly
different film.

The package, by job:

* ``stack``: the libraries it needs (a missing one is reported before any work), the device and
  precision it runs at;
* ``model_folder``: which model (a folder or a cached hub id) and which pipeline family it is;
* ``schedule``: checking a shot's plan is runnable, and watching that what ran is what was planned;
* ``attention``: the attention kernels (flash3, cudnn, flash, sdpa, sage), which are installed and run here;
* ``runtime``: the kernel, compilation and precision the options resolve to, refused up front when this
  machine cannot, then applied to the loaded transformer (regional compilation, FP8 through torchao);
* ``prompts``: every prompt encoded once, before the first shot: the text encoder is on the GPU only then,
  whole or streamed layer by layer;
* ``decode``: latents decoded one latent frame at a time, straight to uint8 frames;
* ``quirks``: the workarounds for diffusers' quirks;
* ``generator``: :class:`SkyReelsGenerator`: loading the weights once, each shot's arguments, the call.

diffusers 0.42.1 has quirks that silently ruin output, waste memory or put a frame control out of reach; each is
guarded, and each guard has a test in ``tests/test_skyreels.py`` (11's in ``tests/test_frame_controls.py``) that
fails without it:

1. *Sticky causal block size*: passing ``causal_block_size`` writes ``num_frame_per_block`` into
   the transformer's config, where it stays for later calls and for ``save_pretrained``.
2. *Causal mask in async mode*: with ``num_frame_per_block > 1`` the transformer builds a dense
   (tokens x tokens) block-causal mask, ~2.6 GB at 540P and slower attention, although the
   released models were trained with bidirectional attention (the reference implementation uses
   causal attention only when asked to, and its models do not support it). Guard for 1 and 2:
   ``quirks.keep_attention_bidirectional`` pins the config at 1 and ignores the pipelines' attempts
   to change it, while the block size still shapes the timestep schedule.
3. *Tail frames left as noise*: a window whose latent frames are not a whole number of causal
   blocks never denoises the remainder. 4. *Prefixes truncated*: a conditioning prefix is cut to
   a block multiple, down to nothing, and an image latent is re-denoised in async mode. Guard for
   3 and 4: ``schedule.check_runnable`` refuses such plans, and ``schedule.ScheduleWatch`` checks
   what ran.
5. *V2V output*: the video-to-video pipeline returns the input video, then a VAE re-decode of the
   overlap, then the new frames. Guard: ``quirks.new_frames`` keeps only the new frames, after
   checking the length.
6. *Unseeded noise*: ``addnoise_condition`` draws its noise from the global RNG, not the seeded
   generator. Guard: ``quirks.seeded_global_rng`` seeds a forked global RNG for each call.
7. *Batch > 1* crashes with ``inject_sample_info=True`` (the DF-1.3B config). Guard: one prompt,
   one video per call, always (``SkyReelsGenerator._arguments``).
8. *from_pipe casts*: ``from_pipe`` casts the shared modules to float32 by default. Guard: sibling
   pipelines are built as ``Cls(**components)``, which shares the modules as they are
   (``SkyReelsGenerator._load``).
9. *DF I2V's last window*: the image-to-video pipeline schedules every window as if it were
   ``base_num_frames`` long, and crashes (IndexError) when an image shot's last window is shorter.
   Guard: ``quirks.schedule_windows_by_their_length`` gives it each window's own length, as the
   text-to-video and video-to-video pipelines do.
10. *Modulation repeated to every token*: in diffusion-forcing mode the transformer repeats each latent
    frame's timestep modulation to all of the frame's tokens (about 3 GB in bf16 for DF-14B at 540P x 97
    frames), and every block adds a float32 copy. Guard: ``quirks.modulate_per_frame`` keeps it per frame
    and broadcasts it; the output is identical.
11. *End frame*: only DF image-to-video holds an end frame (``last_image``, beside a start image), and with
    several windows it appends it to the last window but lengthens that window's schedule by the window's
    prefix, and the call fails. Guard: ``quirks.hold_end_frame`` holds it itself in the last window of any
    DF pipeline (timestep 0, never denoised, as the reference holds it), after checking that the wrapped
    code is diffusers 0.42.1's (``quirks.check_end_frame_code``).

>>> with SkyReelsGenerator(GeneratorOptions(model="Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers")) as sky:  # doctest: +SKIP
...     clip = sky.generate(ShotRequest(shot=plan.shot("glide"), prompt="...", negative_prompt=""))
>>> clip.frames.shape, clip.dit_passes == plan.shot("glide").dit_passes  # doctest: +SKIP
((97, 544, 960, 3), True)
"""

from __future__ import annotations

from .stack import first_missing_package

_missing = first_missing_package()
if _missing is not None:
    # render() imports this package before it enhances prompts, and storyreel.backends turns this error into
    # MissingExtra('skyreels'): a missing extra is reported before any work, without importing torch. The check
    # runs here, in the package's own body, so that it runs again whenever the package is imported anew.
    raise ModuleNotFoundError(f"No module named '{_missing}'", name=_missing)

from .generator import SkyReelsGenerator  # noqa: E402
from .model_folder import ModelFolder, find_model  # noqa: E402
from .schedule import check_runnable  # noqa: E402

__all__ = ["ModelFolder", "SkyReelsGenerator", "check_runnable", "find_model"]
