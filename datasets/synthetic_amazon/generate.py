#!/usr/bin/env python3
"""Generate the SYNTHETIC Amazon-style beauty data set that ships with rankpref.

Everything here is invented: brands, products, users and reviews.  No real Amazon data
is used or reproduced.  The output mimics the Amazon 2018 review/metadata file format
so the same readers work on it, and it has *planted* preference drivers (written to
``drivers.json``) so that models and explanations can be checked against a known truth.

Usage::

    python datasets/synthetic_amazon/generate.py [--users N] [--items M] [--seed S] [--out DIR]

Only numpy and the standard library are needed.  The output is a pure function of the
arguments: running it twice gives byte-identical files (gzip headers carry mtime 0 and
no file name), on the same platform and numpy version.

How a user's sequence is drawn (see README.md for the full story):

* every user has 1-3 hidden drivers (favourite brand, skin type, category family,
  price tier, vegan only, favourite scent), a home category family and a taste drift
  (none, a family shift or trading up a price tier, from a hidden position on);
* the first item is drawn from the user's preferences and item popularity;
* each next item is drawn from a softmax over all unseen items whose logits add the
  user's preferences, item popularity and a transition term from the last two items:
  the next step of the same product line (cleanser -> toner -> serum -> moisturiser),
  the complementary category in a routine, the same brand and the same family;
* a small share of picks are pure popularity noise.

Ratings are higher when an item matches the user's drivers; each review's summary and
text mention the reason that explains the pick (a driver, the routine, or popularity).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------------------
# The invented world
# ----------------------------------------------------------------------------------------

FAMILIES = ["Skin Care", "Makeup", "Hair Care", "Bath & Body", "Fragrance"]
FAMILY_WEIGHTS = [0.34, 0.26, 0.18, 0.14, 0.08]

# leaf key -> (category path, noun used in titles, sizes)
LEAVES: dict[str, tuple[list[str], str, list[str]]] = {
    # Skin Care
    "cleanser": (["Skin Care", "Face", "Cleansers"], "Facial Cleanser", ["4 fl oz", "5 fl oz", "6.7 fl oz"]),
    "toner": (["Skin Care", "Face", "Toners"], "Toner", ["4 fl oz", "6.7 fl oz", "8 fl oz"]),
    "serum": (["Skin Care", "Face", "Serums"], "Face Serum", ["1 oz", "1 fl oz", "1.7 fl oz"]),
    "moisturizer": (["Skin Care", "Face", "Moisturizers"], "Moisturizer", ["1.7 oz", "2 oz", "2.5 oz"]),
    "face_mask": (["Skin Care", "Face", "Masks"], "Face Mask", ["2 oz", "3.4 oz", "5 sheets"]),
    "eye_cream": (["Skin Care", "Eyes", "Eye Creams"], "Eye Cream", ["0.5 oz", "0.5 fl oz", "0.7 oz"]),
    "sunscreen": (["Skin Care", "Sun Care", "Sunscreens"], "Sunscreen SPF 30", ["1.7 fl oz", "2.5 fl oz", "3 fl oz"]),
    # Makeup
    "primer": (["Makeup", "Face", "Primers"], "Face Primer", ["1 fl oz", "1.01 fl oz"]),
    "foundation": (["Makeup", "Face", "Foundations"], "Foundation", ["1 fl oz", "1.01 fl oz"]),
    "concealer": (["Makeup", "Face", "Concealers"], "Concealer", ["0.2 fl oz", "0.27 fl oz"]),
    "powder": (["Makeup", "Face", "Powders"], "Setting Powder", ["0.35 oz", "0.5 oz"]),
    "mascara": (["Makeup", "Eyes", "Mascara"], "Mascara", ["0.27 oz", "0.3 oz"]),
    "eyeliner": (["Makeup", "Eyes", "Eyeliner"], "Eyeliner", ["0.02 oz", "0.04 oz"]),
    "eyeshadow": (["Makeup", "Eyes", "Eyeshadow"], "Eyeshadow Palette", ["12 shades", "9 shades", "6 shades"]),
    "lipstick": (["Makeup", "Lips", "Lipstick"], "Lipstick", ["0.12 oz", "0.14 oz"]),
    "lip_balm": (["Makeup", "Lips", "Lip Balms"], "Lip Balm", ["0.15 oz", "2 pack", "3 pack"]),
    # Hair Care
    "shampoo": (["Hair Care", "Shampoo & Conditioner", "Shampoos"], "Shampoo", ["8.5 fl oz", "12 fl oz", "16.9 fl oz"]),
    "conditioner": (["Hair Care", "Shampoo & Conditioner", "Conditioners"], "Conditioner", ["8.5 fl oz", "12 fl oz", "16.9 fl oz"]),
    "hair_mask": (["Hair Care", "Treatments", "Hair Masks"], "Hair Mask", ["6.7 oz", "8 oz"]),
    "hair_oil": (["Hair Care", "Treatments", "Hair Oils"], "Hair Oil", ["1.7 fl oz", "3.4 fl oz"]),
    "styling_cream": (["Hair Care", "Styling", "Styling Creams"], "Styling Cream", ["4 oz", "5.1 oz"]),
    # Bath & Body
    "body_wash": (["Bath & Body", "Cleansers", "Body Washes"], "Body Wash", ["12 fl oz", "16 fl oz", "25.4 fl oz"]),
    "body_scrub": (["Bath & Body", "Exfoliators", "Body Scrubs"], "Body Scrub", ["8 oz", "10 oz"]),
    "body_lotion": (["Bath & Body", "Moisturizers", "Body Lotions"], "Body Lotion", ["8 fl oz", "13.5 fl oz", "16 fl oz"]),
    "hand_cream": (["Bath & Body", "Moisturizers", "Hand Creams"], "Hand Cream", ["1 oz", "2.5 oz", "3 pack"]),
    # Fragrance
    "parfum": (["Fragrance", "Women's", "Eau de Parfum"], "Eau de Parfum", ["1 fl oz", "1.7 fl oz", "3.4 fl oz"]),
    "body_mist": (["Fragrance", "Women's", "Body Mists"], "Body Mist", ["8 fl oz", "8.4 fl oz"]),
}
LEAF_KEYS = list(LEAVES)
FAMILY_LEAVES = {f: [k for k in LEAF_KEYS if LEAVES[k][0][0] == f] for f in FAMILIES}

# Routines: leaf -> {next leaf: weight}.  The within-family chains are the planted
# "complementary category transitions"; a few cross-family links join the routines.
ROUTINE: dict[str, dict[str, float]] = {
    "cleanser": {"toner": 1.0},
    "toner": {"serum": 1.0},
    "serum": {"moisturizer": 1.0, "eye_cream": 0.5},
    "eye_cream": {"moisturizer": 1.0},
    "moisturizer": {"sunscreen": 1.0, "face_mask": 0.5, "primer": 0.3},
    "face_mask": {"serum": 1.0},
    "sunscreen": {"primer": 0.6, "cleanser": 0.6},
    "primer": {"foundation": 1.0},
    "foundation": {"concealer": 1.0},
    "concealer": {"powder": 1.0},
    "powder": {"mascara": 1.0},
    "mascara": {"eyeliner": 1.0},
    "eyeliner": {"eyeshadow": 1.0},
    "eyeshadow": {"lipstick": 1.0},
    "lipstick": {"lip_balm": 1.0},
    "lip_balm": {"primer": 0.5, "lipstick": 0.5},
    "shampoo": {"conditioner": 1.0},
    "conditioner": {"hair_mask": 1.0},
    "hair_mask": {"hair_oil": 1.0},
    "hair_oil": {"styling_cream": 1.0},
    "styling_cream": {"shampoo": 0.7},
    "body_wash": {"body_scrub": 1.0},
    "body_scrub": {"body_lotion": 1.0},
    "body_lotion": {"hand_cream": 1.0},
    "hand_cream": {"body_wash": 0.5, "body_mist": 0.5},
    "parfum": {"body_mist": 1.0},
    "body_mist": {"parfum": 0.6, "body_lotion": 0.6},
}
# Order of a line's products along its routine (used to lay out a product line).
ROUTINE_ORDER = [
    "cleanser", "toner", "serum", "eye_cream", "moisturizer", "sunscreen", "face_mask",
    "primer", "foundation", "concealer", "powder", "mascara", "eyeliner", "eyeshadow",
    "lipstick", "lip_balm",
    "shampoo", "conditioner", "hair_mask", "hair_oil", "styling_cream",
    "body_wash", "body_scrub", "body_lotion", "hand_cream",
    "parfum", "body_mist",
]

BRANDS = [
    "Lumera", "Velisse", "Oriella", "Brisa & Bloom", "Kairo", "Norvelle", "Sable Lane",
    "Petalwise", "Dermaquill", "Hollis Grey", "Mirabeau Skin", "Tessaline", "Oakmere",
    "Solenne", "Veritane", "Cloverleigh", "Asterra", "Bellwyn", "Fennick & Co", "Gloamwell",
    "Ilsabet", "Juniva", "Kestra Labs", "Lunaria", "Marlowe Apothecary", "Nixora",
    "Opaline", "Pure Thistle", "Quillon", "Rosabel", "Saffra", "Tovani", "Umbra Beauty",
    "Valmora", "Wren & Willow", "Xylia", "Yarrowby", "Zephyrine", "Calloway Bare",
    "Dovetail Botanics",
]

SCENTS = ["fragrance-free", "rose", "lavender", "citrus", "vanilla", "coconut", "sandalwood", "green tea"]
SCENT_TITLE = {
    "fragrance-free": ["Pure", "Bare", "Clean", "Calm"], "rose": ["Rose"], "lavender": ["Lavender"],
    "citrus": ["Citrus", "Grapefruit", "Yuzu"], "vanilla": ["Vanilla"], "coconut": ["Coconut"],
    "sandalwood": ["Sandalwood"], "green tea": ["Green Tea", "Matcha"],
}
COLLECTION_WORDS = ["Ritual", "Glow", "Bloom", "Essentials", "Daily", "Rescue", "Luxe", "Reserve",
                    "Balance", "Signature", "Garden", "Cloud", "Silk", "Dew", "Botanics", "Lab"]
SKIN_TYPES = ["sensitive", "dry", "oily", "combination"]  # an item may also be "all"
PRICE_TIERS = ["budget", "mid", "premium", "luxury"]
FINISHES = {"Skin Care": ["matte", "dewy", "natural"], "Makeup": ["matte", "dewy", "satin", "natural"]}
BENEFITS = {
    "Skin Care": ["Hydrating", "Brightening", "Clarifying", "Soothing", "Firming", "Renewing"],
    "Makeup": ["Long-Wear", "Soft-Focus", "Weightless", "Radiant", "Velvet"],
    "Hair Care": ["Volumizing", "Smoothing", "Repairing", "Curl-Defining", "Strengthening"],
    "Bath & Body": ["Nourishing", "Softening", "Revitalizing", "Calming"],
    "Fragrance": ["Signature", "Soft", "Intense"],
}
TIER_PRICE = {"budget": (4.0, 12.0), "mid": (12.0, 28.0), "premium": (28.0, 60.0), "luxury": (60.0, 140.0)}

DRIVER_TYPES = ["brand", "skin_type", "family", "price_tier", "vegan", "scent"]
DRIVER_TYPE_WEIGHTS = [0.22, 0.20, 0.20, 0.16, 0.10, 0.12]

# Logit weights of the choice model.
W_POP = 0.55           # x item log-popularity
W_HOME = 1.4           # item in the user's current home family
W_DRIVER = {"brand": 2.2, "skin_type": 1.6, "family": 1.0, "price_tier": 1.5, "vegan": 1.5, "scent": 1.7}
W_IMPLICIT_TIER = 0.4  # everybody leans a little towards a price tier
W_ROUTINE = 1.6        # x routine weight(last leaf -> item leaf)
W_LINE = 2.4           # same product line as the last item
W_LINE_ROUTINE = 1.6   # same line AND next routine step
W_BRAND = 0.6          # same brand as the last item
W_FAMILY = 0.7         # same family as the last item
W_LINE2 = 0.7          # same line as the second-last item
NOISE = 0.07           # share of picks drawn by popularity alone

DAY = 86400
T0 = 1325376000        # 2012-01-01 00:00:00 UTC
T1 = 1419984000        # 2014-12-31 00:00:00 UTC
TIE_RATE = 0.035       # share of gaps of zero days (equal timestamps), never the last one


# ----------------------------------------------------------------------------------------
# Catalogue
# ----------------------------------------------------------------------------------------

def make_brands(rng: np.random.Generator) -> list[dict]:
    brands = []
    for name in BRANDS:
        fams = list(rng.choice(len(FAMILIES), size=2, replace=False, p=FAMILY_WEIGHTS))
        n_fam = 1 if rng.random() < 0.55 else 2
        brands.append({
            "name": name,
            "families": [FAMILIES[int(f)] for f in fams[:n_fam]],
            "tier": int(rng.choice(4, p=[0.3, 0.35, 0.23, 0.12])),
            "vegan_rate": float(rng.choice([0.05, 0.3, 0.95], p=[0.45, 0.35, 0.2])),
            "scent_bias": int(rng.integers(len(SCENTS))),
            "weight": float(rng.lognormal(0.0, 0.6)),
        })
    return brands


def make_catalogue(rng: np.random.Generator, n_items: int) -> tuple[list[dict], list[dict]]:
    brands = make_brands(rng)
    bw = np.array([b["weight"] for b in brands])
    bw = bw / bw.sum()
    items: list[dict] = []
    lines: list[dict] = []
    used_line_names: set[tuple[int, str]] = set()
    while len(items) < n_items:
        fam = FAMILIES[int(rng.choice(len(FAMILIES), p=FAMILY_WEIGHTS))]
        makers = np.array([fam in b["families"] for b in brands], dtype=np.float64) * bw
        if makers.sum() == 0.0:
            makers = bw
        b = int(rng.choice(len(brands), p=makers / makers.sum()))
        brand = brands[b]
        leaves = FAMILY_LEAVES[fam]
        size = int(min(len(leaves), 2 + rng.poisson(3.0)))
        chosen = set(int(i) for i in rng.choice(len(leaves), size=size, replace=False))
        line_leaves = [k for k in ROUTINE_ORDER if k in {leaves[i] for i in chosen}]
        # line-level attributes
        scent = brand["scent_bias"] if rng.random() < 0.5 else int(rng.integers(len(SCENTS)))
        if fam == "Fragrance" and scent == 0:
            scent = int(rng.integers(1, len(SCENTS)))
        skin = int(rng.integers(len(SKIN_TYPES) + 1))  # last index = "all"
        if fam in ("Hair Care", "Fragrance"):
            skin = len(SKIN_TYPES)
        if skin == 0 and fam != "Fragrance" and rng.random() < 0.6:
            scent = 0  # sensitive-skin lines are mostly fragrance-free
        tier = int(np.clip(brand["tier"] + rng.choice([-1, 0, 0, 0, 1]), 0, 3))
        vegan = bool(rng.random() < brand["vegan_rate"])
        cruelty_free = vegan or bool(rng.random() < 0.5)
        finish = str(rng.choice(FINISHES[fam])) if fam in FINISHES else None
        for _ in range(20):
            name = f"{rng.choice(SCENT_TITLE[SCENTS[scent]])} {rng.choice(COLLECTION_WORDS)}"
            if (b, name) not in used_line_names:
                break
        used_line_names.add((b, name))
        line_id = len(lines)
        line_q = float(rng.normal(0.0, 0.5))
        lines.append({"id": line_id, "brand": brand["name"], "name": name, "family": fam})
        for leaf in line_leaves:
            if len(items) >= n_items:
                break
            path, noun, sizes = LEAVES[leaf]
            benefit = str(rng.choice(BENEFITS[fam]))
            lo, hi = TIER_PRICE[PRICE_TIERS[tier]]
            price = round(float(rng.uniform(lo, hi))) - 0.01
            items.append({
                "idx": len(items), "leaf": leaf, "family": fam, "line": line_id, "line_name": name,
                "brand_idx": b, "brand": brand["name"], "scent": scent, "skin": skin, "tier": tier,
                "finish": finish, "vegan": vegan, "cruelty_free": cruelty_free, "benefit": benefit,
                "size": str(rng.choice(sizes)), "price": price,
                "logpop": float(np.log(brand["weight"]) + line_q + rng.normal(0.0, 0.7)),
                "path": path, "noun": noun,
            })
    return items, lines


def item_title(it: dict) -> str:
    return f"{it['brand']} {it['line_name']} {it['benefit']} {it['noun']}, {it['size']}"


def item_description(it: dict) -> str:
    scent = SCENTS[it["scent"]]
    noun = it["noun"].replace(" SPF 30", "").lower()
    art = "An" if it["benefit"][0] in "AEIOU" else "A"
    s1 = f"{art} {it['benefit'].lower()} {noun} from {it['brand']}'s {it['line_name']} collection"
    s1 += ", fragrance-free." if scent == "fragrance-free" else f", with a {scent} scent."
    bits = []
    if it["skin"] < len(SKIN_TYPES):
        bits.append(f"formulated for {SKIN_TYPES[it['skin']]} skin")
    elif it["family"] in ("Skin Care", "Makeup", "Bath & Body"):
        bits.append("suitable for all skin types")
    if it["finish"]:
        bits.append(f"{it['finish']} finish")
    if it["vegan"]:
        bits.append("vegan and cruelty-free")
    elif it["cruelty_free"]:
        bits.append("cruelty-free")
    if not bits:
        return s1
    return s1 + " " + (", ".join(bits)).capitalize() + "."


# ----------------------------------------------------------------------------------------
# Users
# ----------------------------------------------------------------------------------------

def make_users(rng: np.random.Generator, n_users: int, brands_in_use: list[int], brand_weight: np.ndarray,
               brand_family: dict[int, str]) -> list[dict]:
    users = []
    lengths = 5 + np.minimum(rng.geometric(1.0 / 5.0, size=n_users) - 1, 25)
    for u in range(n_users):
        k = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
        types = list(rng.choice(len(DRIVER_TYPES), size=k, replace=False, p=DRIVER_TYPE_WEIGHTS))
        types = sorted(int(t) for t in types)
        drivers = []
        for t in types:
            kind = DRIVER_TYPES[t]
            if kind == "brand":
                value = BRANDS[int(rng.choice(brands_in_use, p=brand_weight))]
            elif kind == "skin_type":
                value = SKIN_TYPES[int(rng.integers(len(SKIN_TYPES)))]
            elif kind == "family":
                value = FAMILIES[int(rng.choice(len(FAMILIES), p=FAMILY_WEIGHTS))]
            elif kind == "price_tier":
                value = PRICE_TIERS[int(rng.choice(4, p=[0.35, 0.35, 0.2, 0.1]))]
            elif kind == "vegan":
                value = True
            else:
                value = SCENTS[int(rng.integers(len(SCENTS)))]
            drivers.append({"type": kind, "value": value})
        dv = {d["type"]: d["value"] for d in drivers}
        if "family" in dv:
            home = dv["family"]
        elif "brand" in dv:
            home = brand_family[BRANDS.index(dv["brand"])]
        else:
            home = FAMILIES[int(rng.choice(len(FAMILIES), p=FAMILY_WEIGHTS))]
        implicit_tier = PRICE_TIERS.index(dv["price_tier"]) if "price_tier" in dv else int(rng.choice(4, p=[0.35, 0.35, 0.2, 0.1]))
        n = int(lengths[u])
        r = rng.random()
        at = int(rng.integers(2, n - 1)) if n > 4 else None
        if r < 0.4 or at is None:
            drift = {"type": "none"}
        elif r < 0.75:
            others = [f for f in FAMILIES if f != home]
            drift = {"type": "family_shift", "at": at, "to": others[int(rng.integers(len(others)))]}
        else:
            drift = {"type": "trade_up", "at": at}
            if implicit_tier == 3:
                drift = {"type": "none"}
        users.append({
            "id": f"SYN{u + 1:07d}", "drivers": drivers, "home_family": home,
            "implicit_tier": PRICE_TIERS[implicit_tier], "drift": drift, "length": n,
            "name": f"Synthetic Shopper {u + 1}" if rng.random() < 0.8 else None,
        })
    return users


# ----------------------------------------------------------------------------------------
# Choice model
# ----------------------------------------------------------------------------------------

class World:
    """Item attribute arrays and the item-to-item transition logits."""

    def __init__(self, items: list[dict]):
        self.items = items
        a = lambda key: np.array([it[key] for it in items])  # noqa: E731
        self.leaf = np.array([LEAF_KEYS.index(it["leaf"]) for it in items])
        self.family = np.array([FAMILIES.index(it["family"]) for it in items])
        self.line = a("line")
        self.brand = a("brand_idx")
        self.scent = a("scent")
        self.skin = a("skin")
        self.tier = a("tier")
        self.vegan = a("vegan").astype(bool)
        self.logpop = a("logpop").astype(np.float64)
        n_leaf = len(LEAF_KEYS)
        self.routine = np.zeros((n_leaf, n_leaf))
        for src, dst in ROUTINE.items():
            for d, w in dst.items():
                self.routine[LEAF_KEYS.index(src), LEAF_KEYS.index(d)] = w
        r = self.routine[self.leaf[:, None], self.leaf[None, :]]
        same_line = (self.line[:, None] == self.line[None, :])
        # trans_parts[i] = (routine, line, brand/family) contributions for next item j
        self.t_routine = W_ROUTINE * r + W_LINE_ROUTINE * r * same_line
        self.t_line = W_LINE * same_line
        self.t_other = (W_BRAND * (self.brand[:, None] == self.brand[None, :])
                        + W_FAMILY * (self.family[:, None] == self.family[None, :]))
        self.trans = self.t_routine + self.t_line + self.t_other
        np.fill_diagonal(self.trans, 0.0)
        self.line2 = W_LINE2 * same_line

    def driver_parts(self, drivers: list[dict]) -> dict[str, np.ndarray]:
        parts = {}
        for d in drivers:
            kind, v = d["type"], d["value"]
            w = W_DRIVER[kind]
            if kind == "brand":
                parts[kind] = w * (self.brand == BRANDS.index(v))
            elif kind == "skin_type":
                s = SKIN_TYPES.index(v)
                parts[kind] = w * ((self.skin == s) + 0.3 * (self.skin == len(SKIN_TYPES))
                                   - 0.6 * ((self.skin != s) & (self.skin < len(SKIN_TYPES))))
                if v == "sensitive":  # sensitive skin also likes fragrance-free
                    parts[kind] = parts[kind] + 0.5 * w * (self.scent == 0)
            elif kind == "family":
                parts[kind] = w * (self.family == FAMILIES.index(v))
            elif kind == "price_tier":
                t = PRICE_TIERS.index(v)
                parts[kind] = w * ((self.tier == t) + 0.3 * (np.abs(self.tier - t) == 1))
            elif kind == "vegan":
                parts[kind] = w * (2.0 * self.vegan - 1.0)  # +w if vegan, -w if not
            else:
                parts[kind] = w * (self.scent == SCENTS.index(v))
        return {k: np.asarray(p, dtype=np.float64) for k, p in parts.items()}

    def phase_parts(self, user: dict, after_drift: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Driver logits (per driver, drifted where the drift applies) and the rest of the base."""
        drivers = [dict(d) for d in user["drivers"]]
        home = user["home_family"]
        itier = PRICE_TIERS.index(user["implicit_tier"])
        drift = user["drift"]
        if after_drift and drift["type"] == "family_shift":
            home = drift["to"]
            drivers = [d for d in drivers if d["type"] != "family"] + (
                [{"type": "family", "value": drift["to"]}] if any(d["type"] == "family" for d in user["drivers"]) else [])
        if after_drift and drift["type"] == "trade_up":
            itier = min(itier + 1, 3)
            for d in drivers:
                if d["type"] == "price_tier":
                    d["value"] = PRICE_TIERS[min(PRICE_TIERS.index(d["value"]) + 1, 3)]
        parts = self.driver_parts(drivers)
        rest = (W_POP * self.logpop + W_HOME * (self.family == FAMILIES.index(home))
                + W_IMPLICIT_TIER * (self.tier == itier))
        return parts, rest


