"""The results records from the command line: keep a run as a record, list the records, write the results tables,
and pair runs with records or other runs.

    python -m common.studies.results record runs/real/la16/20261207-0612 --benchmark la16 --name recipe_10min
    python -m common.studies.results list
    python -m common.studies.results tables            # rewrites docs/results.md and README.md's results block
    python -m common.studies.results pair runs/real/la16/20261208-0930 --against results/la16/recipe_10min
    python -m common.studies.results pair B_s42 B_s43 B_s44 --against A_s42 A_s43 A_s44   # per seed, then over seeds
    python -m common.studies.results intervals results/la16/recipe_10min   # percentile and BCa intervals

The tables are generated from the records alone: in ``docs/results.md`` (every record) and between the markers
``<!-- results:start -->`` and ``<!-- results:end -->`` of ``README.md`` (short: one row per record, the last row
of each standing comparison); no result number is typed by hand, and ``--check`` fails when a file is not what the
records give (as the tests do).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from common.errors import MedlitError, exit_on_error
from common.intervals import bca_intervals
from common.stats import BOOTSTRAP_RESAMPLES, bootstrap_intervals
from common.studies.against import pair_over_seeds
from common.studies.records import RECORD_FILE, Record, find_records, load_record, write_record
from common.studies.runs import RunResult, load_run
from common.studies.standing_pairs import standing_pairs_block, standing_pairs_summary, standing_results
from common.studies.wording import readable_comparisons
from common.text import fmt, format_interval, markdown_table

__all__ = ["README_MARKERS", "main", "readme_block", "results_page"]

README_MARKERS = ("<!-- results:start -->", "<!-- results:end -->")
"""Where the README's generated results table goes."""
_ROOT = Path("results")


def _cell(record: Record, metric: str) -> str:
    entry = record.info["metrics"].get(metric) or {}
    interval = entry.get("ci95")
    return format_interval(entry.get("value"), tuple(interval) if interval and None not in interval else None)


def _minutes(record: Record) -> str:
    wall = record.info.get("wall_time_s") or {}
    if not wall:
        return "n/a"
    total = sum(wall.values()) / 60
    parts = " + ".join(f"{wall[k] / 60:.1f}" for k in ("fit", "test") if k in wall)
    return f"{total:.1f} min ({parts})"


def _device(provenance: dict) -> str:
    """Where a record ran and in what precision: its wall-time budget means nothing without it."""
    where = provenance.get("device.cpu") if provenance.get("device.name") == "cpu" else None
    where = where or provenance.get("device.name", "?")
    return f"{where}, {provenance.get('device.precision', '?')}"


def _benchmark_table(records: list[Record], link_prefix: str = "", compact: bool = False) -> str:
    """One row per record: its headline metrics with their intervals, then (``compact``: only the wall time) what
    it was tested on, where, how long, how many steps, from which code and when."""
    report = records[0].run.report
    rows = {}
    for record in records:
        run = record.run
        row = {
            f"{report.metric_labels.get(m, m)}"
            + (f" ({run.unit(m)})" if run.unit(m) and not run.unit(m).startswith("fraction") else ""): _cell(record, m)
            for m in report.headline_metrics
        }
        link = f"[`{record.info['name']}`]({link_prefix}results/{record.label})"
        if compact:
            rows[link] = row | {"wall time": _minutes(record)}
            continue
        commit = str(record.info["provenance"].get("code.commit", "unknown"))[:9]
        dirty = record.info["provenance"].get("code.dirty")
        row |= {
            "test items": str(run.scored_items().size() if run.scored_items() is not None else "n/a"),
            "device": _device(record.info["provenance"]),
            "wall time": _minutes(record),
            "steps": str(record.info.get("steps") or "n/a"),
            "code": commit + (" (changed)" if dirty is True else ""),
            "recorded": str(record.info.get("recorded", ""))[:10],
        }
        rows[link] = row
    return markdown_table(pd.DataFrame.from_dict(rows, orient="index"), index="record")


def _by_benchmark(records: list[Record]) -> dict[str, list[Record]]:
    grouped: dict[str, list[Record]] = {}
    for record in records:
        grouped.setdefault(record.info["benchmark"], []).append(record)
    return grouped


