"""Pretraining on the training engine: what is particular to it is built here -- the data (Megatron files ->
masked sample stream), the model (MLM with an NSP/SOP head, or MLM only), the MLM objective and its metrics, the
held-out evaluation -- and ``engine.fit`` runs the loop (batches, accumulation, DDP/FSDP, precision, non-finite
policy, checkpoints and exact resume, metrics and curves).

Held-out evaluation reads ``eval_iters`` x global batch samples of the validation stream, split over the ranks the
way training batches are, and sums the losses over all of them: the result does not depend on the number of ranks.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import shutil
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bertforge.config import PretrainConfig
from bertforge.constants import IGNORE_INDEX
from bertforge.data.blend import parse_data_path, split_ranges
from bertforge.data.collate import collate_packed, collate_padded
from bertforge.data.dataset import PretrainingStream
from bertforge.data.indexed import IndexedDataset
from bertforge.data.masking import Masker
from bertforge.data.samples import PretrainingSamples, SpecialIds
from bertforge.model import BertForMaskedLM, BertForPreTraining, BertLMHeadModel
from bertforge.model.heads import next_token_targets
from bertforge.model.pretrained import PreTrainedBert
from bertforge.model.surgery import shrink
from bertforge.tokenization import BertTokenizer, load_tokenizer, megatron_tokenizer
from bertforge.training import checkpoint as ckpt
from bertforge.training import distributed as dist_
from bertforge.training import electra
from bertforge.training.engine import BatchPlan, Job, NonFiniteLossError, TrainResult, loader, to_device
from bertforge.training.objectives import (
    CLMObjective,
    MLMDistillObjective,
    MLMObjective,
    Objective,
    check_cosine,
    load_teacher,
    mlm_logits_labels,
    model_inputs,
)
from bertforge.training.optim import phased_lambda
from bertforge.training.tracking import check_installed, flops_per_token, pretrain_tags
from bertforge.training.trainer import fit
from bertforge.utils import atomic_directory, autocast, logger

__all__ = [
    "Data",
    "CLMObjective",
    "MLMObjective",
    "NonFiniteLossError",
    "TrainResult",
    "build_data",
    "build_model",
    "evaluate",
    "pretrain",
]


@dataclass
class Data:
    tokenizer: BertTokenizer
    train: PretrainingStream
    valid: PretrainingStream | None


def build_data(cfg: PretrainConfig) -> Data:
    d = cfg.data
    if not d.data_path:
        raise ValueError(
            "no --data-path; give a preprocessed prefix (bertforge preprocess), or run without data "
            "arguments for the embedded default corpus"
        )
    tok = run_tokenizer(cfg)
    masker = None
    if d.objective in ("mlm", "electra"):  # ELECTRA's generator learns on masked input too
        masker = Masker.from_tokenizer(
            tok,
            mask_prob=d.mask_prob,
            mask_token_prob=d.mask_token_prob,
            random_token_prob=d.random_token_prob,
            whole_word_mask=d.whole_word_mask,
            max_ngram=d.max_ngram,
        )
    specials = SpecialIds.from_tokenizer(tok)
    train, valid, weights, valid_weights = [], [], [], []
    for weight, prefix in parse_data_path(d.data_path):
        ds = IndexedDataset(prefix)
        if ds.dtype.kind in "iu" and tok.vocab_size > int(np.iinfo(ds.dtype).max) + 1:  # type: ignore[type-var]
            raise ValueError(
                f"{prefix}: {ds.dtype} tokens cannot hold the {tok.vocab_size}-token vocabulary of "
                f"{d.vocab_file}; was it preprocessed with another vocabulary?"
            )
        head = np.asarray(ds._data[: 1 << 20])  # a sample of the tokens: ids past the vocabulary mean another vocab
        if head.size and int(head.max()) >= tok.vocab_size:
            raise ValueError(
                f"{prefix}.bin holds token id {int(head.max())}, past the {tok.vocab_size}-token vocabulary of "
                f"{d.vocab_file}; preprocess it with this vocabulary (or pass the vocabulary it was made with)"
            )
        (t0, t1), (v0, v1), _ = split_ranges(ds.num_documents, d.split)
        common: dict = dict(
            max_seq_length=d.seq_length,
            short_seq_prob=d.short_seq_prob,
            binary_head=d.binary_head,
            seed=cfg.train.seed,
            full_sentences=d.full_sentences,
        )
        train.append(PretrainingSamples(ds, specials, documents=np.arange(t0, t1), **common))
        weights.append(weight)
        needed = 2 if d.binary_head == "nsp" else 1
        if v1 - v0 >= needed:
            try:
                valid.append(PretrainingSamples(ds, specials, documents=np.arange(v0, v1), **common))
                valid_weights.append(weight)
            except ValueError as e:
                logger.warning("no validation samples from %s: %s", prefix, e)
        else:
            logger.warning(
                "--split %s leaves %d of the %d documents of %s for validation (%d needed): no held-out evaluation "
                "from it; give validation a larger share (e.g. --split 90,10,0)%s",
                d.split,
                v1 - v0,
                ds.num_documents,
                prefix,
                needed,
                ", or preprocess without --document-per-file to get more, smaller documents"
                if ds.num_documents < 100
                else "",
            )
    return Data(
        tok,
        PretrainingStream(train, masker, cfg.train.seed, weights),
        PretrainingStream(valid, masker, cfg.train.seed + 1, valid_weights) if valid else None,
    )


def run_tokenizer(cfg: PretrainConfig) -> BertTokenizer:
    """The run's tokenizer: --vocab-file (and --merge-file) as --tokenizer-type reads them; without one, the
    tokenizer saved with --init-model."""
    d = cfg.data
    if d.vocab_file:
        return megatron_tokenizer(d.tokenizer_type, d.vocab_file, d.merge_file)
    if cfg.train.init_model:
        from bertforge.hub import resolve_model

        return load_tokenizer(resolve_model(cfg.train.init_model))
    raise ValueError("--vocab-file is required with --data-path (or --init-model, whose vocabulary is then used)")


def _model_class(cfg: PretrainConfig) -> type[PreTrainedBert]:
    """BertForMaskedLM (MLM only), BertForPreTraining (with the NSP/SOP head) or BertLMHeadModel (causal LM)."""
    if cfg.data.objective == "clm":
        return BertLMHeadModel
    return BertForMaskedLM if cfg.data.binary_head == "none" else BertForPreTraining


def build_model(cfg: PretrainConfig, vocab_size: int, tokenizer=None):
    """The model to pretrain; with a byte-level BPE tokenizer (GPT2BPETokenizer) it is a RoBERTa: positions after
    the padding id (two more rows), one token type, RoBERTa's padding id."""
    config = cfg.model.replace(vocab_size=vocab_size, is_decoder=cfg.data.objective == "clm")
    if getattr(tokenizer, "family", "BERT") == "RoBERTa" and config.model_type in ("bert", "roberta"):
        extra = tokenizer.pad_token_id + 1
        longest = max(config.max_position_embeddings, cfg.data.seq_length)
        positions = max(config.max_position_embeddings, cfg.data.seq_length + extra)  # --family roberta: its own size
        config = config.replace(
            model_type="roberta",
            pad_token_id=tokenizer.pad_token_id,
            type_vocab_size=1,
            max_position_embeddings=longest + extra if config.model_type == "bert" else positions,
        )
    model = _model_class(cfg)(config)
    model.bert.gradient_checkpointing = cfg.train.recompute_activations  # type: ignore[union-attr]
    return model


