"""What a caller asks the engine for: a context, queries, settings or a plan, where to save the
encoding. No torch, so that the CLI builds requests (and a torchrun job's launcher sends them)
without importing the model code."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from engine.context_store import StoreSpec
from engine.runplan import RunPlan
from engine.settings import RunSettings


@dataclass
class Request:
    """What to compute. ``context`` and each query are text or token ids; queries are answered one
    after another over one phase-1 encoding of the context. ``plan``, when given, is followed
    (after checking it fits); otherwise the engine makes it from ``settings``. ``saved``, when
    given, keeps phase 1's result on disk and reuses it (``engine.saved_context``)."""

    context: str | list[int]
    queries: list[str | list[int]]
    settings: RunSettings = field(default_factory=RunSettings)
    plan: RunPlan | None = None
    saved: StoreSpec | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "context": self.context,
                "queries": self.queries,
                "settings": self.settings.to_dict(),
                "plan": self.plan.to_dict() if self.plan else None,
                "saved": self.saved.to_dict() if self.saved else None,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Request:
        data = json.loads(text)
        plan = RunPlan.from_dict(data["plan"]) if data.get("plan") else None
        saved = StoreSpec.from_dict(data["saved"]) if data.get("saved") else None
        return cls(data["context"], data["queries"], RunSettings.from_dict(data["settings"]), plan, saved)
