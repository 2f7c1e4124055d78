"""The BERT encoder, written out layer by layer.

Dimension letters used in every shape comment: B batch, S sequence, H hidden, N heads, D head size (H / N),
I intermediate (feed-forward) size, V vocabulary, C choices (multiple choice).

Design:
- Post-LN residual blocks exactly as in Devlin et al. 2018: x = LN(x + Dropout(Attn(x))); x = LN(x + Dropout(FFN(x))).
- Q, K and V come from one fused projection (``qkv_proj``, output laid out [q | k | v]); checkpoints with separate
  query/key/value matrices are fused and split in ``convert.py``, the only place that knows external names.
- The public mask is ``attention_mask`` (B, S) with 1 = real token. It is converted once, at the top of ``BertModel``,
  into a boolean key mask (B, 1, 1, S) that every layer shares.
- Attention runs through ``F.scaled_dot_product_attention`` (fused kernels); an explicit "eager" path computes the
  probabilities itself and is used when they are asked for (``output_attentions=True``). ``attention_backend`` picks.
- Padding-free by default: when a batch holds padding, the real tokens are packed into one (T, H) tensor right after
  the input checks (``padding.py``), every layer runs on it, and the outputs are padded back (zeros at padding
  positions, which no head or loss reads). Attention is computed per sequence: FlashAttention's varlen kernel on
  CUDA in half precision without attention dropout, otherwise the packed Q/K/V are scattered into a padded block for
  SDPA with the key mask and gathered back. ``padding_free = False`` runs everything padded.
- Dropout (hidden, attention, heads) draws its CPU masks with the fast generator of ``dropout.py``; with attention
  dropout on the CPU, attention is the explicit softmax path (SDPA would fall back to the same math with PyTorch's
  slow sampler). A tied MLM decoder makes the word-embedding lookup hand autograd a sparse gradient (``Embeddings``).
- Inputs are checked at the boundary, so a bad id or an over-long sequence raises a ValueError that says what and by how
  much instead of an index error from inside ``nn.Embedding``.

References: Devlin et al., "BERT" (2018); google-research/bert modeling.py for the layer structure.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.model.adapters import PrefixEncoder, SoftPrompt
from bertforge.model.attention import KVCache, attend
from bertforge.model.config import BertConfig
from bertforge.model.dropout import Dropout
from bertforge.model.inputs import attention_plan, check_inputs, prepare_padded
from bertforge.model.padding import (
    Packing,
    key_mask_from_cu_seqlens,
    packing_from_cu_seqlens,
    pad,
    unpad,
)
from bertforge.model.pretrained import PreTrainedBert

ATTENTION_BACKENDS = ("sdpa", "eager")
_TANH_GELU = functools.partial(F.gelu, approximate="tanh")
ACTIVATION_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"gelu": F.gelu, "tanh": torch.tanh}
ACTIVATION_FUNCTIONS.update(relu=F.relu, silu=F.silu, swish=F.silu)
ACTIVATION_FUNCTIONS.update(dict.fromkeys(("gelu_new", "gelu_pytorch_tanh", "gelu_fast"), _TANH_GELU))


def activation(name: str):
    """The feed-forward activation function for a config's ``hidden_act``."""
    if name not in ACTIVATION_FUNCTIONS:
        raise ValueError(f"unknown activation {name!r}")
    return ACTIVATION_FUNCTIONS[name]


@dataclass
class BaseModelOutput:
    """Output of ``BertModel``."""

    last_hidden_state: torch.Tensor
    """(B, S, H) hidden states of the last layer."""
    pooler_output: torch.Tensor | None = None
    """(B, H) tanh(dense([CLS])), or None for a model built without a pooler."""
    hidden_states: tuple[torch.Tensor, ...] | None = None
    """Embeddings then each layer's output, each (B, S, H), when ``output_hidden_states=True``."""
    attentions: tuple[torch.Tensor, ...] | None = None
    """Each layer's attention probabilities (B, N, S, S), when ``output_attentions=True``."""


class Embeddings(nn.Module):
    """Token + segment + learned position embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        width = config.embedding_width  # E: the hidden size, or ELECTRA's own embedding width
        self.token = nn.Embedding(config.vocab_size, width, padding_idx=config.pad_token_id)
        # RoBERTa's positions start after its padding id; that row is never read and stays zero, as in its checkpoints
        pad_position = config.pad_token_id if config.family.position_offset else None
        self.position = nn.Embedding(config.max_position_embeddings, width, padding_idx=pad_position)
        self.position.weight.requires_grad_(not config.sinusoidal_pos_embds)  # DistilBERT's fixed table: not trained
        self.segment = nn.Embedding(config.type_vocab_size, width) if config.has_token_types else None
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        # ELECTRA (where E differs from H) and ALBERT (always): (.., E) -> (.., H) after the dropout
        self.project = nn.Linear(width, config.hidden_size) if config.projects_embeddings else None
        self.sparse_token_grad = False
        """Set by a tied MLM head: see ``_token``."""

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor,
        position_ids: torch.Tensor,
        prompt: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # (B, S) ids -> (B, S, H); with a soft prompt (P, H), ids (B, S - P) and the prompt in front as word vectors
        words = self._token(input_ids)
        if prompt is not None:
            words = torch.cat([prompt.to(words.dtype).expand(words.shape[0], -1, -1), words], dim=1)
        return self.from_words(words, token_type_ids, position_ids)

    def from_words(self, words: torch.Tensor, token_type_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """The embeddings of word vectors already looked up (or soft ones): + segment + position, LayerNorm, dropout."""
        x = words + self.position(position_ids)
        if self.segment is not None:
            x = x + self.segment(token_type_ids)
        x = self.dropout(self.norm(x))
        return self.project(x) if self.project is not None else x

    def _token(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The word-embedding lookup. When the matrix is shared with an MLM decoder and trained on the CPU, the lookup
        hands autograd a sparse gradient (the looked-up rows only), which autograd adds in place into the decoder's
        dense gradient of the same matrix: no (V, H) zero fill and no (V, H) sum of two dense gradients (their cost in
        a profiled bert-base pretraining step: benchmarks/README.md). A post-accumulate hook turns
        the gradient dense in case the decoder did not contribute (the encoder trained on its own), so optimizers
        always see a dense gradient."""
        w = self.token.weight
        if not (
            self.sparse_token_grad
            and w.requires_grad
            and torch.is_grad_enabled()
            and w.device.type == "cpu"
            and type(w) is nn.Parameter
            and not torch.compiler.is_compiling()
        ):
            return self.token(input_ids)  # FSDP's DTensor parameters, CUDA, inference, compile: the dense path
        hooks = getattr(w, "_post_accumulate_grad_hooks", None) or {}  # torch's registry: survives no deepcopy
        if not any(h is _densify_grad for h in hooks.values()):
            w.register_post_accumulate_grad_hook(_densify_grad)
        return F.embedding(input_ids, w, self.token.padding_idx, sparse=True)


def _tuple_or_none(items: list | None) -> tuple | None:
    return tuple(items) if items is not None else None


def _densify_grad(param: torch.Tensor) -> None:
    if param.grad is not None and param.grad.is_sparse:
        param.grad = param.grad.to_dense()


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention: a fused QKV projection, the attention kernel chosen by
    ``attention.attend``, and an output projection."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.qkv_proj = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob
        self.causal = config.is_decoder

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None,
        backend: str = "sdpa",
        packed: Packing | None = None,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, S, H), or (T, H) with ``packed``; key_mask (B, 1, 1, S) bool, True = attend; ``prefix`` trained
        keys and values (N, P, D) (prefix tuning); ``cache`` the keys and values of earlier positions (decoding).
        Returns the output in the layout of x, and the probabilities (eager backend) or None."""
        dropout_p = self.dropout_p if self.training else 0.0
        ctx, probs = attend(
            self.qkv_proj(x), self.num_heads, key_mask, dropout_p, backend, packed, prefix, self.causal, cache
        )
        return self.out_proj(ctx), probs


class FeedForward(nn.Module):
    """ffn_out(act(ffn_in(x))): H -> I -> H."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.ffn_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_out(self.act(self.ffn_in(x)))