def load_initial_model(cfg: PretrainConfig, vocab_size: int):
    """The model of ``cfg.train.init_model`` (continued pretraining): its config and weights in the run's model class;
    a head the checkpoint lacks is newly initialized (seeded by the caller) and logged by ``from_pretrained``."""
    from bertforge.hub import resolve_model
    from bertforge.model import BertConfig

    name = cfg.train.init_model
    assert name is not None
    path = resolve_model(name)
    config = BertConfig.from_pretrained(path)
    if config.vocab_size != vocab_size:
        raise ValueError(
            f"--init-model {name}: its embeddings cover {config.vocab_size} tokens, the run's vocabulary "
            f"({cfg.data.vocab_file or 'its tokenizer'}) has {vocab_size}; pretrain with the model's vocabulary "
            "(leave out --vocab-file, or give its vocab.txt) and preprocess the corpus with it"
        )
    if cfg.data.seq_length > config.max_tokens:
        raise ValueError(
            f"--seq-length {cfg.data.seq_length} exceeds the {config.max_tokens} tokens that --init-model {name} "
            f"has position embeddings for: give --seq-length {config.max_tokens} or less"
        )
    config = config.replace(is_decoder=cfg.data.objective == "clm")
    model = _model_class(cfg).from_pretrained(path, config=config).train()
    model.bert.gradient_checkpointing = cfg.train.recompute_activations
    return model


