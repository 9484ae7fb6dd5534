"""Lyceum's database layer: engines, SQLAlchemy models, repositories and packaged Alembic migrations.

Migration helpers live in `lyceum_db.migrate`, imported on demand so repository users skip Alembic.
"""

from lyceum_db.engine import create_engine
from lyceum_db.repositories import LearnerRecord, LearnerRepository

__all__ = ["LearnerRecord", "LearnerRepository", "create_engine"]
