"""Lyceum's trainer: Celery workers that run training jobs in resumable slices, tracked in the job table."""
