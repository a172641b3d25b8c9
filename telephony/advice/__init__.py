"""Scope advice (智能转办): which platform a matter belongs to — 110, 12345 or neither — from what the agent types,
with the line of the plan's annex that applies, the words that decided it and whether life, property or public
safety is at risk (then always 110). `catalogue.py` reads the annex as data, `rules.py` holds the danger rule
and the catalogue's terms, `model.py` the trained linear model (`model.json`, rebuilt by `train.py` from
`corpus.txt`), `services.py` combines them and records the advice on a ticket, `http.py` is POST /v1/advice."""
