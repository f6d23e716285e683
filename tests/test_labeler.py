"""gptcourse.data.labeler: the true score's parts on hand-written stories and on the corpus's
own, the repetition it must not reward, and the noisy labeler's probabilities, draws and
ceiling."""

import math
import re

import pytest

from gptcourse.data.labeler import Labeler, score_parts, true_score
from gptcourse.data.tasks import constraint_stories

WANTS = {"role": "girl", "hero": "Mia", "colour": "red", "thing": "kite"}

KIND_HAPPY = (
    "Once upon a time, there was a little girl named Mia. The girl lived a quiet life in the "
    "village, and she liked to play all day. Mia was 7 years old and lived in the village of "
    "Kalo. Mia had a red kite. She loved her red kite very much. Her best friend was a dog "
    "called Rex. One sunny day, Mia and Rex went to the park. At the park, the wind took the "
    "kite away, and it landed in a tall tree. The girl was worried. Then an old man named Tom "
    "came by. The man helped Mia. He found the kite and gave it back to the girl. Mia thanked "
    "the man, and Rex the dog jumped with joy. In the end, Mia was very happy.")
UNKIND_SAD = (
    "Once upon a time, there was a little boy named Ben. The boy lived a quiet life in the "
    "village, and he liked to play all day. Ben was 7 years old and lived in the village of "
    "Kalo. Ben had a blue ball. He loved his blue ball very much. His best friend was a cat "
    "called Pip. One rainy day, Ben and Pip went to the river. At the river, Ben put the ball "
    "down, and soon he could not find it. The boy was worried. Then an old man named Tom came "
    "by. The man laughed at Ben, and he did not help him. Ben looked for the ball all day, "
    "but he did not find it. Ben went home alone and cried.")
REWARDS = ("kind", "happy_ending", "role", "hero", "colour_thing")
PENALTIES = ("repeated_sentences", "repeated_words", "repeated_trigrams", "structure")


def test_a_kind_happy_story_that_meets_the_request_scores_the_most():
    parts = score_parts(KIND_HAPPY, WANTS)
    assert list(parts) == [*REWARDS, *PENALTIES]
    assert parts == {"kind": 1.0, "happy_ending": 1.0, "role": 0.5, "hero": 0.5,
                     "colour_thing": 0.5, "repeated_sentences": 0.0, "repeated_words": 0.0,
                     "repeated_trigrams": 0.0, "structure": 0.0}
    assert true_score(KIND_HAPPY, WANTS) == 3.5


def test_an_unkind_sad_story_of_someone_else_scores_far_lower():
    parts = score_parts(UNKIND_SAD, WANTS)
    assert (parts["kind"], parts["happy_ending"]) == (-1.0, -1.0)
    assert parts["role"] == parts["hero"] == parts["colour_thing"] == 0.0
    assert all(parts[p] == 0 for p in PENALTIES)  # a fluent story all the same
    assert true_score(UNKIND_SAD, WANTS) == -2.0 < true_score(KIND_HAPPY, WANTS)


def test_every_corpus_story_scores_as_its_attributes_say_with_no_fluency_penalty():
    for task in constraint_stories(200, "train") + constraint_stories(50, "heldout"):
        parts = score_parts(task.answer, task.constraints)
        attributes = task.story.attributes
        assert parts["kind"] == (1.0 if attributes["kind"] else -1.0)
        assert parts["happy_ending"] == (1.0 if attributes["happy_ending"] else -1.0)
        assert parts["role"] == parts["hero"] == parts["colour_thing"] == 0.5
        assert all(parts[p] == 0 for p in PENALTIES), (task.answer, parts)
        assert true_score(task.answer, task.constraints) == pytest.approx(sum(parts.values()))


def test_saying_happy_again_and_again_lowers_the_score():
    body, ending = KIND_HAPPY.rsplit(". ", 1)
    best = true_score(KIND_HAPPY, WANTS)
    for text in (f"{body}. Mia was happy happy happy happy happy happy happy happy. {ending}",
                 KIND_HAPPY + " happy" * 10,
                 f"{body}. {ending} {ending} {ending}"):
        assert true_score(text, WANTS) < best, text
    spam = "happy " * 40
    assert true_score(spam, WANTS) < true_score(UNKIND_SAD, WANTS)
    parts = score_parts(spam, WANTS)
    assert parts["repeated_trigrams"] < -3 and parts["happy_ending"] == -1.0
    assert parts["repeated_words"] == -2.0


def test_a_word_said_twice_in_a_row_costs_a_quarter_point():
    stutter = KIND_HAPPY.replace("very much", "very very much")
    assert score_parts(stutter, WANTS)["repeated_words"] == -0.25
    across = KIND_HAPPY.replace("came by.", "came by. By")  # "by. By": two sentences
    assert score_parts(across, WANTS)["repeated_words"] == 0


def test_kind_words_said_many_times_earn_no_more_than_once():
    helped = KIND_HAPPY.replace("The man helped Mia.", "The man helped Mia. " * 5)
    parts = score_parts(helped, WANTS)
    assert parts["kind"] == 1.0 and parts["repeated_sentences"] == -2.0
    assert true_score(helped, WANTS) < true_score(KIND_HAPPY, WANTS)


def test_a_repeated_sentence_costs_half_a_point():
    again = KIND_HAPPY.replace("The girl was worried.", "The girl was worried. " * 2)
    assert score_parts(again, WANTS)["repeated_sentences"] == -0.5


