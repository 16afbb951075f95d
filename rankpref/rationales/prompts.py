"""PULSE-style prompts and a robust parser for the answers.

The prompt shows a user's interaction history (titles; ratings and review snippets where the
data has them) and the item they then chose, and asks for a short rationale (< 100 words) of
*why* that choice fits their taste, as JSON ``{"rationale": "..."}``. The chosen item is the
user's last *training* item (a hindsight signal), never a valid/test target.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

PROMPT_VERSION = "pulse-v1"
MAX_HISTORY = 20      # most recent history items shown
MAX_REVIEW_CHARS = 160
MAX_WORDS = 100

SYSTEM = ("You are an analyst of shoppers' taste. You infer the latent preferences behind a "
          "purchase from the shopper's history. Answer only with JSON.")


@dataclass
class HistoryItem:
    title: str
    rating: float | None = None
    review: str | None = None
    brand: str | None = None
    categories: list[str] = field(default_factory=list)


def _line(i: int, item: HistoryItem) -> str:
    text = f"{i}. {item.title or 'untitled item'}"
    if item.rating is not None:
        text += f" (rated {item.rating:g}/5)"
    if item.review:
        snippet = " ".join(item.review.split())[:MAX_REVIEW_CHARS]
        text += f' - review: "{snippet}"'
    return text


def build_messages(history: list[HistoryItem], chosen: HistoryItem) -> list[dict]:
    """Chat messages (system + user) for one user."""
    shown = history[-MAX_HISTORY:]
    lines = "\n".join(_line(i + 1, item) for i, item in enumerate(shown))
    user = (f"A shopper's purchase history, oldest first:\n{lines}\n\n"
            f"The shopper then chose: {chosen.title or 'untitled item'}\n\n"
            f"In under {MAX_WORDS} words, explain why this choice fits the shopper's taste: "
            "which preferences in the history does it satisfy (brand, type of product, "
            "scent, skin type, price, style)? Reply only as JSON: {\"rationale\": \"...\"}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_JSON_OBJ = re.compile(r"\{.*\}", re.S)
_KEY_PREFIX = re.compile(r'^\s*\{?\s*"?rationale"?\s*:\s*"?', re.I)


def _from_json(text: str) -> str | None:
    for candidate in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        match = _JSON_OBJ.search(candidate)
        if not match:
            continue
        try:
            obj = json.loads(match.group(0))
        except ValueError:
            continue
        if isinstance(obj, dict):
            value = obj.get("rationale") or next(
                (v for v in obj.values() if isinstance(v, str) and v.strip()), None)
            if isinstance(value, str):
                return value
    return None


def _clip_words(text: str, limit: int) -> str:
    words = text.split()
    if len(words) <= limit:
        return " ".join(words)
    clipped = " ".join(words[:limit])
    end = max(clipped.rfind(". "), clipped.rfind("! "), clipped.rfind("? "))
    return clipped[: end + 1] if end > len(clipped) // 2 else clipped


def parse_rationale(raw: str, prompt: str | None = None, max_words: int = MAX_WORDS) -> str | None:
    """Extract the rationale from a model answer: JSON, fenced JSON, or plain text.

    Strips an echoed prompt, a half-written ``{"rationale": "`` prefix and quotes; returns None
    for empty or garbage answers (no letters, fewer than 4 words, or mostly repetition).
    """
    if raw is None:
        return None
    text = raw.strip()
    if prompt and text.startswith(prompt.strip()):
        text = text[len(prompt.strip()):].strip()
    value = _from_json(text)
    if value is None:  # plain text, or JSON cut off by the token limit
        value = _FENCE.sub(lambda m: m.group(1), text)
        value = _KEY_PREFIX.sub("", value)
        value = value.strip().rstrip("}").strip().strip('"').strip()
    value = " ".join(value.replace("\\n", " ").replace('\\"', '"').split())
    if not re.search(r"[A-Za-z]", value):
        return None
    words = value.split()
    if len(words) < 4 or len(set(w.lower() for w in words)) < max(3, len(words) // 5):
        return None
    if _loops(words):
        return None
    return _clip_words(value, max_words)


def _loops(words: list[str], n: int = 4, times: int = 3) -> bool:
    """True when some n-word phrase repeats ``times`` times or more (a generation loop)."""
    seen: dict[tuple, int] = {}
    lowered = [w.lower() for w in words]
    for i in range(len(lowered) - n + 1):
        gram = tuple(lowered[i:i + n])
        seen[gram] = seen.get(gram, 0) + 1
        if seen[gram] >= times:
            return True
    return False
