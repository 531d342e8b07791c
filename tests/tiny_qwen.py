"""Build a tiny random-weight Qwen2 chat model, offline, for serving with vLLM's CPU build in tests.

    python tests/tiny_qwen.py DIR

It has the architecture, tokenizer layout and chat template of a Qwen2.5 instruct model, at a size
that loads in a second and answers in milliseconds: hidden size 64, 2 layers, 2 attention heads and
1 key/value head (head size 32; vLLM's CPU attention rejects 16), and a byte-level BPE tokenizer
trained here on a few English paragraphs, so any text encodes. Its output head only ever picks
tokens with letters in them, so a greedy answer is a long run of English-looking gibberish that
fills ``max_tokens``: tests assert on the protocol, never on prose. Weights come from a
fixed seed, so two builds are identical. Needs torch, transformers and tokenizers (the vLLM venv has
all three).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# Qwen2.5's chat markup (ChatML): the server renders the messages with it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 1024
MAX_POSITIONS = 4096

CORPUS = """
Wide shot at eye level: a graceful white swan with a curved neck glides across a serene mountain lake.
Mist rises from the still water and drifts between the reeds. Soft, warm dawn light and a calm atmosphere.
The camera slowly pushes in. Close-up from a low angle: a grey heron watches the water, then strikes.
Medium shot: a young violinist in a red coat plays on a rooftop at night while snow falls around her.
The handheld camera follows the subject through a crowded market full of lanterns and bright colours.
You write captions for a text-to-video model. Rewrite the shot's short prompt into one detailed caption.
The film, the scene, the setting, the characters, the shot type, the camera angle and the camera motion.
Describe the subjects with vivid attributes, what changes over time, the composition, the light, the mood.
Answer with the caption alone, in English, in at most one hundred and twenty words, with no preamble.
"""


def build(out: Path) -> Path:
    """Write the model, its tokenizer and chat template into ``out``; returns ``out``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS.strip().splitlines() * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=MAX_POSITIONS,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        # With tied embeddings a random model predicts the token it was given, forever ("\n\n\n...").
        # Its own output head makes each next token a fixed, arbitrary function of the context; rows
        # of zeros for tokens without a letter (whitespace, bytes, markup, end of turn) keep them out
        # of greedy answers, so an answer is a run of words that fills max_tokens.
        head = torch.randn(config.vocab_size, config.hidden_size)
        for token, index in tokenizer.get_vocab().items():
            text = tokenizer.convert_tokens_to_string([token])
            if token in SPECIAL_TOKENS or not any(c.isalpha() for c in text):
                head[index] = 0.0
            elif text.startswith(" "):
                head[index] *= 2.0  # favour tokens that start a word: more words per token
        model.lm_head.weight.copy_(head)
    model = model.to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    (out / "storyreel-tiny.json").write_text(json.dumps({"vocab": len(tokenizer), "seed": 0}) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the model into")
    print(build(parser.parse_args().out))


if __name__ == "__main__":
    main()
