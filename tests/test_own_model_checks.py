"""The learner's own model: the checks of the attention module (lesson 03), the block and the
GPT (lesson 05), the generation loop (lesson 06) and the training step (lesson 07) reject
plausible wrong versions, each with a hint naming the mistake, and accept correct versions
written in other styles. Every version here is written as a learner would write it."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from catalogue import catalogue_tests

from gptcourse import check
from gptcourse.attention import MultiHeadAttention as CourseAttention
from gptcourse.feedforward import MLP
from gptcourse.model import GPTConfig


# --- attention.MultiHeadAttention ---------------------------------------------------------------

class Attention(nn.Module):
    """A correct module, written out; the wrong ones below change one thing each."""

    scale_by_head = True
    masked = True
    transposed = True
    projected = True
    order = "qkv"

    def __init__(self, n_embd, n_head, bias=True):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(self, x):
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        parts = dict(zip(self.order, self.qkv(x).split(C, dim=-1)))
        if self.transposed:
            q, k, v = (parts[n].view(B, T, nh, hs).transpose(1, 2) for n in "qkv")
        else:
            q, k, v = (parts[n].reshape(B, nh, T, hs) for n in "qkv")
        scores = q @ k.transpose(-2, -1)
        if self.scale_by_head:
            scores = scores / math.sqrt(hs)
        if self.masked:
            mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
            scores = scores.masked_fill(~mask, float("-inf"))
        out = scores.softmax(dim=-1) @ v
        out = out.transpose(1, 2).reshape(B, T, C) if self.transposed else out.reshape(B, T, C)
        return self.proj(out) if self.projected else out


class AttentionUnscaled(Attention):
    scale_by_head = False


class AttentionWithoutMask(Attention):
    masked = False


class AttentionSplitByViewAlone(Attention):
    transposed = False


class AttentionWithoutProjection(Attention):
    projected = False


class AttentionKeysFirst(Attention):
    order = "kqv"


class AttentionValuesFirst(Attention):
    order = "vqk"


class AttentionScaledByWidth(Attention):
    def forward(self, x):
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q, k, v = (t.view(B, T, nh, hs).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        scores = (q @ k.transpose(-2, -1) / math.sqrt(C)).masked_fill(
            ~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
        return self.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C))


class AttentionNamedOtherwise(nn.Module):
    def __init__(self, n_embd, n_head, bias=True):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(self, x):
        raise AssertionError("never called: the weights do not load")


class AttentionIgnoringBias(Attention):
    def __init__(self, n_embd, n_head, bias=True):
        super().__init__(n_embd, n_head, bias=True)


class AttentionPerHeadLinears(nn.Module):
    """Each head its own query, key and value layers: correct attention, but its weights are
    other tensors (per-head slices of qkv), named heads.h.query.weight and so on, so the
    reference's state_dict cannot load into it by name."""

    def __init__(self, n_embd, n_head, bias=True):
        super().__init__()
        hs = n_embd // n_head
        self.heads = nn.ModuleList(nn.ModuleDict({n: nn.Linear(n_embd, hs, bias=bias)
                                                  for n in ("query", "key", "value")})
                                   for _ in range(n_head))
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(self, x):
        raise AssertionError("never called: the weights do not load")


# correct variants

