"""The config sections, one dataclass per concern; every field has a docstring that states its unit (see the package
notes)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from bertforge.adapt.registry import STRATEGIES
from bertforge.config.fields import opt, validate
from bertforge.constants import BASELINES
from bertforge.tokenization.tokenizer import TOKENIZER_TYPES as MEGATRON_TOKENIZERS

DECAY_STYLES = ("linear", "cosine", "constant")
OPTIMIZERS = ("adamw", "lamb")
NONFINITE = ("stop", "skip")
BINARY_HEADS = ("nsp", "sop", "none")
OBJECTIVES = ("mlm", "clm", "electra")
TOKENIZER_TYPES = tuple(MEGATRON_TOKENIZERS)
STRATEGY_NAMES = tuple(STRATEGIES)
UNFREEZE_SCHEDULES = ("none", "epoch", "steps")
LORA_TARGETS = ("query", "key", "value", "qkv", "output", "ffn_in", "ffn_out")
REPORT_TO = ("tensorboard", "wandb", "none")


@dataclass(kw_only=True)
class DataConfig:
    data_path: list[str] | None = opt(None, metavar="PREFIX")
    """Megatron --data-path: one prefix, or weight/prefix pairs. None: the embedded default corpus."""
    vocab_file: str | None = opt(None, aliases=("--tokenizer-model",))
    """BERT vocab.txt (RoBERTa's vocab.json with GPT2BPETokenizer; with SentencePieceTokenizer, Megatron's
    --tokenizer-model: a spiece.model or a tokenizer directory). None with the default corpus: a vocabulary is
    trained."""
    merge_file: str | None = None
    """merges.txt of a byte-level BPE vocabulary (--tokenizer-type GPT2BPETokenizer); the model is then a RoBERTa."""
    tokenizer_type: str = opt("BertWordPieceLowerCase", choices=TOKENIZER_TYPES)
    """BertWordPieceLowerCase (uncased), BertWordPieceCase, GPT2BPETokenizer (byte-level BPE, RoBERTa) or
    SentencePieceTokenizer (unigram, ALBERT)."""
    split: str = "969,30,1"
    """Train/valid/test proportions of each dataset's documents."""
    seq_length: int = opt(512, minimum=8)
    """Longest sample, in tokens, specials included."""
    objective: str | None = opt(None, choices=OBJECTIVES)
    """mlm (BERT: masked tokens predicted from both sides), clm (GPT's objective on the same blocks: causal attention,
    every next token predicted, no masking and no sentence-pair head) or electra (replaced-token detection: a small
    generator fills the masked positions by MLM, the model learns on every token which ones it replaced); None: the
    model family's (electra for --family electra, else mlm)."""
    generator_size: float = opt(0.25, minimum=0.05, maximum=1.0)
    """ELECTRA: the generator's width as a share of the model's (whole heads, or one narrower head below one head's
    width; the paper's default 1/4)."""
    rtd_weight: float = opt(50.0, minimum=0.0)
    """ELECTRA: the weight of the replaced-token-detection loss beside the generator's MLM loss (the paper's 50)."""
    mask_prob: float = opt(0.15, minimum=0.0, maximum=1.0)
    """Share of (non-special) tokens predicted."""
    mask_token_prob: float = opt(0.8, minimum=0.0, maximum=1.0)
    """Share of predicted tokens replaced by [MASK]."""
    random_token_prob: float = opt(0.1, minimum=0.0, maximum=1.0)
    """Share of predicted tokens replaced by a random token (the rest stay)."""
    short_seq_prob: float = opt(0.1, minimum=0.0, maximum=1.0)
    """Probability of a shorter target length for a sample."""
    binary_head: str | None = opt(None, choices=BINARY_HEADS)
    """Sentence-pair head: nsp (next sentence, BERT), sop (sentence order, ALBERT/Megatron) or none (MLM only); None:
    the model family's (nsp for BERT, sop for ALBERT, none for RoBERTa, DistilBERT and ELECTRA)."""
    whole_word_mask: bool = False
    """Mask whole words (all ## pieces together; with byte-level BPE, the pieces that follow a word's first, Ġ)."""
    max_ngram: int = opt(1, minimum=1)
    """Mask spans of up to n words (probability 1/n each)."""
    num_workers: int = opt(1, minimum=0)
    """DataLoader worker processes per rank."""
    pack_sequences: bool = False
    """Batches as packed token rows with cu_seqlens (no padding stored, no device sync to unpack) instead of padded."""
    full_sentences: bool = False
    """Samples are whole sentences filled up to --seq-length, running on into the next document with a [SEP] between
    documents (RoBERTa's FULL-SENTENCES): no padding, no short samples; needs --binary-head none."""

    def __post_init__(self) -> None:
        if self.objective in ("clm", "electra") or (self.full_sentences and self.binary_head is None):
            self.binary_head = "none"  # next-token prediction and replaced-token detection have no sentence-pair head
        validate(self)
        if self.full_sentences and self.binary_head not in (None, "none"):
            raise ValueError(
                f"data.full_sentences runs samples across documents: it needs binary_head none, not {self.binary_head}"
            )
        if self.tokenizer_type == "GPT2BPETokenizer" and self.vocab_file and not self.merge_file:
            raise ValueError("--tokenizer-type GPT2BPETokenizer needs --merge-file (merges.txt) with --vocab-file")