def initial_model(cfg: PretrainConfig, tokenizer: BertTokenizer):
    """The model a run starts from, after seeding with the run's seed (the same weights on every rank, and for the
    main job's before-training fill-mask demo): ``--init-model``'s weights, or ``build_model``'s random ones (for
    ELECTRA, the discriminator and its generator)."""
    torch.manual_seed(cfg.train.seed)
    if cfg.data.objective == "electra":
        config = cfg.model.replace(vocab_size=tokenizer.vocab_size)
        return electra.build_pair(config, cfg.data.generator_size, cfg.train.recompute_activations)
    if cfg.train.init_model:
        return load_initial_model(cfg, tokenizer.vocab_size)
    return build_model(cfg, tokenizer.vocab_size, tokenizer)


def collate_fn(cfg: PretrainConfig, pad_id: int):
    return collate_packed if cfg.data.pack_sequences else functools.partial(collate_padded, pad_id=pad_id)


def _distillation(cfg: PretrainConfig, model, vocab_size: int, info: dist_.DistInfo):
    """(the student, DistilBERT's objective) for ``cfg.distill``: the teacher is a masked LM over the same
    vocabulary; the student is the configured model, or K of the teacher's layers (``student_layers``)."""
    d = cfg.distill
    assert d.teacher is not None
    teacher = load_teacher(
        d.teacher, BertForMaskedLM, "has no masked-LM head", "a teacher needs the head whose outputs the student learns"
    )
    if teacher.config.vocab_size != vocab_size:
        raise ValueError(
            f"teacher {d.teacher} predicts {teacher.config.vocab_size} tokens, the data's vocabulary has "
            f"{vocab_size}: preprocess the corpus with the teacher's vocabulary"
        )
    if d.student_layers is not None:
        model = shrink(teacher, d.student_layers)
        model.bert.gradient_checkpointing = cfg.train.recompute_activations  # type: ignore[union-attr]
    check_cosine(d.cosine, teacher, model)
    if info.is_main:
        logger.info(
            "distilling %s (%s parameters) into %d layers: temperature %g, soft %g, MLM %g, cosine %g",
            d.teacher,
            f"{teacher.num_parameters():,}",
            model.config.num_hidden_layers,
            d.temperature,
            d.alpha,
            1 - d.alpha,
            d.cosine,
        )
    return model, MLMDistillObjective(teacher.to(info.device), d.temperature, d.alpha, d.cosine)


def objective_for(cfg: PretrainConfig) -> Objective:
    if cfg.data.objective == "electra":
        return electra.ElectraObjective(cfg.data.rtd_weight)
    return CLMObjective() if cfg.data.objective == "clm" else MLMObjective(cfg.data.binary_head or "none")


def _postfix(r: dict) -> str:
    if "rtd_accuracy" in r:
        return (
            f"loss {r['loss']:.3f} mlm_acc {r['mlm_accuracy']:.3f} rtd_acc {r['rtd_accuracy']:.3f} "
            f"lr {r['lr']:.2e} gnorm {r['grad_norm']:.2f} {r['tokens_per_second']:,.0f} tok/s"
        )
    if "next_token_accuracy" in r:
        return (
            f"loss {r['loss']:.3f} next_acc {r['next_token_accuracy']:.3f} lr {r['lr']:.2e} "
            f"gnorm {r['grad_norm']:.2f} {r['tokens_per_second']:,.0f} tok/s"
        )
    return (
        f"loss {r['loss']:.3f} mlm_acc {r['mlm_accuracy']:.3f}"
        + (f" bin_acc {r['binary_accuracy']:.3f}" if "binary_accuracy" in r else "")
        + f" lr {r['lr']:.2e} gnorm {r['grad_norm']:.2f} {r['tokens_per_second']:,.0f} tok/s"
    )


