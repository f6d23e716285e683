"""The simulated labeler of lesson 09: "the people" whose preferences RLHF learns.

Real RLHF asks people which of two answers they prefer. The course cannot, so a rule plays
them. It judges a story written for a constraint-story request (`tasks.constraint_stories`)
by a hidden **true score**, the sum of a few parts (`score_parts`):

* **kind**: the helper is kind (+1), unkind (-1), neither or both (0);
* **happy_ending**: the last sentence is one of the corpus's happy endings (+1), a sad one
  (-1), or no proper ending at all (-1);
* **role**, **hero**, **colour_thing**: each part of the request the story meets (+0.5 each):
  the role as a word in any case, the hero's name as written, "colour thing" as a phrase;
* **repeated_sentences**, **repeated_words**, **repeated_trigrams**, **structure**: fluency
  penalties for saying a sentence again, for a word said twice in a row ("happy happy"), for
  word trigrams that repeat beyond what the corpus's own stories do, and for a broken story:
  too few sentences, no ending, text after the ending, far too long.

Every reward comes from a presence or from the last sentence, never from a count: "happy"
said ten times earns nothing more than once, and costs fluency. A reward model that learns
from this labeler's choices may still come to like the word itself; lesson 09 shows a policy
fooling it that way while the true score falls.

The labeler is also noisy, as people are: it prefers answer a to b with probability
sigmoid((s_a - s_b) / tau) (Bradley–Terry with temperature tau), so no reward model can
agree with its choices every time (`Labeler.agreement_ceiling`).
"""

from __future__ import annotations

import math
import random
import re
from typing import Iterable

from gptcourse.data.stories import HAPPY_ENDINGS, KIND_ACTS, SAD_ENDINGS, UNKIND_WORDS

CONSTRAINT_KEYS = ("role", "hero", "colour", "thing")
CONSTRAINT_CREDIT = 0.5  # for each of role, hero, colour thing

# The corpus's stories have 13 or 14 sentences and 116 to 135 words, at most 3.2 % of their
# word trigrams repeat an earlier one, and no sentence says a word twice in a row (measured
# on 2,000 and 3,000 of them).
FULL_STORY_SENTENCES = 10  # fewer costs up to 1, in proportion
LONG_ANSWER_WORDS = 170  # more costs up to 1, reached 50 words later
TRIGRAM_ALLOWANCE = 0.05  # the share of repeated trigrams that costs nothing
TRIGRAM_PENALTY = 4.0  # per unit of repeated share beyond the allowance
SENTENCE_REPEAT_PENALTY = 0.5  # per sentence said again ...
MAX_SENTENCE_REPEAT_PENALTY = 2.0  # ... up to this much
WORD_REPEAT_PENALTY = 0.25  # per word that repeats the word before it in a sentence ...
MAX_WORD_REPEAT_PENALTY = 2.0  # ... up to this much

DEFAULT_TAU = 0.5


def _ending_pattern(templates: tuple[str, ...]) -> re.Pattern:
    """One sentence made of any of the templates, with any capitalised name as the hero."""
    name = r"[A-Z][A-Za-z]*"
    alternatives = [re.escape(t).replace(re.escape("{Hero}"), name) for t in templates]
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


HAPPY = _ending_pattern(HAPPY_ENDINGS)
SAD = _ending_pattern(SAD_ENDINGS)
KIND = re.compile(r"\b(?:" + "|".join(map(re.escape, KIND_ACTS)) + r")\b", re.IGNORECASE)
UNKIND = re.compile(r"\b(?:" + "|".join(map(re.escape, UNKIND_WORDS)) + r")\b", re.IGNORECASE)


