"""An independent reading of the official VPQ rules, for tests only.

Written from mcahny/vps ``tools/eval_vpq.py`` (latest commit, "fix data tampering in vpq
evaluation"), window by window as that script does, sharing no code with ``vsda_deploy.vpq``:

* a video is its labelled frames in order; for n in 1..4 every run of n consecutive frames is
  a window (k = 5 (n - 1));
* per window, a segment id's ``category_id`` / ``iscrowd`` are those of the first frame of the
  window that lists it, its area the sum of its pixels over the window;
* pairs (gt id, pred id) count shared pixels; gt id 0 is VOID, pred id 0 is no segment;
* a pair is a match when the gt segment is not crowd, the categories are equal and
  ``I / (A_pred + A_gt - I - |pred on VOID|) > 0.5``;
* unmatched non-crowd gt segments are FN; crowd ids are remembered per category (last wins);
* unmatched pred segments are FP unless (pixels on VOID + on the crowd of its category) / area > 0.5;
* PQ_c = sum IoU / (TP + FP/2 + FN/2) over categories with TP + FP + FN > 0, averaged (All,
  Things, Stuff), then averaged over n.

A frame is ``(ids, {id: (category, iscrowd)})`` with ``ids`` an (H, W) integer array.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

Frame = tuple[np.ndarray, dict[int, tuple[int, int]]]


def _window_stats(gt: list[Frame], pred: list[Frame], stats: dict) -> None:
    gt_info: dict[int, list] = {}
    pred_info: dict[int, list] = {}
    for frames, info in ((gt, gt_info), (pred, pred_info)):
        for ids, segs in frames:
            values, counts = np.unique(ids, return_counts=True)
            for v, c in zip(values.tolist(), counts.tolist()):
                if v == 0:
                    continue
                if v not in info:
                    info[v] = [segs[v][0], segs[v][1], 0]
                info[v][2] += c
    pairs: dict[tuple[int, int], int] = defaultdict(int)
    for (g_ids, _), (p_ids, _) in zip(gt, pred):
        joint = np.stack([g_ids.ravel().astype(np.int64), p_ids.ravel().astype(np.int64)])
        values, counts = np.unique(joint, axis=1, return_counts=True)
        for (g, p), c in zip(values.T.tolist(), counts.tolist()):
            pairs[(g, p)] += c
    gt_hit, pred_hit = set(), set()
    for (g, p), inter in pairs.items():
        if g not in gt_info or p not in pred_info or gt_info[g][1] == 1:
            continue
        if gt_info[g][0] != pred_info[p][0]:
            continue
        union = pred_info[p][2] + gt_info[g][2] - inter - pairs.get((0, p), 0)
        if inter / union > 0.5:
            s = stats[gt_info[g][0]]
            s[0] += inter / union
            s[1] += 1
            gt_hit.add(g)
            pred_hit.add(p)
    crowd = {}
    for g, (cat, is_crowd, _) in gt_info.items():
        if g in gt_hit:
            continue
        if is_crowd == 1:
            crowd[cat] = g
        else:
            stats[cat][3] += 1
    for p, (cat, _, area) in pred_info.items():
        if p in pred_hit:
            continue
        ignored = pairs.get((0, p), 0) + (pairs.get((crowd[cat], p), 0) if cat in crowd else 0)
        if ignored / area <= 0.5:
            stats[cat][2] += 1


def _average(stats: dict, categories: dict[int, bool], things: bool | None) -> float:
    pqs = []
    for cat, is_thing in categories.items():
        if things is not None and is_thing != things:
            continue
        iou, tp, fp, fn = stats[cat]
        if tp + fp + fn:
            pqs.append(iou / (tp + 0.5 * fp + 0.5 * fn))
    return 100 * sum(pqs) / len(pqs) if pqs else float("nan")


def official_vpq(videos: list[tuple[list[Frame], list[Frame]]], categories: dict[int, bool]) -> dict:
    """Return ``{"k": {0: (all, things, stuff), 5: ...}, "vpq": (all, things, stuff)}`` of ``(gt, pred)`` videos.

    ``categories`` maps each category id to whether it is a thing.
    """
    per_k = {}
    for n in (1, 2, 3, 4):
        stats: dict = defaultdict(lambda: [0.0, 0, 0, 0])
        for gt, pred in videos:
            for start in range(len(gt) - n + 1):
                _window_stats(gt[start:start + n], pred[start:start + n], stats)
        per_k[5 * (n - 1)] = tuple(_average(stats, categories, t) for t in (None, True, False))
    mean = tuple(float(np.nanmean([per_k[k][i] for k in per_k])) for i in range(3))
    return {"k": per_k, "vpq": mean}
