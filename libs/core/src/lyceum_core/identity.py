"""Identity rules, defined once: what a tenant, subject, learner, session, model name, alias and `name@alias`
reference may look like. Every tier (REST schemas, gRPC servicers, repositories) imports these instead of
re-stating them, so they cannot drift apart."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from lyceum_core.errors import InvalidArgument

DEFAULT_TENANT = "default"  # owns everything when no API keys are configured; plain keys map to it
# The platform's base models (public: every tenant may read them) are published by the operator's own tenant,
# so a keyless install (everything `default`) trains, registers and promotes them like any other model.
PLATFORM_TENANT = DEFAULT_TENANT

TENANT_ID_MAX_LEN = 63
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
TENANT_ID_RULE = "1-63 characters of [a-z0-9_-], starting with a letter or digit"

SUBJECT_MAX_LEN = 128
SUBJECT_PATTERN = r"^[A-Za-z0-9._:@|+-]{1,128}$"
SUBJECT_RULE = "1-128 characters of [A-Za-z0-9._:@|+-]"

LEARNER_ID_MAX_LEN = 128
LEARNER_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"
LEARNER_ID_RULE = "1-128 characters of [A-Za-z0-9._:@-]"

SESSION_ID_MAX_LEN = 64
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
SESSION_ID_RULE = "1-64 characters of [A-Za-z0-9_-]"

MODEL_NAME_MAX_LEN = 128
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"
MODEL_NAME_RULE = "1-128 characters of [a-z0-9._-], starting with a letter or digit"

ALIAS_MAX_LEN = 64
ALIAS_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
ALIAS_RULE = "1-64 characters of [A-Za-z0-9._-] (all digits reads as a version number)"

MODEL_REF_PATTERN = r"^(?P<name>[a-z0-9][a-z0-9._-]{0,127})@(?P<ref>[A-Za-z0-9._-]{1,64})$"
MODEL_REF_RULE = "name@alias or name@version, e.g. dfm-demo@production"

COMPLETION_ID_PREFIX = "cmpl-"
COMPLETION_ID_LEN = len(COMPLETION_ID_PREFIX) + 32  # cmpl- and 32 hex digits
COMPLETION_ID_PATTERN = r"^cmpl-[0-9a-f]{32}$"
COMPLETION_ID_RULE = "cmpl- followed by 32 lowercase hex digits"

DATASET_ID_PREFIX = "ds-"
DATASET_ID_LEN = len(DATASET_ID_PREFIX) + 32  # ds- and 32 hex digits
DATASET_ID_PATTERN = r"^ds-[0-9a-f]{32}$"
DATASET_ID_RULE = "ds- followed by 32 lowercase hex digits"

FEEDBACK_ID_PREFIX = "fb-"
FEEDBACK_ID_LEN = len(FEEDBACK_ID_PREFIX) + 32  # fb- and 32 hex digits
FEEDBACK_ID_PATTERN = r"^fb-[0-9a-f]{32}$"
FEEDBACK_ID_RULE = "fb- followed by 32 lowercase hex digits"

# The alias an adapter is served under when a request names it without a version (`model: "kuro"`): feedback
# distillation moves it to a new version only when the version passes its quality gate. An adapter without it
# is served at `latest`.
SERVING_ALIAS = "serving"

REQUEST_ID_MAX_LEN = 64
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"

_TENANT = re.compile(TENANT_ID_PATTERN)
_SUBJECT = re.compile(SUBJECT_PATTERN)
_LEARNER = re.compile(LEARNER_ID_PATTERN)
_SESSION = re.compile(SESSION_ID_PATTERN)
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)
_MODEL_REF = re.compile(MODEL_REF_PATTERN)
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
_COMPLETION_ID = re.compile(COMPLETION_ID_PATTERN)
_DATASET_ID = re.compile(DATASET_ID_PATTERN)
_FEEDBACK_ID = re.compile(FEEDBACK_ID_PATTERN)


def _check(value: object, pattern: re.Pattern[str], rule: str, field: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 80 else f"{str(value)[:80]}..."
        raise InvalidArgument(f"{field} {shown!r} is invalid: {rule}", field=field)
    return value


def check_tenant_id(value: object, field: str = "tenant") -> str:
    return _check(value, _TENANT, TENANT_ID_RULE, field)


def check_subject(value: object, field: str = "subject") -> str:
    return _check(value, _SUBJECT, SUBJECT_RULE, field)


def check_learner_id(value: object, field: str = "learner_id") -> str:
    return _check(value, _LEARNER, LEARNER_ID_RULE, field)


def check_session_id(value: object, field: str = "session_id") -> str:
    return _check(value, _SESSION, SESSION_ID_RULE, field)


def check_model_name(value: object, field: str = "name") -> str:
    return _check(value, _MODEL_NAME, MODEL_NAME_RULE, field)


def check_alias(value: object, field: str = "alias") -> str:
    alias = _check(value, _ALIAS, ALIAS_RULE, field)
    if alias.isdecimal():
        raise InvalidArgument(f"{field} {alias!r} would read as a version number", field=field)
    return alias


def new_completion_id() -> str:
    """A fresh id for a recorded completion."""
    return COMPLETION_ID_PREFIX + uuid.uuid4().hex


def check_completion_id(value: object, field: str = "completion_id") -> str:
    return _check(value, _COMPLETION_ID, COMPLETION_ID_RULE, field)


def new_dataset_id() -> str:
    """A fresh id for an uploaded dataset."""
    return DATASET_ID_PREFIX + uuid.uuid4().hex


def check_dataset_id(value: object, field: str = "dataset_id") -> str:
    return _check(value, _DATASET_ID, DATASET_ID_RULE, field)


def new_feedback_id() -> str:
    """A fresh id for a feedback item."""
    return FEEDBACK_ID_PREFIX + uuid.uuid4().hex


def check_feedback_id(value: object, field: str = "feedback_id") -> str:
    return _check(value, _FEEDBACK_ID, FEEDBACK_ID_RULE, field)


def is_request_id(value: str) -> bool:
    """A client-supplied request id is kept only if it is short and plain (it ends up in logs)."""
    return bool(_REQUEST_ID.fullmatch(value))


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A registry reference: `name@alias` or `name@version`."""

    name: str
    ref: str  # an alias, or a version number

    @classmethod
    def parse(cls, text: str, field: str = "model") -> ModelRef:
        match = _MODEL_REF.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidArgument(f"model reference {text!r} is invalid: {MODEL_REF_RULE}", field=field)
        return cls(match["name"], match["ref"])

    @property
    def version(self) -> int | None:
        """The version number when the reference names one, else None (an alias)."""
        return int(self.ref) if self.ref.isdecimal() else None

    def __str__(self) -> str:
        return f"{self.name}@{self.ref}"


def model_key(owner: str, name: str, version: int) -> str:
    """One registry version, pinned: `owner/name@version` (`acme/story-lm@3`): the sampler's pool key, and
    what an adapter's metadata names as its `base`."""
    return f"{owner}/{name}@{version}"
