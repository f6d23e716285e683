"""Lesson 06, generation: how a GPT writes, one token at a time.

The model gives, at the last position, a score (logit) for every token of the vocabulary.
Choose one, append it, and ask again: that loop is all of generation. How to choose is the
art: always the best (greedy), or at random from the softmax, made sharper or flatter by a
temperature and cut down to the likeliest tokens by top-k or top-p. The KV cache keeps each
layer's keys and values of the tokens already seen, so each step only processes the new token.

Shapes: B batch, T tokens, V vocabulary size; logits (..., V).
"""

from __future__ import annotations

from numbers import Integral

import torch


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits (..., V) divided by temperature > 0: below 1 sharper, above 1 flatter."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (for greedy decoding, "
                         f"take the argmax instead)")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """logits (..., V) with all but the k largest of each row set to -inf (ties at the k-th
    value are kept). k at least 1; k >= V keeps everything."""
    if not (_is_whole(k) and k >= 1):
        raise ValueError(f"k must be a whole number >= 1, got {k!r}")
    k = min(int(k), logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """logits (..., V) keeping, in each row, the smallest set of most likely tokens whose
    probabilities add up to at least p (nucleus sampling); the rest set to -inf.

    The token whose probability carries the sum across p is kept, so at least one token
    always remains. p in (0, 1]; p = 1 keeps everything.
    """
    if not 0 < p <= 1:
        raise ValueError(f"p must be in (0, 1], got {p}")
    if p == 1:  # everything: in float32 the running sum can reach 1 before the last tokens
        return logits.clone()
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # probability of the tokens ranked above
    drop_sorted = before >= p  # already reached p without this token
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None
               ) -> torch.Tensor:
    """One next token per row: logits (B, V) -> ids (B, 1).

    temperature=0 is greedy: the argmax, with no randomness (top_k and top_p change nothing).
    """
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


def _is_whole(n) -> bool:
    """An int or a numpy integer; neither True nor 2.0."""
    return isinstance(n, Integral) and not isinstance(n, bool)


def _check_settings(idx: torch.Tensor, max_new_tokens: int, temperature: float,
                    top_k: int | None, top_p: float | None, config) -> None:
    vocab_size = config.vocab_size
    if idx.dim() != 2 or idx.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"expected the prompt as integer token ids of shape (B, T), got "
                         f"{idx.dtype} of shape {tuple(idx.shape)}; for one prompt, "
                         f"torch.tensor([ids])")
    if idx.size(1) == 0:
        raise ValueError("the prompt is empty: give at least one token (for example the "
                         "tokenizer's end-of-text token) to start from")
    if idx.min() < 0 or idx.max() >= vocab_size:
        raise ValueError(f"the prompt holds token ids from {idx.min().item()} to "
                         f"{idx.max().item()}, but the model knows ids 0 to {vocab_size - 1}; "
                         f"was it encoded with this model's tokenizer?")
    if not (_is_whole(max_new_tokens) and max_new_tokens >= 0):
        raise ValueError(f"max_new_tokens must be a whole number >= 0, got {max_new_tokens!r}")
    if not temperature >= 0:  # NaN too
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and not (_is_whole(top_k) and top_k >= 1):
        raise ValueError(f"top_k must be a whole number >= 1 or None, got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")


@torch.no_grad()
def autoregressive_loop(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                        top_k: int | None = None, generator: torch.Generator | None = None
                        ) -> torch.Tensor:
    """Generation as lesson 06 writes it: idx (B, T) -> (B, T + max_new_tokens).

    Each step crops the sequence to its last block_size tokens (the most the model can see;
    a prompt longer than that is cropped the same way), takes the logits of the last
    position, and draws the next token with `next_token` (argmax when temperature is 0, else
    softmax of the scaled, top-k filtered logits sampled by torch.multinomial(probs, 1,
    generator=generator)). `model` is any module whose forward maps ids (B, T) to
    (logits (B, T, V), loss) and that has config.block_size and config.vocab_size: the
    course's GPT, or the learner's own. No KV cache: see `generate` for the fast version.
    """
    _check_settings(idx, max_new_tokens, temperature, top_k, None, model.config)
    block_size = model.config.block_size
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -block_size:])  # (B, T, V)
        new = next_token(logits[:, -1], temperature, top_k, None, generator)  # (B, 1)
        idx = torch.cat([idx, new], dim=1)
    return idx


@torch.no_grad()
def generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, use_cache: bool = True,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """The autoregressive loop: idx (B, T) -> (B, T + max_new_tokens), prompt then new ids.

    `model` is a `gptcourse.model.GPT`. With use_cache, each step feeds only the newest token
    and the KV cache supplies the rest; without, each step runs the whole sequence again. Both
    give the same tokens. Once the sequence fills the context (block_size), each step sees only
    the last block_size tokens, as a window sliding along; the cache cannot slide (every
    position would change), so from there on both ways recompute the window. A prompt longer
    than block_size is cropped the same way: the model sees its last block_size tokens.
    """
    block_size = model.config.block_size
    _check_settings(idx, max_new_tokens, temperature, top_k, top_p, model.config)
    was_training = model.training
    model.eval()
    try:
        caches = model.new_caches(idx.size(0)) if use_cache else None
        new = idx  # the tokens the model has not processed yet
        for _ in range(max_new_tokens):
            if caches is not None and caches[0].length + new.size(1) <= block_size:
                h = model.features(new, caches)
            else:
                caches = None  # the window slides: positions shift, the cache is stale
                h = model.features(idx[:, -block_size:])
            logits = model.lm_head(h[:, -1])  # only the last position predicts what comes next
            new = next_token(logits, temperature, top_k, top_p, generator)  # (B, 1)
            idx = torch.cat([idx, new], dim=1)
        return idx
    finally:
        model.train(was_training)
