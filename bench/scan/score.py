#!/usr/bin/env python3
"""Score secret scanners against the labelled set written by labelled.py.

usage: score.py ROOT NAME=FORMAT:REPORT ...

ROOT is the labelled set (holding truth.json and files/). FORMAT is how REPORT is written:
remit-json, gitleaks-json, kingfisher-json, ripsecrets-text, detect-secrets-json.

A finding is a (file, line). A planted secret counts as found when any finding falls in its
line range. Precision counts found plants against findings on decoys plus findings on lines
where nothing was planted (each distinct line once): a tool that reports one secret twice is
not punished, one that reports a decoy or a carrier line is.
"""
import collections
import json
import os
import re
import sys


def norm(root, path):
    path = str(path)
    for prefix in (os.path.abspath(root) + "/", root.rstrip("/") + "/", "./"):
        if path.startswith(prefix):
            path = path[len(prefix):]
    return path


def parse(fmt, report, root):
    out = set()
    if fmt == "remit-json":
        for f in json.load(open(report))["findings"]:
            out.add((norm(root, f["path"]), f["line"]))
    elif fmt == "gitleaks-json":
        for f in json.load(open(report)) or []:
            out.add((norm(root, f["File"]), f["StartLine"]))
    elif fmt == "kingfisher-json":
        text = open(report).read()
        # The report is one JSON document (findings first); tolerate trailing documents.
        doc, _ = json.JSONDecoder().raw_decode(text.lstrip())
        for f in doc.get("findings", []):
            finding = f["finding"]
            out.add((norm(root, finding["path"]), finding["line"]))
    elif fmt == "ripsecrets-text":
        for line in open(report, errors="replace"):
            m = re.match(r"^(.*?):(\d+):", line)
            if m:
                out.add((norm(root, m.group(1)), int(m.group(2))))
    elif fmt == "detect-secrets-json":
        for path, items in json.load(open(report))["results"].items():
            for item in items:
                out.add((norm(root, path), item["line_number"]))
    else:
        raise SystemExit(f"unknown format {fmt}")
    return out


# Free-form credentials (no vendor format): passwords in assignments, URLs and command lines.
FREE_FORM = {"generic-password", "database-url", "cli-mysql", "cli-password-stdin", "cli-curl", "cli-sshpass",
             "cli-redis", "bearer", "basic-auth", "netrc", "docker-auth"}


def score(truth, findings):
    by_file = collections.defaultdict(list)
    for i, e in enumerate(truth):
        by_file[e["file"]].append((e["first"], e["last"], i))
    found = set()
    decoy_hits = set()
    other = set()
    for path, line in findings:
        hit = [i for first, last, i in by_file.get(path, []) if first <= line <= last]
        if not hit:
            other.add((path, line))
        for i in hit:
            (found if truth[i]["secret"] else decoy_hits).add(i)
    plants = [i for i, e in enumerate(truth) if e["secret"]]
    tp = len(found)
    fp = len(decoy_hits) + len(other)
    missed = collections.Counter(truth[i]["kind"] for i in plants if i not in found)
    formats = [i for i in plants if truth[i]["kind"] not in FREE_FORM]
    decoys = collections.Counter(truth[i]["kind"] for i in decoy_hits)
    return {
        "plants": len(plants),
        "found": tp,
        "false_positives": fp,
        "decoys_reported": len(decoy_hits),
        "other_lines_reported": len(other),
        "recall": tp / len(plants) if plants else 0.0,
        "recall_formats": sum(1 for i in formats if i in found) / len(formats) if formats else 0.0,
        "recall_free_form": (sum(1 for i in plants if i not in formats and i in found)
                             / max(1, len(plants) - len(formats))),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "missed_by_kind": dict(missed.most_common()),
        "decoys_by_kind": dict(decoys.most_common()),
        "other_examples": sorted(other)[:5],
    }


def main():
    root = sys.argv[1]
    truth = json.load(open(os.path.join(root, "truth.json")))
    results = {}
    for spec in sys.argv[2:]:
        name, rest = spec.split("=", 1)
        fmt, report = rest.split(":", 1)
        if not os.path.exists(report):
            print(f"{name}: no report ({report})", file=sys.stderr)
            continue
        results[name] = score(truth, parse(fmt, report, root))
    print(f"{'tool':<16}{'recall':>8}{'precision':>11}{'found':>8}{'plants':>8}{'FP':>6}{'decoys':>8}{'other':>7}"
          f"{'r.formats':>11}{'r.free-form':>13}")
    for name, r in results.items():
        print(f"{name:<16}{r['recall']:>8.3f}{r['precision']:>11.3f}{r['found']:>8}{r['plants']:>8}"
              f"{r['false_positives']:>6}{r['decoys_reported']:>8}{r['other_lines_reported']:>7}"
              f"{r['recall_formats']:>11.3f}{r['recall_free_form']:>13.3f}")
    for name, r in results.items():
        top_missed = ", ".join(f"{k} {v}" for k, v in list(r["missed_by_kind"].items())[:8])
        top_decoys = ", ".join(f"{k} {v}" for k, v in list(r["decoys_by_kind"].items())[:6])
        print(f"  {name}: missed [{top_missed}] decoys reported [{top_decoys}]")
    with open(os.path.join(root, "scores.json"), "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
