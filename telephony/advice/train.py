"""Retrains the advice model from the corpus and writes `model.json` (tracked; rebuilt byte for byte):

    python -m telephony.advice.train            # writes telephony/advice/model.json
    python -m telephony.advice.train --check    # exit 1 if the tracked file is not what the corpus gives

The corpus is `corpus.txt` next to this file (its header says the format). A sentence is held out — never
trained on, kept for `make bench` — when the first byte of the SHA-256 of its text is below HELD_OUT (a fifth of
the corpus); a hash rather than a random draw, so adding a sentence never moves another between the parts.

Deterministic: inputs sorted, scikit-learn's lbfgs solver (no randomness), weights rounded to integers of
1/SCALE, JSON with sorted keys. The catalogue's terms are added to jieba's dictionary, and recorded in the file
so run time segments the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from telephony.advice.catalogue import OTHER, load_catalogue
from telephony.advice.model import MODEL_FILE, Segmenter, features

HERE = Path(__file__).parent
HELD_OUT = 52  # of 256: about a fifth
SCALE = 1000  # weights are stored as integers of 1/SCALE
MIN_WEIGHT = 500  # |weight| * SCALE below this is dropped: a third of the file, no held-out answer changed
C = 100.0  # inverse regularisation: the corpus is small and clean, so little shrinkage


@dataclass(frozen=True)
class Sentence:
    clause: str
    danger: bool
    tag: str
    text: str

    @property
    def platform(self) -> str:
        return OTHER if self.clause == OTHER else self.clause.split(".")[1]

    @property
    def held_out(self) -> bool:
        return hashlib.sha256(self.text.encode()).digest()[0] < HELD_OUT


def corpus(path: Path | None = None) -> list[Sentence]:
    text = path.read_text(encoding="utf-8") if path else \
        resources.files("telephony.advice").joinpath("corpus.txt").read_text(encoding="utf-8")
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("|")
        if len(parts) != 4 or parts[1] not in ("0", "1"):
            raise ValueError(f"corpus line {n}: want clause|danger|tag|text")
        out.append(Sentence(parts[0], parts[1] == "1", parts[2], parts[3].strip()))
    return out


def terms() -> tuple[str, ...]:
    return tuple(sorted({t for item in load_catalogue().items.values() for t in item.terms}))


def train(sentences: list[Sentence]) -> dict[str, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    catalogue = load_catalogue()
    unknown = sorted({s.clause for s in sentences} - set(catalogue.items))
    if unknown:
        raise ValueError(f"corpus names lines the catalogue has not: {unknown}")
    words = terms()
    segmenter = Segmenter(words)
    training = sorted((s for s in sentences if not s.held_out), key=lambda s: (s.clause, s.text))
    docs = [features(segmenter, s.text) for s in training]
    vectorizer = TfidfVectorizer(analyzer=lambda feats: feats, sublinear_tf=True, min_df=2)
    x = vectorizer.fit_transform(docs)
    model = LogisticRegression(C=C, max_iter=5000, tol=1e-8)
    model.fit(x, [s.clause for s in training])
    names = vectorizer.get_feature_names_out()
    feats: dict[str, Any] = {}
    for j, name in enumerate(names):
        ws = {str(c): round(float(model.coef_[c, j]) * SCALE) for c in range(len(model.classes_))}
        ws = {c: w for c, w in ws.items() if abs(w) >= MIN_WEIGHT}
        if ws:
            feats[str(name)] = [round(float(vectorizer.idf_[j]), 4), ws]
    body = {"classes": [str(c) for c in model.classes_], "intercepts": [round(float(b), 4)
                                                                         for b in model.intercept_],
            "scale": SCALE, "features": feats, "words": list(words), "catalogue": catalogue.version,
            "trained_on": len(training)}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]
    return {"version": f"advice-{digest}", **body}


def render(model: dict[str, Any]) -> bytes:
    return (json.dumps(model, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telephony.advice.train", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the tracked file, write nothing")
    parser.add_argument("--out", default=str(HERE / MODEL_FILE))
    args = parser.parse_args(argv)
    built = render(train(corpus()))
    out = Path(args.out)
    if args.check:
        same = out.exists() and out.read_bytes() == built
        print(f"{out}: {'up to date' if same else 'differs from what the corpus gives'}")
        return 0 if same else 1
    out.write_bytes(built)
    print(f"{out}: {len(built)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
