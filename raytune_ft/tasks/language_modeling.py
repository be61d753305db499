"""Language-model tasks: causal-LM SFT (templates or chat messages, optional packing),
causal-LM continued pretraining on raw text, and masked-LM continued pretraining."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from transformers import DataCollatorForLanguageModeling

from raytune_ft.errors import UserError
from raytune_ft.tasks.base import (
    IGNORE_INDEX,
    Batch,
    Row,
    Stats,
    Task,
    reduce_token_stats,
    text_cell,
    token_stats,
    where,
)
from raytune_ft.tasks.packing import collate_packed, pack_row, plan_rows

PROMPT_IDS = "prompt_ids"  # validation: the prompt alone, for generation
REFERENCE = "reference"  # validation: the response text generation is compared with


def pad_collator(pad_token_id: int) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
    """Right-pads input_ids (pad id), attention_mask (0) and labels (-100) to the batch's
    longest row: the labels keep the masking the dataset gave them."""

    def collate(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        ids, mask, labels = [], [], []
        for f in features:
            pad = longest - len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [pad_token_id] * pad)
            mask.append([1] * len(f["input_ids"]) + [0] * pad)
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * pad)
        return {
            "input_ids": torch.tensor(ids),
            "attention_mask": torch.tensor(mask),
            "labels": torch.tensor(labels),
        }

    return collate


class _CausalTask(Task):
    auto_model = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"
    generative = True

    def collator(self, tokenizer: Any, dtype: torch.dtype, split: str) -> Any:
        return pad_collator(tokenizer.pad_token_id)

    def example_stats(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> Stats:
        return token_stats(logits, batch["labels"], shift=True)

    def metrics(self, stats: Stats, prefix: str) -> dict[str, float]:
        return reduce_token_stats(stats, prefix)


class SftTask(_CausalTask):
    """Prompt -> response pairs; loss only on response tokens (and the EOS after them)."""

    @property
    def text_columns(self) -> list[str]:
        return [] if self.section.messages_column else self.section.input_columns

    @property
    def key_columns(self) -> list[str]:
        return self.section.input_columns

    def normalize(self, row: Row) -> Row:
        if self.section.messages_column is None:
            return {c: text_cell(row, c, allow_empty=False) for c in self.section.input_columns}
        column = self.section.messages_column
        messages = row.get(column)
        problem = _messages_problem(messages)
        if problem:
            raise UserError(
                f"{where(row)}: column {column!r}: {problem}; expected a list of "
                '{"role": ..., "content": ...} objects with at least one assistant turn'
            )
        return {column: [{"role": m["role"], "content": m["content"]} for m in messages]}

    def tokenize(
        self, batch: Batch, tokenizer: Any, max_length: int, labels: list[str] | None
    ) -> tuple[Batch, list[int]]:
        out: Batch = {"input_ids": [], "labels": [], PROMPT_IDS: [], REFERENCE: []}
        kept = []
        for i in range(len(next(iter(batch.values())))):
            row = {k: v[i] for k, v in batch.items()}
            if self.section.messages_column is None:
                ids, label_ids, prompt, reference = self._from_templates(row, tokenizer)
            else:
                ids, label_ids, prompt, reference = self._from_messages(row, tokenizer)
            if len(ids) > max_length:
                cut = slice(len(ids) - max_length, None)
                if self.section.truncation_side == "right":
                    cut = slice(0, max_length)
                ids, label_ids = ids[cut], label_ids[cut]
            if all(label == IGNORE_INDEX for label in label_ids):
                continue  # the response was truncated away: nothing to learn from this row
            kept.append(i)
            out["input_ids"].append(ids)
            out["labels"].append(label_ids)
            out[PROMPT_IDS].append(prompt[-max_length:])
            out[REFERENCE].append(reference)
        return out, kept

    def _from_templates(self, row: Row, tokenizer: Any) -> tuple[list[int], ...]:
        prompt_text = self.section.prompt_template.format_map(row)
        response_text = self.section.response_template.format_map(row)
        prompt = tokenizer(prompt_text)["input_ids"]
        response = tokenizer(response_text, add_special_tokens=False)["input_ids"]
        if self.section.add_eos:
            response = [*response, tokenizer.eos_token_id]
        return prompt + response, [IGNORE_INDEX] * len(prompt) + response, prompt, response_text

    def _from_messages(self, row: Row, tokenizer: Any) -> tuple[Any, ...]:
        messages = row[self.section.messages_column]
        render = _chat_renderer(tokenizer)
        full = render(messages, False)
        spans = []  # character spans of assistant turns in the full rendering
        for k, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before, upto = render(messages[:k], True), render(messages[: k + 1], False)
            if not (full.startswith(upto) and upto.startswith(before)):
                raise UserError(
                    "the tokenizer's chat template renders a conversation differently from its "
                    "beginning, so assistant turns cannot be located; expected a template "
                    "whose rendering of the first k messages is a prefix of the whole"
                )
            spans.append((len(before), len(upto)))
        encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        label_ids = [
            token if any(a <= start < b for a, b in spans) else IGNORE_INDEX
            for token, (start, _) in zip(ids, encoded["offset_mapping"], strict=True)
        ]
        last = max(k for k, m in enumerate(messages) if m["role"] == "assistant")
        prompt_text = render(messages[:last], True)
        prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        return ids, label_ids, prompt, messages[last]["content"]

    def finish_split(self, data: Any, split: str, tokenizer: Any, max_length: int) -> Any:
        if split != "train" or not self.section.packing:
            return data
        from datasets import Dataset

        examples = data.select_columns(["input_ids", "labels"]).to_list()
        plan = plan_rows([len(e["input_ids"]) for e in examples], max_length)
        rows = [
            pack_row([examples[i] for i in part], max_length, tokenizer.pad_token_id)
            for part in plan
        ]
        return Dataset.from_list(rows)

    def feature_columns(self, split: str) -> list[str]:
        if split == "train" and self.section.packing:
            return ["input_ids", "labels", "position_ids", "segment_ids"]
        return ["input_ids", "labels"]

    def collator(self, tokenizer: Any, dtype: torch.dtype, split: str) -> Any:
        if split == "train" and self.section.packing:
            return lambda rows: collate_packed(rows, dtype)
        return pad_collator(tokenizer.pad_token_id)

    def generate(
        self, model: Any, tokenizer: Any, rows: list[dict[str, Any]], device: Any, synced: bool
    ) -> Stats:
        # Left padding: every prompt ends where generation starts.
        prompts = [list(r[PROMPT_IDS]) for r in rows]
        longest = max(len(p) for p in prompts)
        ids = [[tokenizer.pad_token_id] * (longest - len(p)) + p for p in prompts]
        mask = [[0] * (longest - len(p)) + [1] * len(p) for p in prompts]
        output = model.generate(
            input_ids=torch.tensor(ids, device=device),
            attention_mask=torch.tensor(mask, device=device),
            max_new_tokens=self.section.generation.max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            synced_gpus=synced,
        )
        texts = tokenizer.batch_decode(output[:, longest:], skip_special_tokens=True)
        return [(t.strip(), r[REFERENCE].strip()) for t, r in zip(texts, rows, strict=True)]


def _messages_problem(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"holds {type(messages).__name__}, not a non-empty list"
    for n, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"message {n} is a {type(message).__name__}, not an object"
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not role:
            return f"message {n} has no role"
        if not isinstance(content, str):
            return f"message {n} ({role}) has no text content"
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        return "no assistant message with content"
    return None


def _chat_renderer(tokenizer: Any) -> Callable[[list[dict[str, str]], bool], str]:
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(
            "task.messages_column: the tokenizer has no chat template; expected a chat model's "
            "tokenizer, or prompt_template and response_template instead"
        )

    def render(messages: list[dict[str, str]], generation_prompt: bool) -> str:
        if not messages:  # a conversation that opens with the assistant
            return ""
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )

    return render


class _RawText:
    """Tasks that read one text column (pretraining-style)."""

    section: Any

    @property
    def text_columns(self) -> list[str]:
        return [self.section.text_column]

    def normalize(self, row: Row) -> Row:
        return {self.section.text_column: text_cell(row, self.section.text_column)}


class CausalLmTask(_RawText, _CausalTask):
    """Raw text: documents end with EOS, are joined, and are cut into max_length rows."""

    def tokenize(
        self, batch: Batch, tokenizer: Any, max_length: int, labels: list[str] | None
    ) -> tuple[Batch, list[int]]:
        with _quiet_length_warning(tokenizer):
            encoded = tokenizer(batch[self.section.text_column])["input_ids"]
        ids = [[*e, tokenizer.eos_token_id] for e in encoded]
        return {"input_ids": ids}, list(range(len(ids)))

    def finish_split(self, data: Any, split: str, tokenizer: Any, max_length: int) -> Any:
        """Concatenate and chunk (batched map): rows cross document boundaries, as in
        pretraining; a last partial row is kept so no text is lost."""

        def chunk(batch: Batch) -> Batch:
            stream = [t for ids in batch["input_ids"] for t in ids]
            rows = [stream[i : i + max_length] for i in range(0, len(stream), max_length)]
            rows = [r for r in rows if len(r) > 1]
            return {"input_ids": rows, "labels": [list(r) for r in rows]}

        return data.map(
            chunk, batched=True, batch_size=1000, remove_columns=data.column_names, desc="chunk"
        )


@contextlib.contextmanager
def _quiet_length_warning(tokenizer: Any):
    # Documents longer than the model's length are expected here: they are chunked next.
    saved = tokenizer.model_max_length
    tokenizer.model_max_length = int(1e30)
    try:
        yield
    finally:
        tokenizer.model_max_length = saved


class MaskedLmTask(_RawText, Task):
    """BERT-style: a share of tokens is masked and predicted. Evaluation masks with a fixed
    seed, so evaluations compare the same masked positions."""

    auto_model = "AutoModelForMaskedLM"
    generative = True

    def tokenize(
        self, batch: Batch, tokenizer: Any, max_length: int, labels: list[str] | None
    ) -> tuple[Batch, list[int]]:
        if tokenizer.mask_token is None:
            raise UserError(
                "task.type masked-lm: the tokenizer has no mask token; expected a masked-LM "
                "model's tokenizer (BERT, RoBERTa, ...)"
            )
        encoded = tokenizer(
            batch[self.section.text_column],
            truncation=True,
            max_length=max_length,
            return_special_tokens_mask=True,
        )
        return dict(encoded), list(range(len(encoded["input_ids"])))

    def feature_columns(self, split: str) -> list[str]:
        return ["input_ids", "attention_mask", "token_type_ids", "special_tokens_mask"]

    def collator(self, tokenizer: Any, dtype: torch.dtype, split: str) -> Any:
        collate = DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=self.section.mlm_probability, return_tensors="pt"
        )
        if split == "train":
            return collate

        def seeded(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(len(features))
                return collate(features)

        return seeded

    def example_stats(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> Stats:
        return token_stats(logits, batch["labels"], shift=False)

    def metrics(self, stats: Stats, prefix: str) -> dict[str, float]:
        return reduce_token_stats(stats, prefix)
