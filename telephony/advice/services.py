"""The advice use case: what the agent typed → the platform (110 / 12345 / other), the annex line, the deciding
words, the confidence, danger and "unclear → three-way"; and what a transfer records of it on the ticket.

How the parts combine: the danger rule first (any sign → 110, its line, its words, nothing can move it); else
the model's probability per annex line, a line whose catalogue terms the text contains raised by TERM_BOOST
per term — CITY_TERM_BOOST for a city's own line, which the model never saw: its terms are the city's rule and
the only way it is chosen — the agent's category if
picked raised by CATEGORY_BOOST; the platform is the one whose lines weigh most, its heaviest line the clause.
A top platform below THREEWAY_BELOW is "unclear": the plan's three-way call (三方通话) is suggested.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Literal

import msgspec

from telephony.advice.catalogue import OTHER, Catalogue, Item, load_catalogue
from telephony.advice.model import LinearModel, Segmenter, features, normalize
from telephony.advice.rules import danger, term_hits
from telephony.tickets.advised import Advised

TERM_BOOST = 0.15
CITY_TERM_BOOST = 1.0
CATEGORY_BOOST = 2.0
THREEWAY_BELOW = 0.6
MAX_TERMS = 6
CACHE = 512  # recent answers kept: the console asks as the agent types, the key press then finds it here


class Advice(msgspec.Struct, frozen=True, kw_only=True):
    platform: Literal["110", "12345", "other"]
    category: str  # the annex category key (report, enquiry, help, complaint_report, suggestion); "" for other
    category_name: str
    clause_id: str
    clause: str  # the annex line, as written
    terms: list[str]
    confidence: float
    danger: bool
    suggest_threeway: bool
    by: Literal["danger_rule", "model"]
    catalogue: str  # the catalogue's version
    model: str  # the model's version


class AdviceService:
    def __init__(self, catalogue: Catalogue, model: LinearModel) -> None:
        self.catalogue = catalogue
        self.model = model
        self.segmenter = Segmenter(model.words)
        self.cache: OrderedDict[tuple[str, str], Advice] = OrderedDict()

    @classmethod
    def build(cls, catalogue_path: str = "", model_path: str = "") -> AdviceService:
        return cls(load_catalogue(catalogue_path), LinearModel.load(Path(model_path) if model_path else None))

    def advise(self, content: str, category: str = "") -> Advice:
        key = (content, category)
        cached = self.cache.get(key)
        if cached is not None:
            self.cache.move_to_end(key)
            return cached
        answer = self._advise(normalize(content), category)
        self.cache[key] = answer
        if len(self.cache) > CACHE:
            self.cache.popitem(last=False)
        return answer

    def _advise(self, text: str, category: str) -> Advice:
        scores = self.model.score(features(self.segmenter, text))
        hits = term_hits(self.catalogue, text)
        weight = {i: scores.of(i) for i in self.catalogue.items}
        for item_id, found in hits.items():
            known = item_id in self.model.classes
            weight[item_id] += (TERM_BOOST if known else CITY_TERM_BOOST) * len(found)
        if category in self.catalogue.names:
            for item in self.catalogue.lines(category=category):
                weight[item.id] *= CATEGORY_BOOST
        whole = sum(weight.values()) or 1.0
        by_platform = {p: sum(w for i, w in weight.items() if self.catalogue.items[i].platform == p) / whole
                       for p in ("110", "12345", OTHER)}
        sign = danger(text)
        if sign is not None:
            # the line of the first sign, or of the first in the category the agent picked
            picked = [c for c in sign.clauses if c.split(".")[0] == category] or list(sign.clauses)
            line = self.catalogue.item(picked[0]) or self._best(weight, "110")
            return self._answer(line.id, list(sign.words), 1.0, danger=True, threeway=False, by="danger_rule")
        platform = max(by_platform, key=lambda p: by_platform[p])
        line = self._best(weight, platform)
        words = [*hits.get(line.id, ()), *self._words(scores.parts.get(line.id, []))]
        confidence = by_platform[platform]
        return self._answer(line.id, words, confidence, danger=False, threeway=confidence < THREEWAY_BELOW,
                            by="model")

    def _best(self, weight: dict[str, float], platform: str) -> Item:
        return max(self.catalogue.lines(platform=platform), key=lambda i: (weight[i.id], i.id))

    @staticmethod
    def _words(parts: list[tuple[str, float]]) -> list[str]:
        """The words (two characters or more: 我, 了, 想 decide nothing an agent can check) that pushed the chosen
        line up most; a character pair only when no such word did."""
        ranked = sorted((p for p in parts if p[1] > 0), key=lambda p: -p[1])
        words = [f[2:] for f, _ in ranked if f.startswith("w:") and len(f) > 3]
        return words or [f[2:] for f, _ in ranked[:2]]

    def _answer(self, clause_id: str, words: list[str], confidence: float, *, danger: bool, threeway: bool,
                by: Literal["danger_rule", "model"]) -> Advice:
        item = self.catalogue.items[clause_id]
        platform: Literal["110", "12345", "other"] = "110" if item.platform == "110" else \
            "12345" if item.platform == "12345" else "other"
        return Advice(platform=platform, category=item.category,
                      category_name=self.catalogue.names.get(item.category, ""), clause_id=item.id,
                      clause=item.text, terms=list(dict.fromkeys(words))[:MAX_TERMS],
                      confidence=round(confidence, 3), danger=danger, suggest_threeway=threeway, by=by,
                      catalogue=self.catalogue.version, model=self.model.version)

    def record(self, content: str, category: str, target_platform: str, mode: str) -> Advised | None:
        """What a transfer records on its ticket: the advice for the content it carries and whether the agent
        followed it (sent it to the advised platform, or into the three-way call the advice suggested). None
        when the agent typed no content: nothing was advised."""
        if not content.strip():
            return None
        advice = self.advise(content, category)
        followed = advice.platform == target_platform or (mode == "threeway" and advice.suggest_threeway)
        return Advised(platform=advice.platform, category=advice.category, clause=advice.clause_id,
                       confidence=advice.confidence, danger=advice.danger,
                       suggest_threeway=advice.suggest_threeway, followed=followed,
                       catalogue=advice.catalogue, model=advice.model)