@torch.no_grad()
def evaluate(
    model, stream: PretrainingStream, cfg: PretrainConfig, info: dist_.DistInfo, pad_id: int
) -> dict[str, float]:
    """MLM loss / accuracy / perplexity (and binary-head accuracy) -- or, for the clm objective, next-token loss /
    accuracy / perplexity -- on the first ``eval_iters`` x global batch samples of the validation stream (always the
    same ones, so evaluations are comparable), whatever the number of ranks."""
    clm = cfg.data.objective == "clm"
    was_training = model.training
    model.eval()
    t = cfg.train
    accumulation = cfg.gradient_accumulation(info.world_size)
    plan = BatchPlan(
        t.micro_batch_size * info.world_size * accumulation,
        t.micro_batch_size,
        accumulation,
        info.rank,
        info.world_size,
    )
    if cfg.data.objective == "electra":
        batches = (to_device(b, info.device) for b in loader(stream, plan, 0, t.eval_iters, collate_fn(cfg, pad_id)))
        scores = electra.evaluate(model, batches, cfg.data.rtd_weight, t.seed + 1, info, t)
        model.train(was_training)
        return scores
    sums = torch.zeros(4, device=info.device, dtype=torch.float64)  # mlm loss sum, mlm correct, mlm count, binary ok
    n_pairs = torch.zeros(1, device=info.device, dtype=torch.float64)
    for batch in loader(stream, plan, 0, t.eval_iters, collate_fn(cfg, pad_id)):
        batch = to_device(batch, info.device)
        with autocast(info.device, t.use_bf16, t.fp16):
            out = model(**model_inputs(batch, masked_lm=not clm))
        if clm:
            logits, labels = next_token_targets(out.logits, batch["labels"], batch.get("cu_seqlens"))
            real = labels != IGNORE_INDEX
            logits, labels = logits[real], labels[real]
        else:
            logits, labels = mlm_logits_labels(out, batch)
        sums[0] += F.cross_entropy(logits.float(), labels, reduction="sum")
        sums[1] += (logits.argmax(-1) == labels).sum()
        sums[2] += labels.numel()
        if hasattr(out, "seq_relationship_logits") and "next_sentence_label" in batch:
            sums[3] += (out.seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]).sum()
            n_pairs += batch["next_sentence_label"].numel()
    sums = dist_.total(sums, info)
    n_pairs = dist_.total(n_pairs, info)
    model.train(was_training)
    loss = (sums[0] / sums[2].clamp(min=1)).item()
    accuracy = (sums[1] / sums[2].clamp(min=1)).item()
    result = {
        "eval_clm_loss" if clm else "eval_mlm_loss": loss,
        "eval_next_token_accuracy" if clm else "eval_mlm_accuracy": accuracy,
        "eval_perplexity": math.exp(min(loss, 50.0)),
    }
    if n_pairs.item() > 0:
        result["eval_binary_accuracy"] = (sums[3] / n_pairs).item()
    return result


def pretrain(
    cfg: PretrainConfig, data: Data | None = None, exit_interval: int | None = None, show_progress: bool = True
) -> TrainResult:
    """Run (or resume) pretraining as ``cfg`` says. Returns the per-step losses and the last metrics."""
    t = cfg.train
    check_installed(cfg.tracking)
    if exit_interval is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(t, exit_interval=exit_interval))
    with dist_.process_group(t.device, t.distributed_backend) as info:
        if not cfg.phases:
            return _pretrain(cfg, info, data, show_progress)
        if data is not None:
            raise ValueError("a multi-phase run builds each phase's data (its sample length): pass data=None")
        return _pretrain_phases(cfg, info, show_progress)


def _pretrain_phases(cfg: PretrainConfig, info: dist_.DistInfo, show_progress: bool) -> TrainResult:
    """Each phase as a run on the same run directory: the first one run resumes what --load names (or starts fresh),
    each later one resumes the phase before it -- a new phase is a resume that changes the shape (``Job.shape``)."""
    runs = cfg.phase_runs()
    schedule = phased_lambda(cfg.optim, cfg.train.train_iters, [(a, b, p) for (a, b, _), p in zip(runs, cfg.phases)])
    done, losses = ckpt.resumed_step(cfg.train.load), []
    result = TrainResult(done, cfg.train.save)
    ran = False
    for k, (start, end, phase) in enumerate(runs, 1):
        if done >= end:
            continue
        if ran:
            phase = dataclasses.replace(phase, train=dataclasses.replace(phase.train, load=phase.train.save))
        if info.is_main:
            logger.info(
                "phase %d of %d: steps %d-%d at %d tokens, global batch %s",
                k,
                len(runs),
                start + 1,
                end,
                phase.data.seq_length,
                phase.train.global_batch_size or f"{phase.train.micro_batch_size} x ranks",
            )
        result = _pretrain(phase, info, None, show_progress, end, schedule, cfg.to_yaml())
        losses += result.losses
        ran = True
        if result.step < end:  # stopped by --exit-interval
            break
    result.losses = losses
    return result