def sample_sequences(rng: np.random.Generator, world: World, users: list[dict]) -> list[list[int]]:
    n_items = len(world.items)
    pop_p = np.exp(world.logpop - world.logpop.max())
    pop_cdf = np.cumsum(pop_p)
    seqs = []
    for user in users:
        phases = []
        for after in (False, True):
            parts, rest = world.phase_parts(user, after)
            base = rest.copy()
            for p in parts.values():
                base += p
            phases.append(base)
        at = user["drift"].get("at", 10 ** 9)
        seen = np.zeros(n_items, dtype=bool)
        seq: list[int] = []
        for t in range(user["length"]):
            if rng.random() < NOISE:
                cdf = np.cumsum(np.where(seen, 0.0, pop_p))
            else:
                s = phases[1 if t >= at else 0].copy()
                if t >= 1:
                    s += world.trans[seq[-1]]
                if t >= 2:
                    s += world.line2[seq[-2]]
                s[seen] = -np.inf
                cdf = np.cumsum(np.exp(s - s.max()))
            j = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
            j = min(j, n_items - 1)
            while seen[j]:  # guard against float edge cases
                j = (j + 1) % n_items
            seen[j] = True
            seq.append(j)
        seqs.append(seq)
    del pop_cdf
    return seqs


def repair_item_counts(rng: np.random.Generator, world: World, users: list[dict], seqs: list[list[int]],
                       min_count: int = 5) -> int:
    """Give every item at least ``min_count`` interactions by swapping it in for a
    same-category item (that has more than ``min_count``) in a well-matching user's
    sequence.  Returns the number of swaps."""
    n_items = len(world.items)
    counts = np.bincount(np.concatenate([np.array(s) for s in seqs]), minlength=n_items)
    user_sets = [set(s) for s in seqs]
    bases = []
    for user in users:
        parts, rest = world.phase_parts(user, False)
        bases.append(sum(parts.values()) + W_HOME * (world.family == FAMILIES.index(user["home_family"])))
    bases = np.array(bases)  # users x items
    positions_by_leaf: dict[int, list[tuple[int, int]]] = {}
    for u, s in enumerate(seqs):
        for t, j in enumerate(s):
            positions_by_leaf.setdefault(int(world.leaf[j]), []).append((u, t))
    swaps = 0
    for j in np.argsort(counts, kind="stable"):
        j = int(j)
        if counts[j] >= min_count:
            break
        cands = positions_by_leaf.get(int(world.leaf[j]), [])
        order = np.argsort(-bases[[u for u, _ in cands], j] + 1e-3 * rng.random(len(cands)), kind="stable") if cands else []
        for c in order:
            if counts[j] >= min_count:
                break
            u, t = cands[int(c)]
            k = seqs[u][t]
            if counts[k] <= min_count or j in user_sets[u]:
                continue
            seqs[u][t] = j
            user_sets[u].discard(k)
            user_sets[u].add(j)
            counts[k] -= 1
            counts[j] += 1
            swaps += 1
    return swaps


