"""Write the small synthetic example datasets under experiments/data/.

Deterministic: each dataset draws from its own random.Random(0), so regenerating one never
changes another. Run from anywhere: `python experiments/data/make_synthetic.py`.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable
from pathlib import Path

DATA = Path(__file__).resolve().parent
ALPHABET = "abcdef"

NUMBER_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen",
]  # fmt: skip
NUMBER_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

TOPIC_KEYWORDS = {
    "sports": ["football", "tennis", "goal", "match", "team", "coach", "stadium", "referee"],
    "weather": ["rain", "sunny", "storm", "forecast", "cloudy", "wind", "snow", "temperature"],
    "food": ["pizza", "recipe", "dinner", "cheese", "soup", "bakery", "spicy", "chef"],
    "travel": ["flight", "hotel", "passport", "airport", "luggage", "beach", "journey", "tourist"],
}
FILLER_WORDS = [
    "the", "a", "today", "we", "talked", "about", "my", "friend",
    "after", "really", "some", "this", "week", "and", "was", "with",
]  # fmt: skip

ADJECTIVE_VALUES = {
    "awful": -2.0,
    "terrible": -2.0,
    "bad": -1.0,
    "poor": -1.0,
    "mediocre": -0.5,
    "dull": -0.5,
    "okay": 0.0,
    "fine": 0.5,
    "decent": 0.5,
    "good": 1.0,
    "nice": 1.0,
    "great": 1.5,
    "lovely": 1.5,
    "excellent": 2.0,
    "amazing": 2.0,
}
REVIEW_SUBJECTS = [
    "the food", "the service", "the price", "the staff",
    "the room", "the view", "the music", "the location",
]  # fmt: skip


def random_word(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(3, 6)))


def reverse_rows(count: int = 2000) -> list[dict[str, str]]:
    rng = random.Random(0)
    words: dict[str, None] = {}  # a dict keeps first-drawn order, so the output is stable
    while len(words) < count:
        words[random_word(rng)] = None
    return [{"word": word, "reversed": word[::-1]} for word in words]


def chat_rows(count: int = 1200) -> list[dict[str, list[dict[str, str]]]]:
    rng = random.Random(0)
    rows = []
    for _ in range(count):
        messages = []
        if rng.random() < 0.5:
            messages.append({"role": "system", "content": "You reverse strings."})
        for _ in range(rng.randint(1, 2)):
            word = random_word(rng)
            messages.append({"role": "user", "content": f"reverse: {word}"})
            messages.append({"role": "assistant", "content": word[::-1]})
        rows.append({"messages": messages})
    return rows


def number_words(n: int) -> str:
    """English words for 0..999, British style: 312 -> "three hundred and twelve"."""
    if n < 20:
        return NUMBER_ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return NUMBER_TENS[tens] + (f"-{NUMBER_ONES[ones]}" if ones else "")
    hundreds, rest = divmod(n, 100)
    head = f"{NUMBER_ONES[hundreds]} hundred"
    return f"{head} and {number_words(rest)}" if rest else head


def number_rows() -> list[tuple[str, str]]:
    rows = [(number_words(n), str(n)) for n in range(1000)]
    random.Random(0).shuffle(rows)
    return rows


def topic_rows(count: int = 1200) -> list[dict[str, object]]:
    rng = random.Random(0)
    names = list(TOPIC_KEYWORDS)
    rows = []
    for _ in range(count):
        chosen = sorted(rng.sample(names, rng.randint(1, 3)), key=names.index)
        words = [w for t in chosen for w in rng.sample(TOPIC_KEYWORDS[t], rng.randint(1, 2))]
        words += rng.sample(FILLER_WORDS, rng.randint(2, 4))
        rng.shuffle(words)
        text = " ".join(words)
        rows.append({"text": text[0].upper() + text[1:] + ".", "topics": chosen})
    return rows


def rating_rows(count: int = 1000) -> list[tuple[str, float]]:
    rng = random.Random(0)
    adjectives = list(ADJECTIVE_VALUES)
    rows = []
    for _ in range(count):
        size = rng.randint(2, 4)
        picked = [rng.choice(adjectives) for _ in range(size)]
        subjects = rng.sample(REVIEW_SUBJECTS, size)
        phrases = [f"{subject} was {adj}" for subject, adj in zip(subjects, picked, strict=True)]
        review = ", ".join(phrases)
        score = round(sum(ADJECTIVE_VALUES[a] for a in picked) / size, 3)
        rows.append((review[0].upper() + review[1:] + ".", score))
    return rows


def corpus_lines() -> list[str]:
    """The sentence column of the sentiment files, in file-name order, header rows dropped."""
    lines = []
    for file in sorted((DATA / "sentiment").glob("*_labelled.txt")):
        # newline="" keeps the NEL (U+0085) inside two imdb sentences instead of splitting on it.
        with file.open(encoding="utf-8", newline="") as handle:
            records = handle.read().replace("\r\n", "\n").split("\n")
        header, *body = records
        if not header.startswith("sentence\t"):
            raise ValueError(f"{file}: expected a 'sentence<TAB>score' header, got {header!r}")
        lines += [record.split("\t", 1)[0] for record in body if record.strip()]
    return lines


def write_jsonl(path: Path, rows: Iterable[object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def write_delimited(
    path: Path, header: list[str], rows: Iterable[Iterable[object]], delimiter: str = ","
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(line + "\n" for line in lines)


def main() -> None:
    write_jsonl(DATA / "reverse" / "train.jsonl", reverse_rows())
    write_jsonl(DATA / "chat" / "train.jsonl", chat_rows())
    write_delimited(
        DATA / "numbers" / "train.tsv", ["words", "digits"], number_rows(), delimiter="\t"
    )
    write_jsonl(DATA / "topics" / "train.jsonl", topic_rows())
    write_delimited(DATA / "ratings" / "train.csv", ["review", "score"], rating_rows())
    write_lines(DATA / "corpus" / "reviews.txt", corpus_lines())


if __name__ == "__main__":
    main()