@dataclass(kw_only=True)
class OptimConfig:
    optimizer: str = opt("adamw", choices=OPTIMIZERS)
    """adamw (torch's fused / foreach implementation) or lamb."""
    lr: float | None = opt(1e-4, minimum=0.0)
    """Peak learning rate. Fine-tuning: None (the default) picks the strategy's own (``adapt/registry.py``)."""
    min_lr: float = opt(0.0, minimum=0.0)
    """Learning rate at the end of decay."""
    lr_decay_style: str = opt("linear", choices=DECAY_STYLES)
    """linear, cosine or constant."""
    lr_warmup_iters: int = opt(0, minimum=0)
    """Warm-up steps (overridden by lr_warmup_fraction)."""
    lr_warmup_fraction: float | None = opt(None, aliases=("--warmup-ratio",), minimum=0.0, maximum=1.0)
    """Warm-up as a fraction of the decay steps."""
    lr_decay_iters: int | None = opt(None, minimum=1)
    """Steps over which the rate decays; None means every training step."""
    weight_decay: float = opt(0.01, minimum=0.0)
    """Decoupled weight decay (not on biases and LayerNorm)."""
    clip_grad: float = opt(1.0, minimum=0.0)
    """Global gradient-norm clip; 0 disables."""
    adam_beta1: float = 0.9
    """Adam's first-moment decay."""
    adam_beta2: float = 0.999
    """Adam's second-moment decay."""
    adam_eps: float = 1e-8
    """Adam's denominator epsilon."""

    def __post_init__(self) -> None:
        validate(self)

    def warmup_steps(self, train_iters: int) -> int:
        decay = self.lr_decay_iters or train_iters
        if self.lr_warmup_fraction is not None:
            return int(self.lr_warmup_fraction * decay)
        return self.lr_warmup_iters


