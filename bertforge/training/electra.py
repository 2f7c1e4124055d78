"""ELECTRA's pretraining (Clark et al. 2020, "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than
Generators"): ``bertforge pretrain --objective electra``.

- A small generator (``--generator-size`` of the model's width in whole attention heads, or one narrower head below
  one head's width; 1/4 by default, as in the paper) learns masked language modelling on the masked positions.
- Its samples (drawn from its softmax, no gradient through the sampling) replace the masked tokens; the model -- the
  discriminator, what users fine-tune -- learns on every real token whether it was replaced. A sampled token equal to
  the original counts as original, as in the paper.
- Generator and discriminator share their embeddings (tokens, positions, segments and the embedding LayerNorm); the
  generator's MLM decoder is that token matrix. Where the generator is narrower, its embeddings are projected
  (``embeddings_project``).
- loss = MLM + ``--rtd-weight`` (50) x RTD; both are logged, with the generator's accuracy, the discriminator's and
  the share of tokens replaced.

A checkpoint holds the discriminator as a Hugging Face directory (ElectraForPreTraining) with the generator in its
``generator/`` folder (ElectraForMaskedLM); the run exports them as ``RUN/hf`` and ``RUN/hf-generator`` (fill-mask
runs on the generator).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.constants import IGNORE_INDEX
from bertforge.model import BertConfig, BertForMaskedLM, BertForReplacedTokenDetection
from bertforge.training.objectives import Objective, model_inputs
from bertforge.utils import logger

GENERATOR_DIR = "generator"
"""The generator's folder inside a checkpoint."""


def generator_config(config: BertConfig, size: float) -> BertConfig:
    """The generator's shape: ``size`` of the discriminator's width, the same depth and feed-forward ratio, the same
    embedding width (the embeddings are shared). The width is whole heads of the discriminator's head size, nearest to
    the one asked for; a width under one head is one head of that width (a quarter of 2 heads of 64 is one head of 32,
    not a head of 64, which would be half)."""
    width = max(1, round(config.hidden_size * size))
    if width < config.head_size:  # under one head: one narrower head
        heads, hidden = 1, width
    else:  # the nearest whole number of heads, half up
        heads = math.floor(width / config.head_size + 0.5)
        hidden = heads * config.head_size
    return config.replace(
        hidden_size=hidden,
        num_attention_heads=heads,
        intermediate_size=max(1, round(config.intermediate_size * hidden / config.hidden_size)),
        embedding_size=config.embedding_width,
        model_type="electra",
    )


class ElectraPair(nn.Module):
    """The discriminator and the generator, trained together with shared embeddings."""

    def __init__(self, discriminator: BertForReplacedTokenDetection, generator: BertForMaskedLM):
        super().__init__()
        self.discriminator, self.generator = discriminator, generator
        d, g = discriminator.bert.embeddings, generator.bert.embeddings
        g.token, g.position, g.segment, g.norm = d.token, d.position, d.segment, d.norm
        generator.mlm.decoder.weight = d.token.weight
        g.sparse_token_grad = d.sparse_token_grad = False  # three users of one matrix: plain dense gradients

    @property
    def config(self) -> BertConfig:
        return self.discriminator.config

    def forward(
        self,
        input_ids,
        labels,
        mlm_positions,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        cu_seqlens=None,
        max_seqlen=None,
        rtd_weight: float = 50.0,
    ) -> ElectraOutput:
        """One ELECTRA step's forward (through DDP's wrapper, which must see the whole computation): the generator on
        the masked input, its samples in place of the masked tokens, the discriminator on the result."""
        common = dict(token_type_ids=token_type_ids, position_ids=position_ids, cu_seqlens=cu_seqlens)
        common.update(attention_mask=attention_mask, max_seqlen=max_seqlen)
        gen = self.generator(input_ids, labels=labels, mlm_positions=mlm_positions, **common)
        ids, replaced, originals = replaced_inputs(input_ids, labels, mlm_positions, gen.logits)
        disc = self.discriminator(ids, labels=replaced, **common)
        real = attention_mask.bool() if attention_mask is not None else torch.ones_like(ids, dtype=torch.bool)
        loss = gen.loss + rtd_weight * disc.loss
        return ElectraOutput(loss, gen.loss, disc.loss, gen.logits, originals, disc.logits[real], replaced[real])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())