class AttentionEinsum(nn.Module):
    def __init__(self, n_embd, n_head, bias=True):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(self, x):
        B, T, C = x.shape
        h = self.n_head
        q, k, v = self.qkv(x).reshape(B, T, 3, h, C // h).unbind(dim=2)  # (B, T, h, hs)
        scores = torch.einsum("bihd,bjhd->bhij", q, k) * (C // h) ** -0.5
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        weights = scores.masked_fill(future, -math.inf).softmax(dim=-1)
        out = torch.einsum("bhij,bjhd->bihd", weights, v).reshape(B, T, C)
        return self.proj(out)


class AttentionFusedSDPA(nn.Module):
    def __init__(self, n_embd, n_head, bias=True):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(out.transpose(1, 2).contiguous().view(B, T, C))


class Head(nn.Module):
    """One head of a ModuleList: it holds no weights of its own, it reads its slice of the
    shared qkv projection's output, so the reference's weights map onto it unchanged."""

    def __init__(self, index, head_size):
        super().__init__()
        self.channels = slice(index * head_size, (index + 1) * head_size)

    def forward(self, q, k, v):
        q, k, v = (t[..., self.channels] for t in (q, k, v))  # (B, T, hs)
        T = q.size(1)
        scores = q @ k.transpose(1, 2) / math.sqrt(q.size(-1))
        scores = scores.masked_fill(torch.ones(T, T).tril() == 0, float("-inf"))
        return F.softmax(scores, dim=-1) @ v


class AttentionModuleListOfHeads(nn.Module):
    def __init__(self, n_embd, n_head, bias=True):
        super().__init__()
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.heads = nn.ModuleList(Head(h, n_embd // n_head) for h in range(n_head))
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(torch.cat([head(q, k, v) for head in self.heads], dim=-1))


class AttentionFromCoursePieces(nn.Module):
    """Built on the learner's earlier functions, here the course's: split, attend, merge."""

    def __init__(self, n_embd, n_head, bias=True):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(self, x):
        from gptcourse.attention import (causal_mask, merge_heads, scaled_dot_product_attention,
                                         split_heads)

        q, k, v = (split_heads(t, self.n_head) for t in self.qkv(x).chunk(3, dim=-1))
        out, _ = scaled_dot_product_attention(q, k, v, causal_mask(x.size(1)))
        return self.proj(merge_heads(out))


# --- gpt_model.Block ---------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CourseAttention(config.n_embd, config.n_head, bias=config.bias)
        self.ln2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config.n_embd, bias=config.bias)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class BlockPostNorm(Block):
    def forward(self, x):
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.mlp(x))


class BlockWithoutAttentionResidual(Block):
    def forward(self, x):
        x = self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class BlockWithoutMLPResidual(Block):
    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return self.mlp(self.ln2(x))


class BlockNormalisingTheResidual(Block):
    def forward(self, x):
        x = self.ln1(x)
        x = x + self.attn(x)
        x = self.ln2(x)
        return x + self.mlp(x)


class BlockOneLayerNormForBoth(Block):
    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln1(x))


class BlockWithALeakyAttention(Block):
    def __init__(self, config):
        super().__init__(config)
        self.attn = AttentionWithoutMask(config.n_embd, config.n_head, bias=config.bias)


class BlockNamedLikeGPT2(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CourseAttention(config.n_embd, config.n_head, bias=config.bias)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config.n_embd, bias=config.bias)

    def forward(self, x):
        raise AssertionError("never called: the weights do not load")


class BlockInTwoSteps(Block):
    def forward(self, x):
        attended = self.attn(self.ln1(x))
        h = x + attended
        thought = self.mlp(self.ln2(h))
        return torch.add(h, thought)


class BlockWithOwnAttention(Block):
    """Block built on a learner's own attention module (the einsum one)."""

    def __init__(self, config):
        super().__init__(config)
        self.attn = AttentionEinsum(config.n_embd, config.n_head, bias=config.bias)


# --- gpt_model.GPT -----------------------------------------------------------------------------

class GPT(nn.Module):
    positions = "before"
    final_norm = True
    probabilities = False
    tied = True

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if self.tied:
            self.lm_head.weight = self.wte.weight

    def forward(self, idx, targets=None):
        T = idx.size(1)
        pos = self.wpe(torch.arange(T, device=idx.device))
        x = self.wte(idx) + (pos if self.positions == "before" else 0)
        for block in self.blocks:
            x = block(x)
        if self.positions == "after":
            x = x + pos
        if self.final_norm:
            x = self.ln_f(x)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return (logits.softmax(-1) if self.probabilities else logits), loss


class GPTWithoutPositions(GPT):
    positions = None


class GPTPositionsAfterTheBlocks(GPT):
    positions = "after"


class GPTWithoutFinalNorm(GPT):
    final_norm = False


class GPTReturningProbabilities(GPT):
    probabilities = True


class GPTUntied(GPT):
    tied = False


class GPTReturningLogitsOnly(GPT):
    def forward(self, idx, targets=None):
        return super().forward(idx, targets)[0]


class GPTWithALeakyBlock(GPT):
    def __init__(self, config):
        super().__init__(config)
        self.blocks = nn.ModuleList([BlockWithALeakyAttention(config)
                                     for _ in range(config.n_layer)])


class GPTWithBlocksInASequential(GPT):
    def __init__(self, config):
        super().__init__(config)
        self.h = nn.Sequential(*self.blocks)
        del self.blocks


class GPTWithOwnParts(GPT):
    """From a learner's own block (on their own attention), positions by broadcasting."""

    def __init__(self, config):
        super().__init__(config)
        self.blocks = nn.ModuleList(BlockWithOwnAttention(config) for _ in range(config.n_layer))

    def forward(self, idx, targets=None):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe.weight[:T]
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.transpose(1, 2), targets)