@dataclass(kw_only=True)
class TrainConfig:
    micro_batch_size: int = opt(8, aliases=("--batch-size",), minimum=1)
    """Sequences (fine-tuning: windows) per forward pass per rank."""
    global_batch_size: int | None = opt(None, minimum=1)
    """Sequences per optimizer step over all ranks; None means micro x ranks (no accumulation)."""
    train_iters: int = opt(1000, minimum=1)
    """Optimizer steps (pretraining; fine-tuning counts epochs instead). With train_time: an upper bound."""
    train_time: str | None = opt(None, metavar="DURATION")
    """A wall-clock budget (2h, 90m, 1h30m, 45s): the learning-rate schedule runs over the time instead of the steps
    (Cramming's budget schedule; warm-up as --lr-warmup-fraction of it) and the run stops when the time is spent, with
    a final checkpoint, evaluation and export. Evaluations and checkpoints count; a resumed run counts the time its
    checkpoint had spent. Pretraining only."""
    seed: int = opt(1234, minimum=0, maximum=2**32 - 1)
    """Seed of weights, data order, masking and dropout."""
    bf16: bool | None = None
    """bf16 autocast (CPU and CUDA). Default (None): on where the device runs bf16 natively (a CPU with AMX or
    AVX512-BF16, a GPU with bf16), off where it would be emulated; --no-bf16 (pretrain: also --fp32) for fp32."""
    fp16: bool = False
    """fp16 autocast with a gradient scaler (CUDA only)."""
    save: str | None = None
    """Run directory: checkpoints, metrics, plots."""
    load: str | None = None
    """Checkpoint (directory) or run directory to resume from."""
    init_model: str | None = opt(None, metavar="MODEL")
    """Pretraining: start from this Hugging Face model's weights (a directory, an installed model package or a Hub
    name) instead of random ones -- continued, domain-adaptive pretraining, as transformers' run_mlm
    --model_name_or_path. Its config is the architecture (the model section is not used); without --vocab-file its
    vocabulary is the run's; a head it lacks (a sentence-embedding model's MLM head) starts from random weights, named
    in the log. Optimizer, schedule and step count start fresh; a resumed run (--load) takes its checkpoint's
    weights."""
    overwrite: bool = False
    """Start a new run in a directory that holds an earlier run's checkpoints (they are kept, never pruned by the new
    run; its metrics.jsonl is moved aside)."""
    save_interval: int | None = opt(None, minimum=1)
    """Steps between checkpoints; None: only at the end (fine-tuning: also after every evaluation)."""
    keep_last: int = opt(3, minimum=1)
    """Checkpoints kept."""
    eval_interval: int = opt(1000, minimum=1)
    """Steps between evaluations on the validation split (fine-tuning evaluates once per epoch)."""
    eval_iters: int = opt(100, minimum=1)
    """Evaluation size in global batches: eval_iters x global_batch_size samples in all, whatever the rank count."""
    log_interval: int = opt(100, minimum=1)
    """Steps between log lines and metric records."""
    exit_interval: int | None = opt(None, minimum=1)
    """Stop after a step divisible by N (a checkpoint is written; the run resumes from it)."""
    export_hf: bool = True
    """Write a Hugging Face directory (run/hf) at every save (pretraining)."""
    on_nonfinite: str = opt("stop", choices=NONFINITE)
    """What a NaN/inf loss or gradient does: stop the run, or skip the step."""
    recompute_activations: bool = False
    """Activation (gradient) checkpointing of every layer."""
    fsdp: bool = False
    """Shard parameters, gradients and optimizer state with torch's fully_shard instead of DDP."""
    compile: bool = False
    """torch.compile the training model (the first steps pay the compile time, logged)."""
    device: str | None = None
    """cpu, cuda, cuda:N; None picks cuda when available."""
    distributed_backend: str | None = opt(None, choices=("gloo", "nccl"))
    """gloo or nccl; None picks nccl on CUDA, gloo on CPU."""

    def __post_init__(self) -> None:
        if self.train_time is not None:
            from bertforge.utils import parse_duration

            parse_duration(self.train_time)  # a bad duration fails here, naming the field
        validate(self)
        if self.bf16 and self.fp16:
            raise ValueError("choose one of --bf16 and --fp16")

    @functools.cached_property
    def use_bf16(self) -> bool:
        """Whether this run computes in bf16: ``bf16`` as given, or (None) where the device runs it natively, unless
        fp16 was asked for."""
        if self.bf16 is not None:
            return self.bf16
        if self.fp16:
            return False
        from bertforge.utils import default_device, fast_bf16

        return fast_bf16(default_device(self.device).type)

    @property
    def precision(self) -> str:
        """bf16, fp16 or fp32: what this run computes in (for its log lines)."""
        return "bf16" if self.use_bf16 else "fp16" if self.fp16 else "fp32"

    def gradient_accumulation(self, world_size: int) -> int:
        """Micro-batches per rank per step: global / (micro x ranks), which must divide exactly."""
        global_batch = self.global_batch_size or self.micro_batch_size * world_size
        per_step = self.micro_batch_size * world_size
        if global_batch % per_step:
            raise ValueError(
                f"--global-batch-size ({global_batch}) must be a multiple of --micro-batch-size "
                f"({self.micro_batch_size}) x data-parallel ranks ({world_size}) = {per_step}"
            )
        return global_batch // per_step