# ----------------------------------------------------------------------------------------
# Ratings, reasons and review text
# ----------------------------------------------------------------------------------------

POS_SUMMARY = {
    "brand": ["{brand} never lets me down", "My go-to brand", "Another {brand} win"],
    "skin_type": ["Great for {skin} skin", "Finally, something for {skin} skin", "Works with my {skin} skin"],
    "sensitive_ff": ["Gentle and fragrance-free", "No irritation at all", "Kind to sensitive skin"],
    "family": ["Another {family} favourite", "Building my {family_lower} stash", "Solid {family_lower} pick"],
    "price_tier": {"budget": ["Great value", "Cheap and cheerful", "Does the job for less"],
                   "mid": ["Worth every penny", "Fair price, good quality", "Good value"],
                   "premium": ["Worth the splurge", "Treat yourself", "Pricey but worth it"],
                   "luxury": ["Pure luxury", "Worth the splurge", "Feels so luxurious"]},
    "vegan": ["Vegan and it works", "Cruelty-free win", "Happy to find it vegan"],
    "scent": ["Love the {scent} scent", "That {scent} scent!", "Smells amazing"],
    "scent_ff": ["No fragrance, perfect", "Love that it's unscented", "Fragrance-free at last"],
    "routine": ["Perfect next step", "Completes my routine", "Great with my {prev_noun_lower}"],
    "collection": ["Loving this collection", "The whole {line} line is great", "Another {line} keeper"],
    "popular": ["Lives up to the hype", "Five stars", "Glad I tried it", "Nice"],
}
POS_TEXT = {
    "brand": ["I always come back to {brand}; this {noun_lower} did not disappoint.",
              "{brand} is my favourite brand and this {noun_lower} shows why.",
              "Picked it because it's {brand}, and I'm glad I did."],
    "skin_type": ["Works really well for my {skin} skin.",
                  "As someone with {skin} skin I'm picky, but this {noun_lower} is great.",
                  "Made for {skin} skin and it shows."],
    "sensitive_ff": ["Love that it's fragrance-free, great for my sensitive skin.",
                     "My sensitive skin had no reaction at all, and there's no added fragrance.",
                     "Gentle enough for my sensitive skin."],
    "family": ["I'm really into {family_lower} lately and this is one of my best finds.",
               "Another great {family_lower} product for my collection.",
               "Adding this to my {family_lower} rotation."],
    "price_tier": {"budget": ["Great value for the price.", "Can't beat it for the money.",
                              "Affordable and it works as well as pricier ones."],
                   "mid": ["Good quality for a fair price.", "Worth what I paid.",
                           "Not cheap, not expensive, just good."],
                   "premium": ["Pricey but worth the splurge.", "You pay for quality here and it shows.",
                               "A bit of a treat, but worth it."],
                   "luxury": ["Expensive, but it feels like pure luxury.", "Worth the splurge.",
                              "A luxury I don't regret."]},
    "vegan": ["Happy it's vegan and cruelty-free, and it actually works.",
              "I only buy vegan products and this {noun_lower} is a keeper.",
              "Vegan, cruelty-free and effective."],
    "scent": ["Love the {scent} scent, my favourite.", "The {scent} scent is lovely and not overpowering.",
              "I buy anything {scent}-scented and this did not disappoint."],
    "scent_ff": ["I avoid fragrance and this one has none.", "Love that it's fragrance-free.",
                 "No scent at all, exactly what I wanted."],
    "routine": ["Bought this to go with the {prev_noun_lower} I got before, they work great together.",
                "The perfect step after my {prev_noun_lower}.",
                "Rounds out my routine after the {prev_noun_lower}."],
    "collection": ["I've been working through the {brand} {line} collection and this is another keeper.",
                   "Matches the rest of my {line} products perfectly.",
                   "Loved the last {line} product so I tried this one too."],
    "popular": ["Saw everyone talking about it and it's good.", "Does what it says.",
                "Nice {noun_lower}, would buy again.", "Pleasant surprise."],
}
MID_SUMMARY = ["It's okay", "Average", "Not bad, not great", "Decent"]
MID_TEXT = ["It's fine but nothing special.", "Does the job, I probably won't repurchase.",
            "Okay {noun_lower}, expected a bit more."]
