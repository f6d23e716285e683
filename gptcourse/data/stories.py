"""The course corpus: short, simple English stories, written by a seeded generator.

Nothing in the course is downloaded, so the course writes its own text. The stories are
simple on purpose: a model small enough to train on a laptop can learn them, and their
structure is known, so later lessons can ask precise questions of what a model learned.

How a story is built (`make_story`): a hero (a person with a role and a name) owns a coloured
thing and has an animal friend; they go to a place, something goes wrong, a helper (another
person) is kind or unkind, and the story ends happily or sadly. Each piece of structure serves
a later lesson:

* **recurring world** (lessons 05-07): a small cast of roles, names, animals, things, colours
  and places, combined again and again, so a small model can write recognisable stories;
* **gender and rank pairs** (lesson 02): every role comes in a male and a female form
  (king/queen, man/woman, boy/girl, prince/princess, father/mother, son/daughter,
  brother/sister, uncle/aunt) chosen 50/50 into the *same* sentences. The two forms differ
  only in the pronouns around them (he/his/him versus she/her), while royal roles live among
  castles and crowns, common ones among villages and farms, grown-ups work and children play.
  So word vectors trained on the corpus place king - man + woman near queen;
* **references to follow** (lesson 03): pronouns point back to the hero, and "it" points back
  to the hero's thing, a few words later;
* **questions with one checkable answer** (lesson 08): every `Story` carries questions such
  as "What colour was Mia's kite?" whose answer ("red") is one word of the story;
* **attributes a rule-based labeler can prefer** (lesson 09): each story is kind or unkind and
  ends happily or sadly (`Story.attributes`); `labeler_score` recognises both from the text.

The stream of stories depends only on the seed: `random.Random(seed)` is the same Mersenne
Twister on every platform, and the generator uses nothing else (no hashing of sets, no clock),
so the same seed gives the same bytes on every machine. The text is plain ASCII, so one
character is one byte.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import islice
from typing import Iterator

# --- the world --------------------------------------------------------------------------------

# (male, female, rank, age): the male and female forms share every other attribute, so they
# appear in the same contexts and differ along one direction only.
ROLES: tuple[tuple[str, str, str, str], ...] = (
    ("king", "queen", "royal", "adult"),
    ("prince", "princess", "royal", "child"),
    ("man", "woman", "common", "adult"),
    ("boy", "girl", "common", "child"),
    ("father", "mother", "common", "adult"),
    ("son", "daughter", "common", "child"),
    ("uncle", "aunt", "common", "adult"),
    ("brother", "sister", "common", "child"),
)

NAMES = {
    "male": ("Tom", "Ben", "Sam", "Max", "Leo", "Jack", "Finn", "Oscar", "Hugo", "Noah"),
    "female": ("Lily", "Mia", "Anna", "Emma", "Zoe", "Ella", "Rosa", "Ruby", "Nora", "Ivy"),
}

# Made-up names from syllables give the text a long tail of rare words, as real text has:
# without it, a tokenizer would run out of pairs to merge after a few hundred tokens, and a
# model could never practise copying a name it has not seen before from earlier in the story.
SYLLABLES = ("ka", "lo", "mi", "ra", "ben", "tor", "li", "sa", "den", "vo", "ni", "pa", "ru",
             "mel", "fi", "zo", "ta", "gri", "sol", "an", "el", "bo", "ri", "dun", "ve", "ha",
             "ju", "os", "te", "mar", "wen", "ky", "lu", "dra", "shi", "pen", "go", "ce", "ul",
             "yo", "bri", "cas", "dor", "ek", "fen", "gal", "hol", "is", "jor", "kel", "lam", "mo",
             "nes", "or", "pim", "quo", "rin", "sev", "tum", "vik")


def made_up_name(rng: random.Random) -> str:
    """A name of two to four syllables, such as "Marovi"; early syllables are likelier, so
    some names recur often and most rarely (a Zipf-like tail)."""
    u = rng.random()
    n = 2 if u < 0.6 else 3 if u < 0.9 else 4
    k = len(SYLLABLES)
    parts = [SYLLABLES[min(int(rng.paretovariate(1.2)) - 1, k - 1) if rng.random() < 0.5
                       else rng.randrange(k)] for _ in range(n)]
    return "".join(parts).capitalize()


PRONOUNS = {  # subject, object, possessive
    "male": ("he", "him", "his"),
    "female": ("she", "her", "her"),
}

HOMES = {
    "royal": ("a big castle", "a tall castle", "a golden palace", "a palace on a hill"),
    "common": ("a small house", "a little cottage", "a house in the village",
               "a house on a farm"),
}
REALMS = {"royal": "the kingdom of", "common": "the village of"}
AGES = {"adult": (20, 90), "child": (4, 12)}
# What a person of each rank has and does: the contexts that set the rank direction.
RANK_TRAITS = {
    "royal": ("wore a golden crown", "sat on a tall throne", "ruled the whole kingdom",
              "had many servants in the castle"),
    "common": ("worked on the farm", "sold bread at the market", "lived a quiet life in the "
               "village", "fed the hens every morning"),
}
# ... and of each age: grown-ups work and know things, children play and learn.
AGE_TRAITS = {
    "adult": ("was tall and wise", "worked hard every day", "cooked dinner every night",
              "read long books"),
    "child": ("was small and curious", "liked to play all day", "went to school every morning",
              "loved games and songs"),
}

# Adjectives next to the role word make the age direction as clear as the rank one.
AGE_ADJECTIVES = {"adult": ("old", "wise", "tall"), "child": ("little", "young", "small")}

COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "pink", "white", "black",
           "brown")
THINGS = ("ball", "kite", "hat", "book", "box", "cup", "boat", "key", "drum", "doll", "bag",
          "scarf")
ANIMALS = ("cat", "dog", "bird", "rabbit", "fox", "duck", "frog", "mouse", "horse", "goat")
ANIMAL_NAMES = ("Pip", "Rex", "Luna", "Bo", "Coco", "Milo", "Daisy", "Fluff", "Sparky", "Pepper")
PLACES = ("park", "forest", "river", "beach", "market", "hill", "lake", "garden", "meadow",
          "bridge")
WEATHER = ("sunny", "windy", "rainy", "cold", "warm", "bright")

# Words that mark the attributes a rule-based labeler prefers (lesson 09).
KIND_ACTS = ("helped", "was kind to")
KIND_WORDS = ("helped", "kind to", "thanked", "hugged")
UNKIND_WORDS = ("laughed at", "walked away from", "shouted at", "ignored")
HAPPY_ENDINGS = ("In the end, {Hero} was very happy.", "From that day on, {Hero} smiled every "
                 "day.", "{Hero} laughed, and everyone was happy.")
SAD_ENDINGS = ("In the end, {Hero} was sad.", "{Hero} went home alone and cried.",
               "That night, {Hero} felt very sad.")


# --- a story ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    role: str       # "queen"
    name: str       # "Mia"
    gender: str     # "male" | "female"
    rank: str       # "royal" | "common"
    age: str        # "adult" | "child"

    @property
    def pronouns(self) -> tuple[str, str, str]:
        return PRONOUNS[self.gender]


@dataclass(frozen=True)
class Story:
    """One story: its text, the facts it was built from, questions whose answers are words of
    the text, and the attributes a labeler may prefer."""

    text: str
    hero: Person
    helper: Person
    facts: dict[str, str] = field(default_factory=dict)
    questions: tuple[tuple[str, str], ...] = ()
    attributes: dict[str, bool] = field(default_factory=dict)


def _person(rng: random.Random) -> Person:
    male, female, rank, age = rng.choice(ROLES)
    gender = rng.choice(("male", "female"))
    role = male if gender == "male" else female
    name = rng.choice(NAMES[gender]) if rng.random() < 0.6 else made_up_name(rng)
    return Person(role, name, gender, rank, age)


def _cap(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


def _a(word: str) -> str:
    """The word with its indefinite article: "a red ball", "an orange ball"."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def make_story(rng: random.Random) -> Story:
    """Draw one story from `rng` (a `random.Random`); the same rng state gives the same story."""
    hero = _person(rng)
    helper = _person(rng)
    while helper.name == hero.name or helper.role == hero.role:
        helper = _person(rng)
    he, him, his = hero.pronouns
    h_he, h_him, h_his = helper.pronouns
    colour, thing = rng.choice(COLOURS), rng.choice(THINGS)
    animal = rng.choice(ANIMALS)
    pet = rng.choice(ANIMAL_NAMES) if rng.random() < 0.7 else made_up_name(rng)
    realm = f"{REALMS[hero.rank]} {made_up_name(rng)}"
    years = rng.randint(*AGES[hero.age])
    place, weather = rng.choice(PLACES), rng.choice(WEATHER)
    kind, happy = rng.random() < 0.5, rng.random() < 0.5
    H = hero.name
    the_hero = f"the {hero.role}"
    aged = f"{rng.choice(AGE_ADJECTIVES[hero.age])} {hero.role}"          # "little girl"
    h_aged = f"{rng.choice(AGE_ADJECTIVES[helper.age])} {helper.role}"   # "old king"

    s = [
        rng.choice((f"Once upon a time, there was {_a(aged)} named {H}.",
                    f"There once was {_a(aged)} called {H}.",
                    f"Long ago, {_a(aged)} named {H} lived in {rng.choice(HOMES[hero.rank])}.")),
        # the role word sits next to its pronoun and its rank and age contexts: window-sized
        # co-occurrences are what word vectors learn from
        f"The {hero.role} {rng.choice(RANK_TRAITS[hero.rank])}, and {he} "
        f"{rng.choice(AGE_TRAITS[hero.age])}.",
        f"{H} was {years} years old and lived in {realm}.",
        f"{H} had {_a(colour)} {thing}. {_cap(he)} loved {his} {colour} {thing} very much.",
        f"{_cap(his)} best friend was {_a(animal)} called {pet}.",
        f"One {weather} day, {H} and {pet} went to the {place}.",
        rng.choice((f"At the {place}, the {thing} fell into a deep hole, and {H} could not "
                    f"reach it.",
                    f"At the {place}, {H} put the {thing} down, and soon {he} could not find it.",
                    f"At the {place}, the wind took the {thing} away, and it landed in a tall "
                    f"tree.")),
        f"{_cap(the_hero)} was worried. Then {_a(h_aged)} named {helper.name} came by.",
    ]
    if kind:
        act = rng.choice(KIND_ACTS)
        s.append(f"The {helper.role} {act} {H}. {_cap(h_he)} found the {thing} and gave it "
                 f"back to {the_hero}.")
        s.append(f"{H} thanked the {helper.role}, and {pet} the {animal} jumped with joy.")
    else:
        act = rng.choice(UNKIND_WORDS)
        s.append(f"The {helper.role} {act} {H}, and {h_he} did not help {him}.")
        s.append(f"{H} looked for the {thing} all day, but {he} did not find it.")
    ending = rng.choice(HAPPY_ENDINGS if happy else SAD_ENDINGS).format(Hero=H)
    s.append(ending)

    text = " ".join(s)
    facts = {"hero": H, "role": hero.role, "colour": colour, "thing": thing, "animal": animal,
             "pet": pet, "place": place, "helper": helper.role, "weather": weather,
             "age": str(years), "realm": realm}
    questions = (
        (f"What colour was {H}'s {thing}?", colour),
        (f"Where did {H} go with {pet}?", place),
        (f"What was the name of {H}'s {animal}?", pet),
        (f"What animal was {pet}?", animal),
        (f"Who came by when {H} was worried?", helper.role),
        (f"What did {H} lose?", thing),
        (f"How old was {H}?", str(years)),
    )
    return Story(text, hero, helper, facts, questions,
                 {"kind": kind, "happy_ending": happy})


