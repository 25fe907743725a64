"""The whole schema: every table of the domain on one metadata.

The tables live in three modules on one Base: classroom/models.py (registers, lessons,
people, the library), classroom/timetable_models.py and classroom/statistics_models.py.
What must know every table (Alembic, the schema test, the 409 that names what still refers
to a row) reads METADATA from here, which loads all three.
"""

from __future__ import annotations

from classroom import statistics_models, timetable_models
from classroom.models import Base

METADATA = Base.metadata
TABLE_MODULES = (statistics_models, timetable_models)  # loaded for their tables
