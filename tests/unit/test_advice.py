"""Scope advice without a network: the catalogue is the plan's annex word for word and a city can extend it; the
danger rule sends any danger to 110 whatever the model or the agent's category says; the hard near-misses land
on the right side; the corpus covers every line of the annex; the tracked model file is exactly what the
training command makes of the corpus; and a transfer's record says what was advised and whether it was
followed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from telephony.advice import train
from telephony.advice.catalogue import load_catalogue
from telephony.advice.model import MODEL_FILE
from telephony.advice.services import AdviceService
from telephony.errors import ConfigError

ROOT = Path(__file__).parents[2]
SHARED_SCOPE = ROOT.parent / "shared" / "domain" / "scope.yaml"


@pytest.fixture(scope="module")
def advisor() -> AdviceService:
    return AdviceService.build()


def test_the_catalogue_quotes_every_line_of_the_annex_with_a_version() -> None:
    catalogue = load_catalogue()
    assert catalogue.version and set(catalogue.names) == {"report", "enquiry", "help", "complaint_report",
                                                          "suggestion"}
    assert len(catalogue.lines("110")) == 13 and len(catalogue.lines("12345")) == 9
    if SHARED_SCOPE.exists():  # the annex as the project's domain files hold it (its `rules:` is prose)
        shared = yaml.safe_load(SHARED_SCOPE.read_text(encoding="utf-8").split("\nrules:", 1)[0])["categories"]
        quoted = [(key, p, text) for key, cat in shared.items() for p in ("110", "12345") for text in cat[p]]
        ours = [(i.category, i.platform, i.text) for i in catalogue.items.values() if i.id != "other"]
        assert ours == quoted


def test_a_city_extends_the_annex_with_its_own_lines(tmp_path: Path, advisor: AdviceService) -> None:
    city = tmp_path / "scope-city.yaml"
    city.write_text(yaml.safe_dump({"version": "city-2026.2", "extends": "builtin", "categories": {
        "help": {"name": "求助", "12345": [{"id": "help.12345.city-1", "text": "共享单车押金退还",
                                          "terms": ["押金"]}]},
        "pets": {"name": "宠物", "12345": [{"id": "pets.12345.1", "text": "犬只登记", "terms": ["狗证"]}]}}},
        allow_unicode=True), encoding="utf-8")
    catalogue = load_catalogue(str(city))
    assert catalogue.version == "city-2026.2" and catalogue.item("help.110.1") is not None
    assert catalogue.item("pets.12345.1") is not None and catalogue.names["pets"] == "宠物"
    extended = AdviceService(catalogue, advisor.model)
    answer = extended.advise("我想办一个狗证，去哪里办")
    assert (answer.platform, answer.clause_id, answer.catalogue) == ("12345", "pets.12345.1", "city-2026.2")
    assert "狗证" in answer.terms


@pytest.mark.parametrize(("body", "key"), [
    ({"categories": {}}, "version"),
    ({"version": "v1", "extends": "somewhere"}, "extends"),
    ({"version": "v1", "extends": "builtin", "categories": {"help": {"name": "求助", "110": [
        {"id": "help.110.1", "text": "重复的编号"}]}}}, "categories.help.110[6]"),
    ({"version": "v1", "extends": "builtin", "categories": {"help": {"name": "求助", "110": [
        {"id": "help.12345.9", "text": "平台不符"}]}}}, "categories.help.110[6]"),
])
def test_a_bad_city_catalogue_is_refused_naming_the_key(tmp_path: Path, body: dict[str, object], key: str) -> None:
    city = tmp_path / "bad.yaml"
    city.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_catalogue(str(city))
    assert err.value.details["key"] == key and str(city) in err.value.message


@pytest.mark.parametrize(("text", "clause"), [
    ("家里闻到很浓的煤气味", "help.110.4"),
    ("我的孩子丢了，在超市门口", "help.110.3"),
    ("楼上太吵，我上去说了一句，他拿着菜刀追我", "report.110.2"),
    ("有人站在桥上说不想活了", "help.110.1"),
    ("邻居家着火了", "report.110.5"),
    ("电梯困人，一名老人被困，请求救援", "help.110.2"),
])
@pytest.mark.parametrize("category", ["", "enquiry", "suggestion", "help"])
def test_danger_goes_to_110_whatever_the_category(advisor: AdviceService, text: str, clause: str,
                                                  category: str) -> None:
    answer = advisor.advise(text, category)
    assert (answer.platform, answer.danger, answer.by, answer.suggest_threeway) == ("110", True, "danger_rule", False)
    assert answer.clause_id == clause and answer.terms
    assert answer.clause == load_catalogue().items[clause].text


@pytest.mark.parametrize(("text", "platform", "clause"), [
    ("我想办理燃气开户，新房刚交房", "12345", "help.12345.4"),
    ("我的身份证丢了，想补办", "12345", "help.12345.5"),
    ("楼上邻居每天半夜拖椅子，噪音太大", "12345", "complaint_report.12345.1"),
    ("和邻居为了停车位吵了几句，想请社区调解", "12345", "help.12345.6"),
    ("建议在小区门口增设公交站", "12345", "suggestion.12345.1"),
    ("请问公积金提取需要什么材料", "12345", "enquiry.12345.1"),
    ("我想问一下明天会不会下雨", "other", "other"),
    ("我的电动车昨晚停在楼下被偷了", "110", "report.110.1"),
    ("出警的民警态度很差，现在还在我家门口", "110", "complaint_report.110.1"),
])
def test_near_misses_land_on_the_right_side(advisor: AdviceService, text: str, platform: str, clause: str) -> None:
    answer = advisor.advise(text)
    assert (answer.platform, answer.clause_id, answer.danger) == (platform, clause, False), answer
    assert answer.clause == load_catalogue().items[clause].text


def test_unclear_suggests_the_threeway_call_and_odd_text_still_answers(advisor: AdviceService) -> None:
    unclear = advisor.advise("这个事情我也说不清楚归谁管")
    assert unclear.suggest_threeway and unclear.confidence < 0.6 and not unclear.danger
    for odd in ("😀" * 50, "\u202eابحث\u0000\ud800", "ＡＢＣ　１２３", "<script>alert(1)</script>", " \n\t x"):
        answer = advisor.advise(odd)
        assert answer.platform in ("110", "12345", "other") and 0 <= answer.confidence <= 1


def test_the_corpus_covers_every_line_for_both_platforms_and_no_danger_is_advised_away() -> None:
    sentences = train.corpus()
    catalogue = load_catalogue()
    assert len(sentences) >= 600 and len({s.text for s in sentences}) == len(sentences)
    by_line = {i: sum(s.clause == i for s in sentences) for i in catalogue.items}
    assert min(by_line.values()) >= 15, by_line
    held = [s for s in sentences if s.held_out]
    assert 0.15 < len(held) / len(sentences) < 0.3
    assert {s.platform for s in held} == {"110", "12345", "other"}
    advisor = AdviceService.build()
    away = [s.text for s in sentences if s.danger and advisor.advise(s.text).platform != "110"]
    assert away == []


def test_the_tracked_model_file_is_what_the_training_command_makes(tmp_path: Path) -> None:
    out = tmp_path / MODEL_FILE
    assert train.main(["--out", str(out)]) == 0
    tracked = (ROOT / "telephony" / "advice" / MODEL_FILE).read_bytes()
    assert out.read_bytes() == tracked, "run `python -m telephony.advice.train` and commit model.json"
    assert train.main(["--check"]) == 0
    assert len(tracked) < 200_000  # small enough to track


def test_a_transfer_records_what_was_advised_and_whether_it_was_followed(advisor: AdviceService) -> None:
    danger = "来电人称听到邻居家有人呼救并有打斗声"
    followed = advisor.record(danger, "report", "110", "transfer")
    assert followed is not None and followed.followed and followed.danger and followed.platform == "110"
    assert followed.catalogue == advisor.catalogue.version and followed.model == advisor.model.version
    ignored = advisor.record("我想办理燃气开户", "", "110", "transfer")
    assert ignored is not None and not ignored.followed and ignored.platform == "12345"
    assert advisor.record("   ", "", "110", "transfer") is None
    unclear = advisor.record("这个事情我也说不清楚归谁管", "", "110", "threeway")
    assert unclear is not None and unclear.suggest_threeway and unclear.followed
