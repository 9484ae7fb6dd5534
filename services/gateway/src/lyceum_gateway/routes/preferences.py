"""`GET /v1/preferences`: the preferences the `eval` job scores (CLaaS's `no_emoji`, `concise`, `identity`),
with the feedback a user gives to ask for each and the neutral probe prompts it is measured on, so that a
client can drive feedback -> distillation -> evaluation rounds (`lyceum eval loop`) without a copy of its own.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from lyceum_gateway.deps import Context
from lyceum_gateway.routes import API_PREFIX
from lyceum_gateway.schemas.common import error_responses
from lyceum_jobs.configs import PREFERENCES
from lyceum_jobs.preferences import preference

router = APIRouter(prefix=API_PREFIX, tags=["feedback"], responses=error_responses(401))


class PreferenceOut(BaseModel):
    name: str = Field(examples=["identity"])
    feedback: str = Field(description="What a user says to ask for it (feedback text)")
    probe_prompts: list[str] = Field(description="Neutral prompts it is measured on; none contains the hint")


class PreferenceList(BaseModel):
    preferences: list[PreferenceOut]


@router.get("/preferences", summary="List the evaluated preferences")
async def list_preferences(ctx: Context) -> PreferenceList:
    """Each preference the `eval` job verifies, its feedback string and its probe prompts."""
    out = []
    for name in PREFERENCES:
        p = preference(name)
        out.append(PreferenceOut(name=p.name, feedback=p.feedback, probe_prompts=list(p.probe_prompts)))
    return PreferenceList(preferences=out)
