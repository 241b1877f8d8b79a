#!/usr/bin/env python3
"""Stage 6 of the detector recipe: the stage-4 detections of the long files -> a report per file
(detections and merged spans as HH:MM:SS, counts per hour; sed.infer.report) and, when the
manifests hold the long files' answer key, how many detections hit a call and how many calls
were found.

Usage (from the repository root)::

    python egs/detector/local/report.py --detections exp/.../infer/best/events_test/detections.csv \
        --manifests data/detector/owls_5fold --outdir exp/.../infer/best/report

Writes ``<outdir>/<recording>.txt``, ``report.json``, ``summary.csv`` and, with an answer key,
``truth.json``, per label: ``precision`` (merged spans overlapping a true call / merged spans),
``recall`` (true calls overlapped by a merged span / true calls) and ``segment_1s`` (sed_eval's
segment-based precision, recall and F1 in 1 s segments, which long spans cannot flatter).
Prints each report.
Exit status: 0 on success, 2 on a bad input table (the message names it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sed.data.corpus import Corpus
from sed.data.manifest import ManifestError
from sed.fileio import atomic_open
from sed.infer.report import DEFAULT_GAP, read_detections_csv, summary_text, write_reports
from sed.metrics.events import ground_truth_from_events


def get_parser() -> argparse.ArgumentParser:
    """Command-line options of the long-file reports."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--detections", required=True, help="stage 4's events_test/detections.csv")
    p.add_argument("--manifests", required=True, help="the stage-0 manifests (recordings.csv ...)")
    p.add_argument("--outdir", required=True, help="report folder to write")
    p.add_argument("--gap", type=float, default=DEFAULT_GAP, help="merge gap in seconds")
    return p


def _overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def hit_rates(
    spans: Sequence[tuple[float, float]], calls: Sequence[tuple[float, float]]
) -> dict[str, int]:
    """The matching counts of one label in ONE file (``(onset, offset)`` lists): a span counts
    when it overlaps a call, a call when a span overlaps it.

    Returns:
        ``{"spans", "spans_on_a_call", "calls", "calls_found"}``.
    """
    return {
        "spans": len(spans),
        "spans_on_a_call": sum(any(_overlaps(s, c) for c in calls) for s in spans),
        "calls": len(calls),
        "calls_found": sum(any(_overlaps(c, s) for s in spans) for c in calls),
    }


def truth_scores(
    summaries: Sequence[Mapping[str, Any]], truth: Mapping[str, Mapping[str, list]]
) -> dict[str, Any]:
    """Precision and recall of the merged spans against the answer key, per label.

    Args:
        summaries: :func:`sed.infer.report.write_reports`'s per-file dicts.
        truth: ``{recording id: {label: [(onset, offset), ...]}}``; a file not in it holds no
            call (stage 0's answer key lists every call of the long files).
    """
    totals: dict[str, dict[str, int]] = {}
    for s in summaries:
        calls_of = truth.get(s["file"], {})
        labels = set(calls_of) | set(s["labels"])
        for label in sorted(labels):
            info = s["labels"].get(label, {"merged": []})
            spans = [(float(on), float(off)) for on, off, *_ in info["merged"]]
            counts = hit_rates(spans, calls_of.get(label, []))
            t = totals.setdefault(label, dict.fromkeys(counts, 0))
            for k, v in counts.items():
                t[k] += v
    out: dict[str, Any] = {}
    for label, t in totals.items():
        out[label] = {
            **t,
            "precision": t["spans_on_a_call"] / t["spans"] if t["spans"] else None,
            "recall": t["calls_found"] / t["calls"] if t["calls"] else None,
        }
    return out


def segment_scores(
    summaries: Sequence[Mapping[str, Any]],
    truth: Mapping[str, Mapping[str, list]],
    labels: Sequence[str],
    resolution: float = 1.0,
) -> dict[str, dict[str, float]]:
    """sed_eval's segment-based precision, recall and F1 of the merged spans, per label
    (``{label: {"precision", "recall", "f1"}}``; a label never active in either is left out)."""
    import dcase_util
    import sed_eval

    metrics = sed_eval.sound_event.SegmentBasedMetrics(
        event_label_list=list(labels), time_resolution=resolution
    )
    for s in summaries:
        name = s["file"]
        ref = [
            {"filename": name, "event_label": label, "onset": on, "offset": off}
            for label, calls in truth.get(name, {}).items()
            for on, off in calls
        ]
        est = [
            {"filename": name, "event_label": label, "onset": float(m[0]), "offset": float(m[1])}
            for label, info in s["labels"].items()
            for m in info["merged"]
        ]
        metrics.evaluate(
            reference_event_list=dcase_util.containers.MetaDataContainer(ref),
            estimated_event_list=dcase_util.containers.MetaDataContainer(est),
        )
    per_class = metrics.results_class_wise_metrics()
    out: dict[str, dict[str, float]] = {}
    for label in labels:
        f = per_class.get(label, {}).get("f_measure", {})
        if f and any(np.isfinite(float(f.get(k, float("nan")))) for k in ("precision", "recall")):
            out[label] = {
                "precision": float(f["precision"]),
                "recall": float(f["recall"]),
                "f1": float(f["f_measure"]),
            }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        corpus = Corpus.load(args.manifests)
        rows = read_detections_csv(args.detections)
    except (ManifestError, ValueError, OSError) as e:
        print(f"report: {e}", file=sys.stderr)
        return 2
    test = corpus.recordings[corpus.recordings["split"] == "test"]
    durations = dict(zip(test["recording_id"], test["duration"].astype(float), strict=True))
    summaries = write_reports(args.outdir, rows, durations, args.gap, list(corpus.classes))
    for s in summaries:
        print(summary_text(s))
    # the answer key (long_truth.csv) is in the manifests only when stage 0 found one
    truth: dict[str, dict[str, list]] = {}
    for rid, calls in ground_truth_from_events(corpus.events, list(durations)).items():
        for on, off, label in calls:
            truth.setdefault(rid, {}).setdefault(label, []).append((on, off))
    if truth:
        scores = truth_scores(summaries, truth)
        for label, seg in segment_scores(summaries, truth, list(corpus.classes)).items():
            scores.setdefault(label, {})["segment_1s"] = seg
        with atomic_open(Path(args.outdir) / "truth.json", "w", encoding="utf-8") as f:
            json.dump({"gap_seconds": args.gap, "labels": scores}, f, indent=1)
            f.write("\n")
        for label, sc in scores.items():
            p = "n/a" if sc["precision"] is None else f"{sc['precision']:.3f}"
            r = "n/a" if sc["recall"] is None else f"{sc['recall']:.3f}"
            print(
                f"{label}: precision {p} ({sc['spans_on_a_call']} of {sc['spans']} merged spans"
                f" on a call), recall {r} ({sc['calls_found']} of {sc['calls']} calls found)"
            )
            if "segment_1s" in sc:
                seg = sc["segment_1s"]
                print(
                    f"{label}: 1 s segments: precision {seg['precision']:.3f}, recall"
                    f" {seg['recall']:.3f}, F1 {seg['f1']:.3f}"
                )
    print(f"reports of {len(summaries)} long file(s) -> {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