def stories(seed: int = 0) -> Iterator[Story]:
    """The endless stream of stories for `seed`; generate_corpus writes its beginning."""
    rng = random.Random(seed)
    while True:
        yield make_story(rng)


def generate_corpus(n_bytes: int, seed: int = 0) -> str:
    """About `n_bytes` of stories: whole stories separated by a blank line, stopping at the
    first story that brings the total to `n_bytes` or more (so the text is at most one story
    longer than asked). ASCII only: len(text) is its size in bytes.

    The same (n_bytes, seed) gives the same text on every machine, and a shorter corpus is a
    prefix of a longer one with the same seed. About 10 MB takes a few seconds.
    """
    if not isinstance(n_bytes, int) or isinstance(n_bytes, bool) or n_bytes < 1:
        raise ValueError(f"n_bytes must be a positive integer, got {n_bytes!r}")
    parts: list[str] = []
    total = 0
    for story in stories(seed):
        parts.append(story.text)
        total += len(story.text) + 2
        if total - 2 >= n_bytes:
            break
    return "\n\n".join(parts)


def question_answer_pairs(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """n (story, question, answer) triples, one question per story, for supervised
    fine-tuning; the answer is one word that appears in the story. Seeds differ from the
    corpus's stream only if you choose a different seed: use one the corpus did not use for
    held-out questions."""
    rng = random.Random(seed)
    out = []
    for story in islice(stories(seed), n):
        question, answer = rng.choice(story.questions)
        out.append((story.text, question, answer))
    return out


def labeler_score(text: str) -> float:
    """A rule-based labeler's preference for a story (lesson 09): +1 for each kind act, -1 for
    each unkind one, +1 for a happy ending and -1 for a sad one. Higher is preferred."""
    lowered = text.lower()
    score = sum(lowered.count(w) for w in KIND_WORDS) - \
        sum(lowered.count(w) for w in UNKIND_WORDS)
    score += sum(lowered.count(w) for w in ("happy", "smiled", "joy"))
    score -= sum(lowered.count(w) for w in ("sad", "cried", "alone"))
    return float(score)
