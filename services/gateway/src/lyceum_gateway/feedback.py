"""The gateway's side of feedback: a user's words about a recorded completion, stored durably for the adapter
that should learn from them, and handed to the per-adapter dispatcher (`lyceum_jobs.feedback`), which
coalesces pending items into one `sdpo` job at a time. Every method acts for one tenant (its first argument):
another tenant's completion, feedback or adapter is missing. Synchronous; knows nothing of HTTP."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as BrokerError
from pydantic import ValidationError
from sqlalchemy import Engine

from lyceum_core.errors import AlreadyExists, InvalidArgument, NotFound
from lyceum_core.identity import check_model_name
from lyceum_db.repositories.completions import CompletionRecord, CompletionRepository
from lyceum_db.repositories.feedback import (
    Dispatched,
    FeedbackRecord,
    FeedbackRepository,
    FeedbackState,
    NewFeedback,
    check_feedback_text,
)
from lyceum_db.repositories.jobs import JobRecord, JobRepository
from lyceum_db.repositories.registry import LATEST, ModelRecord, ModelRepository
from lyceum_gateway.schemas.common import MAX_PAGE_SIZE
from lyceum_jobs.configs import SDPOTrain
from lyceum_jobs.feedback import ADAPTER_KIND, Dispatcher, FeedbackPolicy, parent_version, training_overrides
from lyceum_jobs.queue import enqueue

log = logging.getLogger(__name__)

# The feedback text's rule (stripped, 1 to FEEDBACK_TEXT_MAX_LEN characters), defined by the repository.
check_text = check_feedback_text

# What a route returns for one item: the stored record (its state, job and, once applied, the version).
FeedbackView = FeedbackRecord


class FeedbackService:
    """Feedback operations for the routes (`/v1/feedback`, `/v1/adapters/{name}/distill`, the `/claas` mount).

    `submit` stores an item and offers its adapter to the dispatcher (a job starts once enough items are
    pending, or the oldest waited long enough); `distill` starts one now. The dispatcher settles items when
    their job ends (the trainer's end hook, else the reconciler's pass); a read that finds items training
    for a job that already ended settles them first (`settle_ended`), so an item never reads as training
    once its job reads as ended."""

    def __init__(
        self,
        feedback: FeedbackRepository,
        completions: CompletionRepository,
        models: ModelRepository,
        dispatcher: Dispatcher,
    ) -> None:
        self.feedback, self.completions, self.models = feedback, completions, models
        self.dispatcher = dispatcher

    @classmethod
    def create(cls, engine: Engine, celery: Celery, policy: FeedbackPolicy | None = None) -> FeedbackService:
        """The service over the platform's database, enqueuing the jobs it dispatches on `celery`."""

        def send(job: JobRecord) -> None:
            try:
                enqueue(celery, job.job_id, job.queue)  # after the dispatch committed
            except BrokerError as exc:
                # The job is queued in the table, which is the truth: the reconciler re-sends it.
                log.warning("broker unavailable; job %s waits for the reconciler: %s", job.job_id, exc)

        feedback, models = FeedbackRepository(engine), ModelRepository(engine)
        dispatcher = Dispatcher(feedback, JobRepository(engine), models, send, policy or FeedbackPolicy())
        return cls(feedback, CompletionRepository(engine), models, dispatcher)

    def submit(
        self,
        tenant: str,
        completion_id: str,
        text: str,
        *,
        adapter: str | None = None,
        training: Mapping[str, Any] | SDPOTrain | None = None,
        idempotency_key: str | None = None,
        offer: bool = True,
    ) -> FeedbackRecord:
        """Stores feedback `text` on the tenant's recorded completion for `adapter` (default: the adapter that
        produced the completion) and, with `offer`, lets the dispatcher start a job if one is due. Returns the
        item as it stands after that (pending, or training with its job).

        NotFound (field `completion_id`) for an unknown, purged or another tenant's completion, or (field
        `adapter`) an adapter the tenant does not see. InvalidArgument: empty text (field `feedback`), no
        adapter given and the completion had none, a public adapter (only the tenant's own adapters learn),
        a model that is no adapter, or an adapter over another base than the completion's model; a bad
        `training` names its field (`training.lr`, ...). A repeated `idempotency_key` of the tenant returns
        the first item (AlreadyExists if that was made from another request). `offer=False` only stores:
        the `/claas` mount stores a batch, then calls `distill` for exactly those items."""
        if idempotency_key is not None:
            existing = self.feedback.find_by_idempotency_key(tenant, idempotency_key)
            if existing is not None:
                # A retry of an accepted submission: the completion may be purged by now, the item is not.
                return _same_request(existing, completion_id, text, adapter, _training(training))
        cleaned = check_feedback_text(text)
        completion = self._completion(tenant, completion_id)
        name = self._adapter_name(tenant, completion, adapter)
        self.check_adapter(tenant, name, completion.model)
        rec = NewFeedback(tenant, completion.completion_id, name, cleaned, _training(training))
        record, created = self.feedback.create(rec, idempotency_key)
        if created and offer:
            self.dispatcher.offer(tenant, name)
            record = self.get(tenant, record.feedback_id)
        return record

    def get(self, tenant: str, feedback_id: str) -> FeedbackRecord:
        """The tenant's feedback item; NotFound (field `feedback_id`) otherwise (a malformed id too)."""
        record = self.feedback.get(tenant, feedback_id)
        if record is None:
            raise NotFound(f"feedback {feedback_id!r} not found", field="feedback_id")
        if self.settle_ended(tenant, [record]):
            record = self.feedback.get(tenant, feedback_id) or record
        return record

    def list(
        self,
        tenant: str,
        *,
        adapter: str | None = None,
        state: FeedbackState | None = None,
        limit: int = 50,
    ) -> builtins.list[FeedbackRecord]:
        """Up to `limit` of the tenant's items (of one adapter, in one state), newest first."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"limit must be 1 to {MAX_PAGE_SIZE}, got {limit}", field="limit")
        records = self.feedback.list(tenant, adapter=adapter, state=state, limit=limit)
        if self.settle_ended(tenant, records):
            records = self.feedback.list(tenant, adapter=adapter, state=state, limit=limit)
        return records

    def settle_ended(self, tenant: str, records: Sequence[FeedbackRecord]) -> bool:
        """Settles the batches of `records` still training for a job that already ended: the trainer's end
        hook runs just after the job's row is final (and the reconciler's pass catches a worker that died
        in between). Returns whether any moved, i.e. whether `records` are stale."""
        training = [r.job_id for r in records if r.state is FeedbackState.TRAINING and r.job_id]
        return self.dispatcher.settle_ended(tenant, training) > 0

    def distill(
        self,
        tenant: str,
        adapter: str,
        training: Mapping[str, Any] | SDPOTrain | None = None,
        *,
        feedback_ids: Sequence[str] | None = None,
        gate: Mapping[str, Any] | None = None,
    ) -> Dispatched:
        """Starts a distillation of the adapter's pending feedback now, whatever the batch policy says.

        Without `training`, the oldest pending item and those that asked for the same training settings are
        trained together (as the dispatcher would); with it, the pending items are trained with these
        settings whatever they asked for. `feedback_ids` restricts the job to those items (the `/claas`
        mount's batch); `gate` replaces the default quality gate's settings (GateSettings fields). NotFound
        (field `name`) unless the adapter is the tenant's own; FailedPrecondition
        while a job of the adapter runs; InvalidArgument when nothing is pending."""
        self._own_adapter(tenant, adapter, "name")
        overrides = None if training is None else _training(training)
        dispatched = self.dispatcher.force(
            tenant, adapter, training=overrides, feedback_ids=feedback_ids, gate=gate
        )
        if dispatched is None:
            raise InvalidArgument(f"adapter {adapter!r} has no pending feedback to distil", field="name")
        return dispatched

    def check_adapter(self, tenant: str, name: str, base: str) -> None:
        """The adapter feedback would train: the tenant's own adapter `name` whose version to be trained
        from (its `serving` alias, else `latest`) was made for the model `base` (`owner/name@version`)."""
        self._own_adapter(tenant, name, "adapter")
        parent = self.models.get(tenant, name, parent_version(self.models, tenant, name))
        made_for = parent.metadata.get("base") if parent is not None else None
        if made_for != base:
            raise InvalidArgument(
                f"adapter {name!r} was made for {made_for}, but the completion came from {base}",
                field="adapter",
            )

    def _completion(self, tenant: str, completion_id: str) -> CompletionRecord:
        completion = self.completions.get(tenant, completion_id)
        if completion is None:
            raise NotFound(f"completion {completion_id!r} not found", field="completion_id")
        return completion

    def _adapter_name(self, tenant: str, completion: CompletionRecord, adapter: str | None) -> str:
        """The adapter named, else the one that produced the completion (its key is `owner/name@version`)."""
        if adapter is not None:
            return check_model_name(adapter, field="adapter")
        if completion.adapter is None:
            raise InvalidArgument(
                f"completion {completion.completion_id!r} was made without an adapter: name the adapter "
                "that should learn from this feedback",
                field="adapter",
            )
        owner, _, rest = completion.adapter.partition("/")
        name = rest.rpartition("@")[0]
        if owner != tenant:
            raise InvalidArgument(
                f"completion {completion.completion_id!r} came from the platform's adapter {name!r}, which "
                "cannot learn: name one of your own adapters",
                field="adapter",
            )
        return name

    def _own_adapter(self, tenant: str, name: str, field: str) -> ModelRecord:
        """The latest version of the tenant's own adapter `name`: NotFound (naming `field`) if the tenant sees
        no model `name`; InvalidArgument if it is the platform's (public: it cannot learn) or no adapter."""
        check_model_name(name, field=field)
        try:
            record = self.models.resolve(tenant, name, LATEST)
        except NotFound:
            raise NotFound(f"adapter {name!r} not found", field=field) from None
        if record.tenant != tenant:
            raise InvalidArgument(
                f"adapter {name!r} is published by the platform: only your own adapters learn from feedback "
                "(create one over the same base)",
                field=field,
            )
        if record.kind != ADAPTER_KIND:
            raise InvalidArgument(f"{name!r} is a {record.kind!r} model, not an adapter", field=field)
        return record


def _same_request(
    existing: FeedbackRecord,
    completion_id: str,
    text: str,
    adapter: str | None,
    training: dict[str, Any],
) -> FeedbackRecord:
    """The item an idempotency key made, if this request is the same one; AlreadyExists otherwise."""
    same = (
        existing.completion_id == completion_id
        and existing.text == (text.strip() if isinstance(text, str) else text)
        and (adapter is None or existing.adapter == adapter)
        and existing.training == training
    )
    if not same:
        raise AlreadyExists(
            f"idempotency key {existing.idempotency_key!r} was used for different feedback",
            field="idempotency_key",
        )
    return existing


def _training(training: Mapping[str, Any] | SDPOTrain | None) -> dict[str, Any]:
    """The SDPO training overrides as stored (only values that differ from the defaults), validated;
    InvalidArgument naming the field (`training.lr`) otherwise."""
    if training is None:
        return {}
    if isinstance(training, SDPOTrain):
        return training_overrides(training)
    try:
        return training_overrides(SDPOTrain.model_validate(dict(training)))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in ("training", *err["loc"]))
        raise InvalidArgument(f"{where}: {err['msg']}", field=where) from None
