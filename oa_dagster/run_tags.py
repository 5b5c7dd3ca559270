"""Every run tag the platform sets or reads, in one place (plain strings: no Dagster import).

Tags are how runs find each other: the set schedule tags its catalog run, the set sensor tags the layer runs it
launches, a layer run reads which catalog it was launched with, and the finish rule follows retry chains by the
tags Dagster's run-retry daemon writes. A tag spelled in two places drifts; the definitions snapshot test
(`tests/data/definitions_snapshot.json`) shows the tags each job carries.
"""

from __future__ import annotations

# --- ours ---------------------------------------------------------------------------------------------------------
SET_TAG = "oa/set"  # the set a run belongs to (`set-<YYYYMMDDTHHMM>`, or `launch-<storage id>`)
LAUNCH_TAG = "oa/launch"  # on a catalog run: which entries the set sensor launches afterwards
LAUNCH_ALL, LAUNCH_CHANGED = "all", "changed"  # its values; any other value (or none) launches nothing
LAUNCH_FULL = "full"  # ... every entry, processed in full: no output carried over as unchanged
REFRESH_TAG = "oa/refresh"  # on a set run: whether entries whose upstream did not change are carried over
REFRESH_INCREMENTAL, REFRESH_FULL = "incremental", "full"  # its values; without the tag every entry is processed
CATALOG_TAG = "oa/catalog"  # on a layer run: the id of the stored catalog its entries come from
CI_JOB_TAG = "oa/ci_job"  # on a CI job run: its job key (`pr-<number>-<sha7>`), also its partition key
CI_PR_TAG = "oa/ci_pr"  # on a CI job run of a pull request: its number (a newer head supersedes the run)
CI_PUSH_TAG = "oa/ci_push"  # on the production run a push to the default branch starts: the pushed commit
AFTER_SET_TAG = "oa/after_set"  # on a collections run: the set whose end requested it
SCHEDULE_TAG = "oa/collections_schedule"  # on a collections run: the scheduled time that requested it
AFTER_COLLECTIONS_TAG = "oa/after_collections"  # on a coverage run: the collections batch whose end requested it
ENTRIES_TAG = "oa/entries"  # on a set run: how many entries its partition range holds (shown in the Runs list)
BATCH_END_TAG = "oa/batch_end"  # on a set run whose batch spans carried-over entries: its last entry; Dagster's
# range then holds only the first, so creating the run writes no planned event for the carried ones between them
INSTANCE_LOST_TAG = "oa/instance_lost"  # "true": the run failed because the instance was unreachable; "retry":
# the retry of such a run, which set itself back to retrying crashes only

# --- Dagster's, with the values we give them ----------------------------------------------------------------------
RANGE_START_TAG = "dagster/asset_partition_range_start"  # one run, many partitions: the first of the range
RANGE_END_TAG = "dagster/asset_partition_range_end"  # ... and the last (dynamic partitions: insertion order)
PRIORITY_TAG = "dagster/priority"  # the queued run coordinator dequeues higher first
SET_PRIORITY = "-1"  # set runs yield to everything else
DOWNLOADS_PRIORITY = "-2"  # collections and coverage runs yield even to set runs (a rebuild can wait; a set waits on
# its entries, and the next set's runs must not queue behind a collections build)
CI_PRIORITY = "0"  # CI job runs (a pull request waits on them) go before set runs
OPERATOR_PRIORITY = "10"  # an operator's action (accepting a held run) goes first
MAX_RUNTIME_TAG = "dagster/max_runtime"  # seconds; enforced only with `run_monitoring` enabled
MAX_RETRIES_TAG = "dagster/max_retries"  # run retries of this run (the run-retry daemon)
RETRY_ON_FAILURE_TAG = "dagster/retry_on_asset_or_op_failure"  # "false": retry crashes only, not step failures
# Written by Dagster on a failed run when run retries are on (the instance's verdict), and by the run-retry daemon
# once it created the next attempt (dagster 1.13: dagster._core.storage.tags).
WILL_RETRY_TAG = "dagster/will_retry"
AUTO_RETRY_RUN_ID_TAG = "dagster/auto_retry_run_id"
# Not run tags, but Dagster's reserved names we write, kept here so no `dagster/` string is spelled elsewhere:
DATA_VERSION_TAG = "dagster/data_version"  # on a materialization: its data version (each entry's `entry_version`)
CODE_REFERENCES_KEY = "dagster/code_references"  # asset metadata: where the UI links to the asset's code