NEG_SUMMARY = ["Not for me", "Disappointed", "Wouldn't buy again", "Returned it"]
NEG_TEXT = {
    "skin_mismatch": ["Didn't suit my {skin} skin at all.", "Not made for {skin} skin, it left mine irritated."],
    "not_vegan": ["Didn't realise it wasn't vegan, won't buy again.", "Not vegan, so not for me."],
    "scent": ["The {item_scent} scent was too strong for me.", "Couldn't get on with the {item_scent} smell."],
    "generic": ["Not worth it for me.", "Didn't do much for me.", "Expected more from this {noun_lower}."],
}


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def annotate(rng: np.random.Generator, world: World, users: list[dict], seqs: list[list[int]]) -> list[list[dict]]:
    """Per interaction: the reason (largest planted contribution), rating and review text."""
    out = []
    for user, seq in zip(users, seqs):
        at = user["drift"].get("at", 10 ** 9)
        phases = [world.phase_parts(user, False)[0], world.phase_parts(user, True)[0]]
        dv = {d["type"]: d["value"] for d in user["drivers"]}
        rows = []
        for t, j in enumerate(seq):
            it = world.items[j]
            parts = phases[1 if t >= at else 0]
            contrib = {k: float(p[j]) for k, p in parts.items()}
            if t >= 1:
                i = seq[t - 1]
                contrib["routine"] = float(world.t_routine[i, j]) if world.line[i] != world.line[j] else 0.0
                contrib["collection"] = float(world.t_line[i, j] + world.t_routine[i, j]) if world.line[i] == world.line[j] else 0.0
            positive = {k: v for k, v in contrib.items() if v > 0.5}
            reason = max(positive, key=lambda k: (positive[k], k)) if positive else "popular"
            matched = sum(1 for k in parts if contrib[k] > 0.5)
            violated = sum(1 for k in parts if contrib[k] < -0.1)
            mean = 3.8 + 0.45 * matched - 1.0 * violated + 0.35 * (reason in ("routine", "collection"))
            rating = int(np.clip(np.rint(mean + rng.normal(0.0, 0.85)), 1, 5))
            fmt = {
                "brand": it["brand"], "noun_lower": it["noun"].replace(" SPF 30", "").lower(),
                "skin": dv.get("skin_type", ""), "family": it["family"], "family_lower": it["family"].lower(),
                "scent": SCENTS[it["scent"]], "item_scent": SCENTS[it["scent"]], "line": it["line_name"],
                "prev_noun_lower": world.items[seq[t - 1]]["noun"].replace(" SPF 30", "").lower() if t else "",
            }
            key = reason
            if reason == "skin_type" and dv.get("skin_type") == "sensitive" and it["scent"] == 0:
                key = "sensitive_ff"
            if reason == "scent" and it["scent"] == 0:
                key = "scent_ff"
            if rating >= 4:
                if reason == "price_tier":
                    tier = PRICE_TIERS[it["tier"]]
                    summary = _pick(rng, POS_SUMMARY["price_tier"][tier])
                    text = _pick(rng, POS_TEXT["price_tier"][tier])
                else:
                    summary = _pick(rng, POS_SUMMARY[key])
                    text = _pick(rng, POS_TEXT[key])
            elif rating == 3:
                summary, text = _pick(rng, MID_SUMMARY), _pick(rng, MID_TEXT)
            else:
                summary = _pick(rng, NEG_SUMMARY)
                if "vegan" in contrib and contrib["vegan"] < 0:
                    text = _pick(rng, NEG_TEXT["not_vegan"])
                elif "skin_type" in contrib and contrib["skin_type"] < 0:
                    text = _pick(rng, NEG_TEXT["skin_mismatch"])
                elif it["scent"] != 0 and rng.random() < 0.3:
                    text = _pick(rng, NEG_TEXT["scent"])
                else:
                    text = _pick(rng, NEG_TEXT["generic"])
            rows.append({"reason": reason if rating >= 4 else ("negative" if rating <= 2 else "neutral"),
                         "driver_reason": reason, "rating": rating,
                         "summary": summary.format(**fmt), "text": text.format(**fmt)})
        out.append(rows)
    return out