def test_the_ending_is_the_last_sentence_only():
    body = KIND_HAPPY.rsplit(". ", 1)[0] + "."
    assert score_parts(body + " Mia went home alone and cried.", WANTS)["happy_ending"] == -1
    no_ending = score_parts(body, WANTS)
    assert no_ending["happy_ending"] == -1 and no_ending["structure"] == -1  # no ending at all
    after = score_parts(KIND_HAPPY + " Then Rex ran to the river.", WANTS)
    assert after["happy_ending"] == -1 and after["structure"] == -1  # text after the ending
    hidden = score_parts(body + " Mia was very happy, the end", WANTS)
    assert hidden["happy_ending"] == -1  # the word "happy" is not an ending


def test_the_request_earns_partial_credit_part_by_part():
    def credit(text):
        parts = score_parts(text, WANTS)
        return parts["role"], parts["hero"], parts["colour_thing"]

    assert credit(KIND_HAPPY.replace("Mia", "Zoe")) == (0.5, 0.0, 0.5)
    assert credit(KIND_HAPPY.replace("red kite", "green kite")) == (0.5, 0.5, 0.0)
    assert credit(KIND_HAPPY.replace("girl", "GIRL")) == (0.5, 0.5, 0.5)  # any case
    assert credit(KIND_HAPPY.replace("Mia", "mia")) == (0.5, 0.0, 0.5)  # the name as written
    assert credit("The girls had red and a kite.") == (0.0, 0.0, 0.0)  # words, a phrase


def test_too_short_and_far_too_long_answers_are_broken_stories():
    short = score_parts("In the end, Mia was very happy.", WANTS)
    assert short["happy_ending"] == 1.0 and short["structure"] == pytest.approx(-0.9)
    body, ending = KIND_HAPPY.rsplit(". ", 1)
    rambling = " ".join(f"Then the {n}th bird sang a new song to Rex." for n in range(25))
    long = score_parts(f"{body}. {rambling} {ending}", WANTS)
    assert long["structure"] == -1.0 and long["repeated_sentences"] == 0


@pytest.mark.parametrize("constraints", [{}, {"role": "girl", "hero": "Mia"}, None,
                                         {**WANTS, "thing": ""}])
def test_the_score_needs_the_four_constraints(constraints):
    with pytest.raises(ValueError, match="role, hero, colour, thing"):
        score_parts(KIND_HAPPY, constraints)


# --- the labeler -----------------------------------------------------------------------------

def test_the_labeler_prefers_by_a_sigmoid_of_the_score_difference_over_tau():
    for tau in (0.25, 1.0, 3.0):
        labeler = Labeler(tau)
        gap = true_score(KIND_HAPPY, WANTS) - true_score(UNKIND_SAD, WANTS)
        p = labeler.probability(KIND_HAPPY, UNKIND_SAD, WANTS)
        assert p == pytest.approx(1 / (1 + math.exp(-gap / tau)))
        assert p + labeler.probability(UNKIND_SAD, KIND_HAPPY, WANTS) == pytest.approx(1)
        assert labeler.probability(KIND_HAPPY, KIND_HAPPY, WANTS) == 0.5


def test_a_huge_score_gap_gives_a_certain_choice_without_overflow():
    labeler = Labeler(1e-6)
    assert labeler.probability(KIND_HAPPY, UNKIND_SAD, WANTS) == 1.0
    assert labeler.probability(UNKIND_SAD, KIND_HAPPY, WANTS) == 0.0


@pytest.mark.parametrize("tau", [0, -0.5, float("nan"), float("inf"), True, "1"])
def test_tau_must_be_a_positive_number(tau):
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        Labeler(tau)


def test_the_labelers_draws_are_seeded_and_as_frequent_as_their_probability():
    a = KIND_HAPPY
    b = KIND_HAPPY.replace("red kite", "green kite")  # 0.5 lower
    labeler, again, other = Labeler(1.0, seed=3), Labeler(1.0, seed=3), Labeler(1.0, seed=4)
    DRAWS = 800
    choices = [labeler.prefers(a, b, WANTS) for _ in range(DRAWS)]
    assert choices == [again.prefers(a, b, WANTS) for _ in range(DRAWS)]
    assert choices != [other.prefers(a, b, WANTS) for _ in range(DRAWS)]
    p = labeler.probability(a, b, WANTS)
    assert p == pytest.approx(1 / (1 + math.exp(-0.5)))
    assert abs(sum(choices) / DRAWS - p) < 4 * math.sqrt(p * (1 - p) / DRAWS)


def test_the_ceiling_is_the_mean_chance_of_the_likelier_choice():
    labeler = Labeler(1.0)
    close = KIND_HAPPY.replace("red kite", "green kite")
    pairs = [(KIND_HAPPY, close, WANTS), (UNKIND_SAD, KIND_HAPPY, WANTS),
             (KIND_HAPPY, KIND_HAPPY, WANTS)]
    expected = (1 / (1 + math.exp(-0.5)) + 1 / (1 + math.exp(-5.5)) + 0.5) / 3
    assert labeler.agreement_ceiling(pairs) == pytest.approx(expected)
    assert Labeler(0.1).agreement_ceiling(pairs) > labeler.agreement_ceiling(pairs) > \
        Labeler(10.0).agreement_ceiling(pairs) > 0.5


def test_the_ceiling_takes_preference_pairs_and_refuses_none():
    from gptcourse.preferences import PreferencePair

    labeler = Labeler(1.0)
    pair = PreferencePair([{"role": "user", "content": "?"}], WANTS, UNKIND_SAD, KIND_HAPPY,
                          0.1)
    assert labeler.agreement_ceiling([pair]) == \
        pytest.approx(labeler.agreement_ceiling([(KIND_HAPPY, UNKIND_SAD, WANTS)]))
    with pytest.raises(ValueError, match=re.escape("at least one pair")):
        labeler.agreement_ceiling([])
    with pytest.raises(ValueError, match="a pair is"):
        labeler.agreement_ceiling(["not a pair"])