@dataclass(kw_only=True)
class TaskConfig:
    """A fine-tuning task's inputs and evaluation (the optimizer and loop settings are OptimConfig / TrainConfig)."""

    epochs: int = opt(3, minimum=1)
    """Passes over the training file."""
    eval_batch_size: int = opt(64, minimum=1)
    """Windows per evaluation batch."""
    max_length: int | None = opt(None, minimum=8)
    """Tokens per window; None means 128 (classification, NER) or 384 (QA)."""
    metric: str | None = None
    """Validation metric that picks the best epoch; None: accuracy / f1_micro / pearson (classification), f1."""
    early_stopping_patience: int | None = opt(None, minimum=1)
    """Stop after this many epochs without improvement of the metric."""
    max_train_examples: int | None = opt(None, minimum=1)
    """Use only the first N training examples (quick runs, learning curves)."""
    max_eval_examples: int | None = opt(None, minimum=1)
    """Use only the first N validation examples."""
    baseline: str | None = opt(None, choices=BASELINES, tasks=("classification",))
    """Classification: also fit a TF-IDF + logistic-regression baseline (scikit-learn) on the same training rows and
    score it on the same validation rows; reported beside the model (``baseline`` in finetune_result.json)."""
    validation_split: float | None = opt(None, minimum=0.01, maximum=0.9)
    """Without a validation file: hold out this fraction of the training data (whole articles for QA), seeded."""
    text_column: str = opt("sentence", tasks=("classification",))
    """Classification: the column (name, or index with no_header) of the text."""
    text_pair_column: str | None = opt(None, tasks=("classification",))
    """Classification: the column of the second text of a pair."""
    label_column: str = opt("label", tasks=("classification",))
    """Classification: the column of the label(s)."""
    no_header: bool = opt(False, tasks=("classification",))
    """Classification: the files have no header row; columns are named by index."""
    regression: bool = opt(False, tasks=("classification",))
    """Classification: numeric labels, one output, MSE loss, Pearson/Spearman."""
    multi_label: bool = opt(False, tasks=("classification",))
    """Classification: any number of labels per row (JSON list or separated string), sigmoid outputs."""
    label_separator: str = opt(",", tasks=("classification",))
    """Classification: separator of labels in a multi-label cell."""
    label_names: tuple[str, ...] | None = opt(None, tasks=("classification",))
    """Classification: names for the label values in their order (numbers ascending, else alphabetical), written to
    id2label so that predictions and pipelines show them: negative,positive for GLUE's 0 and 1."""
    scheme: str = opt("auto", choices=("auto", "iob1", "iob2", "iobes"), tasks=("ner",))
    """NER: tag scheme of the CoNLL files (auto detects; IOBES/BIOES is read as IOB2)."""
    stride: int | None = opt(None, aliases=("--doc-stride",), minimum=0, tasks=("ner", "qa"))
    """Overlap of consecutive windows in tokens: NER default (max_length - 2) // 4, QA (doc_stride) default 128."""
    max_query_length: int = opt(64, minimum=1, tasks=("qa",))
    """QA: question tokens kept."""
    n_best: int = opt(20, minimum=1, tasks=("qa",))
    """QA: start and end candidates searched per window."""
    max_answer_length: int = opt(30, minimum=1, tasks=("qa",))
    """QA: longest answer, in tokens."""
    version_2: bool | None = opt(None, tasks=("qa",))
    """QA: allow the null answer (SQuAD v2.0); None: when the training file has unanswerable questions."""
    null_threshold: float = opt(0.0, tasks=("qa",))
    """QA v2.0: predict no answer when null score - best span score exceeds this."""

    def __post_init__(self) -> None:
        validate(self)
        if self.regression and self.multi_label:
            raise ValueError("task.regression and task.multi_label are exclusive")

    def length(self, task: str) -> int:
        return self.max_length or (384 if task == "qa" else 128)


@dataclass(kw_only=True)
class DistillConfig:
    """Task distillation (``bertforge distill``): the model learns from a fine-tuned teacher's outputs (soft targets
    at a temperature) as well as from the labels."""

    teacher: str | None = opt(None, metavar="DIR")
    """A checkpoint fine-tuned for the task (the same labels in the same order); None: no distillation."""
    student_layers: int | None = opt(None, minimum=1)
    """Build the student from the teacher: this many of its layers, evenly spaced from the first (for half the depth,
    every other layer, as DistilBERT was initialised), with its embeddings and task head; None: --model is the
    student."""
    temperature: float = opt(2.0, minimum=0.05)
    """Softmax temperature of teacher and student for the soft-target loss, which is scaled by T^2 (Hinton et al.)."""
    alpha: float = opt(0.5, minimum=0.0, maximum=1.0)
    """Weight of the soft-target loss; 1 - alpha weighs the labels' loss."""
    cosine: float = opt(0.0, minimum=0.0)
    """Weight of a cosine loss pulling the student's last hidden states towards the teacher's, on every real token
    (DistilBERT's pretraining: 1, beside 5 for soft targets and 2 for MLM, i.e. alpha 5/7 and cosine 1/7 here);
    needs equal hidden sizes."""

    def __post_init__(self) -> None:
        validate(self)
        if self.student_layers is not None and self.teacher is None:
            raise ValueError("distill.student_layers builds the student from a teacher: give distill.teacher too")


