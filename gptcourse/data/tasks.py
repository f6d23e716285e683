"""The fine-tuning tasks (lessons 08-10): requests a person might make of the story model, each
with an answer a rule can check.

Two kinds, both built from the corpus's own stories (`make_story`), so every answer is known:

* **story questions** (`story_questions`): a story, then a question about it whose answer is
  one word of the story: who, where, what, which colour, how old. Exact match decides.
* **constraint stories** (`constraint_stories`): "Write a story about a girl named Mia who has
  a red kite." The reference answer is a story that meets the request; `meets_constraints`
  judges any story by the rule (the role, the name and the coloured thing all appear).

Each kind comes in two splits. The **held-out** split uses hero names, things and phrasings of
the request that the **training** split never contains (`HELD_OUT_NAMES`, `HELD_OUT_THINGS`,
and the second half of each list of templates), so a model that answers held-out requests
has learned to read the story and follow the request, not to recall training examples.

Nothing here changes `generate_corpus`: the tasks draw their stories from generators of their
own, seeded by the split's name, so the pretraining corpus and its pinned digest stay as they
are. The same (n, split, seed) gives the same tasks on every machine.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from gptcourse.data.stories import Story, _a, make_story

SPLITS = ("train", "heldout")

# Held out of the training split: a story whose hero or helper has one of these names, or
# whose thing is one of these, never appears in it; every held-out task has both a held-out
# hero name and a held-out thing.
HELD_OUT_NAMES = ("Oscar", "Hugo", "Noah", "Ruby", "Nora", "Ivy")
HELD_OUT_THINGS = ("drum", "doll", "scarf")

# Each question asks for one fact of `Story.facts`. The first templates of each list are the
# training split's phrasings, direct questions; the last one is the held-out split's, the same
# request made indirectly ("Tell me ..."), in words the stories and the training questions
# use, so that a model can understand it without having been fine-tuned on it. (The lost
# thing's was once "Tell me what {hero} lost.": "lost" is in no story and no training
# question, and two SFT runs answered it 1 and 8 times of 17 held-out questions, both 17 of
# 17 when the same stories were asked "What did {hero} lose?" or "... did lose.")
QUESTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "colour": ("What colour was {hero}'s {thing}?", "Which colour did {hero}'s {thing} have?",
               "Tell me what colour {hero}'s {thing} was."),
    "place": ("Where did {hero} go with {pet}?", "Where did {hero} and {pet} go?",
              "Tell me where {hero} went with {pet}."),
    "pet": ("What was the name of {hero}'s {animal}?", "What was {hero}'s {animal} called?",
            "Tell me the name of {hero}'s {animal}."),
    "animal": ("What animal was {pet}?", "What kind of animal was {pet}?",
               "Tell me what animal {pet} was."),
    "helper": ("Who came by when {hero} was worried?", "Who met {hero} at the {place}?",
               "Tell me who came by when {hero} was worried."),
    "thing": ("What did {hero} lose?", "What did {hero} lose at the {place}?",
              "Tell me what {hero} did lose."),
    "age": ("How old was {hero}?", "How many years old was {hero}?",
            "Tell me how old {hero} was."),
}
STORY_TEMPLATES: tuple[str, ...] = (
    "Write a story about {a_role} named {hero} who has {a_thing}.",
    "Tell me a story about {hero}, {a_role} with {a_thing}.",
    "Can you write a story about {a_role} called {hero}? {He} has {a_thing}.",
    "I would like a story. It is about {hero}, {a_role} who has {a_thing}.",
    "Write me a short story in which {a_role} named {hero} owns {a_thing}.",
    "Make up a story: {hero} is {a_role}, and {he} has {a_thing}.",
    "Please write a short story: the hero is {a_role} called {hero}, and {he} owns {a_thing}.",
)
N_HELD_OUT_TEMPLATES = 1  # the last template of each list


@dataclass(frozen=True)
class Task:
    """One request and its reference answer, and for a story question possibly more
    questions about the same story with their answers (`follow_ups`).

    kind: "question" or "story"; prompt: the person's first message; answer: what a good
    assistant replies (one word for a question, a whole story for a story request);
    follow_ups: ((question, answer), ...) asked after the first answer, in the same chat;
    constraints: what a story must contain ({"role", "hero", "colour", "thing"}), empty for
    a question; story: the story the task was made from.
    """

    kind: str
    prompt: str
    answer: str
    constraints: dict[str, str] = field(default_factory=dict)
    story: Story | None = None
    follow_ups: tuple[tuple[str, str], ...] = ()

    @property
    def messages(self) -> list[dict[str, str]]:
        """The task as a chat (see `gptcourse.finetuning.render_chat`): the user's request,
        the reference answer, then each follow-up question and its answer."""
        turns = [(self.prompt, self.answer), *self.follow_ups]
        return [{"role": role, "content": text} for question, answer in turns
                for role, text in (("user", question), ("assistant", answer))]


def _check(n: int, split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a whole number >= 0, got {n!r}")


def _templates(templates: tuple[str, ...], split: str) -> tuple[str, ...]:
    return templates[-N_HELD_OUT_TEMPLATES:] if split == "heldout" \
        else templates[:-N_HELD_OUT_TEMPLATES]


def in_split(story: Story, split: str) -> bool:
    """Whether `story` belongs to `split`: the training split has no held-out name (hero or
    helper) and no held-out thing; the held-out split has a held-out hero and thing."""
    if split == "heldout":
        return story.hero.name in HELD_OUT_NAMES and story.facts["thing"] in HELD_OUT_THINGS
    return story.hero.name not in HELD_OUT_NAMES and story.helper.name not in HELD_OUT_NAMES \
        and story.facts["thing"] not in HELD_OUT_THINGS


def _split_stories(rng: random.Random, split: str):
    while True:
        story = make_story(rng)
        if in_split(story, split):
            yield story


def story_questions(n: int, split: str = "train", seed: int = 0,
                    per_story: int = 1) -> list[Task]:
    """n story questions of `split`: the prompt is a story, a blank line and a question; the
    answer is one word of the story. per_story > 1 asks that many questions about each story
    (about different facts), the later ones as follow-ups in the same chat: more answers to
    learn from per story read."""
    _check(n, split)
    if not 1 <= per_story <= len(QUESTION_TEMPLATES):
        raise ValueError(f"per_story must lie between 1 and {len(QUESTION_TEMPLATES)}, got "
                         f"{per_story!r}")
    rng = random.Random(f"story questions, {split}, {seed}")
    templates = {fact: _templates(t, split) for fact, t in QUESTION_TEMPLATES.items()}
    tasks = []
    for story in _split_stories(rng, split):
        if len(tasks) == n:
            break
        facts = rng.sample(list(templates), per_story)
        asked = [(rng.choice(templates[fact]).format(**story.facts), story.facts[fact])
                 for fact in facts]
        (question, answer), *follow_ups = asked
        tasks.append(Task("question", f"{story.text}\n\n{question}", answer, story=story,
                          follow_ups=tuple(follow_ups)))
    return tasks


def constraint_stories(n: int, split: str = "train", seed: int = 0) -> list[Task]:
    """n requests of `split` for a story with a stated hero and thing; the answer is a story
    that meets them."""
    _check(n, split)
    rng = random.Random(f"constraint stories, {split}, {seed}")
    templates = _templates(STORY_TEMPLATES, split)
    tasks = []
    for story in _split_stories(rng, split):
        if len(tasks) == n:
            break
        f = story.facts
        constraints = {"role": f["role"], "hero": f["hero"], "colour": f["colour"],
                       "thing": f["thing"]}
        request = rng.choice(templates).format(
            a_role=_a(f["role"]), hero=f["hero"], a_thing=_a(f"{f['colour']} {f['thing']}"),
            he=story.hero.pronouns[0], He=story.hero.pronouns[0].capitalize())
        tasks.append(Task("story", request, story.text, constraints, story=story))
    return tasks


def meets_constraints(text: str, constraints: dict[str, str]) -> bool:
    """The rule that judges a constraint story: the role and the hero's name appear as words,
    and so does the coloured thing ("red kite"). Case matters for the name only."""
    def has(phrase: str, flags: int = 0) -> bool:
        return re.search(rf"\b{re.escape(phrase)}\b", text, flags) is not None

    return (has(constraints["role"], re.IGNORECASE) and has(constraints["hero"])
            and has(f"{constraints['colour']} {constraints['thing']}", re.IGNORECASE))


def sft_tasks(n: int, split: str = "train", seed: int = 0, story_fraction: float = 0.25,
              per_story: int = 1) -> list[Task]:
    """n tasks of `split`, about `story_fraction` of them constraint stories and the rest
    story questions (`per_story` questions each), in a seeded random order."""
    _check(n, split)
    if not 0 <= story_fraction <= 1:
        raise ValueError(f"story_fraction must lie between 0 and 1, got {story_fraction}")
    n_stories = round(n * story_fraction)
    tasks = story_questions(n - n_stories, split, seed, per_story) + \
        constraint_stories(n_stories, split, seed)
    random.Random(f"sft tasks, {split}, {seed}").shuffle(tasks)
    return tasks