def readme_block(records: list[Record], standing: str = "", page: str = "docs/results.md") -> str:
    """The README's results block, short: one table per benchmark (each record's headline metrics with their 95%
    intervals and its wall time; the rest of its row, its command and provenance on ``page``), then the standing
    comparisons (``standing``: :func:`common.studies.standing_pairs.standing_pairs_summary`)."""
    lines = [README_MARKERS[0], "<!-- generated by `python -m common.studies.results tables`: do not edit -->", ""]
    for benchmark, group in _by_benchmark(records).items():
        where = f"test items, device, steps, code and command: [{page}]({page}#{benchmark})"
        lines += [f"**{benchmark}** ({where})", "", _benchmark_table(group, compact=True)]
    lines += [standing] if standing else []
    return "\n".join(lines).rstrip() + "\n" + README_MARKERS[1]


def results_page(records: list[Record], standing: str = "") -> str:
    """``docs/results.md``: every record with its table row, command and provenance, then the standing comparisons."""
    lines = [
        "# Results",
        "",
        "Generated from the records in `results/` by `python -m common.studies.results tables`: do not edit. Each",
        "metric with its 95% interval (the run's own: percentile bootstrap over its test units); wall time = training",
        "+ testing on the machine the record names (device: a CPU's model, the features that set its speed and its",
        "cores; time-budgeted records compare only on the same device). Pair a new run with a record:",
        "`python -m common.studies.results pair <run_dir> --against results/<benchmark>/<name>`.",
        "",
    ]
    for benchmark, group in _by_benchmark(records).items():
        lines += [f"## {benchmark}", "", _benchmark_table(group, "../")]
        for record in group:
            prov, data = record.info["provenance"], record.info["data"]
            lines += [
                f"**{record.info['name']}**: {record.info.get('note') or ''}",
                "",
                f"* command: `{record.info['commands'][0]}`"
                + "".join(f"; resumed with `{c}`" for c in record.info["commands"][1:]),
                f"* code {prov.get('code.commit', 'unknown')} (changed files: {prov.get('code.dirty', 'unknown')}), "
                f"torch {prov.get('packages.torch', '?')}, lightning {prov.get('packages.lightning', '?')}, "
                f"device {prov.get('device.cpu') or prov.get('device.name', '?')} x {prov.get('device.count', '?')} "
                f"({prov.get('device.precision', '?')})",
                f"* data `{data.get('root_name')}`: "
                + ", ".join(f"{k.removeprefix('n_')} {v}" for k, v in data.items() if k.startswith("n_"))
                + f"; split {data.get('split_hash')}, test items {data.get('test_hash')}",
                f"* started {record.info.get('started')}, recorded {record.info.get('recorded')}",
                "",
            ]
    lines += ["## Standing comparisons", "", standing] if standing else []
    return "\n".join(lines).rstrip() + "\n"


def _write_or_check(path: Path, text: str, check: bool) -> bool:
    """Write ``text`` to ``path``; with ``check``, only say whether it already holds it."""
    if check:
        return path.is_file() and path.read_text() == text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def write_tables(root: Path, page: Path, readme: Path, check: bool = False) -> list[str]:
    """Write (or check) ``page`` and the README's block; the paths that differ from what the records give."""
    records = find_records(root)
    computed = standing_results(root, records)
    standing = standing_pairs_block(root, records, results=computed)
    stale = [] if _write_or_check(page, results_page(records, standing), check) else [str(page)]
    text = readme.read_text()
    start, end = (text.find(marker) for marker in README_MARKERS)
    if start < 0 or end < start:
        raise MedlitError(f"{readme}: no {README_MARKERS[0]} ... {README_MARKERS[1]} block for the results table")
    linked = page.relative_to(readme.parent).as_posix() if page.is_relative_to(readme.parent) else str(page)
    summary = standing_pairs_summary(computed, linked)
    updated = text[:start] + readme_block(records, summary, linked) + text[end + len(README_MARKERS[1]) :]
    if not _write_or_check(readme, updated, check):
        stale.append(str(readme))
    return stale


def _reference(path: Path) -> tuple[str, RunResult]:
    """A record folder (checked) or a run dir, with the name the comparison gives it."""
    if (path / RECORD_FILE).is_file():
        record = load_record(path)
        return record.label, record.run
    if not (path / "metrics.json").is_file():
        raise MedlitError(
            f"{path}: not a results record ({RECORD_FILE} missing) nor a tested run dir (no metrics.json)"
        )
    return str(path), load_run(path)


