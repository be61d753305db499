"""Tiny random-init models built from configs (torchtune style): fast, offline, real code paths.

`python -m tests.tiny_models OUT_DIR` writes OUT_DIR/tiny-llama and OUT_DIR/tiny-t5 (config and
tokenizer only; the training code initialises such models from the config).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    PreTrainedTokenizerFast,
    T5Config,
)

from raytune_ft.modeling.sources import resolve_model_source

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "<mask>")
CHARACTERS = (*(chr(code) for code in range(32, 127)), "\n")

# One `<|role|>` header line, the content, then `</s>` and a newline per message. Each message's
# rendering depends only on that message, so rendering messages[:k] is a prefix of
# messages[:k+1]: the property chat-masking code relies on to find where each turn starts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '</s>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def char_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level fast tokenizer over printable ASCII and newline, built offline.

    Ids: `<pad>` 0, `<s>` 1, `</s>` 2, `<unk>` 3, `<mask>` 4, then one id per character.
    `<s>` is prepended to every sequence unless add_special_tokens=False.
    """
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Every character, spaces and newlines included, is its own piece (`.` would skip "\n").
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    # Pieces are whole characters, so decoding is plain concatenation (no spaces to put back).
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        mask_token="<mask>",
        # The default clean-up would glue " ." to "." and break decode(encode(s)) == s.
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_llama(folder: Path, seed: int = 0, weights: bool = False) -> Path:
    """A 2-layer, hidden-64 Llama with the char tokenizer; weights only when asked for."""
    tokenizer = char_tokenizer()
    # Positions past max_position_embeddings have no rotary cache to index: cap inputs there.
    tokenizer.model_max_length = 256
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    return _save(folder, config, tokenizer, "LlamaForCausalLM", seed if weights else None)


def build_tiny_t5(folder: Path, seed: int = 0, weights: bool = False) -> Path:
    """A 2+2-layer, d_model-64 T5 with the char tokenizer; weights only when asked for."""
    tokenizer = char_tokenizer()
    # No tie_word_embeddings=False: this transformers' T5 always ties lm_head to the shared
    # embedding, and passing False would only switch off the decoder output scaling that
    # tied weights expect (the T5 v1.1 convention for untied heads).
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_ff=128,
        d_kv=16,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        feed_forward_proj="relu",
    )
    return _save(folder, config, tokenizer, "T5ForConditionalGeneration", seed if weights else None)


def build_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A 2-layer, hidden-32 BERT with MiniLM's real WordPiece tokenizer, saved as a HF folder."""
    import torch

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_source("all-MiniLM-L6-v2"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _save(
    folder: Path,
    config: LlamaConfig | T5Config,
    tokenizer: PreTrainedTokenizerFast,
    architecture: str,
    seed: int | None,
) -> Path:
    """Write config and tokenizer; with a seed, also a random-init model of `architecture`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config.architectures = [architecture]
    if seed is None:
        config.save_pretrained(folder)
    else:
        import torch
        import transformers

        torch.manual_seed(seed)
        getattr(transformers, architecture)(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.tiny_models OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    build_tiny_llama(out / "tiny-llama")
    build_tiny_t5(out / "tiny-t5")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
