"""A tiny random-weight FLUX.2 [klein] pipeline, built offline and saved as a diffusers folder.

The keyframe model is tested on the path real weights take: a folder with a ``model_index.json``
(``Flux2KleinPipeline``) loaded by ``from_pretrained``. Every part has the released model's architecture
at a toy size: a byte-level BPE tokenizer trained here (the Qwen2 tokenizer class, with a ChatML chat
template, as the pipeline formats prompts through it), a three-layer Qwen3 causal LM whose three hidden
states stack into the prompt embedding (as Qwen3-4B's layers 9, 18 and 27 do), a one-block-each Flux2
transformer, and a four-level Flux2 VAE (scale factor 8, like the real one: pictures are multiples of 16 pixels). A
64x32 keyframe with two reference images and 2 steps takes well under a second on a CPU.

>>> folder = build_tiny_flux2(tmp_path / "klein")  # doctest: +SKIP
>>> json.loads((folder / "model_index.json").read_text())["_class_name"]  # doctest: +SKIP
'Flux2KleinPipeline'
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "an old lighthouse keeper with a white beard and a yellow oilskin coat walks up the path",
    "a small black-and-white terrier trots beside him on the rocks at dusk, waves breaking below",
    "the lamp room at night, brass and glass, the warm beam sweeping over the sea. Setting: Style:",
]
TEXT_WIDTH = 16
TEXT_LAYERS = 3


def tiny_tokenizer():  # -> transformers.Qwen2Tokenizer
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS * 4, trainer=trainer)
    tokenizer = Qwen2TokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_components(seed: int = 0) -> dict:
    import torch
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TEXT_WIDTH * TEXT_LAYERS,
        timestep_guidance_channels=256,
        axes_dims_rope=[4, 4, 4, 4],
        guidance_embeds=False,
    )
    torch.manual_seed(seed)
    text_encoder = Qwen3ForCausalLM(
        Qwen3Config(
            hidden_size=TEXT_WIDTH,
            intermediate_size=32,
            num_hidden_layers=TEXT_LAYERS,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            vocab_size=len(tokenizer),
            max_position_embeddings=1024,
        )
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLFlux2(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 4, 4),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tokenizer,
        "transformer": transformer.eval(),
    }


def build_tiny_flux2(out: Path, seed: int = 0) -> Path:
    """Write the tiny pipeline into ``out`` (a diffusers folder); returns ``out``."""
    from diffusers import Flux2KleinPipeline

    Flux2KleinPipeline(**tiny_components(seed), is_distilled=True).save_pretrained(out)
    return out