@dataclass(kw_only=True)
class AdaptConfig:
    """Which parameters fine-tuning trains and what small modules it inserts."""

    strategy: str = opt("full", choices=STRATEGY_NAMES)
    """full (every weight), head (the task head only), freeze (embeddings + the bottom --freeze-layers layers frozen,
    optionally unfrozen gradually), lora (low-rank updates), adapter (bottleneck adapters), prompt (soft prompt
    tokens) or prefix (trained keys/values in every layer); the task head always trains."""
    freeze_layers: int = opt(0, minimum=0)
    """Strategy freeze: the bottom K encoder layers (and the embeddings) stay frozen."""
    unfreeze: str = opt("none", choices=UNFREEZE_SCHEDULES)
    """Strategy freeze: gradual unfreezing (ULMFiT): start with the top layer, unfreeze one more layer (down to
    --freeze-layers; the embeddings stay frozen) every epoch or every --unfreeze-steps steps. Frozen layers' gradients
    are still computed (and dropped), which keeps DDP's and FSDP's parameter sets fixed."""
    unfreeze_steps: int = opt(100, minimum=1)
    """Steps between unfreezings with --unfreeze steps."""
    adapter_size: int = opt(64, minimum=1)
    """Strategy adapter: the bottleneck width."""
    adapter_placement: str = opt("houlsby", choices=("houlsby", "pfeiffer"))
    """Strategy adapter: houlsby (after attention and after the feed-forward block) or pfeiffer (feed-forward only)."""
    prompt_tokens: int = opt(20, minimum=1)
    """Strategy prompt: the number of soft tokens in front of each input."""
    prompt_init: str = opt("vocab", choices=("vocab", "text", "random"))
    """Strategy prompt: start from the embeddings of random vocabulary tokens, of --prompt-init-text, or at random."""
    prompt_init_text: str | None = None
    """Strategy prompt: the text whose token embeddings (repeated to the prompt length) start the prompt."""
    prefix_tokens: int = opt(20, minimum=1)
    """Strategy prefix: the number of trained key/value positions in every layer."""
    prefix_projection: int = opt(0, minimum=0)
    """Strategy prefix: the hidden width of the reparameterisation MLP used in training (0: none); folded at save."""
    lora_r: int | None = opt(None, minimum=1)
    """LoRA rank; giving it selects strategy lora."""
    lora_alpha: float = 16.0
    """LoRA scale numerator: the update is B A x alpha / r."""
    lora_dropout: float = opt(0.0, minimum=0.0, maximum=0.99)
    """Dropout on the LoRA branch's input."""
    lora_targets: tuple[str, ...] = opt(("query", "value"), choices=LORA_TARGETS)
    """Projections that get adapters (comma list): query, key, value, qkv, output, ffn_in, ffn_out."""

    def __post_init__(self) -> None:
        if self.lora_r and self.strategy == "full":
            self.strategy = "lora"
        if self.strategy == "lora" and self.lora_r is None:
            self.lora_r = 8
        if self.strategy not in ("full", "lora") and self.lora_r:
            raise ValueError(f"adapt.strategy {self.strategy} and lora_r are exclusive: choose one strategy")
        if self.prompt_init == "text" and not self.prompt_init_text:
            raise ValueError("adapt.prompt_init text needs prompt_init_text (--prompt-init-text 'classify the review')")
        if self.unfreeze != "none" and self.strategy != "freeze":
            raise ValueError(f"adapt.unfreeze {self.unfreeze} is part of strategy freeze (got {self.strategy})")
        validate(self)


