"""gptcourse.tokenizer: the lesson's functions, the fast trainer (which must learn exactly what
recounting learns), the Tokenizer (special tokens, save/load, bad input) and tiktoken interop
pinned against tiktoken itself, offline."""

import random
import re

import pytest
import tiktoken

from gptcourse.data import (CHINESE_SAMPLE, EMOJI_SAMPLE, ENGLISH_SAMPLE, WHITESPACE_SAMPLE,
                            generate_corpus, load_corpus)
from gptcourse.tokenizer import (ENDOFTEXT, GPT2_PATTERN, GPT4_PATTERN, Tokenizer, decode,
                                 encode, get_pair_counts, merge_pair, offline_tiktoken,
                                 split_text, train_bpe, train_merges)

# --- the lesson's functions ------------------------------------------------------------------


def test_pair_counts_overlap_and_keep_first_appearance_order():
    assert get_pair_counts([97, 97, 97]) == {(97, 97): 2}
    assert list(get_pair_counts([3, 1, 2, 3, 1])) == [(3, 1), (1, 2), (2, 3)]
    assert get_pair_counts([]) == {} and get_pair_counts([5]) == {}


def test_merge_pair_does_not_overlap_and_keeps_its_input():
    ids = [97] * 4
    assert merge_pair(ids, (97, 97), 256) == [256, 256]
    assert merge_pair([97] * 3, (97, 97), 256) == [256, 97]
    assert merge_pair([1, 2, 3], (1, 2), 9) == [9, 3]
    assert ids == [97] * 4


def test_train_bpe_on_the_classic_example_breaks_ties_by_the_smallest_pair():
    # aa occurs 4 times; then (97, 98) and (256, 97) both occur twice: the smaller pair wins
    assert train_bpe("aaabdaaabac", 259) == {(97, 97): 256, (97, 98): 257, (256, 257): 258}


def test_train_bpe_stops_when_no_pair_is_left_and_rejects_small_vocabularies():
    assert train_bpe("aaaa", 300) == {(97, 97): 256, (256, 256): 257}
    assert train_bpe("hello", 256) == {}
    with pytest.raises(ValueError, match="at least 256"):
        train_bpe("hello", 200)


@pytest.mark.parametrize("text", ["", "hello world", CHINESE_SAMPLE, EMOJI_SAMPLE,
                                  WHITESPACE_SAMPLE, generate_corpus(2000, 3)])
def test_encode_then_decode_gives_the_text_back(text):
    merges = train_bpe(generate_corpus(1500, 1) + CHINESE_SAMPLE, 330)
    assert decode(encode(text, merges), merges) == text


def test_decode_replaces_invalid_utf8_like_tiktoken_and_rejects_unknown_ids():
    assert decode([104, 105, 0xFF], {}) == "hi\ufffd"
    assert decode(list("好".encode())[:2], {}) == "\ufffd"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        decode([300], {})


# --- the fast trainer ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_fast_training_learns_exactly_what_recounting_learns(seed):
    rng = random.Random(seed)
    text = generate_corpus(1500, seed) + CHINESE_SAMPLE + "".join(rng.choice("ab ")
                                                                  for _ in range(300))
    for vocab_size in (256, 290, 420):
        simple = train_bpe(text, vocab_size)
        fast = train_merges({text.encode("utf-8"): 1}, vocab_size - 256)
        assert list(fast.items()) == list(simple.items())


def test_fast_training_on_pieces_matches_recounting_with_pairs_inside_pieces_only():
    pieces = {b"aaaa": 3, b"ab": 2, b"ba": 5, b"aab": 1}
    fast = train_merges(pieces, 10)
    # recount by hand: pairs weighted by how often each piece occurs, never across pieces
    seqs = {tuple(p): n for p, n in pieces.items()}
    expected = {}
    for new_id in range(256, 266):
        counts = {}
        for seq, n in seqs.items():
            for pair in zip(seq, seq[1:]):
                counts[pair] = counts.get(pair, 0) + n
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        expected[best] = new_id
        seqs = {tuple(merge_pair(list(s), best, new_id)): n for s, n in seqs.items()}
    assert list(fast.items()) == list(expected.items())


def test_trained_tokenizer_round_trips_and_compresses():
    text = generate_corpus(50_000)
    tok = Tokenizer.train(text, 512)
    assert tok.vocab_size == 512 and tok.special_tokens == {ENDOFTEXT: 511}
    sample = generate_corpus(3000, seed=7)
    ids = tok.encode(sample)
    assert tok.decode(ids) == sample
    assert len(sample.encode()) / len(ids) > 2.5  # stories compress well with 255 merges
    assert Tokenizer.train(text, 512).merges == tok.merges  # deterministic


def test_pre_splitting_keeps_merges_inside_words():
    tok = Tokenizer.train(generate_corpus(20_000), 400, pattern=GPT2_PATTERN)
    for token in tok.vocab.values():  # a space only ever starts a word, never ends one
        assert not re.search(rb"[^ ] ", token), token
    assert "".join(split_text(ENGLISH_SAMPLE, GPT4_PATTERN)) == ENGLISH_SAMPLE
    assert split_text("Hello world", None) == ["Hello world"]