def build_pair(config: BertConfig, generator_size: float, recompute: bool = False) -> ElectraPair:
    """A new discriminator of ``config`` (as an ELECTRA) and its generator, with random weights."""
    config = config.replace(model_type="electra")
    g = generator_config(config, generator_size)
    logger.info(
        "ELECTRA generator: %d wide (%d head(s) of %d), feed-forward %d: %.3g of the discriminator's width",
        *(g.hidden_size, g.num_attention_heads, g.head_size, g.intermediate_size, g.hidden_size / config.hidden_size),
    )
    pair = ElectraPair(BertForReplacedTokenDetection(config), BertForMaskedLM(g))
    pair.discriminator.bert.gradient_checkpointing = pair.generator.bert.gradient_checkpointing = recompute
    return pair


@dataclass
class ElectraOutput:
    loss: torch.Tensor
    mlm_loss: torch.Tensor
    rtd_loss: torch.Tensor
    mlm_logits: torch.Tensor
    """(P, V) at the masked positions."""
    mlm_labels: torch.Tensor
    rtd_logits: torch.Tensor
    """(N,) at the real tokens."""
    replaced: torch.Tensor
    """(N,) 1 where the generator's sample differs from the original token."""


@torch.no_grad()
def sample_rows(logits: torch.Tensor) -> torch.Tensor:
    """One token per row of ``logits`` (P, V), drawn from its softmax by inverting the cumulative distribution: one
    uniform number per row from torch's generator (so ``manual_seed`` and a checkpoint's RNG state apply), where
    ``torch.multinomial`` on the CPU draws V exponential samples per row and costs as much as the generator's
    forward. A token of probability 0 is never drawn: the first index whose running total exceeds the draw."""
    logits = logits.detach().float()
    cdf = (logits - logits.amax(dim=-1, keepdim=True)).exp_().cumsum_(dim=-1)
    draw = torch.rand(cdf.shape[0], 1, dtype=cdf.dtype, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, draw, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


def replaced_inputs(
    input_ids: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor, mlm_logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the discriminator's input ids, its labels -- 1 where replaced --, the originals at the masked positions): the
    generator's samples at the masked ``positions`` (flat indices); a sample equal to the original is "original"."""
    originals = labels.flatten().index_select(0, positions)
    sampled = sample_rows(mlm_logits)
    flat = input_ids.flatten().index_copy(0, positions, sampled)
    replaced = torch.zeros_like(flat).index_copy(0, positions, (sampled != originals).long())
    return flat.view_as(input_ids), replaced.view_as(input_ids), originals


class ElectraObjective(Objective):
    """The generator's MLM + rtd_weight x the discriminator's replaced-token detection (see the module notes)."""

    # slots: mlm loss x micro, rtd loss x micro, mlm correct, mlm count, rtd correct, rtd count, replaced
    n_stats = 7

    def __init__(self, rtd_weight: float):
        self.rtd_weight = rtd_weight

    def forward(self, model, batch: dict) -> ElectraOutput:
        return model(**model_inputs(batch), labels=batch["labels"], rtd_weight=self.rtd_weight)

    def accumulate(self, stats: torch.Tensor, out: ElectraOutput, batch: dict) -> None:
        stats[0] += out.mlm_loss.detach().float()
        stats[1] += out.rtd_loss.detach().float()
        stats[2] += (out.mlm_logits.argmax(-1) == out.mlm_labels).sum()
        stats[3] += out.mlm_labels.numel()
        stats[4] += ((out.rtd_logits > 0).long() == out.replaced).sum()
        stats[5] += out.replaced.numel()
        stats[6] += out.replaced.sum()

    def summarize(self, s: list[float], micro_batches: float) -> dict[str, float]:
        return {
            "mlm_loss": s[0] / micro_batches,
            "rtd_loss": s[1] / micro_batches,
            "mlm_accuracy": s[2] / max(s[3], 1.0),
            "rtd_accuracy": s[4] / max(s[5], 1.0),
            "replaced_share": s[6] / max(s[5], 1.0),
        }


def write_pair(pair: ElectraPair, directory: str, state: dict, tokenizer) -> None:
    """A checkpoint's weights: the discriminator in ``directory``, the generator in ``directory/generator``."""
    for half, where in ((pair.discriminator, directory), (pair.generator, os.path.join(directory, GENERATOR_DIR))):
        prefix = "discriminator." if half is pair.discriminator else "generator."
        half.save_pretrained(where, state_dict={k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
        tokenizer.save_pretrained(where)


def load_pair(checkpoint: str, pair: ElectraPair) -> None:
    """A checkpoint's weights into ``pair``; a generator of another width (another ``--generator-size``) is refused
    with the share that fits it."""
    from bertforge.training.checkpoint import load_weights

    where = os.path.join(checkpoint, GENERATOR_DIR)
    saved, ours = BertConfig.from_pretrained(where).hidden_size, pair.generator.config.hidden_size
    if saved != ours:
        fits = saved / pair.discriminator.config.hidden_size
        raise ValueError(
            f"{where}: the checkpoint's generator is {saved} wide, --generator-size makes it {ours}: give "
            f"--generator-size {fits:.4g} to resume this run"
        )
    load_weights(checkpoint, pair.discriminator)
    load_weights(where, pair.generator)


def evaluation_sums(out: ElectraOutput) -> torch.Tensor:
    """A held-out batch's sums (on the device): MLM loss x tokens, MLM correct, MLM count, RTD loss x tokens, RTD
    correct, RTD count."""
    mlm = F.cross_entropy(out.mlm_logits.float(), out.mlm_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    rtd = F.binary_cross_entropy_with_logits(out.rtd_logits.float(), out.replaced.float(), reduction="sum")
    return torch.stack(
        [
            mlm.double(),
            (out.mlm_logits.argmax(-1) == out.mlm_labels).sum().double(),
            torch.tensor(out.mlm_labels.numel(), dtype=torch.float64, device=mlm.device),
            rtd.double(),
            ((out.rtd_logits > 0).long() == out.replaced).sum().double(),
            torch.tensor(out.replaced.numel(), dtype=torch.float64, device=mlm.device),
        ]
    )


@torch.no_grad()
def evaluate(model, batches, rtd_weight: float, seed: int, info, train) -> dict[str, float]:
    """ELECTRA's held-out evaluation over ``batches`` (on the device): the generator's MLM loss and accuracy, the
    discriminator's RTD loss and accuracy, summed over the ranks; the generator's samples are drawn from ``seed`` (the
    training steps reseed before each step, so this changes nothing for them)."""
    from bertforge.training import distributed as dist_
    from bertforge.utils import autocast

    objective = ElectraObjective(rtd_weight)
    torch.manual_seed(seed)
    sums = torch.zeros(6, device=info.device, dtype=torch.float64)
    for batch in batches:
        with autocast(info.device, train.use_bf16, train.fp16):
            sums += evaluation_sums(objective.forward(model, batch))
    s = dist_.total(sums, info).tolist()
    mlm_loss = s[0] / max(s[2], 1.0)
    return {
        "eval_mlm_loss": mlm_loss,
        "eval_mlm_accuracy": s[1] / max(s[2], 1.0),
        "eval_perplexity": math.exp(min(mlm_loss, 50.0)),
        "eval_rtd_loss": s[3] / max(s[5], 1.0),
        "eval_rtd_accuracy": s[4] / max(s[5], 1.0),
    }
