"""The standing paired comparisons between records: which records the results tables pair, read from
``results/comparisons.yaml``, and their table, computed from the records' per-item files each time the tables are
written, so that no difference or interval is typed by hand.

    # results/comparisons.yaml
    - title: HAM10000, the recipe minus the plain loop at 10 minutes, split seed 42
      runs: [ham10000/recipe_10min_bf16_s42, ham10000/recipe_10min_bf16_s43]      # B, one per seed
      against: [ham10000/plain_loop_10min_bf16_s42, ham10000/plain_loop_10min_bf16_s43]   # A, in the same order
      metrics: [accuracy, balanced_accuracy]   # optional: the benchmark's headline metrics

Each pair is compared on its test items (:func:`common.studies.against.pair_over_seeds`: paired bootstrap over the
test units, the minimum detectable difference, and with two pairs or more a paired t over them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from common.errors import MedlitError
from common.studies.against import pair_over_seeds
from common.studies.paired import BOOTSTRAP_TEST, SEEDS_TEST
from common.studies.records import Record
from common.text import markdown_table, signed_interval

__all__ = [
    "COMPARISONS_FILE",
    "StandingPair",
    "StandingResult",
    "read_standing_pairs",
    "standing_pairs_block",
    "standing_pairs_summary",
    "standing_results",
]

COMPARISONS_FILE = "comparisons.yaml"
"""The standing comparisons, in the results folder."""
_KEYS = ("title", "runs", "against", "metrics")


@dataclass(frozen=True)
class StandingPair:
    """One entry of ``comparisons.yaml``: records ``runs`` (B) paired with records ``against`` (A), seed by seed."""

    title: str
    runs: list[str]
    against: list[str]
    metrics: list[str] | None = None


def _names(path: Path, k: int, entry: dict, key: str) -> list[str]:
    value = entry.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise MedlitError(f"{path}: entry {k + 1} ({key}): a list of record names (<benchmark>/<name>) is needed")
    return value


def read_standing_pairs(root: Path) -> list[StandingPair]:
    """The entries of ``root/comparisons.yaml`` (none when the file is absent); one line naming the file, the entry
    and the key when an entry is malformed."""
    path = root / COMPARISONS_FILE
    if not path.is_file():
        return []
    try:
        entries = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError as err:
        raise MedlitError(f"{path}: not YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(entries, list):
        raise MedlitError(f"{path}: a list of comparisons (title, runs, against, metrics) is needed")
    pairs = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("title"), str):
            raise MedlitError(f"{path}: entry {k + 1}: a mapping with a title is needed")
        unknown = sorted(set(entry) - set(_KEYS))
        if unknown:
            raise MedlitError(f"{path}: entry {k + 1}: unknown key {unknown[0]!r} (keys: {', '.join(_KEYS)})")
        runs, against = _names(path, k, entry, "runs"), _names(path, k, entry, "against")
        if len(runs) != len(against):
            raise MedlitError(f"{path}: entry {k + 1}: {len(runs)} runs but {len(against)} against; one per seed")
        metrics = _names(path, k, entry, "metrics") if "metrics" in entry else None
        pairs.append(StandingPair(entry["title"], runs, against, metrics))
    return pairs


def _record(path: Path, k: int, label: str, records: dict[str, Record]) -> Record:
    if label not in records:
        raise MedlitError(f"{path}: entry {k + 1}: no record {label} in {path.parent}")
    return records[label]


def _cell(row: pd.Series) -> str:
    text = signed_interval(row["delta"], row["ci_low"], row["ci_high"])
    return text + (f" [±{row['mdd']:.3f}]" if np.isfinite(row["mdd"]) else "")


@dataclass(frozen=True)
class StandingResult:
    """One standing comparison computed: its title and its rows (a pair of records each, then the seeds), one
    column per metric label, each cell ``B - A (95% interval) [detectable]``."""

    title: str
    rows: pd.DataFrame


def _pair_rows(pair: StandingPair, runs: list[Record], against: list[Record], n_resamples: int) -> pd.DataFrame:
    table = pair_over_seeds(
        [((b.label, b.run), (a.label, a.run)) for b, a in zip(runs, against, strict=True)], n_resamples
    )
    report = runs[0].run.report
    metrics = pair.metrics or list(report.headline_metrics)
    rows = {}
    for b, a in zip(runs, against, strict=True):
        chosen = table[(table["run_b"] == b.label) & (table["run_a"] == a.label) & (table["test"] == BOOTSTRAP_TEST)]
        rows[f"`{b.info['name']}` - `{a.info['name']}`"] = chosen.set_index("metric")
    if len(runs) >= 2:
        rows[f"over the {len(runs)} seeds (paired t)"] = table[table["test"] == SEEDS_TEST].set_index("metric")
    cells = {
        name: {report.metric_labels.get(m, m): _cell(frame.loc[m]) if m in frame.index else "n/a" for m in metrics}
        for name, frame in rows.items()
    }
    return pd.DataFrame.from_dict(cells, orient="index")


def standing_results(root: Path, records: list[Record], n_resamples: int = 2000) -> list[StandingResult]:
    """Every standing comparison of ``root/comparisons.yaml`` computed from the records' per-item files."""
    path = root / COMPARISONS_FILE
    by_label = {record.label: record for record in records}
    results = []
    for k, pair in enumerate(read_standing_pairs(root)):
        runs = [_record(path, k, label, by_label) for label in pair.runs]
        against = [_record(path, k, label, by_label) for label in pair.against]
        results.append(StandingResult(pair.title, _pair_rows(pair, runs, against, n_resamples)))
    return results


def standing_pairs_block(
    root: Path, records: list[Record], n_resamples: int = 2000, results: list[StandingResult] | None = None
) -> str:
    """The markdown of every standing comparison (empty without ``comparisons.yaml``): per entry, a title and one
    row per pair of records and one over the seeds, each metric as ``B - A (95% interval) [detectable]``
    (``results``: already computed by :func:`standing_results`)."""
    results = standing_results(root, records, n_resamples) if results is None else results
    if not results:
        return ""
    lines = []
    for result in results:
        lines += [f"*{result.title}*", "", markdown_table(result.rows, index="B - A")]
    intro = (
        f"**Standing comparisons** (`{root.name}/{COMPARISONS_FILE}`): B - A on the same test items, paired "
        "bootstrap over the test units with its 95% interval and, in brackets, the difference these items detect "
        "with 80% power; over the seeds a paired t-interval. A difference whose interval holds zero is not a "
        "difference these data show."
    )
    return "\n".join([intro, "", *lines]).rstrip() + "\n"


def standing_pairs_summary(results: list[StandingResult], page: str) -> str:
    """The README's short form: per comparison its last row (over the seeds, or its one pair of records), one line
    each; every row is on ``page``."""
    if not results:
        return ""
    lines = [
        f"**Standing comparisons**: B - A on the same test items, with the 95% interval (over the seeds: paired t; "
        f"one pair: paired bootstrap over the test units, and in brackets the difference they detect with 80% "
        f"power); seed by seed in [{page}]({page}#standing-comparisons). A difference whose interval holds zero is "
        "not a difference these data show.",
        "",
    ]
    for result in results:
        last = result.rows.iloc[-1]
        cells = "; ".join(f"{label} {cell}" for label, cell in last.items())
        lines.append(f"- *{result.title}*; {result.rows.index[-1].replace(' (paired t)', ', paired t')}: {cells}")
    return "\n".join(lines) + "\n"
