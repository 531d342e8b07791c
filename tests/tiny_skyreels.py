"""Tiny random-weight SkyReels-V2 pipelines, built offline and saved as diffusers folders.

The SkyReels-V2 generator must be tested on the path real weights take: a folder with a
``model_index.json`` loaded by ``from_pretrained``. No hub download is possible (or wanted) in CI,
so every part is made here with random weights at toy sizes: a word-level tokenizer trained on
nothing (the ``tokenizers`` library), a one-layer umT5 encoder, the diffusers test-sized Wan VAE
(spatial stride 8, temporal stride 4, 16 latent channels, like the real one) and a two-layer
SkyReels-V2 transformer. A 32x32, 17-frame call with 2 steps takes a fraction of a second on a CPU.

>>> folder = build_tiny_skyreels(tmp_path / "df")  # doctest: +SKIP
>>> json.loads((folder / "model_index.json").read_text())["_class_name"]  # doctest: +SKIP
'SkyReelsV2DiffusionForcingPipeline'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch

Kind = Literal["df", "t2v", "i2v"]

TEXT_DIM = 32  # the umT5 stand-in's width, which the transformer's text projection reads
CLIP_DIM = 8  # the CLIP stand-in's width (plain image-to-video only)
# A prompt's words outside this list become <unk>: one token per word either way, so token counts are
# predictable (a 600-word prompt is about 600 tokens).
WORDS = (
    "a an the and of in on at to with from into over under across its his her their is are "
    "swan heron lake water mist dawn morning light sun reeds mountain sky river lantern train rain "
    "slowly gracefully camera shot wide close-up medium push-in pan tracking static cinematic film "
    "white grey golden soft warm cold night city market platform girl woman man conductor watch"
).split()
PUNCTUATION = list(".,;:!?'\"()-")


def tiny_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """A T5-style word-level tokenizer (``</s>`` appended, ``<pad>`` = 0), made without the hub."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(["<pad>", "</s>", "<unk>", *WORDS, *PUNCTUATION])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_components(
    kind: Kind = "df",
    *,
    inject_sample_info: bool = True,
    num_frame_per_block: int = 1,
    seed: int = 0,
    attention_head_dim: int = 12,
    ffn_dim: int = 32,
    num_layers: int = 2,
) -> dict[str, object]:
    """The ``__init__`` arguments of a tiny SkyReels-V2 pipeline of ``kind``, with seeded random weights.

    ``inject_sample_info=True`` is the DF-1.3B configuration (an fps embedding, and the batch > 1
    bug); the DF-14B configuration has it off. The plain pipelines never pass fps, so they have it off.
    ``attention_head_dim=16`` makes every linear layer a multiple of 16 wide, as FP8 matrix products need.
    """
    from diffusers import AutoencoderKLWan, SkyReelsV2Transformer3DModel, UniPCMultistepScheduler
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=TEXT_DIM,
            d_kv=8,
            d_ff=32,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            dropout_rate=0.0,
        )
    ).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()
    torch.manual_seed(seed + 2)
    transformer = SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=attention_head_dim,
        in_channels=36
        if kind == "i2v"
        else 16,  # plain I2V: noise + mask + image latents, stacked on channels
        out_channels=16,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=ffn_dim,
        num_layers=num_layers,
        rope_max_seq_len=32,
        image_dim=CLIP_DIM if kind == "i2v" else None,
        added_kv_proj_dim=2 * attention_head_dim
        if kind == "i2v"
        else None,  # image keys/values come in at the model's width
        inject_sample_info=inject_sample_info and kind == "df",
        num_frame_per_block=num_frame_per_block,
    ).eval()
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=8.0
    )
    components: dict[str, object] = {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "transformer": transformer,
        "vae": vae,
        "scheduler": scheduler,
    }
    if kind == "i2v":
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

        torch.manual_seed(seed + 3)
        components["image_encoder"] = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=CLIP_DIM,
                projection_dim=CLIP_DIM,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=32,
                intermediate_size=16,
                patch_size=8,
            )
        ).eval()
        components["image_processor"] = CLIPImageProcessor(crop_size=32, size=32)
    return components


def pipeline_class(kind: Kind):
    """The diffusers pipeline class whose name a folder of ``kind`` records in its model_index.json."""
    import diffusers

    name = {
        "df": "SkyReelsV2DiffusionForcingPipeline",
        "t2v": "SkyReelsV2Pipeline",
        "i2v": "SkyReelsV2ImageToVideoPipeline",
    }[kind]
    return getattr(diffusers, name)


def build_tiny_skyreels(
    folder: Path,
    kind: Kind = "df",
    *,
    inject_sample_info: bool = True,
    num_frame_per_block: int = 1,
    attention_head_dim: int = 12,
    ffn_dim: int = 32,
    num_layers: int = 2,
) -> Path:
    """Save a tiny SkyReels-V2 pipeline of ``kind`` into ``folder`` (a diffusers folder) and return it."""
    components = tiny_components(
        kind,
        inject_sample_info=inject_sample_info,
        num_frame_per_block=num_frame_per_block,
        attention_head_dim=attention_head_dim,
        ffn_dim=ffn_dim,
        num_layers=num_layers,
    )
    pipeline_class(kind)(**components).save_pretrained(folder)
    return folder


def write_foreign_pipeline(folder: Path, class_name: str = "WanPipeline") -> Path:
    """A folder whose model_index.json names another pipeline (no weights: it must be refused before loading)."""
    folder.mkdir(parents=True, exist_ok=True)
    index = {"_class_name": class_name, "_diffusers_version": "0.42.1", "transformer": ["diffusers", "X"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder
