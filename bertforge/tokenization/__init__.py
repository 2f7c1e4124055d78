"""BERT WordPiece, RoBERTa byte-level BPE and ALBERT SentencePiece tokenization on the ``tokenizers`` library: encode
API, label/answer alignment, vocabulary training."""

from bertforge.tokenization.alignment import IGNORE_INDEX, align_word_labels, char_span_to_token_span
from bertforge.tokenization.auto import load_tokenizer, megatron_tokenizer
from bertforge.tokenization.roberta import RobertaTokenizer
from bertforge.tokenization.sentencepiece import AlbertTokenizer
from bertforge.tokenization.tokenizer import (
    SPECIAL_TOKENS,
    TOKENIZER_TYPES,
    BatchEncoding,
    BertTokenizer,
    read_vocab,
)
from bertforge.tokenization.training import train_vocab

__all__ = [
    "AlbertTokenizer",
    "BatchEncoding",
    "BertTokenizer",
    "IGNORE_INDEX",
    "RobertaTokenizer",
    "SPECIAL_TOKENS",
    "TOKENIZER_TYPES",
    "align_word_labels",
    "char_span_to_token_span",
    "load_tokenizer",
    "megatron_tokenizer",
    "read_vocab",
    "train_vocab",
]
