"""Lyceum's training-job contract, shared by the gateway (producer) and the trainer (consumer): job kinds and
their validated configs, the queues, and submission that enqueues only after the job row is committed.
Imports no torch."""