def _savers(model, tok, save: str | None):
    """(write a checkpoint's weights, load them, export RUN/hf) for the model: a Hugging Face directory with the
    tokenizer; for ELECTRA the discriminator with its generator (``electra.py``), exported as RUN/hf and
    RUN/hf-generator."""
    pair = isinstance(model, electra.ElectraPair)

    def write_checkpoint(directory: str, state: dict) -> None:
        if pair:
            electra.write_pair(model, directory, state, tok)
            return
        model.save_pretrained(directory, state_dict=state)
        tok.save_pretrained(directory)

    def export_hf(checkpoint: str) -> None:  # run/hf: the newest weights as a Hugging Face directory
        exports = [(checkpoint, "hf")]
        if pair:  # and ELECTRA's generator beside it, for fill-mask
            exports.append((os.path.join(checkpoint, electra.GENERATOR_DIR), "hf-generator"))
        for source, name in exports:
            with atomic_directory(os.path.join(save, name)) as tmp:  # type: ignore[arg-type]
                for file in os.listdir(source):
                    if file not in (ckpt.STATE_FILE, "run_config.yaml") and os.path.isfile(os.path.join(source, file)):
                        shutil.copy2(os.path.join(source, file), os.path.join(tmp, file))

    return write_checkpoint, (electra.load_pair if pair else ckpt.load_weights), export_hf


def _pretrain(
    cfg: PretrainConfig,
    info: dist_.DistInfo,
    data: Data | None,
    show_progress: bool,
    stop_step: int | None = None,
    schedule=None,
    run_yaml: str | None = None,
) -> TrainResult:
    """One run (or one phase of a run: it stops at ``stop_step``, on the run's ``schedule``; ``run_yaml`` is the whole
    run's config, written with its checkpoints)."""
    t = cfg.train
    accumulation = cfg.gradient_accumulation(info.world_size)
    global_batch = t.micro_batch_size * info.world_size * accumulation
    data = data or build_data(cfg)
    tok = data.tokenizer
    model = initial_model(cfg, tok)
    objective = objective_for(cfg)
    if cfg.distill.teacher is not None:
        model, objective = _distillation(cfg, model, tok.vocab_size, info)
    model = model.to(info.device)
    cfg = dataclasses.replace(cfg, model=model.config)
    if info.is_main:
        logger.info(
            "pretraining %s (%s parameters) for %s: global batch %d = micro %d x %d rank(s) x %d "
            "accumulation, seq %d, %s",
            type(model).__name__,
            f"{model.num_parameters():,}",
            f"{t.train_time} (at most {t.train_iters:,} steps)" if t.train_time else f"{t.train_iters} steps",
            global_batch,
            t.micro_batch_size,
            info.world_size,
            accumulation,
            cfg.data.seq_length,
            t.precision,
        )

    write_checkpoint, load_checkpoint, export_hf = _savers(model, tok, t.save)
    valid = data.valid
    job = Job(
        model=model,
        objective=objective,
        dataset=data.train,
        collate=collate_fn(cfg, tok.pad_token_id),
        plan=BatchPlan(global_batch, t.micro_batch_size, accumulation, info.rank, info.world_size),
        steps=t.train_iters,
        optim=cfg.optim,
        train=t,
        info=info,
        run_dir=t.save,
        config_yaml=run_yaml or cfg.to_yaml(),
        write_checkpoint=write_checkpoint,
        load_checkpoint=load_checkpoint,
        evaluate=(lambda m: evaluate(m, valid, cfg, info, tok.pad_token_id)) if valid is not None else None,
        eval_every=t.eval_interval,
        num_workers=cfg.data.num_workers,
        desc="pretrain" if show_progress else "",
        postfix=_postfix,
        after_save=export_hf if t.export_hf else None,
        tracking=cfg.tracking,
        tags=pretrain_tags(cfg.data.objective or "mlm", cfg.data.binary_head or "none"),
        megatron_tags=True,
        flops_per_token=flops_per_token(
            model.config, cfg.data.seq_length, 1.0 if cfg.data.objective == "clm" else cfg.data.mask_prob
        ),
        stop_step=stop_step,
        schedule=schedule,
        shape={"seq_length": cfg.data.seq_length, "global_batch_size": global_batch},
    )
    return fit(job)
