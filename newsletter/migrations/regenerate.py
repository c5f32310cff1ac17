"""Development helper: write the next migration from the difference between the models and the
schema the existing migrations build.

    python -m newsletter.migrations.regenerate "member web tables"

A scratch SQLite database is brought to the current head, compared with the models, and the
difference becomes `versions/NNNN_<slug>.py` (NNNN = the next number). Review the file before
committing it; `tests/test_db.py` fails while models and migrations disagree.
"""

import re
import sys
import tempfile
from pathlib import Path

from alembic import command

from newsletter.db import alembic_config, create_db_engine, upgrade

VERSIONS = Path(__file__).parent / "versions"


def main(message: str) -> Path:
    numbers = [int(p.name[:4]) for p in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py")]
    rev_id = f"{max(numbers, default=0) + 1:04d}"
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40] or "change"
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_db_engine(f"sqlite:///{tmp}/scratch.db")
        upgrade(engine)
        command.revision(alembic_config(engine), message=message, autogenerate=True, rev_id=rev_id)
        engine.dispose()
    written = next(VERSIONS.glob(f"{rev_id}_*.py"))
    target = VERSIONS / f"{rev_id}_{slug}.py"
    written.rename(target)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit('usage: python -m newsletter.migrations.regenerate "what changed"')
    print(f"wrote {main(sys.argv[1])}")