class EncoderLayer(nn.Module):
    """One post-LN transformer block: attention and feed-forward, each followed by dropout, residual add, LayerNorm.
    Bottleneck adapters (``adapter_attn``, ``adapter_ffn``; None unless a strategy inserts them) act on a sublayer's
    output before its residual add."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attn = SelfAttention(config)
        self.norm_attn = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config)
        self.norm_ffn = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.adapter_attn: nn.Module | None = None
        self.adapter_ffn: nn.Module | None = None

    def forward(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None,
        backend: str = "sdpa",
        packed: Packing | None = None,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_out, probs = self.attn(x, key_mask, backend, packed, prefix, cache)
        attn_out = self.dropout(attn_out)
        if self.adapter_attn is not None:
            attn_out = self.adapter_attn(attn_out)
        x = self.norm_attn(x + attn_out)
        ffn_out = self.dropout(self.ffn(x))
        if self.adapter_ffn is not None:
            ffn_out = self.adapter_ffn(ffn_out)
        x = self.norm_ffn(x + ffn_out)
        return x, probs


class Pooler(nn.Module):
    """tanh(dense(h[CLS])): the sentence vector that BERT's NSP and classification heads read."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor, cls_index: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S, H) -> (B, H) from position 0, or from position ``cls_index[b]`` of row b; or a packed (T, H) with
        the rows ``cls_index`` (B,)."""
        if cls_index is None:
            cls = hidden[:, 0]
        elif hidden.dim() == 2:
            cls = hidden.index_select(0, cls_index)
        else:
            cls = hidden[torch.arange(hidden.shape[0], device=hidden.device), cls_index]
        return torch.tanh(self.dense(cls))


class BertModel(PreTrainedBert):
    """Embeddings, a stack of encoder layers and (optionally) the pooler."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layer_modules))
        self.layer_order = config.layer_order  # the layer each step runs: ALBERT reuses its groups down the stack
        self.pooler = Pooler(config) if add_pooling_layer and config.has_pooler else None
        self.attention_backend = "sdpa"
        self.gradient_checkpointing = False
        self.padding_free = True
        """Pack the real tokens of padded batches (see ``padding.py``); False runs every position."""
        self.prompt: SoftPrompt | None = None
        """A ``SoftPrompt`` (prompt tuning) whose vectors go in front of every input; None by default."""
        self.prefix: PrefixEncoder | None = None
        """A ``PrefixEncoder`` (prefix tuning) whose keys and values every layer attends to; None by default."""
        self.apply(lambda m: init_weights(m, config))
        if config.sinusoidal_pos_embds:
            sinusoidal_positions(self.embeddings.position.weight)

    def set_attention_backend(self, backend: str) -> None:
        """Choose "sdpa" (fused kernels, default) or "eager" (explicit softmax) attention."""
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention backend {backend!r} is not one of {ATTENTION_BACKENDS}")
        self.attention_backend = backend

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        cu_seqlens: torch.Tensor | None = None,
        max_seqlen: int | None = None,
        cache: list[KVCache] | None = None,
    ) -> BaseModelOutput:
        """input_ids, attention_mask (1 = real token), token_type_ids, position_ids: each (B, S).

        ``output_attentions`` switches to the eager attention path so that probabilities can be returned.

        ``cache`` (one ``KVCache`` per layer; causal models, sequences without padding): the keys and values of the
        positions before ``input_ids``, which are appended to it; default positions continue after them.

        With causal attention (``config.is_decoder``) the pooler reads the last real token of each sequence (the
        only one that has seen the whole input, as GPT-style classifiers do) instead of [CLS].

        A batch that is already packed (``bertforge.data.collate.collate_packed``) is given as input_ids (T,) (or
        (1, T)) with ``cu_seqlens`` (B + 1,) and the host int ``max_seqlen``, no attention_mask; position ids default
        to restarting at 0 in each sequence. The outputs then stay packed: last_hidden_state (T, H) (or (1, T, H)).
        """
        if cu_seqlens is not None:
            if cache is not None:
                raise ValueError("incremental decoding (cache) takes padded input_ids, not a packed batch")
            return self._forward_packed(
                input_ids,
                token_type_ids,
                position_ids,
                cu_seqlens,
                max_seqlen,
                attention_mask,
                output_attentions,
                output_hidden_states,
            )
        P = self.prompt.num_tokens if self.prompt is not None and not (cache and len(cache[0])) else 0  # else cached
        cached = len(cache[0]) if cache else 0
        prefix = self.prefix.num_tokens if self.prefix is not None else 0
        input_ids, attention_mask, token_type_ids, position_ids = prepare_padded(
            self.config, input_ids, attention_mask, token_type_ids, position_ids, P, prefix, cached
        )
        backend = "eager" if output_attentions else self.attention_backend
        key_mask, packed = attention_plan(attention_mask, self.padding_free, backend)
        if P:  # the prompt joins the word vectors in the padded layout, then the whole is packed
            x = self.embeddings(input_ids, token_type_ids, position_ids, prompt=self.prompt())  # type: ignore[misc]
            x = unpad(x, packed) if packed is not None else x
        else:
            if packed is not None:
                input_ids, token_type_ids, position_ids = (
                    unpad(t, packed) for t in (input_ids, token_type_ids, position_ids)
                )
            x = self.embeddings(input_ids, token_type_ids, position_ids)
        x, hidden_states, attentions = self._encode(
            x, key_mask, backend, packed, output_hidden_states, output_attentions, cache
        )
        if packed is not None:  # back to the public, padded layout
            x = pad(x, packed)
            hidden_states = tuple(pad(h, packed) for h in hidden_states) if hidden_states else hidden_states
        pooled = self._pool(x, attention_mask)
        if P:  # heads read the real tokens; the pooler read position 0 (the first soft token), as in peft
            x = x[:, P:]
            hidden_states = tuple(h[:, P:] for h in hidden_states) if hidden_states else hidden_states
        return BaseModelOutput(x, pooled, hidden_states, attentions)

    def _pool(self, x: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """The pooler's output: [CLS], or with causal attention the last real token (right padding), the only one
        that has seen the whole input; None without a pooler."""
        if self.pooler is None:
            return None
        last = None
        if self.config.is_decoder:
            B, S = x.shape[:2]
            last = attention_mask.sum(1).long() - 1 if attention_mask is not None else x.new_full((B,), S - 1).long()
        return self.pooler(x, last)

    def _encode(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor | None,
        backend: str,
        packed: Packing | None,
        output_hidden_states: bool,
        output_attentions: bool,
        cache: list[KVCache] | None = None,
    ):
        """The layer stack on embeddings x (padded or packed): last hidden state, and the per-layer hidden states
        and attention probabilities when asked for (else None)."""
        hidden_states = [x] if output_hidden_states else None
        attentions: list | None = [] if output_attentions else None
        depth = len(self.layer_order)
        prefixes = self.prefix.key_values() if self.prefix is not None else [None] * depth
        caches = cache if cache is not None else [None] * depth
        if len(caches) != depth:
            raise ValueError(f"cache has {len(caches)} layers, the model {depth}")
        for index, prefix, layer_cache in zip(self.layer_order, prefixes, caches):
            layer = self.layers[index]
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x, probs = torch.utils.checkpoint.checkpoint(
                    layer, x, key_mask, backend, packed, prefix, layer_cache, use_reentrant=False
                )
            else:
                x, probs = layer(x, key_mask, backend, packed, prefix, layer_cache)
            if hidden_states is not None:
                hidden_states.append(x)
            if attentions is not None:
                attentions.append(probs)
        return x, _tuple_or_none(hidden_states), _tuple_or_none(attentions)

    def _forward_packed(
        self,
        input_ids,
        token_type_ids,
        position_ids,
        cu_seqlens,
        max_seqlen,
        attention_mask,
        output_attentions,
        output_hidden_states,
    ) -> BaseModelOutput:
        if attention_mask is not None:
            raise ValueError(
                "a packed batch (cu_seqlens given) takes no attention_mask: sequences are delimited by cu_seqlens"
            )
        if output_attentions:
            raise ValueError("output_attentions=True needs a padded batch (attention probabilities are (B, N, S, S))")
        if max_seqlen is None:
            raise ValueError("a packed batch needs max_seqlen (the longest sequence, as a Python int) with cu_seqlens")
        if max_seqlen > self.config.max_tokens:
            limit = self.config.max_tokens
            raise ValueError(
                f"a packed sequence has {max_seqlen} tokens, {max_seqlen - limit} more than the {limit} that "
                f"max_position_embeddings ({self.config.max_position_embeddings}) covers"
            )
        shape = input_ids.shape
        flat = input_ids.reshape(-1)
        T = flat.numel()
        if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
            raise ValueError(f"cu_seqlens must be (batch + 1,), got shape {tuple(cu_seqlens.shape)}")
        packed, positions = packing_from_cu_seqlens(cu_seqlens, max_seqlen, T)
        if self.prefix is not None and position_ids is None:
            positions = positions + self.prefix.num_tokens  # after the prefix, as in the padded path
        position_ids = positions + self.config.position_offset if position_ids is None else position_ids.reshape(-1)
        token_type_ids = torch.zeros_like(flat) if token_type_ids is None else token_type_ids.reshape(-1)
        P = self.prompt.num_tokens if self.prompt is not None else 0
        check_inputs(self.config, flat[None], None, token_type_ids[None], position_ids[None], extra=P)
        real = None
        if self.prompt is not None:  # P soft tokens in front of every sequence: a longer packed batch
            x, real, cu_seqlens, max_seqlen = self._packed_with_prompt(
                flat, token_type_ids, position_ids, cu_seqlens, max_seqlen
            )
            packed, _ = packing_from_cu_seqlens(cu_seqlens, max_seqlen, x.shape[0])
        else:
            x = self.embeddings(flat, token_type_ids, position_ids)
        key_mask = key_mask_from_cu_seqlens(cu_seqlens, max_seqlen)
        x, hidden_states, _ = self._encode(x, key_mask, "sdpa", packed, output_hidden_states, False)
        read = cu_seqlens[1:] - 1 if self.config.is_decoder else cu_seqlens[:-1]  # causal: the last token, else [CLS]
        pooled = self.pooler(x, read.to(torch.long)) if self.pooler is not None else None
        if real is not None:  # the input's own rows, in its order
            x = x.index_select(0, real)
            hidden_states = tuple(h.index_select(0, real) for h in hidden_states) if hidden_states else hidden_states
        out_shape = (*shape, x.shape[-1])
        return BaseModelOutput(
            x.reshape(out_shape),
            pooled,
            tuple(h.reshape(out_shape) for h in hidden_states) if hidden_states else None,
            None,
        )

    def _packed_with_prompt(self, flat, token_type_ids, position_ids, cu_seqlens, max_seqlen):
        """Embeddings of a packed batch with the soft prompt's P rows in front of each sequence: (embeddings (T + B P,
        H), the rows of the input's tokens, the new cu_seqlens, the new max_seqlen)."""
        assert self.prompt is not None
        P, T, device = self.prompt.num_tokens, flat.numel(), flat.device
        B = cu_seqlens.numel() - 1
        cu = cu_seqlens.to(torch.long)
        new_cu = cu + P * torch.arange(B + 1, device=device)
        sequence = torch.repeat_interleave(torch.arange(B, device=device), cu[1:] - cu[:-1], output_size=T)
        real = torch.arange(T, device=device) + P * (sequence + 1)
        front = (new_cu[:-1, None] + torch.arange(P, device=device)).reshape(-1)
        words = self.embeddings._token(flat)
        table = self.prompt().to(words.dtype)
        all_words = words.new_zeros(T + B * P, words.shape[-1]).index_copy(0, real, words)
        all_words = all_words.index_copy(0, front, table.repeat(B, 1))
        types = flat.new_zeros(T + B * P).index_copy(0, real, token_type_ids)
        positions = (torch.arange(P, device=device) + self.config.position_offset).repeat(B)
        positions = flat.new_zeros(T + B * P).index_copy(0, front, positions).index_copy(0, real, position_ids + P)
        x = self.embeddings.from_words(all_words, types, positions)
        return x, real, new_cu.to(cu_seqlens.dtype), max_seqlen + P


@torch.no_grad()
def init_weights(module: nn.Module, config: BertConfig) -> None:
    """BERT's init: weights N(0, initializer_range), biases 0, LayerNorm 1/0, padding embedding row 0."""
    if isinstance(module, nn.Linear):
        module.weight.normal_(0.0, config.initializer_range)
        if module.bias is not None:
            module.bias.zero_()
    elif isinstance(module, nn.Embedding):
        module.weight.normal_(0.0, config.initializer_range)
        if module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        module.weight.fill_(1.0)
        module.bias.zero_()


@torch.no_grad()
def sinusoidal_positions(table: torch.Tensor) -> None:
    """Fill a (positions, H) table with the Transformer's fixed vectors: sin at even features, cos at odd ones, the
    pair (2k, 2k + 1) at frequency 10000^(-2k / H) (DistilBERT's ``sinusoidal_pos_embds``)."""
    if table.is_meta:
        return
    n, dim = table.shape
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    freq = torch.pow(10000.0, -(2 * (torch.arange(dim) // 2)).double() / dim)
    angles = pos * freq
    angles[:, 0::2] = angles[:, 0::2].sin()
    angles[:, 1::2] = angles[:, 1::2].cos()
    table.copy_(angles.to(table.dtype))