def _pair(args: argparse.Namespace) -> None:
    if len(args.run_dirs) != len(args.against):
        raise MedlitError(
            f"pair: {len(args.run_dirs)} run(s) and {len(args.against)} reference(s); give one reference per run, "
            "in the same (seed) order"
        )
    runs = [(str(path), load_run(path)) for path in args.run_dirs]
    pairs = list(zip(runs, [_reference(ref) for ref in args.against], strict=True))
    table = pair_over_seeds(pairs, args.resamples)
    run = pairs[0][0][1]
    against = ", ".join(label for _, (label, _) in pairs)
    print(
        f"{', '.join(name for (name, _), _ in pairs)} against {against} (B - A = run - reference, on "
        f"{run.scored_items().size()}):"
    )
    print(markdown_table(readable_comparisons(table, dict(run.report.metric_labels))), end="")
    if args.csv:
        table.to_csv(args.csv, index=False)


def _span(interval: list[float]) -> str:
    low, high = interval
    return f"{low:.3f}-{high:.3f}" if math.isfinite(low) and math.isfinite(high) else "n/a"


def _intervals(args: argparse.Namespace) -> None:
    """Each headline metric's 95% interval by the percentile bootstrap and by BCa, over the same resamples."""
    run = load_record(args.path).run if (args.path / RECORD_FILE).is_file() else load_run(args.path)
    items = run.scored_items()
    if items is None:
        raise MedlitError(f"{args.path}: keeps no per-item test scores; no interval can be computed")
    percentile = bootstrap_intervals(items, args.resamples, 0)
    bca = bca_intervals(items, args.resamples, 0)
    rows = {
        run.report.metric_labels.get(m, m): {
            "value": fmt(percentile[m]["value"]),
            "percentile": _span(percentile[m]["ci95"]),
            "BCa": _span(bca[m]["ci95"]),
            "bias z0": fmt(bca[m]["bias_z0"]),
            "acceleration": fmt(bca[m]["acceleration"], 4),
        }
        for m in run.report.headline_metrics
        if m in percentile
    }
    print(f"{args.path}: {items.size()}, {args.resamples} resamples of the {items.unit_name}s (seed 0)")
    print(markdown_table(pd.DataFrame.from_dict(rows, orient="index"), index="metric"), end="")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m common.studies.results", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser("record", help="keep a finished run dir (or a CV's ensemble dir) as a record")
    record.add_argument("run_dir", type=Path)
    record.add_argument("--benchmark", required=True, help="the dataset and protocol it is measured on (a folder name)")
    record.add_argument("--name", required=True, help="the record's name within the benchmark")
    record.add_argument("--note", default="", help="one sentence on what the record is")
    record.add_argument("--root", type=Path, default=_ROOT, help="the results folder (default: results)")
    commands.add_parser("list", help="the records, one line each").add_argument("--root", type=Path, default=_ROOT)
    tables = commands.add_parser("tables", help="write docs/results.md and README.md's results block")
    tables.add_argument("--root", type=Path, default=_ROOT)
    tables.add_argument("--page", type=Path, default=Path("docs/results.md"))
    tables.add_argument("--readme", type=Path, default=Path("README.md"))
    tables.add_argument("--check", action="store_true", help="only check that they are what the records give")
    pair = commands.add_parser(
        "pair", help="pair runs with records or run dirs on the same test items (several: per seed, then over seeds)"
    )
    pair.add_argument("run_dirs", type=Path, nargs="+", metavar="run_dir")
    pair.add_argument(
        "--against", type=Path, nargs="+", required=True, help="record folders (results/<benchmark>/<name>) or run dirs"
    )
    pair.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES)
    pair.add_argument("--csv", type=Path, default=None, help="also write the comparison rows here")
    intervals = commands.add_parser("intervals", help="percentile and BCa intervals of a record's or run's metrics")
    intervals.add_argument("path", type=Path, help="a record folder or a run dir")
    intervals.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES)
    args = parser.parse_args(argv)
    with exit_on_error():
        if args.command == "record":
            kept = write_record(
                args.run_dir, args.root / args.benchmark / args.name, args.benchmark, args.name, args.note
            )
            print(f"record: {kept.path}")
        elif args.command == "list":
            for found in find_records(args.root):
                metrics = ", ".join(f"{m} {_cell(found, m)}" for m in found.info["metrics"])
                print(f"{found.label}: {found.info['task']}, {metrics}; {_minutes(found)}")
        elif args.command == "tables":
            stale = write_tables(args.root, args.page, args.readme, args.check)
            if stale:
                raise MedlitError(
                    f"{', '.join(stale)}: not what the records give; run `python -m common.studies.results tables`"
                )
        elif args.command == "pair":
            _pair(args)
        else:
            _intervals(args)


if __name__ == "__main__":
    main()