# --- special tokens and bad input ------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    return Tokenizer.train(generate_corpus(20_000), 300)


def test_special_tokens_follow_tiktoken_rules(small):
    text = f"one{ENDOFTEXT}two"
    with pytest.raises(ValueError, match="disallowed"):
        small.encode(text)
    ids = small.encode(text, allowed_special="all")
    assert small.special_tokens[ENDOFTEXT] in ids and small.decode(ids) == text
    assert small.encode(text, allowed_special={ENDOFTEXT}) == ids
    ordinary = small.encode(text, disallowed_special=())
    assert small.special_tokens[ENDOFTEXT] not in ordinary and small.decode(ordinary) == text
    with pytest.raises(ValueError, match="does not have"):
        small.encode("x", allowed_special={"<|nope|>"})


def test_unknown_ids_and_bad_vocab_sizes_are_clear_errors(small):
    with pytest.raises(ValueError, match="not in this tokenizer's vocabulary"):
        small.decode([small.vocab_size + 5])
    with pytest.raises(ValueError, match="at least 257"):
        Tokenizer.train("hello", 256)
    with pytest.raises(ValueError, match="uses an id not defined"):
        Tokenizer({(1, 999): 256})


def test_save_and_load_give_the_same_tokenizer(small, tmp_path):
    path = tmp_path / "tok.txt"
    small.save(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("gptcourse tokenizer 1\npattern ") and "merges 43\n" in text
    again = Tokenizer.load(path)
    assert again.merges == small.merges and list(again.merges) == list(small.merges)
    assert again.special_tokens == small.special_tokens and again.pattern == small.pattern
    sample = f"{ENGLISH_SAMPLE}{ENDOFTEXT}{CHINESE_SAMPLE}"
    assert again.encode(sample, allowed_special="all") == small.encode(sample,
                                                                       allowed_special="all")


def test_loading_a_damaged_file_names_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("gptcourse tokenizer 1\npattern null\nbytes identity\nspecial 0\nmerges 2\n"
                    "97 97 256\n97 x 257\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 7"):
        Tokenizer.load(path)


def test_show_draws_boundaries(small):
    view = small.show("the cat")
    assert "|" in repr(view) and "<span" in view._repr_html_()
    assert "".join(t.decode() for t in view.tokens) == "the cat"


# --- tiktoken, offline -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def cl100k():
    return offline_tiktoken("cl100k_base"), Tokenizer.from_tiktoken("cl100k_base")


def test_offline_tiktoken_is_tiktokens_own_encoding(cl100k):
    enc, _ = cl100k
    assert isinstance(enc, tiktoken.Encoding) and enc.n_vocab == 100_277
    assert enc.encode("hello world") == [15339, 1917]


def test_other_encodings_say_which_work_offline():
    with pytest.raises(ValueError, match="cl100k_base"):
        offline_tiktoken("gpt2")
    with pytest.raises(ValueError, match="offline"):
        Tokenizer.from_tiktoken("o200k_base")


@pytest.mark.parametrize("name, text", [
    ("Chinese", CHINESE_SAMPLE),
    ("emoji", EMOJI_SAMPLE),
    ("runs of spaces and newlines", WHITESPACE_SAMPLE),
    ("spaces only", "     "),
    ("newlines only", "\n\n\n\n"),
    ("mixed whitespace", "a \n \n\n  b\t\t \r\n\r\n   "),
    ("English", ENGLISH_SAMPLE),
    ("numbers and code", "x = 1234567 + 89; print(f'{x:,}')  # 3.14159"),
    ("contractions", "I'm sure they'll say it's THEY'RE, we've, I'D"),
])
def test_our_encode_gives_tiktokens_ids(cl100k, name, text):
    enc, ours = cl100k
    assert ours.encode(text) == enc.encode(text)
    assert ours.decode(ours.encode(text)) == text


def test_our_encode_gives_tiktokens_ids_on_the_whole_validation_text(cl100k):
    enc, ours = cl100k
    val = load_corpus().val
    assert len(val) > 50_000
    assert ours.encode(val) == enc.encode(val)


def test_special_tokens_match_tiktoken(cl100k):
    enc, ours = cl100k
    text = f"Hello{ENDOFTEXT}<|fim_prefix|>def f():<|fim_suffix|> return 1<|endofprompt|>"
    assert ours.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")
    some = {ENDOFTEXT}
    assert ours.encode(f"a{ENDOFTEXT}b", allowed_special=some) == \
        enc.encode(f"a{ENDOFTEXT}b", allowed_special=some)
    assert ours.encode(text, disallowed_special=()) == enc.encode(text, disallowed_special=())
    for encoder in (ours, enc):
        with pytest.raises(ValueError):
            encoder.encode(text)


def test_decoding_broken_utf8_matches_tiktoken(cl100k):
    enc, ours = cl100k
    ids = enc.encode("你好")
    broken = [enc.encode_single_token(bytes([b])) for b in "你".encode()[:2]] + ids
    assert ours.decode(broken) == enc.decode(broken)
