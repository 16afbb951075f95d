"""Models: plain ``nn.Module``s, each with a dataclass config beside it, registered by name
in :data:`rankpref.registry.MODELS` (grouped by the task that trains them)."""

from rankpref.models import (pulse, sasrec, scorer, sesa, text_scorer,  # noqa: F401 (registers)
                             thought_space)
