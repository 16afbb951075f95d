"""Artifacts: a folder of safetensors, JSON, YAML and parquet files with a manifest.

``manifest.json`` says what the folder is and what each file holds, as sentence-transformers'
``modules.json`` does::

    {"kind": "next_item", "format_version": 1, "model": "sasrec", "rankpref": "0.2.0",
     "files": {"model.safetensors": "weights", "config.yaml": "the resolved run config", ...}}

:func:`expect` reads the manifest and refuses another kind with a message naming the command
that takes it; :func:`rankpref.load.open_artifact` hands a folder to the loader registered for
its kind (``next_item``, ``rank``, ``sesa``, ``thought_space``, ``index``). A folder written before manifests existed gets one inferred from its files.

Writing goes through :func:`writer`: every file lands in a temporary folder that is fsynced and
renamed onto the final name, so a crash leaves the old artifact or the new one, never half.
Loading reads only safetensors, JSON, YAML (safe loader) and parquet: it never runs code.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from rankpref.errors import RankprefError
from rankpref.io import atomic_dir

MANIFEST = "manifest.json"
FORMAT_VERSION = 1

# what a folder without a manifest is, by the file only that kind writes
_LEGACY_MARKERS = (("network.json", "sesa"), ("features.json", "rank"),
                   ("vocab.json", "next_item"), ("thought_space.json", "thought_space"),
                   ("index.faiss", "index"))

COMMANDS = {"next_item": "rankpref fit", "rank": "rankpref rank fit",
            "sesa": "rankpref sesa fit", "thought_space": "rankpref rationales thought-space",
            "index": "rankpref index build"}
"""The command that writes each kind (named in errors)."""


class ArtifactError(RankprefError):
    """A folder that is not the artifact a command needs."""


@dataclass
class Manifest:
    kind: str
    format_version: int = FORMAT_VERSION
    model: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    rankpref: str | None = None
    inferred: bool = False  # True: a folder from before manifests, read by its files

    def to_json(self) -> dict:
        return {"kind": self.kind, "format_version": self.format_version, "model": self.model,
                "rankpref": self.rankpref, "files": self.files}


def _version() -> str:
    from rankpref import __version__

    return __version__


class Writer:
    """Files of an artifact being written (into a temporary folder); each call records what
    the file is for the manifest."""

    def __init__(self, folder: Path, kind: str, model: str | None):
        self.folder = folder
        self.manifest = Manifest(kind, model=model, rankpref=_version())

    def path(self, name: str, what: str) -> Path:
        self.manifest.files[name] = what
        return self.folder / name

    def weights(self, name: str, tensors: dict, what: str = "weights") -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                  str(self.path(name, what)), metadata={"format": "pt"})

    def json(self, name: str, obj: Any, what: str) -> None:
        self.path(name, what).write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")

    def text(self, name: str, text: str, what: str) -> None:
        self.path(name, what).write_text(text, encoding="utf-8")

    def parquet(self, name: str, frame, what: str) -> None:
        frame.write_parquet(self.path(name, what))


@contextmanager
def writer(folder: str | Path, kind: str, model: str | None = None) -> Iterator[Writer]:
    """``with writer(folder, "rank", "mlp") as w: w.weights(...)``: the artifact appears under
    ``folder`` only when the block ends without an error (an older one is replaced)."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        w = Writer(tmp, kind, model)
        yield w
        (tmp / MANIFEST).write_text(json.dumps(w.manifest.to_json(), indent=2) + "\n",
                                    encoding="utf-8")


def resolve(path: str | Path) -> Path:
    """The artifact folder itself, or the ``model`` folder of the run that holds it."""
    path = Path(path)
    for folder in (path, path / "model"):
        if (folder / MANIFEST).is_file() or any((folder / marker).is_file()
                                                for marker, _ in _LEGACY_MARKERS):
            return folder
    if not path.exists():
        raise ArtifactError(f"{path}: no such folder")
    raise ArtifactError(f"{path}: not a rankpref artifact (no {MANIFEST}); pass the folder a "
                        "fit command wrote (or its run folder)")


def read_manifest(path: str | Path) -> tuple[Path, Manifest]:
    folder = resolve(path)
    file = folder / MANIFEST
    if not file.is_file():
        for marker, kind in _LEGACY_MARKERS:
            if (folder / marker).is_file():
                return folder, Manifest(kind, format_version=0, inferred=True,
                                        files={p.name: "" for p in folder.iterdir()})
    try:
        obj = json.loads(file.read_text("utf-8"))
        manifest = Manifest(kind=str(obj["kind"]), format_version=int(obj["format_version"]),
                            model=obj.get("model"), files=dict(obj.get("files") or {}),
                            rankpref=obj.get("rankpref"))
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{file}: unreadable manifest ({type(exc).__name__}: "
                            f"{exc})") from None
    if manifest.format_version > FORMAT_VERSION:
        raise ArtifactError(f"{folder}: artifact format {manifest.format_version} is newer than "
                            f"this rankpref reads ({FORMAT_VERSION}); upgrade rankpref")
    missing = [name for name in manifest.files if not (folder / name).exists()]
    if missing:
        raise ArtifactError(f"{folder}: incomplete {manifest.kind} artifact, missing "
                            f"{', '.join(missing)}")
    return folder, manifest


def expect(path: str | Path, kind: str, command: str | None = None) -> tuple[Path, Manifest]:
    """The folder and manifest of ``path``, which must be a ``kind`` artifact; otherwise an
    error that says what it is and which command takes it."""
    folder, manifest = read_manifest(path)
    if manifest.kind != kind:
        takes = {"next_item": "rankpref evaluate / recommend / serve",
                 "rank": "rankpref rank evaluate / predict",
                 "sesa": "rankpref sesa evaluate / explain / search",
                 "thought_space": "pulse.thought_space or rationales refine",
                 "index": "rankpref index search / serve --index"}.get(manifest.kind, "")
        hint = f" (it goes to {takes})" if takes else ""
        raise ArtifactError(f"{folder}: a {manifest.kind} artifact{hint}, but "
                            f"{command or 'this command'} needs a {kind} artifact (written by "
                            f"`{COMMANDS.get(kind, kind)}`)")
    return folder, manifest
