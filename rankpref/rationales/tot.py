"""Tree-of-Thought refinement of rationales, scored in the thought space.

For each user, the SLM grows chains of short thoughts about the user's taste (history + chosen
item). Beam search: at each of ``depth`` steps, every chain in the beam is extended by
``branching`` sampled thoughts; each candidate chain is scored by the cosine between the
thought space's rationale tower (of the chain) and its behaviour tower (of the user's behaviour
text); the ``beam`` best survive. The best chain after the last step is the refined rationale,
stored in the rationale cache with ``method='tot'`` and its score.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from rankpref.rationales.cache import RationaleStore, history_hash, record_key
from rankpref.rationales.generate import ItemInfo, UserExample
from rankpref.rationales.prompts import MAX_HISTORY, SYSTEM, HistoryItem, _line, parse_rationale

log = logging.getLogger(__name__)
TOT_PROMPT_VERSION = "pulse-v1-tot"


@dataclass
class ToTSettings:
    depth: int = 3
    branching: int = 3
    beam: int = 2

    def __post_init__(self):
        for name in ("depth", "branching", "beam"):
            if getattr(self, name) < 1:
                raise ValueError(f"tot {name} must be >= 1, got {getattr(self, name)}")

    @property
    def version(self) -> str:
        return f"{TOT_PROMPT_VERSION}-d{self.depth}b{self.branching}w{self.beam}"


def thought_messages(history: list[HistoryItem], chosen: HistoryItem,
                     thoughts: list[str]) -> list[dict]:
    lines = "\n".join(_line(i + 1, it) for i, it in enumerate(history[-MAX_HISTORY:]))
    so_far = "\n".join(f"- {t}" for t in thoughts) or "(none yet)"
    user = (f"A shopper's purchase history, oldest first:\n{lines}\n\n"
            f"The shopper then chose: {chosen.title or 'untitled item'}\n\n"
            f"Thoughts so far about why this choice fits their taste:\n{so_far}\n\n"
            "Add ONE new short thought (one sentence) about a preference in the history that "
            "explains the choice. Reply only as JSON: {\"rationale\": \"...\"}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def refine(examples: list[UserExample], info: ItemInfo, backend, space, encoder,
           behaviours: dict[str, str], settings: ToTSettings) -> list[dict]:
    """Beam search for each user (all users' expansions of a step in one generation call).
    Returns one dict per user: user_id, chosen, rationale, score, candidates scored."""
    with torch.no_grad():  # every user's behaviour vector in one encoder call
        b_vecs = space.behaviour(torch.from_numpy(
            encoder.encode([behaviours[ex.user_id] for ex in examples], "behaviours")))
    states = []
    for ex, b_vec in zip(examples, b_vecs):
        history = [info.item(ex.user_idx, i) for i in ex.history]
        chosen = info.item(ex.user_idx, ex.chosen, with_feedback=False)
        states.append({"ex": ex, "history": history, "chosen": chosen, "b": b_vec,
                       "beam": [([], float("-inf"))], "scored": 0})
    for _ in range(settings.depth):
        prompts, owners = [], []
        for s_idx, st in enumerate(states):
            for chain, _ in st["beam"]:
                for _ in range(settings.branching):
                    prompts.append(thought_messages(st["history"], st["chosen"], chain))
                    owners.append((s_idx, chain))
        raws = backend.generate(prompts, [(states[o]["history"], states[o]["chosen"])
                                          for o, _ in owners])
        candidates: dict[int, list[list[str]]] = {}
        for (s_idx, chain), raw, msgs in zip(owners, raws, prompts):
            thought = parse_rationale(raw, prompt=msgs[-1]["content"], max_words=40)
            if thought and thought not in chain:
                candidates.setdefault(s_idx, []).append(chain + [thought])
        for s_idx, chains in candidates.items():
            st = states[s_idx]
            texts = [" ".join(c) for c in chains]
            with torch.no_grad():
                r_vecs = space.rationale(
                    torch.from_numpy(encoder.encode(texts, "candidate rationales")))
            scores = (r_vecs @ st["b"]).tolist()
            st["scored"] += len(chains)
            pool = st["beam"] + list(zip(chains, scores))
            pool = [p for p in pool if p[0]]
            unique = {}
            for chain, score in sorted(pool, key=lambda p: -p[1]):
                unique.setdefault(" ".join(chain), (chain, score))
            st["beam"] = list(unique.values())[:settings.beam]
    out = []
    for st in states:
        best = max(st["beam"], key=lambda p: p[1]) if st["beam"][0][0] else None
        out.append({"user_id": st["ex"].user_id, "chosen": st["ex"].chosen,
                    "history": st["ex"].history,
                    "rationale": " ".join(best[0]) if best else None,
                    "score": best[1] if best else None, "candidates": st["scored"]})
    return out


def refine_into_store(dataset_name: str, examples: list[UserExample], info: ItemInfo, vocab,
                      backend, space, encoder, behaviours: dict[str, str],
                      settings: ToTSettings, store: RationaleStore, *, group: int = 4,
                      progress: bool = True) -> dict:
    """Refine users ``group`` at a time; each group is committed to the store at once, so a
    stopped run keeps what it finished and a rerun skips it."""
    version = settings.version
    todo = []
    for ex in examples:
        h = history_hash([vocab.items[i] for i in ex.history], vocab.items[ex.chosen])
        todo.append((record_key(dataset_name, ex.user_id, h, backend.model_id, version), h, ex))
    done = store.existing([k for k, _, _ in todo])
    todo = [t for t in todo if t[0] not in done]
    report = {"users": len(examples), "already_cached": len(examples) - len(todo),
              "refined": 0, "failed": 0, "scores": []}
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(todo), desc="tree-of-thought", unit="user")
    started = time.perf_counter()
    for start in range(0, len(todo), group):
        part = todo[start:start + group]
        results = refine([ex for _, _, ex in part], info, backend, space, encoder, behaviours,
                         settings)
        rows, skips = [], []
        for (key, h, ex), res in zip(part, results):
            if res["rationale"] is None:
                skips.append({"key": key, "dataset": dataset_name, "user_id": ex.user_id,
                              "reason": "tot: no usable thought"})
                continue
            rows.append({"key": key, "dataset": dataset_name, "user_id": ex.user_id,
                         "history_hash": h, "model": backend.model_id, "backend": backend.name,
                         "prompt_version": version, "chosen_item": vocab.items[ex.chosen],
                         "rationale": res["rationale"], "attempts": res["candidates"],
                         "score": res["score"], "method": "tot"})
            report["scores"].append(res["score"])
        store.add(rows, skips)
        report["refined"] += len(rows)
        report["failed"] += len(skips)
        if bar is not None:
            bar.update(len(part))
    if bar is not None:
        bar.close()
    report["seconds"] = round(time.perf_counter() - started, 1)
    scores = report.pop("scores")
    report["mean_score"] = sum(scores) / len(scores) if scores else None
    return report
