"""The course's data: a generated corpus of short stories (nothing is downloaded), loaders
that accept the learner's own UTF-8 text instead, and a train/validation split.

    from gptcourse.data import generate_corpus, load_corpus
    text = generate_corpus(1_000_000, seed=0)    # 1 MB of stories, the same on every machine
    corpus = load_corpus()                       # .train and .val
    corpus = load_corpus("my_book.txt")          # the same, from your own file

See `gptcourse.data.stories` for how the stories are built and which later lessons use what.
"""

from gptcourse.data.loading import (DEFAULT_BYTES, MIN_BYTES, Corpus, load_corpus, load_text,
                                    read_text_file, train_val_split)
from gptcourse.data.samples import (CHINESE_SAMPLE, EMOJI_SAMPLE, ENGLISH_SAMPLE,
                                    WHITESPACE_SAMPLE)
from gptcourse.data.stories import (Story, generate_corpus, labeler_score, make_story,
                                    question_answer_pairs, stories)

__all__ = ["CHINESE_SAMPLE", "Corpus", "DEFAULT_BYTES", "EMOJI_SAMPLE", "ENGLISH_SAMPLE",
           "MIN_BYTES", "Story", "WHITESPACE_SAMPLE", "generate_corpus", "labeler_score",
           "load_corpus", "load_text", "make_story", "question_answer_pairs", "read_text_file",
           "stories", "train_val_split"]
