"""The trained part of the advice: jieba words and character pairs of the text, weighted tf-idf, one linear score
per annex line (and `other`), turned into probabilities. The weights come from `model.json`, which `train.py`
writes with scikit-learn from the corpus; scoring here is plain Python over a few dozen features, so one answer
costs tens of microseconds and no scikit-learn object is loaded at run time.

`features` is the one definition of what the model reads: the training command and the service both call it.
"""

from __future__ import annotations

import json
import logging
import math
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jieba

MODEL_FILE = "model.json"
# The model reads the start of a long text only (a caller states the matter first); this bounds its cost. The
# danger rule reads all of it.
MODEL_CHARS = 300
WORD = re.compile(r"[\w]", re.UNICODE)


def normalize(text: str) -> str:
    """Full-width forms folded (ＡＢＣ１２３ → abc123), lower case, runs of blanks as one space."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


class Segmenter:
    """jieba's dictionary and nothing else (no HMM guessing of new words): the same words at training and at run
    time, on every machine. Loading the dictionary takes about a second: done once, when the service is built."""

    def __init__(self, words: tuple[str, ...] = ()) -> None:
        logging.getLogger("jieba").setLevel(logging.WARNING)
        self.tokenizer = jieba.Tokenizer()
        self.tokenizer.initialize()
        for word in words:
            self.tokenizer.add_word(word)

    def words(self, text: str) -> list[str]:
        return [w for w in self.tokenizer.cut(text, HMM=False) if WORD.search(w)]


def features(segmenter: Segmenter, text: str) -> list[str]:
    """What the model reads of a text: its words (`w:`) and the pairs of adjacent characters within each run of
    letters (`c:`), which carry the meaning when a word is split differently."""
    text = normalize(text)[:MODEL_CHARS]
    out = [f"w:{w}" for w in segmenter.words(text)]
    for run in re.findall(r"\w+", text):
        out += [f"c:{run[i:i + 2]}" for i in range(len(run) - 1)]
    return out


@dataclass(frozen=True)
class Scores:
    """Probabilities per class (an annex line's id or `other`), highest first, and each feature's part in each
    class's score (what `terms` is drawn from)."""

    ranked: list[tuple[str, float]]
    parts: dict[str, list[tuple[str, float]]]

    def of(self, label: str) -> float:
        return next((p for c, p in self.ranked if c == label), 0.0)


class LinearModel:
    """A multinomial logistic regression over sublinear tf-idf features, L2-normalised (scikit-learn's
    TfidfVectorizer(sublinear_tf=True) and LogisticRegression, exported by train.py)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.version: str = data["version"]
        self.classes: list[str] = data["classes"]
        self.intercepts: list[float] = data["intercepts"]
        self.scale: float = data["scale"]
        self.words: tuple[str, ...] = tuple(data["words"])
        # feature -> (idf, {class index: weight})
        self.weights: dict[str, tuple[float, dict[int, float]]] = {
            f: (idf, {int(c): w / self.scale for c, w in ws.items()}) for f, (idf, ws) in data["features"].items()}

    @classmethod
    def load(cls, path: Path | None = None) -> LinearModel:
        raw = path.read_bytes() if path else resources.files("telephony.advice").joinpath(MODEL_FILE).read_bytes()
        return cls(json.loads(raw))

    def score(self, feats: list[str]) -> Scores:
        counts: dict[str, int] = {}
        for f in feats:
            if f in self.weights:
                counts[f] = counts.get(f, 0) + 1
        x = {f: (1 + math.log(n)) * self.weights[f][0] for f, n in counts.items()}
        norm = math.sqrt(sum(v * v for v in x.values())) or 1.0
        totals = list(self.intercepts)
        parts: dict[str, list[tuple[str, float]]] = {c: [] for c in self.classes}
        for f, v in x.items():
            for c, w in self.weights[f][1].items():
                part = v / norm * w
                totals[c] += part
                parts[self.classes[c]].append((f, part))
        top = max(totals)
        exp = [math.exp(t - top) for t in totals]
        whole = sum(exp)
        ranked = sorted(((c, e / whole) for c, e in zip(self.classes, exp, strict=True)), key=lambda cp: -cp[1])
        return Scores(ranked, parts)
