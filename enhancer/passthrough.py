"""The ``none`` enhancer: every shot's prompt goes to the generator exactly as written.

Use it when your prompts are already full captions, or to see what the model makes of the bare
prompt. Character references are still filled in (the storyboard stage does that, not the enhancer).

>>> from storyreel.enhance import FilmContext, ShotContext
>>> from storyreel.storyboard import EnhancerSettings
>>> shot = ShotContext(id="glide", scene="lake", scene_title=None, setting=None, prompt="a swan glides",
...     camera=None, characters={}, mode="fresh", seconds=4.0)
>>> PassthroughEnhancer(EnhancerSettings()).enhance(FilmContext(title="Swan"), [shot])[0].prompt
'a swan glides'
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from storyreel.enhance import EnhancedPrompt, Enhancer, FilmContext, ShotContext


class PassthroughEnhancer(Enhancer):
    """Returns each shot's prompt unchanged."""

    name = "none"
    reproducible = True  # nothing to lock

    def fingerprint(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    def enhance(
        self,
        film: FilmContext,
        shots: Sequence[ShotContext],
        on_result: Callable[[EnhancedPrompt], None] | None = None,
    ) -> list[EnhancedPrompt]:
        results = [EnhancedPrompt(shot.id, shot.prompt, source=self.name) for shot in shots]
        for result in results:
            if on_result is not None:
                on_result(result)
        return results
