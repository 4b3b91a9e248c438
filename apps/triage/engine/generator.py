"""An optional abstractive generator: any local seq2seq model directory (MAILSCORE_GENERATOR_PATH),
loaded offline, used for summaries and the acknowledging sentence of drafts."""

from __future__ import annotations

import threading
from pathlib import Path

from apps.triage.engine.encoder import load_local


class Generator:
    def __init__(self, path: str | Path, *, device: str = "auto", max_new_tokens: int = 64) -> None:
        self.path = Path(path)
        self.tokenizer, model, self.device = load_local(
            self.path, "AutoModelForSeq2SeqLM", device=device, what="generator",
            variable="MAILSCORE_GENERATOR_PATH",
        )  # fmt: skip
        self.model = model.to(self.device)
        self.max_new_tokens = max_new_tokens
        self.version = f"{self.path.name}"
        self._lock = threading.Lock()

    def generate(self, prompts: list[str]) -> list[str]:
        import torch

        if not prompts:
            return []
        with self._lock, torch.inference_mode():
            encoded = self.tokenizer(prompts, padding=True, truncation=True, max_length=512,
                                     return_tensors="pt").to(self.device)  # fmt: skip
            output = self.model.generate(**encoded, max_new_tokens=self.max_new_tokens, num_beams=1,
                                         do_sample=False)  # fmt: skip
        return [
            " ".join(t.split())
            for t in self.tokenizer.batch_decode(output, skip_special_tokens=True)
        ]


_loaded: dict[tuple, Generator] = {}
_loaded_lock = threading.Lock()


def load_generator(path: str, *, device: str = "auto") -> Generator:
    with _loaded_lock:
        key = (path, device)
        if key not in _loaded:
            _loaded[key] = Generator(path, device=device)
        return _loaded[key]
