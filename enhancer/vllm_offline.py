"""The ``vllm-offline`` enhancer: the chat model runs inside this process, then gives its GPU back.

For a single box with no server to keep running: vLLM's ``LLM`` class loads ``enhancer.model`` (a
hub id in the local cache, or a folder), answers every shot in one batch with the same messages and
sampling as the ``vllm`` backend (:mod:`storyreel.enhancer.chat`), cleans the answers the same way,
asks again for the ones that cannot be used, and then frees the GPU (engine shut down, ``del``,
``gc.collect()``, ``torch.cuda.empty_cache()``) so that the video model can load next. SkyReels-V2's
prompt enhancer (Qwen2.5-32B-Instruct) needs 64 GB+ of GPU memory and cannot share the GPU with
the video model: enhance first, then render. vLLM is imported only when ``enhance`` runs.

>>> from storyreel.enhancer.vllm import VLLMEnhancer
>>> enhancer = OfflineVLLMEnhancer(EnhancerSettings(backend="vllm-offline", model="Qwen/Qwen2.5-32B-Instruct"))
>>> enhancer.fingerprint() != VLLMEnhancer(EnhancerSettings(backend="vllm", model="Qwen/Qwen2.5-32B-Instruct")).fingerprint()
True
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from storyreel.enhance import EnhancedPrompt, FilmContext, ShotContext
from storyreel.errors import MissingExtra, UserError
from storyreel.storyboard import EnhancerSettings

from .chat import (
    ANSWER_TRIES,
    DEFAULT_MODEL,
    SEED,
    ChatEnhancer,
    EnhancerUnavailable,
    answer_unusable,
    sampling,
)
from .clean import UnusableAnswer, clean_caption
from .serve import MAX_MODEL_LEN


class OfflineVLLMEnhancer(ChatEnhancer):
    """Detailed captions from a chat model loaded in this process with vLLM, for the length of one call.

    ``engine_args`` go to ``vllm.LLM`` as they are and win over the ones set here: spread a large
    model over GPUs with ``{"tensor_parallel_size": 2}``, or pass ``gpu_memory_utilization``,
    ``enforce_eager`` and the like. ``system_template`` and ``user_template`` override the settings.
    """

    name = "vllm-offline"

    def __init__(
        self,
        settings: EnhancerSettings,
        *,
        engine_args: dict[str, Any] | None = None,
        system_template: str | Path | None = None,
        user_template: str | Path | None = None,
    ):
        if not settings.model:
            raise UserError(
                "enhancer.model: the vllm-offline enhancer needs a model, as a hub id in the local cache or a "
                f"folder; set one such as {DEFAULT_MODEL}"
            )
        super().__init__(settings, system_template=system_template, user_template=user_template)
        self.engine_args = {
            "max_model_len": MAX_MODEL_LEN,
            "seed": SEED,
            "generation_config": "vllm",  # the request's sampling alone decides, as with `serve`
            **(engine_args or {}),
        }

    def enhance(
        self,
        film: FilmContext,
        shots: Sequence[ShotContext],
        on_result: Callable[[EnhancedPrompt], None] | None = None,
    ) -> list[EnhancedPrompt]:
        """One caption per shot, in the order given; ``on_result`` gets each after the batch it was answered in."""
        if not shots:
            return []
        try:
            import vllm
        except ImportError:
            raise MissingExtra("vllm", "vllm", "the vllm-offline enhancer") from None

        conversations = [self.prompts.messages(film, shot, self.max_words) for shot in shots]
        done: dict[int, EnhancedPrompt] = {}
        reasons: dict[int, str] = {}
        try:
            llm = vllm.LLM(model=self.model, **self.engine_args)
        except Exception as error:  # a model that is not there, or does not fit: the user's or the machine's
            raise EnhancerUnavailable(
                f"the vllm-offline enhancer could not start {self.model!r}: {type(error).__name__}: "
                f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}; fix: check the model name "
                "or folder and the GPU's free memory (engine_args such as tensor_parallel_size or "
                "gpu_memory_utilization), or enhance with --enhancer-fallback template"
            ) from error
        try:
            pending = list(range(len(shots)))
            for attempt in range(ANSWER_TRIES):
                if not pending:
                    break
                params = vllm.SamplingParams(**sampling(self.max_words, attempt))
                outputs = llm.chat([conversations[i] for i in pending], params, use_tqdm=False)
                retry = []
                for index, output in zip(pending, outputs, strict=True):
                    completion = output.outputs[0]
                    try:
                        caption = clean_caption(
                            completion.text, self.max_words, truncated=completion.finish_reason == "length"
                        )
                    except UnusableAnswer as unusable:
                        reasons[index] = str(unusable)
                        retry.append(index)
                        continue
                    done[index] = EnhancedPrompt(shots[index].id, caption, source=self.name, model=self.model)
                    if on_result is not None:
                        on_result(done[index])
                pending = retry
        finally:
            _free(llm)
            del llm
            gc.collect()
            _empty_cuda_cache()

        results = [done[index] for index in sorted(done)]
        if pending:
            raise answer_unusable(
                f"the model {self.model!r}", shots, {i: reasons[i] for i in pending}, results
            )
        return results


def _free(llm: Any) -> None:
    """Stop vLLM's engine process and tear down its distributed state, so the GPU memory can be released."""
    engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if engine_core is not None and hasattr(engine_core, "shutdown"):
        engine_core.shutdown()
    try:
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
    except ImportError:
        return
    cleanup_dist_env_and_memory()


def _empty_cuda_cache() -> None:
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