@dataclass(kw_only=True)
class TrackingConfig:
    """Experiment tracking beside metrics.jsonl: TensorBoard and Weights & Biases, through Megatron-LM's flags (or
    transformers' --report-to). Only the main rank writes; a resumed run continues the same curves."""

    tensorboard_dir: str | None = opt(None, metavar="DIR")
    """TensorBoard event files go here (Megatron's scalar tags: lm loss, learning-rate, grad-norm, ...)."""
    tensorboard_log_interval: int = opt(1, minimum=1)
    """Steps between TensorBoard (and W&B) scalars; each point averages the steps since the last one."""
    tensorboard_queue_size: int = opt(1000, minimum=1)
    """Events TensorBoard's writer holds before it flushes them to disk."""
    log_validation_ppl_to_tensorboard: bool = False
    """Also write the held-out perplexity of each loss (``<loss> validation ppl``)."""
    log_memory_to_tensorboard: bool = False
    """Also write memory: the accelerator's allocated / reserved bytes, or the process's resident bytes on a CPU."""
    log_timers_to_tensorboard: bool = False
    """Also write the time of a step (``iteration-time``, seconds) and of each evaluation (``evaluation-time``)."""
    log_throughput: bool = False
    """Also write ``throughput``: model TFLOP/s per rank (6 x parameters x tokens, plus attention)."""
    wandb_project: str | None = None
    """Weights & Biases project; a run then needs --wandb-exp-name (as in Megatron). WANDB_MODE=offline works
    without a network (``wandb sync`` uploads later)."""
    wandb_exp_name: str | None = None
    """The W&B run's name."""
    wandb_save_dir: str | None = opt(None, metavar="DIR")
    """Where W&B keeps its files; None: RUN_DIR/wandb."""
    wandb_entity: str | None = None
    """The W&B team or user the run belongs to; None: the account's default."""
    report_to: tuple[str, ...] = opt((), choices=REPORT_TO)
    """transformers' switch (comma list): tensorboard (into --tensorboard-dir, default RUN_DIR/tensorboard), wandb
    (project --wandb-project, default bertforge; name --wandb-exp-name, default the run directory's name) or none."""

    def __post_init__(self) -> None:
        validate(self)
        if "none" in self.report_to and len(self.report_to) > 1:
            raise ValueError(f"tracking.report_to {','.join(self.report_to)}: none stands alone")
        if self.wandb_project and not self.wandb_exp_name:
            raise ValueError("--wandb-project needs --wandb-exp-name (the run's name), as in Megatron-LM")

    @property
    def enabled(self) -> bool:
        """Whether any tracker is asked for."""
        return self.tensorboard or self.wandb

    @property
    def tensorboard(self) -> bool:
        return bool(self.tensorboard_dir) or "tensorboard" in self.report_to

    @property
    def wandb(self) -> bool:
        return bool(self.wandb_project) or "wandb" in self.report_to


@dataclass(kw_only=True)
class PhaseConfig:
    """One phase of a multi-phase pretraining run (the BERT paper: 90% of the steps at 128 tokens, then 512; NVIDIA's
    LAMB recipe: two phases with their own batch and schedule). A phase changes the sample length and the batch; the
    model, the optimizer state and the step count carry on, and the data stream continues at the samples consumed.
    Fields left unset keep the run's values."""

    fraction: float | None = opt(None, minimum=0.0, maximum=1.0)
    """Share of train_iters this phase runs; None for the last phase: the steps that are left."""
    seq_length: int | None = opt(None, minimum=8)
    """Longest sample in this phase, in tokens."""
    global_batch_size: int | None = opt(None, minimum=1)
    """Sequences per optimizer step in this phase."""
    micro_batch_size: int | None = opt(None, minimum=1)
    """Sequences per forward pass per rank in this phase (longer samples need smaller ones)."""
    lr: float | None = opt(None, minimum=0.0)
    """A peak learning rate of its own: the phase then runs a schedule of its own (warm-up, decay to min_lr) over its
    steps, as NVIDIA's phase 2 does; None: the run's schedule goes on through the phase (the BERT paper)."""
    lr_warmup_fraction: float | None = opt(None, minimum=0.0, maximum=1.0)
    """Warm-up of the phase's own schedule, as a share of its steps (with or without its own lr)."""

    def __post_init__(self) -> None:
        validate(self)

    @property
    def own_schedule(self) -> bool:
        return self.lr is not None or self.lr_warmup_fraction is not None
