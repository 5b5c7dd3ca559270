"""Set planning: how a set's entries are packed into runs, its progress, and when it is finished.

A run subprocess costs seconds of Dagster overhead (import, code location load, event writes), while many
sources process in under a second, so a set packs consecutive partitions into one run (a partition range):
entries that took long last time run alone, small ones are packed up to a time budget. Ranges follow the
dynamic partitions' insertion order, so a batch is a contiguous slice of that order.

With `slots` (runs of a set at once) above 1 the budget also shrinks so the set splits into whole rounds of
`slots` batches, a few rounds when there is enough work (`min_batch_seconds` per run): a set of small entries
packed into fewer runs than slots would leave slots idle, and a last round with one run would idle the others.
Two rounds when some entries' seconds are estimates (a slot that finishes early takes the next run), one when every
entry ran before (an incremental set's changed entries): each round costs every slot a run start.

An entry never run before has no seconds to pack by: the set's planning asks its upstream how big it is (an ArcGIS
layer's feature count, an HTTP `Content-Length`, an FTP `SIZE`: `platform/set_probing.py`) and `estimate_seconds`
turns that into seconds at a per-unit rate: learnt from this set's entries that have both a size and previous
seconds when there are enough of them (`learn_rates`), else a prior. Entries the planning carried over (upstream
unchanged, recorded in bulk) may lie inside a batch's range: the run skips them.

A set is finished when every requested run has ended *with its retries*: a crashed run is retried by the
instance's run-retry daemon, asynchronously, so a failed run that the instance will retry (or has not decided
about yet) keeps the set open (`chains_state`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from oa_dagster.run_tags import LAUNCH_CHANGED

DEFAULT_TARGET_SECONDS = 120.0  # work per run: overhead of a few seconds stays small against it
DEFAULT_MAX_ENTRIES = 200  # also bounds what one failure message lists and what a crash loses
DEFAULT_GUESS_SECONDS = 5.0  # an entry never run before (70% of entries are ArcGIS services: not tiny)
ENTRY_OVERHEAD_SECONDS = 0.1  # per entry besides download + conform: publish, materialization, checks
MIN_BATCH_SECONDS = 20.0  # balancing never makes a run smaller than this (a run takes seconds to start)
ROUNDS_PER_SLOT = 2  # balancing aims at this many runs per slot: batches are even, and each run costs its start
# ... when some entries' seconds are estimates (a size at a rate, or a guess): a second round lets a slot that
# finished early take the next run. Entries that all ran before are packed by their seconds: one round, one start.
KNOWN_ROUNDS_PER_SLOT = 1
# A backfill launched from the UI has no history to pack by: its runs take as many entries as a set's first runs,
# which pack entries never run before by the guess (`target / guess` = 24 entries, about 2 minutes of work).
BACKFILL_MAX_PARTITIONS = int(DEFAULT_TARGET_SECONDS // DEFAULT_GUESS_SECONDS)
MIN_RATE_SAMPLES = 3  # entries with both a size and previous seconds before their rate replaces the prior


@dataclass(frozen=True)
class Rate:
    """Seconds of an entry of one size unit: a fixed part (requests, conform's start, publishing) + per unit."""

    fixed: float
    per_unit: float

    def seconds(self, amount: int) -> float:
        return self.fixed + self.per_unit * amount


# Priors, before a set has learnt better: an ArcGIS page of 1,000-2,000 features takes 1-3 s to fetch and convert;
# a file downloads and converts at a few MB/s.
PRIOR_RATES: dict[str, Rate] = {"features": Rate(1.0, 0.002), "bytes": Rate(0.5, 1 / 2_000_000)}


def estimate_seconds(size: Mapping[str, Any] | None, rates: Mapping[str, Rate] = PRIOR_RATES) -> float | None:
    """An entry's expected seconds from its upstream's size (`{"unit": "features"|"bytes", "amount": n}`)."""
    if not size or size.get("unit") not in rates:
        return None
    return rates[size["unit"]].seconds(int(size.get("amount") or 0))


def learn_rates(samples: Iterable[tuple[str, int, float]], prior: Mapping[str, Rate] = PRIOR_RATES) -> dict[str, Rate]:
    """Per-unit rates from (unit, amount, seconds) of entries that ran: the prior's fixed part, the rest per unit."""
    totals: dict[str, list[float]] = {}
    for unit, amount, seconds in samples:
        if unit in prior and amount > 0 and seconds > 0:
            bucket = totals.setdefault(unit, [0.0, 0.0, 0])
            bucket[0] += max(0.0, seconds - prior[unit].fixed)
            bucket[1] += amount
            bucket[2] += 1
    rates = dict(prior)
    for unit, (extra, amount, count) in totals.items():
        if count >= MIN_RATE_SAMPLES:
            rates[unit] = Rate(prior[unit].fixed, extra / amount)
    return rates


def launched_entries(catalog: Mapping[str, Any], layer: str, launch: str) -> list[str]:
    """The entries of `layer` a launch runs (`oa/launch`): the changed ones, or all of them; never those the sources
    mark `skip: true` (they are no partitions either)."""
    entries = catalog["entries"].get(layer, {})
    if launch == LAUNCH_CHANGED:
        return [key for key in catalog.get("changed", {}).get(layer, []) if not entries.get(key, {}).get("skip")]
    return [key for key, info in entries.items() if not info.get("skip")]


@dataclass(frozen=True)
class Batch:
    keys: tuple[str, ...]

    @property
    def start(self) -> str:
        return self.keys[0]

    @property
    def end(self) -> str:
        return self.keys[-1]


def plan_batches(
    partition_keys: Iterable[str],
    selected: Iterable[str] | None = None,
    *,
    expected_seconds: Mapping[str, float] | None = None,
    target_seconds: float = DEFAULT_TARGET_SECONDS,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    guess_seconds: float = DEFAULT_GUESS_SECONDS,
    entry_overhead_seconds: float = 0.0,
    slots: int = 1,
    min_batch_seconds: float = MIN_BATCH_SECONDS,
    carried: Iterable[str] = (),
    known_seconds: bool = False,
) -> list[Batch]:
    """Contiguous batches of `partition_keys` (in their order) covering exactly the `selected` keys.

    `carried` keys (recorded by the set's planning, skipped by the runs) may lie inside a batch's range; its keys
    are the ones to process, so the range runs from the first to the last of them.

    An entry is expected to take its `expected_seconds` (else `guess_seconds`) plus `entry_overhead_seconds`.
    A batch breaks at an unselected key that is not carried (a range must not sweep in entries nobody asked for), at
    `max_entries`, and when adding the next entry would exceed the budget: `target_seconds`, lowered for
    `slots` > 1 to spread the set over whole rounds of `slots` runs, as long as a run keeps `min_batch_seconds` of
    work: up to `ROUNDS_PER_SLOT` rounds, or `KNOWN_ROUNDS_PER_SLOT` when `known_seconds` (every expected second is
    the entry's previous run's, none an estimate).
    """
    keys_ = list(partition_keys)
    chosen = None if selected is None else set(selected)
    swept = set(carried)
    expected = expected_seconds or {}

    def estimate(key: str) -> float:
        return float(expected.get(key) or guess_seconds) + entry_overhead_seconds

    def pack(limit: float) -> list[Batch]:
        """Greedy in order: a batch closes at `max_entries`, at the `limit` of seconds, or at a key it must not
        sweep in."""
        batches: list[Batch] = []
        current: list[str] = []
        budget = 0.0
        for key in keys_:
            if chosen is not None and key not in chosen:
                if key not in swept and current:
                    batches.append(Batch(tuple(current)))
                    current, budget = [], 0.0
                continue
            seconds = estimate(key)
            if current and (len(current) >= max_entries or budget + seconds > limit):
                batches.append(Batch(tuple(current)))
                current, budget = [], 0.0
            current.append(key)
            budget += seconds
        if current:
            batches.append(Batch(tuple(current)))
        return batches

    if slots <= 1:
        return pack(target_seconds)
    estimates = [estimate(k) for k in keys_ if chosen is None or k in chosen]
    total = sum(estimates)
    rounds = KNOWN_ROUNDS_PER_SLOT if known_seconds else ROUNDS_PER_SLOT
    wanted = min(slots * rounds, int(total // max(min_batch_seconds, 1e-9)))
    count = max(math.ceil(total / target_seconds), math.ceil(len(estimates) / max_entries), wanted, 1)
    count = math.ceil(count / slots) * slots  # whole rounds
    # + the largest entry: packing in order then needs at most `count` batches
    high = min(target_seconds, total / count + max(estimates, default=0.0))
    low = max(estimates, default=0.0)
    widest = pack(high)
    if len(widest) > count:  # breaks at keys not to sweep in, or `max_entries`: more batches whatever the limit
        return widest
    # the smallest limit that still packs into `count` batches: the longest batch, which a round waits for, is as
    # short as contiguous batches allow (a limit of total / count + the largest entry can leave one slot 20% longer)
    for _ in range(30):
        middle = (low + high) / 2
        if len(pack(middle)) <= count:
            high = middle
        else:
            low = middle
        if high - low < 0.01:
            break
    batches = pack(high)
    while batches and len(batches) < count:  # whole rounds: the longest batch split in two (no slot idles a round)
        seconds = [sum(estimate(k) for k in b.keys) if len(b.keys) > 1 else -1.0 for b in batches]
        longest = max(range(len(batches)), key=seconds.__getitem__)
        if seconds[longest] < 0:
            break
        keys = batches[longest].keys
        half, cut = 0.0, 1
        for cut in range(1, len(keys)):
            half += estimate(keys[cut - 1])
            if half >= seconds[longest] / 2:
                break
        batches[longest : longest + 1] = [Batch(keys[:cut]), Batch(keys[cut:])]
    return batches


@dataclass
class SetProgress:
    """A set as one unit: what the UI's `set_progress` asset and `sets/<id>/summary.json` show."""

    set_id: str
    catalog_id: str = ""
    started: float = 0.0
    total: dict[str, int] = field(default_factory=dict)  # per layer: the entries launched
    done: dict[str, int] = field(default_factory=dict)  # materialized (promoted or held)
    failed: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # `skip: true` in the catalog: not launched, not in total
    held: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)  # of `done`: carried over, upstream unchanged
    features: dict[str, int] = field(default_factory=dict)
    runs_requested: int = 0
    runs_finished: int = 0  # requested runs that ended with no retry to come (a retried run counts once)
    retries: int = 0  # runs launched again after a crash (automatic retries and re-executions)
    finished: float | None = None
    cursors: dict[str, int] = field(default_factory=dict)  # last storage id counted, per layer and kind
    start_id: int = 0  # storage id of the catalog materialization that started the set
    carry: int = 0  # entries the planning carried over, recorded by the sensor from the tick after the launch
    carry_written: int = 0  # of them, recorded so far

    def carry_pending(self) -> bool:
        return self.carry_written < self.carry

    def pending(self) -> int:
        return max(0, sum(self.total.values()) - sum(self.done.values()) - sum(self.failed.values()))

    def add(self, bucket: str, layer: str, n: int = 1) -> None:
        counts: dict[str, int] = getattr(self, bucket)
        counts[layer] = counts.get(layer, 0) + n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SetProgress:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def headline(self) -> str:
        state = "finished" if self.finished else "running"
        return (
            f"set {self.set_id} {state}: {sum(self.done.values()):,} done"
            + (f" ({sum(self.unchanged.values()):,} unchanged)" if any(self.unchanged.values()) else "")
            + f", {sum(self.failed.values()):,} "
            f"failed, {self.pending():,} pending of {sum(self.total.values()):,}; "
            f"{sum(self.features.values()):,} features"
        )


TERMINAL_STATUSES = ("SUCCESS", "FAILURE", "CANCELED")
WILL_RETRY_GRACE_SECONDS = 60.0  # how long a failed run may stay without the instance's retry verdict


@dataclass(frozen=True)
class RunState:
    """What the finish rule needs to know of one run of a set (plain values read from Dagster's run record)."""

    run_id: str
    root_run_id: str  # the first attempt's id (itself for a first attempt): one chain per requested run
    status: str  # a DagsterRunStatus name
    created: float
    ended: float | None = None
    will_retry: bool | None = None  # the instance's verdict on a failed run; None until it has decided
    retry_launched: bool = False  # the run-retry daemon created the next attempt


@dataclass(frozen=True)
class ChainsState:
    chains: int  # requested runs seen (each with its retries)
    ended: int  # chains whose last attempt ended with no retry to come
    retries: int  # attempts beyond the first


def _retry_pending(run: RunState, now: float, retries_enabled: bool, grace: float) -> bool:
    if run.status != "FAILURE" or not retries_enabled or run.retry_launched:
        return False  # a launched retry is the chain's next attempt (if it vanished, nothing more will come)
    if run.will_retry is not None:
        return run.will_retry
    # the verdict is tagged right after the failure is stored; give it a moment, not forever
    return run.ended is None or now - run.ended < grace


def chains_state(
    runs: Iterable[RunState],
    *,
    now: float,
    retries_enabled: bool = True,
    grace_seconds: float = WILL_RETRY_GRACE_SECONDS,
) -> ChainsState:
    """Group a set's runs into retry chains and say how many have ended for good.

    A chain has ended when its latest attempt is SUCCESS, CANCELED, or FAILURE that the instance will not
    retry (`dagster/will_retry=false`, or retries disabled). A failed run marked to be retried whose retry the
    daemon has not created yet, or one the instance has not judged yet, keeps its chain open.
    """
    chains: dict[str, list[RunState]] = {}
    for run in runs:
        chains.setdefault(run.root_run_id, []).append(run)
    ended = 0
    for attempts in chains.values():
        last = max(attempts, key=lambda r: r.created)
        if last.status in TERMINAL_STATUSES and not _retry_pending(last, now, retries_enabled, grace_seconds):
            ended += 1
    return ChainsState(chains=len(chains), ended=ended, retries=sum(len(a) - 1 for a in chains.values()))