# --- generation.generate -----------------------------------------------------------------------

def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -model.config.block_size:])
        logits = logits[:, -1, :]
        if temperature == 0:
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
        idx = torch.cat((idx, nxt), dim=1)
    return idx


def generate_from_the_first_position(model, idx, max_new_tokens, temperature=1.0, top_k=None,
                                     generator=None):
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -model.config.block_size:])
        idx = torch.cat((idx, logits[:, 0].argmax(-1, keepdim=True) if temperature == 0 else
                         torch.multinomial((logits[:, 0] / temperature).softmax(-1), 1,
                                           generator=generator)), dim=1)
    return idx


def generate_without_cropping(model, idx, max_new_tokens, temperature=1.0, top_k=None,
                              generator=None):
    for _ in range(max_new_tokens):
        logits, _ = model(idx)
        logits = logits[:, -1]
        nxt = logits.argmax(-1, keepdim=True) if temperature == 0 else torch.multinomial(
            (logits / temperature).softmax(-1), 1, generator=generator)
        idx = torch.cat((idx, nxt), dim=1)
    return idx


def generate_cropping_the_start(model, idx, max_new_tokens, temperature=1.0, top_k=None,
                                generator=None):
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, :model.config.block_size])
        logits = logits[:, -1]
        nxt = logits.argmax(-1, keepdim=True) if temperature == 0 else torch.multinomial(
            (logits / temperature).softmax(-1), 1, generator=generator)
        idx = torch.cat((idx, nxt), dim=1)
    return idx


def _sampling_loop(draw):
    def loop(model, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
        for _ in range(max_new_tokens):
            logits = model(idx[:, -model.config.block_size:])[0][:, -1]
            if temperature == 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                nxt = draw(logits, temperature, top_k, generator)
            idx = torch.cat((idx, nxt), dim=1)
        return idx
    return loop


def _top_k(logits, k):
    kth = torch.topk(logits, k).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def _temperature_after_softmax(logits, temperature, top_k, generator):
    logits = _top_k(logits, top_k) if top_k else logits
    return torch.multinomial(logits.softmax(-1) / temperature, 1, generator=generator)


def _ignoring_the_generator(logits, temperature, top_k, generator):
    logits = logits / temperature
    logits = _top_k(logits, top_k) if top_k else logits
    return torch.multinomial(logits.softmax(-1), 1)


def _top_k_over_the_batch(logits, temperature, top_k, generator):
    logits = logits / temperature
    if top_k:
        kth = logits.flatten().topk(top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)


generate_with_temperature_after_softmax = _sampling_loop(_temperature_after_softmax)
generate_ignoring_the_generator = _sampling_loop(_ignoring_the_generator)
generate_with_top_k_over_the_batch = _sampling_loop(_top_k_over_the_batch)


def generate_dividing_by_zero(model, idx, max_new_tokens, temperature=1.0, top_k=None,
                              generator=None):
    for _ in range(max_new_tokens):
        logits = model(idx[:, -model.config.block_size:])[0][:, -1] / temperature
        nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)
        idx = torch.cat((idx, nxt), dim=1)
    return idx


