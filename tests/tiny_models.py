"""Tiny random-init models built from configs (torchtune style): fast, offline, real code paths."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from raytune_ft.modeling.sources import resolve_model_source


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
