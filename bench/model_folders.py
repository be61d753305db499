"""Random-init model folders for machines that cannot download weights (the GPU machine).

Writes, under OUT, `bert-large/` (a BERT-large-shaped classifier body: 24 layers, hidden 1024,
335M parameters, as in issue 8's GPU run) and `minilm/` (all-MiniLM-L6-v2's shape, for the
quickstart sweep): each a config.json and the tokenizer read from TOKENIZER (a folder with the
MiniLM vocab.txt). `minilm/` also gets random weights, since the project refuses LoRA over
`model.init: random`; specs use `model.init: random` over `bert-large/`.

    python bench/model_folders.py --tokenizer DIR --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

SHAPES = {
    "bert-large": {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
    },
    "minilm": {
        "hidden_size": 384,
        "num_hidden_layers": 6,
        "num_attention_heads": 12,
        "intermediate_size": 1536,
    },
}


WITH_WEIGHTS = {"minilm"}


def write_folders(tokenizer_dir: Path, out: Path) -> dict[str, Path]:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    folders = {}
    for name, shape in SHAPES.items():
        folder = out / name
        config = BertConfig(vocab_size=tokenizer.vocab_size, pad_token_id=0, **shape)
        config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        if name in WITH_WEIGHTS:
            torch.manual_seed(0)
            BertModel(config).save_pretrained(folder)
        folders[name] = folder
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for name, folder in write_folders(args.tokenizer, args.out).items():
        print(f"{name}: {folder}")


if __name__ == "__main__":
    main()
