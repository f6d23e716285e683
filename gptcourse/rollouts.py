"""Rollouts (lesson 09): answers sampled from a chat model, several to one request at once.

RLHF learns from the model's own answers: the labeler compares them, the reward model scores
them, PPO raises the probability of the good ones. `sample_answers` writes k answers to one
chat as one batch of k rows. All rows share the prompt, so they need no padding on the left
and one KV cache serves them: the prompt is read once and its keys and values copied into
every row's cache, then each step feeds one new token per row. A row that writes the
end marker is finished; later steps write padding into it, and the loop stops once every row
has finished, after max_new_tokens, or when the context is full.

A `Rollout` holds the rows in the layout the RLHF losses take (`rlhf.sequence_logprobs`):
ids (B, T) and a response mask (B, T) aligned with them, 1 on the answer's tokens (and its
end marker), 0 on the prompt and the padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gptcourse.finetuning import END, PAD, chat_ids, encode_chat
from gptcourse.generation import next_token
from gptcourse.model import GPT
from gptcourse.tokenizer import Tokenizer


@dataclass
class Rollout:
    """Sampled answers. ids (B, T) int64: prompt, answer, the end marker when the row ended,
    then padding; mask (B, T) float 0/1, 1 on the answer and its end marker; lengths (B,)
    int64, the real tokens of each row; texts: the B answers decoded, without the prompt and
    the end marker (a marker the model wrote inside an answer stays in it, as text); ended
    (B,) bool, whether each row wrote the end marker."""

    ids: torch.Tensor
    mask: torch.Tensor
    lengths: torch.Tensor
    texts: list[str]
    ended: torch.Tensor

    @staticmethod
    def cat(rollouts: list["Rollout"], pad_id: int) -> "Rollout":
        """The rows of several rollouts (of different prompts, say) as one, right-padded with
        pad_id to the longest row."""
        if not rollouts:
            raise ValueError("Rollout.cat needs at least one rollout")
        T = max(r.ids.size(1) for r in rollouts)

        def padded(t: torch.Tensor, value) -> torch.Tensor:
            return torch.nn.functional.pad(t, (0, T - t.size(1)), value=value)

        return Rollout(ids=torch.cat([padded(r.ids, pad_id) for r in rollouts]),
                       mask=torch.cat([padded(r.mask, 0.0) for r in rollouts]),
                       lengths=torch.cat([r.lengths for r in rollouts]),
                       texts=[text for r in rollouts for text in r.texts],
                       ended=torch.cat([r.ended for r in rollouts]))


@torch.no_grad()
def sample_answers(model: GPT, tokenizer: Tokenizer, messages: list[dict[str, str]], k: int,
                   max_new_tokens: int = 256, temperature: float = 1.0,
                   generator: torch.Generator | None = None, use_cache: bool = True
                   ) -> Rollout:
    """k answers to the chat `messages`, sampled together as a batch of k rows (B = k).

    Each row continues `encode_chat(messages, add_generation_prompt=True)` with tokens drawn
    from softmax(logits / temperature) (`generation.next_token`) until it writes the end
    marker, or after max_new_tokens, or when prompt and answer fill block_size. The same
    generator state gives the same answers. use_cache=False runs the whole sequence again at
    every step (the same tokens, slower: the benchmark's reference). Raises ValueError for
    k < 1, max_new_tokens < 1, temperature <= 0, or a chat that leaves no room for an answer.
    """
    if not (isinstance(k, int) and not isinstance(k, bool) and k >= 1):
        raise ValueError(f"k, the number of answers, must be a whole number >= 1, got {k!r}")
    if not (isinstance(max_new_tokens, int) and max_new_tokens >= 1):
        raise ValueError(f"max_new_tokens must be a whole number >= 1, got {max_new_tokens!r}")
    if not temperature > 0:  # NaN too
        raise ValueError(f"temperature must be > 0 to sample answers, got {temperature}")
    block_size = model.config.block_size
    prompt = encode_chat(tokenizer, messages, add_generation_prompt=True)
    if len(prompt) >= block_size:
        raise ValueError(f"the chat is {len(prompt)} tokens long and the model's context "
                         f"holds {block_size}: no room is left for an answer; shorten the "
                         f"messages")
    special = chat_ids(tokenizer)
    end, pad = special[END], special[PAD]
    P = len(prompt)
    steps = min(max_new_tokens, block_size - P)
    device = model.wte.weight.device

    ids = torch.full((k, P + steps), pad, dtype=torch.long, device=device)
    ids[:, :P] = torch.tensor(prompt, dtype=torch.long, device=device)
    lengths = torch.full((k,), P, dtype=torch.long, device=device)
    alive = torch.ones(k, dtype=torch.bool, device=device)
    caches = model.new_caches(k) if use_cache else None
    was_training = model.training
    model.eval()
    try:
        if use_cache:  # every row has the same prompt: read it once, copy its keys and values
            shared = model.new_caches(1)
            h = model.features(ids[:1, :P], shared).expand(k, -1, -1)
            for cache, one in zip(caches, shared):
                cache.k[:, :, :P] = one.k[:, :, :P]
                cache.v[:, :, :P] = one.v[:, :, :P]
                cache.length = P
        for t in range(P, P + steps):
            if not use_cache:
                h = model.features(ids[:, :t])
            elif t > P:
                h = model.features(new, caches)
            token = next_token(model.lm_head(h[:, -1]), temperature, generator=generator)
            token = torch.where(alive[:, None], token, pad)  # (k, 1): finished rows pad
            ids[:, t] = token[:, 0]
            lengths += alive
            alive &= token[:, 0] != end
            if not alive.any():
                break
            new = token
    finally:
        model.train(was_training)

    T = int(lengths.max())
    ids = ids[:, :T]
    positions = torch.arange(T, device=device)
    mask = ((positions >= P) & (positions < lengths[:, None])).float()  # (k, T)
    ended = ~alive
    texts = [tokenizer.decode(ids[b, P:lengths[b] - int(ended[b])].tolist()).strip()
             for b in range(k)]
    return Rollout(ids=ids, mask=mask, lengths=lengths, texts=texts, ended=ended)