def generate_with_a_while_loop(model, idx, max_new_tokens, temperature=1.0, top_k=None,
                               generator=None):
    target = idx.size(1) + max_new_tokens
    block_size = model.config.block_size
    with torch.no_grad():
        while idx.size(1) < target:
            logits = model(idx[:, max(0, idx.size(1) - block_size):])[0][:, -1]
            if temperature == 0:
                nxt = torch.argmax(logits, dim=1).unsqueeze(1)
            else:
                scaled = logits / temperature
                if top_k is not None:
                    values, _ = torch.topk(scaled, top_k, dim=-1)
                    scaled = torch.where(scaled < values[:, -1:], -torch.inf, scaled)
                nxt = torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator)
            idx = torch.cat([idx, nxt], dim=-1)
    return idx


def generate_with_course_filters(model, idx, max_new_tokens, temperature=1.0, top_k=None,
                                 generator=None):
    from gptcourse.generation import apply_temperature, top_k_filter

    model.eval()
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits, _ = model(idx[:, -model.config.block_size:])
        last = logits[:, -1]
        if temperature == 0:
            idx = torch.cat([idx, last.argmax(-1, keepdim=True)], 1)
            continue
        last = apply_temperature(last, temperature)
        if top_k:
            last = top_k_filter(last, top_k)
        idx = torch.cat([idx, torch.multinomial(last.softmax(-1), 1, generator=generator)], 1)
    return idx


# --- pretraining.train_step --------------------------------------------------------------------

def _steps(*order, returns=lambda loss: loss.item()):
    def train_step(model, optimizer, x, y, lr, grad_clip):
        loss = None
        for part in order:
            if part == "lr":
                for group in optimizer.param_groups:
                    group["lr"] = lr
            elif part == "zero":
                optimizer.zero_grad()
            elif part == "forward":
                _, loss = model(x, y)
            elif part == "backward":
                loss.backward()
            elif part == "clip":
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            elif part == "step":
                optimizer.step()
        return returns(loss)
    return train_step


train_step = _steps("lr", "zero", "forward", "backward", "clip", "step")
train_step_without_zero_grad = _steps("lr", "forward", "backward", "clip", "step")
train_step_clipping_after_step = _steps("lr", "zero", "forward", "backward", "step", "clip")
train_step_never_setting_lr = _steps("zero", "forward", "backward", "clip", "step")
train_step_stepping_before_backward = _steps("lr", "zero", "forward", "step", "backward", "clip")
train_step_returning_the_tensor = _steps("lr", "zero", "forward", "backward", "clip", "step",
                                         returns=lambda loss: loss)
train_step_without_clipping = _steps("lr", "zero", "forward", "backward", "step")


def train_step_manual_clip(model, optimizer, x, y, lr, grad_clip):
    optimizer.param_groups[0]["lr"] = lr  # one group here; the loop covers every group below
    for group in optimizer.param_groups:
        group["lr"] = lr
    for p in model.parameters():
        p.grad = None
    logits, loss = model(x, y)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    if norm > grad_clip:
        for g in grads:
            g.mul_(grad_clip / norm)
    optimizer.step()
    return float(loss)


def train_step_zero_grad_at_the_end(model, optimizer, x, y, lr, grad_clip):
    for group in optimizer.param_groups:
        group["lr"] = lr
    _, loss = model(x, y)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm=grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach().item()


# --- the catalogue ----------------------------------------------------------------------------

WEIGHT_NAMES = ["name its parts as the lesson does"]

