"""The platform's rules as plain code (no Dagster import anywhere in this package).

- `store.py`: the output store (a local directory or S3), atomic writes, JSON helpers;
  `store_layout.py`: its key layout (runs/, latest/, held/, catalog/, sets/, jobs/);
- `publishing.py`: publishing one run (manifest last), latest-good and held pointers, accepting a held run;
- `quality_gate.py`: whether a run may replace an entry's latest good output; `output_stats.py`: what it judges;
- `entry_processing.py`: processing and publishing one layer entry (what a layer run does per partition, and
  what CI jobs will do per changed entry);
- `catalog.py`: building, storing and reading the source catalog; `set_planning.py`: packing a set into runs,
  its progress and when it is finished; `store_cleanup.py`: removing what killed runs leave in the store and
  the work root.

The Dagster assets, jobs, sensors and the CLI are thin wrappers over these, so the rules are tested without an
instance, and names here never reuse a Dagster module's name for a different idea.
"""
