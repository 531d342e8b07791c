"""Keyframes from FLUX.2 [klein] through diffusers' ``Flux2KleinPipeline``: a start frame drawn from a
prompt and up to four reference images of the characters in the shot.

* ``klein``: :class:`Flux2KleinKeyframes`: the folder's kind checked, the weights loaded once, the
  reference images and the prompt handed to the pipeline, the picture fitted to the film, the device
  freed on close.

The module imports no model library until a keyframe model is started, so validating a storyboard can
ask it which pipelines it loads and how many references it takes.
"""

from .klein import Flux2KleinKeyframes

__all__ = ["Flux2KleinKeyframes"]