WRONG = {
    "attention.MultiHeadAttention": {
        AttentionUnscaled: ["1/√d"],
        AttentionScaledByWidth: ["1/√d", "not C"],
        AttentionWithoutMask: ["sees the future", "causal mask"],
        AttentionSplitByViewAlone: ["transpose(1, 2)"],
        AttentionWithoutProjection: ["output projection"],
        AttentionKeysFirst: ["in that order"],
        AttentionValuesFirst: ["in that order"],
        AttentionNamedOtherwise: WEIGHT_NAMES + ["`qkv`"],
        AttentionIgnoringBias: WEIGHT_NAMES,
        AttentionPerHeadLinears: WEIGHT_NAMES,
    },
    "gpt_model.Block": {
        BlockPostNorm: ["post-norm"],
        BlockWithoutAttentionResidual: ["attention half's residual"],
        BlockWithoutMLPResidual: ["feed-forward half's residual"],
        BlockNormalisingTheResidual: ["residual path x itself"],
        BlockOneLayerNormForBoth: ["its own LayerNorm"],
        BlockWithALeakyAttention: ["sees the future"],
        BlockNamedLikeGPT2: WEIGHT_NAMES + ["`ln1`"],
    },
    "gpt_model.GPT": {
        GPTWithoutPositions: ["positions are missing"],
        GPTPositionsAfterTheBlocks: ["before the blocks"],
        GPTWithoutFinalNorm: ["final LayerNorm"],
        GPTReturningProbabilities: ["Return the logits"],
        GPTUntied: ["tied"],
        GPTReturningLogitsOnly: ["(logits, loss)"],
        GPTWithALeakyBlock: ["sees the future"],
        GPTWithBlocksInASequential: WEIGHT_NAMES + ["`blocks`"],
    },
    "generation.generate": {
        generate_from_the_first_position: ["last position"],
        generate_without_cropping: ["idx[:, -model.config.block_size:]"],
        generate_cropping_the_start: ["*last* block_size"],
        generate_with_temperature_after_softmax: ["before the softmax"],
        generate_ignoring_the_generator: ["generator=generator"],
        generate_with_top_k_over_the_batch: ["its own row"],
        generate_dividing_by_zero: ["greedy"],
    },
    "pretraining.train_step": {
        train_step_without_zero_grad: ["zero_grad", "piles"],
        train_step_clipping_after_step: ["between backward and step", "after optimizer.step()"],
        train_step_never_setting_lr: ["param_groups"],
        train_step_stepping_before_backward: ["after loss.backward()"],
        train_step_returning_the_tensor: ["loss.item()"],
        train_step_without_clipping: ["between backward and step"],
    },
}

CORRECT = {
    "attention.MultiHeadAttention": [Attention, AttentionEinsum, AttentionFusedSDPA,
                                     AttentionModuleListOfHeads, AttentionFromCoursePieces],
    "gpt_model.Block": [Block, BlockInTwoSteps, BlockWithOwnAttention],
    "gpt_model.GPT": [GPT, GPTWithOwnParts],
    "generation.generate": [generate, generate_with_a_while_loop, generate_with_course_filters],
    "pretraining.train_step": [train_step, train_step_manual_clip,
                               train_step_zero_grad_at_the_end],
}

(test_wrong_implementation_is_rejected_with_feedback_naming_the_mistake,
 test_correct_variants_pass, test_the_stub_is_not_attempted) = catalogue_tests(WRONG, CORRECT)


# --- the verdicts' wording ---------------------------------------------------------------------

def test_weight_names_that_differ_are_listed_not_a_load_state_dict_traceback():
    result = check("gpt_model.Block", BlockNamedLikeGPT2)
    assert result.status == "failed"
    assert "your module has no ln1.weight, ln1.bias, ln2.weight" in result.message
    assert "it has ln_1.weight" in result.message and "which the reference does not" in \
        result.message
    assert "load_state_dict" not in result.message + result.details
    assert "Error(s) in loading" not in result.message + result.details


def test_a_weight_of_the_wrong_shape_is_named_with_both_shapes():
    class SquareQKV(Attention):
        def __init__(self, n_embd, n_head, bias=True):
            super().__init__(n_embd, n_head, bias)
            self.qkv = nn.Linear(n_embd, n_embd, bias=bias)

    result = check("attention.MultiHeadAttention", SquareQKV)
    assert "qkv.weight is (12, 12), expected (36, 12)" in result.message, result.message