def timestamps(rng: np.random.Generator, n: int) -> list[int]:
    gaps = 1 + rng.geometric(1.0 / 25.0, size=n - 1)
    zero = rng.random(n - 1) < TIE_RATE
    zero[-1] = False  # the last interaction is never tied, so the held-out item is unambiguous
    gaps = np.where(zero, 0, gaps)
    span_days = (T1 - T0) // DAY
    total = int(gaps.sum())
    if total > span_days:
        gaps = np.where(gaps > 0, np.maximum(1, gaps * span_days // total), 0)
        total = int(gaps.sum())
    start = int(rng.integers(0, max(1, span_days - total) + 1))
    days = start + np.concatenate([[0], np.cumsum(gaps)])
    return [int(T0 + d * DAY) for d in days]


# ----------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------

def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; use the usual file mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _gzip_lines(lines: list[str]) -> bytes:
    import io
    buf = io.BytesIO()
    # filename="" and mtime=0: no temp-file name or time in the header -> reproducible bytes
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        for line in lines:
            gz.write(line.encode("utf-8"))
            gz.write(b"\n")
    return buf.getvalue()


def five_core(user_items: list[tuple[str, str]], k: int = 5) -> int:
    """Iterative k-core on (user, item) pairs; returns the number of pairs kept."""
    pairs = list(user_items)
    while True:
        uc: dict[str, int] = {}
        ic: dict[str, int] = {}
        for u, i in pairs:
            uc[u] = uc.get(u, 0) + 1
            ic[i] = ic.get(i, 0) + 1
        kept = [(u, i) for u, i in pairs if uc[u] >= k and ic[i] >= k]
        if len(kept) == len(pairs):
            return len(kept)
        pairs = kept


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description="Generate the synthetic Amazon-style beauty data set.")
    ap.add_argument("--users", type=int, default=2000, help="number of users (default 2000)")
    ap.add_argument("--items", type=int, default=1500, help="catalogue size (default 1500)")
    ap.add_argument("--seed", type=int, default=20240601, help="random seed (default 20240601)")
    ap.add_argument("--out", type=Path, default=here, help="output folder (default: this folder)")
    args = ap.parse_args(argv)
    if args.users < 1 or args.items < 10:
        ap.error("need --users >= 1 and --items >= 10")
    t_start = time.perf_counter()

    rng_cat, rng_users, rng_seq, rng_fix, rng_text, rng_time = (
        np.random.default_rng(s) for s in np.random.SeedSequence(args.seed).spawn(6))
    items, lines = make_catalogue(rng_cat, args.items)
    world = World(items)
    brands_in_use = sorted({it["brand_idx"] for it in items})
    bw = np.array([sum(1 for it in items if it["brand_idx"] == b) for b in brands_in_use], dtype=float)
    brand_family: dict[int, str] = {}
    for b in brands_in_use:
        fams = [it["family"] for it in items if it["brand_idx"] == b]
        brand_family[b] = max(FAMILIES, key=lambda f: (fams.count(f), -FAMILIES.index(f)))
    users = make_users(rng_users, args.users, brands_in_use, bw / bw.sum(), brand_family)
    seqs = sample_sequences(rng_seq, world, users)
    n_before = np.bincount(np.concatenate([np.array(s) for s in seqs]), minlength=len(items))
    below_before = int((n_before < 5).sum())
    swaps = repair_item_counts(rng_fix, world, users, seqs)
    notes = annotate(rng_text, world, users, seqs)

    asin = [f"S{j:09d}" for j in range(len(items))]
    review_lines = []
    pairs = []
    ties = 0
    for user, seq, rows in zip(users, seqs, notes):
        ts = timestamps(rng_time, len(seq))
        ties += sum(1 for a, b in zip(ts, ts[1:]) if a == b)
        for j, t, row in zip(seq, ts, rows):
            rec = {"reviewerID": user["id"], "asin": asin[j]}
            if user["name"] is not None:
                rec["reviewerName"] = user["name"]
            rec.update({"overall": float(row["rating"]), "unixReviewTime": t,
                        "summary": row["summary"], "reviewText": row["text"]})
            review_lines.append(json.dumps(rec, ensure_ascii=False))
            pairs.append((user["id"], asin[j]))

    meta_lines = []
    for j, it in enumerate(items):
        meta_lines.append(json.dumps({
            "asin": asin[j], "title": item_title(it), "brand": it["brand"], "category": list(it["path"]),
            "description": [item_description(it)], "price": f"${it['price']:.2f}",
        }, ensure_ascii=False))

    truth_users = []
    for user, seq, rows in zip(users, seqs, notes):
        truth_users.append(json.dumps({
            "reviewerID": user["id"], "drivers": user["drivers"], "home_family": user["home_family"],
            "implicit_price_tier": user["implicit_tier"], "drift": user["drift"],
            "sequence": [asin[j] for j in seq], "why": [r["driver_reason"] for r in rows],
        }, ensure_ascii=False, separators=(",", ":")))
    truth_items = []
    for j, it in enumerate(items):
        truth_items.append(json.dumps({
            "asin": asin[j], "leaf": it["leaf"], "family": it["family"], "brand": it["brand"],
            "line": it["line"], "line_name": it["line_name"], "scent": SCENTS[it["scent"]],
            "skin_type": (SKIN_TYPES + ["all"])[it["skin"]], "price_tier": PRICE_TIERS[it["tier"]],
            "finish": it["finish"], "vegan": it["vegan"], "cruelty_free": it["cruelty_free"],
            "benefit": it["benefit"], "log_popularity": round(it["logpop"], 4),
        }, ensure_ascii=False, separators=(",", ":")))
    n_inter = len(review_lines)
    lengths = np.array([len(s) for s in seqs])
    counts = np.bincount(np.concatenate([np.array(s) for s in seqs]), minlength=len(items))
    kept = five_core(pairs)
    stats = {
        "users": len(users), "items": len(items), "interactions": n_inter,
        "mean_length": round(float(lengths.mean()), 3), "median_length": float(np.median(lengths)),
        "min_length": int(lengths.min()), "max_length": int(lengths.max()),
        "items_with_fewer_than_5_before_repair": below_before, "repair_swaps": swaps,
        "items_with_fewer_than_5": int((counts < 5).sum()), "min_item_count": int(counts.min()),
        "equal_timestamp_pairs": ties, "five_core_dropped_interactions": n_inter - kept,
        "rating_counts": {str(r): int(sum(1 for rows in notes for x in rows if x["rating"] == r)) for r in range(1, 6)},
    }
    header = json.dumps({
        "synthetic": True, "generator": "datasets/synthetic_amazon/generate.py",
        "args": {"users": args.users, "items": args.items, "seed": args.seed},
        "stats": stats,
        "driver_weights": W_DRIVER, "routine": ROUTINE,
    }, ensure_ascii=False, separators=(",", ":"))
    drivers_text = ("{\n\"about\":" + header + ",\n\"users\":[\n" + ",\n".join(truth_users)
                    + "\n],\n\"items\":[\n" + ",\n".join(truth_items) + "\n]\n}\n")

    out: Path = args.out
    files = {
        "reviews.json.gz": _gzip_lines(review_lines),
        "meta.json.gz": _gzip_lines(meta_lines),
        "drivers.json": drivers_text.encode("utf-8"),
    }
    for name, data in files.items():
        _atomic_write(out / name, data)
    elapsed = time.perf_counter() - t_start
    for name, data in files.items():
        print(f"{name:16s} {len(data):>9,d} bytes  sha256 {hashlib.sha256(data).hexdigest()}")
    print(json.dumps(stats, indent=1))
    print(f"generated in {elapsed:.2f} s -> {out}")
    if stats["items_with_fewer_than_5"]:
        print(f"warning: {stats['items_with_fewer_than_5']} items have fewer than 5 interactions "
              f"(too few users for {len(items)} items; a 5-core drops "
              f"{stats['five_core_dropped_interactions']} interactions)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
