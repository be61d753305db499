"""The char tokenizer and the tiny Llama/T5 folders that tests and examples build on."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
import torch
from tiny_models import build_tiny_llama, build_tiny_t5, char_tokenizer
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

PRINTABLE = "".join(chr(code) for code in range(32, 127))
CONVERSATION = [
    {"role": "system", "content": "You reverse strings."},
    {"role": "user", "content": "reverse: abc"},
    {"role": "assistant", "content": "cba"},
]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    return char_tokenizer()


def test_special_token_ids_come_first(tokenizer: PreTrainedTokenizerBase) -> None:
    ids = (
        tokenizer.pad_token_id,
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.unk_token_id,
        tokenizer.mask_token_id,
    )
    assert ids == (0, 1, 2, 3, 4)
    assert len(tokenizer) == 5 + 95 + 1


@pytest.mark.parametrize(
    "text", [PRINTABLE, "two  spaces", "  padded  ", "line one\nline two\n", "a . b , c"]
)
def test_round_trips_printable_text_including_spaces(
    tokenizer: PreTrainedTokenizerBase, text: str
) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text
    with_bos = tokenizer(text)["input_ids"]
    assert tokenizer.decode(with_bos, skip_special_tokens=True) == text


def test_bos_is_added_only_with_special_tokens(tokenizer: PreTrainedTokenizerBase) -> None:
    plain = tokenizer("ab", add_special_tokens=False)["input_ids"]
    assert len(plain) == 2
    assert tokenizer("ab")["input_ids"] == [tokenizer.bos_token_id, *plain]
    pair = tokenizer("ab", "cd")["input_ids"]
    assert pair[0] == tokenizer.bos_token_id
    assert pair.count(tokenizer.bos_token_id) == 1


def test_unknown_characters_map_to_unk(tokenizer: PreTrainedTokenizerBase) -> None:
    assert tokenizer("é", add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id]


def test_offsets_point_at_single_characters(tokenizer: PreTrainedTokenizerBase) -> None:
    encoded = tokenizer("ab c", return_offsets_mapping=True)
    assert encoded["offset_mapping"] == [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4)]


def test_chat_template_renders_role_headers(tokenizer: PreTrainedTokenizerBase) -> None:
    rendered = tokenizer.apply_chat_template(CONVERSATION[1:2], tokenize=False)
    assert rendered == "<|user|>\nreverse: abc</s>\n"
    prompt = tokenizer.apply_chat_template(
        CONVERSATION[1:2], tokenize=False, add_generation_prompt=True
    )
    assert prompt == rendered + "<|assistant|>\n"


def test_chat_template_renderings_are_prefixes(tokenizer: PreTrainedTokenizerBase) -> None:
    renderings = [
        tokenizer.apply_chat_template(CONVERSATION[:k], tokenize=False)
        for k in range(1, len(CONVERSATION) + 1)
    ]
    for shorter, longer in pairwise(renderings):
        assert longer.startswith(shorter)
    prompt = tokenizer.apply_chat_template(
        CONVERSATION[:2], tokenize=False, add_generation_prompt=True
    )
    assert renderings[2].startswith(prompt)


def test_turn_end_is_the_eos_token(tokenizer: PreTrainedTokenizerBase) -> None:
    ids = tokenizer(tokenizer.apply_chat_template(CONVERSATION[1:2], tokenize=False))["input_ids"]
    assert ids[-2:] == [
        tokenizer.eos_token_id,
        tokenizer("\n", add_special_tokens=False)["input_ids"][0],
    ]


def test_save_and_reload_keeps_behaviour(
    tokenizer: PreTrainedTokenizerBase, tmp_path: Path
) -> None:
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.chat_template == tokenizer.chat_template
    assert reloaded.apply_chat_template(CONVERSATION, tokenize=False) == (
        tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    )
    text = "keep  the . spaces "
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert reloaded.decode(reloaded(text)["input_ids"], skip_special_tokens=True) == text
    assert (reloaded.pad_token, reloaded.mask_token) == ("<pad>", "<mask>")


def test_tiny_llama_from_saved_config_gives_finite_loss(tmp_path: Path) -> None:
    folder = build_tiny_llama(tmp_path / "llama")
    assert not list(folder.glob("*.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    batch = tokenizer(["reverse: abc", "hi"], padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    loss = model(**batch, labels=labels).loss
    assert torch.isfinite(loss)
    # Random init over 101 tokens: loss sits near log(101), not at some degenerate value.
    assert 3.0 < loss.item() < 6.0


def test_tiny_t5_from_saved_config_gives_finite_loss(tmp_path: Path) -> None:
    folder = build_tiny_t5(tmp_path / "t5")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(folder))
    batch = tokenizer(["reverse: abc", "reverse: de"], padding=True, return_tensors="pt")
    targets = tokenizer(["cba", "ed"], padding=True, return_tensors="pt")
    labels = targets["input_ids"].masked_fill(targets["attention_mask"] == 0, -100)
    loss = model(**batch, labels=labels).loss
    assert torch.isfinite(loss)


def test_weights_are_saved_only_when_asked(tmp_path: Path) -> None:
    folder = build_tiny_llama(tmp_path / "llama", seed=3, weights=True)
    model = AutoModelForCausalLM.from_pretrained(folder)
    again = AutoModelForCausalLM.from_pretrained(build_tiny_llama(tmp_path / "b", 3, True))
    first = next(iter(model.state_dict().values()))
    assert torch.equal(first, next(iter(again.state_dict().values())))
    assert model.config.vocab_size == len(char_tokenizer())