def test_a_wrong_output_shape_says_which_shape_was_expected():
    class HeadsNotMerged(Attention):
        def forward(self, x):
            B, T, C = x.shape
            q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2)
                       for t in self.qkv(x).chunk(3, -1))
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    result = check("attention.MultiHeadAttention", HeadsNotMerged)
    assert "['output']: expected shape (2, 5, 12), got shape (2, 3, 5, 4)" in result.message


def test_the_call_reads_as_the_learner_writes_it():
    result = check("attention.MultiHeadAttention", AttentionUnscaled)
    assert "MultiHeadAttention(n_embd=12, n_head=3) holding the reference's weights, then " \
           "forward((2, 5, 12) float64)" in result.message
    result = check("generation.generate", generate_from_the_first_position)
    assert "generate(model, idx=" in result.message and "block_size=4" in result.message


def test_a_class_whose_init_is_a_stub_is_not_attempted():
    class Stub(nn.Module):
        def __init__(self, n_embd, n_head, bias=True):
            super().__init__()
            raise NotImplementedError("Replace this line with your code")

    assert check("attention.MultiHeadAttention", Stub).status == "not_attempted"


def test_a_function_in_place_of_a_class_is_told_to_be_a_module():
    def MultiHeadAttention(n_embd, n_head, bias=True):  # noqa: N802
        return lambda x: x

    result = check("attention.MultiHeadAttention", MultiHeadAttention)
    assert result.status == "failed" and "class MultiHeadAttention(nn.Module)" in result.hint


def test_the_test_model_refuses_more_than_its_context_as_a_gpt_does():
    from gptcourse.exercises.probes import table_model

    model = table_model(torch.zeros(5, 3, 5), block_size=3)
    assert model(torch.zeros(1, 3, dtype=torch.long))[0].shape == (1, 3, 5)
    with pytest.raises(ValueError, match="do not fit in the context"):
        model(torch.zeros(1, 4, dtype=torch.long))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampling_cases_would_catch_an_ignored_generator_at_every_seed(seed):
    """The cases' distributions are spread enough that two unseeded runs differ."""
    result = check("generation.generate", generate_ignoring_the_generator, seed=seed)
    assert result.status == "failed"


def test_the_course_model_follows_the_convention_the_lesson_states():
    from gptcourse.model import GPT as CourseGPT

    config = GPTConfig(vocab_size=23, block_size=8, n_layer=2, n_head=2, n_embd=12)
    logits, loss = CourseGPT(config)(torch.zeros(1, 3, dtype=torch.long))
    assert logits.shape == (1, 3, 23) and loss is None


def test_the_courses_own_classes_handed_in_are_refused():
    from gptcourse import model

    class Renamed(model.GPT):
        pass

    class GPTOnCourseBlocks(GPT):
        def __init__(self, config):
            super().__init__(config)
            self.blocks = nn.ModuleList(model.Block(config) for _ in range(config.n_layer))

    for exercise, cls in (("attention.MultiHeadAttention", CourseAttention),
                          ("gpt_model.Block", model.Block), ("gpt_model.GPT", Renamed),
                          ("gpt_model.GPT", GPTOnCourseBlocks)):
        result = check(exercise, cls)
        assert result.status == "failed" and "counts only your own code" in result.message, \
            (exercise, cls, result)


def test_a_learners_gpt_on_their_own_attention_runs_the_course_model_and_writes_its_story():
    """The payoff of lessons 03 to 06, with learner-written pieces throughout: einsum
    attention inside their block, their GPT, their generation loop."""
    from gptcourse import load_course_model

    course, tokenizer = load_course_model()
    yours = GPTWithOwnParts(course.config)
    yours.load_state_dict(course.state_dict(), strict=True)
    ids = torch.tensor([tokenizer.encode("Once upon a time, a little fox found a red ball.")])
    with torch.no_grad():
        assert torch.allclose(yours(ids)[0], course(ids)[0], atol=1e-4)
    prompt = torch.tensor([tokenizer.encode("Once upon a time")])
    assert torch.equal(generate(yours, prompt, 40, temperature=0),
                       course.generate(prompt, 40, temperature=0))