def sentences(text: str) -> list[str]:
    """The sentences of `text`: split after ., ! or ? followed by white space, each stripped,
    empty ones dropped."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def words(text: str) -> list[str]:
    """The words of `text` in lower case (letters, digits and apostrophes)."""
    return re.findall(r"[a-z0-9']+", text.lower())


def _has(phrase: str, text: str, flags: int = 0) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", text, flags) is not None


def _is_ending(sentence: str) -> bool:
    return HAPPY.fullmatch(sentence) is not None or SAD.fullmatch(sentence) is not None


def _check_constraints(constraints: dict[str, str]) -> None:
    if not isinstance(constraints, dict) or \
            not all(isinstance(constraints.get(k), str) and constraints[k]
                    for k in CONSTRAINT_KEYS):
        raise ValueError(f"constraints must be a dict with the non-empty strings "
                         f"{', '.join(CONSTRAINT_KEYS)} (a constraint-story task's "
                         f"`constraints`), got {constraints!r:.120}")


def score_parts(text: str, constraints: dict[str, str]) -> dict[str, float]:
    """The parts of the true score of `text`, a story written for a request with
    `constraints` ({"role", "hero", "colour", "thing"}), in a fixed order:
    kind, happy_ending, role, hero, colour_thing (rewards) and repeated_sentences,
    repeated_words, repeated_trigrams, structure (penalties, each <= 0). See the module's
    docstring."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    _check_constraints(constraints)
    said = sentences(text)
    last = said[-1] if said else ""
    kind, unkind = KIND.search(text) is not None, UNKIND.search(text) is not None

    normalised = [" ".join(s.lower().split()) for s in said]
    repeats = len(normalised) - len(set(normalised))
    stutters = sum(a == b for s in said for a, b in zip(words(s), words(s)[1:]))
    w = words(text)
    trigrams = list(zip(w, w[1:], w[2:]))
    repeated_share = 1 - len(set(trigrams)) / len(trigrams) if trigrams else 0.0

    endings = [i for i, s in enumerate(said) if _is_ending(s)]
    short = max(0.0, 1 - len(said) / FULL_STORY_SENTENCES)
    no_ending = 0.0 if endings else 1.0
    after_ending = 1.0 if endings and endings[0] != len(said) - 1 else 0.0
    too_long = min(1.0, max(0.0, (len(w) - LONG_ANSWER_WORDS) / 50))

    c = constraints
    return {
        "kind": float(kind) - float(unkind),
        "happy_ending": 1.0 if HAPPY.fullmatch(last) else -1.0,
        "role": CONSTRAINT_CREDIT * _has(c["role"], text, re.IGNORECASE),
        "hero": CONSTRAINT_CREDIT * _has(c["hero"], text),
        "colour_thing": CONSTRAINT_CREDIT * _has(f"{c['colour']} {c['thing']}", text,
                                                 re.IGNORECASE),
        "repeated_sentences": -min(MAX_SENTENCE_REPEAT_PENALTY,
                                   SENTENCE_REPEAT_PENALTY * repeats),
        "repeated_words": -min(MAX_WORD_REPEAT_PENALTY, WORD_REPEAT_PENALTY * stutters),
        "repeated_trigrams": -TRIGRAM_PENALTY * max(0.0, repeated_share - TRIGRAM_ALLOWANCE),
        "structure": -(short + no_ending + after_ending + too_long),
    }


def true_score(text: str, constraints: dict[str, str]) -> float:
    """The labeler's hidden score of `text` for a request with `constraints`: the sum of
    `score_parts`. Higher is better; a corpus story that is kind, ends happily and meets the
    request scores 3.5."""
    return sum(score_parts(text, constraints).values())


def _sigmoid(x: float) -> float:
    # written so that neither branch can overflow for a large |x|
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    z = math.exp(x)
    return z / (1 + z)


class Labeler:
    """A noisy person: prefers answer a to b with probability sigmoid((s_a - s_b) / tau),
    s the true score. A small tau is a careful labeler (almost always the better answer), a
    large one a careless one (a coin toss). Draws are seeded: the same seed and the same
    questions in the same order give the same choices."""

    def __init__(self, tau: float = DEFAULT_TAU, seed: int = 0) -> None:
        if not (isinstance(tau, (int, float)) and not isinstance(tau, bool) and tau > 0
                and math.isfinite(tau)):
            raise ValueError(f"tau must be a finite number > 0 (the labeler's noise: "
                             f"P(a preferred) = sigmoid((s_a - s_b) / tau)), got {tau!r}")
        self.tau = float(tau)
        self._rng = random.Random(f"labeler, {seed}")

    def probability(self, a: str, b: str, constraints: dict[str, str]) -> float:
        """P(the labeler prefers a to b), both answers to a request with `constraints`."""
        return _sigmoid((true_score(a, constraints) - true_score(b, constraints)) / self.tau)

    def prefers(self, a: str, b: str, constraints: dict[str, str]) -> bool:
        """One choice: True (a preferred) with probability `probability(a, b, constraints)`.
        Each call draws anew."""
        return self._rng.random() < self.probability(a, b, constraints)

    def agreement_ceiling(self, pairs: Iterable) -> float:
        """The best accuracy any reward model can expect on pairs this labeler chose between:
        the mean over pairs of max(p, 1 - p), p = `probability`. The best model predicts the
        likelier choice of each pair, and is right with that probability.

        Each pair is (a, b, constraints), or has .chosen, .rejected and .constraints (a
        `gptcourse.preferences.PreferencePair`). Raises ValueError for no pairs."""
        ceilings = []
        for pair in pairs:
            if isinstance(pair, tuple) and len(pair) == 3:
                a, b, constraints = pair
            elif all(hasattr(pair, name) for name in ("chosen", "rejected", "constraints")):
                a, b, constraints = pair.chosen, pair.rejected, pair.constraints
            else:
                raise ValueError(f"a pair is (a, b, constraints) or a PreferencePair, got "
                                 f"{pair!r:.80}")
            p = self.probability(a, b, constraints)
            ceilings.append(max(p, 1 - p))
        if not ceilings:
            raise ValueError("agreement_ceiling needs at least one pair")
        return sum(ceilings) / len(ceilings)
