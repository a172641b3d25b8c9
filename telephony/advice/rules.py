"""The annex as rules: the danger rule, which overrides the model, and the catalogue's terms.

Danger (危及人身、财产安全或者公共安全): any of these signs sends the matter to 110 whatever the model thinks —
the plan has 110 dispatch first (110及时派警先行处置), and advising a danger away from 110 is the one mistake
the advisor must never make. So the signs are broad and take no account of negation: a false alarm costs the
agent a glance, a miss could cost a life. Each sign names the annex line it points at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from telephony.advice.catalogue import Catalogue, Item

DANGER_SIGNS: tuple[tuple[str, str], ...] = (
    ("help.110.1", r"溺水|落水|跳河|跳楼|跳下|坠楼|从楼上掉|自杀|轻生|不想活|想不开|割腕|农药|服毒"
                   r"|安眠药|烧炭|结束自己的生命|活着没意思|沉下去|抽筋|天台|楼顶边|站在.{0,4}(栏杆外|楼顶|边上)"
                   r"|漂着一个人|死是活|铁轨|劝不下来"),
    ("report.110.1", r"持刀|拿刀|拿着刀|刀砍|砍人|捅|抢劫|打劫|抢走|抢包|绑架|撕票|赎金|劫持|强奸|入室|撬门|撬锁|撬车"
                     r"|投毒|投东西|杀人|弄死|安全账户|(正在|马上)转账|冒充(公检法|警察|客服)|公检法|非法拘禁|关在"
                     r"|不让走|拉上.{0,4}车|偷我|偷了我|正在偷|抓住(他|小偷)|跟踪|枪|炸药|炸弹|滴答声|扬言"
                     r"|报复社会|同归于尽"),
    ("report.110.2", r"打起来|打架|打斗|斗殴|互殴|打人|打了我|打我(?!电话|手机)|被打|殴打|打伤|动手打|推倒|打骂|踹门"
                     r"|砸(人|车|门|东西|了我家|别人|路过)|菜刀|酒瓶|棍子|棍棒|砖头|耍酒疯|醉汉|闹事|猥亵|流血"
                     r"|受伤|头磕破|追着人|追我|围住打|被.{0,4}打了|被人打|围着.{0,6}打|不给就打|推搡"
                     r"|冲突|摔东西"),
    ("report.110.3", r"车祸|撞(了|倒|飞|上|到|人|在一起|断)|被撞(?!坏)|追尾|翻车|侧翻|翻在|肇事逃逸|逃逸|酒驾|醉驾"
                     r"|逆行|飙车|闯红灯"),
    ("report.110.4", r"聚集|围堵|堵路|群殴|械斗|打群架|冲击|对峙|踩踏|围攻|挤倒|失控|冲进|堵住了?(厂门|马路|路口|大门)"
                     r"|(几十|上百|一群|一伙|一帮)个?人.{0,8}(围|堵|冲|打|闹|砸|聚)"),
    ("report.110.5", r"(?<!不)着火|起火|失火|火灾|火势|火越来越大|冒(黑|浓)?烟|浓烟|黑烟|爆炸|炸了|倒塌|坍塌|塌了"
                     r"|压着人|压在下面|砸到(了)?(人|路人)|砸伤|火(已经|很|越来越)?大|蔓延"
                     r"|烧(起来|过来|着了)"),
    ("help.110.2", r"被困|困在|困住|出不来|(人|我|我们)出不去|迷路|救命|呼救|孤立无援|晕倒|昏迷|叫不醒|不省人事"
                   r"|抽搐|口吐白沫|卡在|摔伤|起不来|被雷|心脏病|大出血|呼吸困难|没意识|没有意识"
                   r"|围着我|身无分文|扔下车|不知道在哪|说不清家在哪|虚弱"),
    ("help.110.3", r"走失|走丢|走散|丢了孩子|孩子丢了|(我爸|我妈|老人)丢了|不见了|找不到(孩子|人)|没回家|没回来"
                   r"|离家出走|未归|跑丢|跑出去|到现在没消息|被接走|没回宿舍|不见人|找不到(了|他|她)"),
    ("help.110.4", r"泄漏|泄露|漏气|煤气味|燃气味|天然气味|液化气罐|冒气|电线.{0,4}(掉|断|垂|火花|碰)|火花|触电"
                   r"|高压线|爆管|(水|供热|燃气)管(道)?(爆|破|断)|挖破|(缆|管|线)(道)?被挖断|漏油|油罐|刺鼻"
                   r"|头晕|烫伤|冒火|掉进|掉下去"),
    ("help.110.5", r"地震|洪水|山洪|洪涝|泥石流|滑坡|塌方|决口|决堤|被淹|淹了|积水.{0,6}(深|出不来)|水暴涨"
                   r"|水位上涨|龙卷风|冰雹|山体开裂|冲垮|冲断"),
    ("help.110.6", r"锁在车里|反锁在车|困在车里|车窗关着|摇摇欲坠|冰面|高速上|高速路上|马路中间|很危险|非常危险"
                   r"|咬伤|咬人|蛇|忘了关煤气|没露面|出事|阳台外|窗户边上|反锁了|电话一直不接|下不来"
                   r"|加油站.{0,6}抽烟|吹掉|乱跑"),
)
# one pass over the text for all signs (a group per line: `lastgroup` says which matched)
_DANGER = re.compile("|".join(f"(?P<d{n}>{pattern})" for n, (_, pattern) in enumerate(DANGER_SIGNS)))


@dataclass(frozen=True)
class Danger:
    clauses: tuple[str, ...]  # the annex lines the signs point at, the first sign's first
    words: tuple[str, ...]  # the signs found, in the order of the text


def danger(text: str) -> Danger | None:
    """The danger signs in `text` (normalised), or None."""
    found = [(m.group(0), DANGER_SIGNS[int((m.lastgroup or "d0")[1:])][0]) for m in _DANGER.finditer(text)]
    if not found:
        return None
    return Danger(tuple(dict.fromkeys(c for _, c in found)), tuple(dict.fromkeys(w for w, _ in found)))


def term_hits(catalogue: Catalogue, text: str) -> dict[str, tuple[str, ...]]:
    """Per catalogue line, the terms of its that `text` contains (lines without a hit are left out)."""
    out: dict[str, tuple[str, ...]] = {}
    for item in catalogue.items.values():
        hits = _hits(item, text)
        if hits:
            out[item.id] = hits
    return out


def _hits(item: Item, text: str) -> tuple[str, ...]:
    return tuple(t for t in item.terms if t in text)
