"""Megatron-LM's MMIDIDX indexed dataset: a ``.bin`` of tokens and an ``.idx`` that locates sequences and documents.

Byte layout of ``{prefix}.idx`` (little-endian), as Megatron-LM's ``_IndexWriter`` writes it:

    9 bytes   magic  b"MMIDIDX\\x00\\x00"
    uint64    version (1)
    uint8     dtype code of the tokens (1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16)
    uint64    sequence count S
    uint64    document count D + 1 (the document index starts with a 0 sentinel)
    int32[S]  sequence lengths, in tokens
    int64[S]  sequence pointers, byte offsets into .bin
    int64[D+1] document index: document j holds sequences [doc[j], doc[j+1])

``{prefix}.bin`` is the tokens of all sequences back to back. Tokens are uint16 when the vocabulary has fewer than
65,500 ids (as Megatron chooses), int32 otherwise.

The builder streams: tokens go straight to the ``.bin``, lengths and document boundaries to temporary files, so memory
does not grow with the corpus. Both files are written under temporary names and renamed when complete: a crash leaves no
file that looks finished. The reader memory-maps both files and checks the header and sizes before trusting them.
"""

from __future__ import annotations

import os
import struct
import tempfile
from typing import BinaryIO

import numpy as np

from bertforge.utils import give_usual_mode, process_alive

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPES: dict[int, type] = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.float32,
    8: np.uint16,
}
CODES = {np.dtype(v): k for k, v in DTYPES.items()}
HEADER_SIZE = len(MAGIC) + 8 + 1 + 8 + 8
CHUNK = 1 << 20  # sequences per chunk when streaming the index out


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 below 65,500 ids (Megatron's threshold), int32 above."""
    return np.dtype(np.uint16 if vocab_size < 65500 else np.int32)


def data_file(prefix: str) -> str:
    return prefix + ".bin"


def index_file(prefix: str) -> str:
    return prefix + ".idx"


class IndexedDatasetBuilder:
    """Append sequences (sentences) and close documents; ``finalize()`` writes the index and renames both files.

    Use as a context manager: on an exception the temporary files are removed and nothing appears at ``prefix``.
    """

    def __init__(self, prefix: str, dtype: np.dtype | type = np.uint16):
        self.prefix = os.fspath(prefix)
        self.dtype = np.dtype(dtype)
        if self.dtype not in CODES:
            raise ValueError(f"token dtype {self.dtype} cannot be written to an MMIDIDX file")
        directory = os.path.dirname(os.path.abspath(self.prefix))
        os.makedirs(directory, exist_ok=True)
        base = os.path.basename(self.prefix)
        _remove_leftovers(directory, base)
        self._tmp_bin = tempfile.NamedTemporaryFile(dir=directory, prefix=f".{base}.bin.{os.getpid()}.", delete=False)
        self._tmp_lengths = tempfile.TemporaryFile(dir=directory)
        self._tmp_docs = tempfile.TemporaryFile(dir=directory)
        self.num_sequences = 0
        self.num_documents = 0
        self.num_tokens = 0
        self._doc_open = 0  # sequences added since the last end_document
        self._tmp_docs.write(np.array([0], dtype=np.int64).tobytes())
        self._done = False

    def add_sequence(self, tokens) -> None:
        """Append one sequence (a sentence) to the current document."""
        arr = np.asarray(tokens, dtype=self.dtype)
        self._tmp_bin.write(arr.tobytes(order="C"))
        self._tmp_lengths.write(np.array([arr.size], dtype=np.int32).tobytes())
        self.num_sequences += 1
        self.num_tokens += arr.size
        self._doc_open += 1

    def add_document(self, sequences) -> None:
        """Append a document given as a list of token sequences, and close it."""
        for seq in sequences:
            self.add_sequence(seq)
        self.end_document()

    def end_document(self) -> None:
        """Close the current document (ignored when it holds no sequence)."""
        if self._doc_open == 0:
            return
        self._tmp_docs.write(np.array([self.num_sequences], dtype=np.int64).tobytes())
        self.num_documents += 1
        self._doc_open = 0

    def finalize(self) -> None:
        """Write the .idx and rename .bin and .idx into place (the .idx last, so its presence means complete)."""
        self.end_document()
        self._tmp_bin.flush()
        os.fsync(self._tmp_bin.fileno())
        self._tmp_bin.close()
        idx_tmp = index_file(self.prefix) + ".tmp"
        with open(idx_tmp, "wb") as out:
            out.write(MAGIC)
            out.write(struct.pack("<Q", VERSION))
            out.write(struct.pack("<B", CODES[self.dtype]))
            out.write(struct.pack("<Q", self.num_sequences))
            out.write(struct.pack("<Q", self.num_documents + 1))
            _copy(self._tmp_lengths, out)
            self._write_pointers(out)
            _copy(self._tmp_docs, out)
            out.flush()
            os.fsync(out.fileno())
        self._tmp_lengths.close()
        self._tmp_docs.close()
        if os.path.exists(index_file(self.prefix)):
            os.remove(index_file(self.prefix))  # never pair an old index with the new data, even for a moment
        give_usual_mode(self._tmp_bin.name)  # NamedTemporaryFile makes 0600
        os.replace(self._tmp_bin.name, data_file(self.prefix))
        os.replace(idx_tmp, index_file(self.prefix))
        self._done = True

    def _write_pointers(self, out: BinaryIO) -> None:
        self._tmp_lengths.seek(0)
        offset = 0
        while True:
            lengths = np.frombuffer(self._tmp_lengths.read(CHUNK * 4), dtype=np.int32)
            if lengths.size == 0:
                break
            ends = np.cumsum(lengths, dtype=np.int64) * self.dtype.itemsize + offset
            out.write((ends - lengths.astype(np.int64) * self.dtype.itemsize).tobytes())
            offset = int(ends[-1])

    def abort(self) -> None:
        """Remove the temporary files."""
        for f in (self._tmp_bin, self._tmp_lengths, self._tmp_docs):
            try:
                f.close()
            except OSError:
                pass
        for path in (self._tmp_bin.name, index_file(self.prefix) + ".tmp"):
            if os.path.exists(path):
                os.remove(path)

    def __enter__(self) -> IndexedDatasetBuilder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._done:
            self.abort()


def _remove_leftovers(directory: str, base: str) -> None:
    """Remove the temporary .bin files (``.BASE.bin.PID.*``) and ``BASE.idx.tmp`` of a killed earlier build of the
    same prefix, when the process that wrote them is gone."""
    for name in os.listdir(directory):
        if not name.startswith(f".{base}.bin."):
            continue
        pid = name[len(f".{base}.bin.") :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            os.remove(os.path.join(directory, name))
    idx_tmp = os.path.join(directory, base + ".idx.tmp")
    if os.path.exists(idx_tmp) and not any(n.startswith(f".{base}.bin.") for n in os.listdir(directory)):
        os.remove(idx_tmp)


def _copy(src, dst) -> None:
    src.flush()
    src.seek(0)
    while True:
        block = src.read(1 << 24)
        if not block:
            break
        dst.write(block)


class IndexedDataset:
    """Read-only, memory-mapped view of an MMIDIDX dataset: ``ds[i]`` is sequence i, ``ds.document(j)`` document j."""

    def __init__(self, prefix: str):
        self.prefix = os.fspath(prefix)
        idx, binf = index_file(self.prefix), data_file(self.prefix)
        for path in (idx, binf):
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"{path} does not exist (an indexed dataset is a {{prefix}}.bin + "
                    "{prefix}.idx pair; give the prefix, without the extension)"
                )
        size = os.path.getsize(idx)
        with open(idx, "rb") as fh:
            header = fh.read(HEADER_SIZE)
        if len(header) < HEADER_SIZE or header[: len(MAGIC)] != MAGIC:
            raise ValueError(
                f"{idx} is not a Megatron MMIDIDX index (the file does not start with "
                f"{MAGIC!r}); it may be another format or truncated"
            )
        (version,) = struct.unpack("<Q", header[9:17])
        if version != VERSION:
            raise ValueError(f"{idx}: MMIDIDX version {version} is not supported (only version {VERSION})")
        code = header[17]
        if code not in DTYPES:
            raise ValueError(f"{idx}: unknown token dtype code {code}")
        self.dtype = np.dtype(DTYPES[code])
        n_seq, n_doc = struct.unpack("<QQ", header[18:34])
        expected = HEADER_SIZE + n_seq * 4 + n_seq * 8 + n_doc * 8
        if size < expected:
            raise ValueError(
                f"{idx} is truncated: {size} bytes, the header promises {expected} "
                f"({n_seq} sequences, {n_doc - 1} documents); re-run preprocessing"
            )
        self._index = np.memmap(idx, dtype=np.uint8, mode="r")
        off = HEADER_SIZE
        self.sequence_lengths = np.frombuffer(self._index, dtype=np.int32, count=n_seq, offset=off)
        off += n_seq * 4
        self.sequence_pointers = np.frombuffer(self._index, dtype=np.int64, count=n_seq, offset=off)
        off += n_seq * 8
        self.document_indices = np.frombuffer(self._index, dtype=np.int64, count=n_doc, offset=off)
        n_tokens = int(self.sequence_lengths.sum(dtype=np.int64))
        bin_size = os.path.getsize(binf)
        if bin_size != n_tokens * self.dtype.itemsize:
            raise ValueError(
                f"{binf} has {bin_size} bytes but the index describes {n_tokens} tokens of "
                f"{self.dtype} ({n_tokens * self.dtype.itemsize} bytes); the pair is truncated or mismatched"
            )
        if n_doc == 0 or self.document_indices[0] != 0 or self.document_indices[-1] != n_seq:
            raise ValueError(f"{idx}: the document index does not cover the {n_seq} sequences")
        if n_seq and int(self.sequence_lengths.min()) < 0:
            raise ValueError(f"{idx}: sequence {int(np.argmin(self.sequence_lengths))} has a negative length")
        if n_doc > 1 and bool((np.diff(self.document_indices) < 0).any()):
            raise ValueError(f"{idx}: the document index goes backwards (document boundaries must not decrease)")
        # Sequences lie back to back in the .bin: pointer i = the bytes of sequences 0..i-1.
        starts = np.zeros(n_seq, dtype=np.int64)
        if n_seq > 1:
            np.cumsum(self.sequence_lengths[:-1], dtype=np.int64, out=starts[1:])
        bad = np.flatnonzero(self.sequence_pointers != starts * self.dtype.itemsize)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{idx}: sequence {i} points at byte {int(self.sequence_pointers[i])} of {binf}, expected "
                f"{int(starts[i]) * self.dtype.itemsize} (sequences lie back to back); the index is corrupt"
            )
        self._data = np.memmap(binf, dtype=self.dtype, mode="r") if n_tokens else np.zeros(0, self.dtype)
        self.num_tokens = n_tokens

    def __len__(self) -> int:
        return len(self.sequence_lengths)

    @property
    def num_documents(self) -> int:
        return len(self.document_indices) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        """Sequence ``i`` as a NumPy array of token ids (a view into the memory map)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"sequence {i} out of range for {len(self)} sequences")
        start = int(self.sequence_pointers[i]) // self.dtype.itemsize
        return self._data[start : start + int(self.sequence_lengths[i])]

    def document_range(self, j: int) -> tuple[int, int]:
        """The sequence range [start, end) of document ``j``."""
        return int(self.document_indices[j]), int(self.document_indices[j + 1])

    def document(self, j: int) -> list[np.ndarray]:
        """The sequences (sentences) of document ``j``."""
        start, end = self.document_range(j)
        return [self[i] for i in range(start, end)]
