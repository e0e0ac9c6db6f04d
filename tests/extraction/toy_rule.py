"""A rule of the tests' own, declared in one place (``tests/extraction/test_rule_declaration.py``
loads it through ``REDDIT_PRETRAIN_RULES``): a response with more than ``filters.max_digits``
digits is dropped. Nothing else in the project names it."""

import numpy as np
import pyarrow.compute as pc

from extraction.sessions.filters import add_rule

from extraction.sessions.rules import Feature, Rule, Setting


def _digits(texts, rules) -> np.ndarray:
    return pc.count_substring_regex(pc.fill_null(texts.texts, ""), "[0-9]").to_numpy(zero_copy_only=False)


DIGITS = Feature("digits", lambda rules, text: sum(c in "0123456789" for c in text), _digits, dtype=np.int64)

add_rule(Rule("digits", "session", "response", "Toy rule: a response of more than ``max_digits`` ASCII digits.",
              (Setting("max_digits", int, 1, "The most digits a response may hold.", minimum=0),), feature=DIGITS,
              check=lambda rules, s: s.values(DIGITS)[-1] > rules.cfg.max_digits,
              fails=lambda v: v.response("digits") > v.cfg.max_digits),
         before="offensive")
