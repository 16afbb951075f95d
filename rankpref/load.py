"""Open any rankpref artifact by what its manifest says it is.

    from rankpref.load import open_artifact

    rec = open_artifact("runs/demo-sasrec-ce")    # a Recommender
    art = open_artifact("runs/rank-demo")         # a RankArtifact
    index = open_artifact("runs/demo-index")      # an ItemIndex

This module sits above the tasks and serving (it imports them all, so their loaders are
registered); nothing inside rankpref imports it.
"""

from __future__ import annotations

from pathlib import Path

import rankpref.serving.index  # noqa: F401  (registers the index loader)
import rankpref.tasks.next_item  # noqa: F401  (registers next_item and thought_space)
import rankpref.tasks.rank  # noqa: F401
import rankpref.tasks.sesa  # noqa: F401
from rankpref.artifact import read_manifest
from rankpref.registry import ARTIFACTS


def open_artifact(path: str | Path):
    """Load the artifact at ``path`` (or the ``model`` folder of a run) with the loader of its
    kind; a folder from before manifests is recognised by its files."""
    folder, manifest = read_manifest(path)
    return ARTIFACTS.get(manifest.kind)(folder)
