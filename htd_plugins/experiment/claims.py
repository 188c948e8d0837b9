"""The paper's orderings (and the question the map-only arm answers), each read from intervals
of paired differences (:mod:`.summary`): holds / tie / does not hold.

The arms read unconditional / map only / map + embedding / map + crop. Every FD ordering is
read under each encoder and, beside it, with KID (less biased at a few hundred images).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from htd_plugins.experiment import summary as sm

#: (a, b, scale, claim): "score(a) < scale x score(b)" for FD and KID (lower is better).
DISTANCE_CLAIMS = (
    ("crop", "semantic_map", 1.0, "{m}(map + crop) < {m}(map only): crops add to the map"),
    ("crop", "embedding", 1.0, "{m}(map + crop) < {m}(map + embedding)"),
    ("embedding", "unconditional", 1.0, "{m}(map + embedding) < {m}(unconditional)"),
    ("crop", "unconditional", 0.5, "{m}(map + crop) < {m}(unconditional) / 2"),
)
#: (a, a's setting, b, b's setting, lower, upper, claim) on DeepLabv3+ mIoU: "IoU(a) -
#: IoU(b) lies in (lower, upper)"; b "real" is the network trained on real patches.
IOU_CLAIMS = (
    ("crop", "synthetic", "semantic_map", "synthetic", 0.0, None,
     "IoU(trained on map + crop synthetic) > IoU(map only synthetic)"),
    ("crop", "synthetic", "embedding", "synthetic", 0.0, None,
     "IoU(map + crop synthetic) > IoU(map + embedding synthetic)"),
    ("crop", "real+synthetic", "real", "real", 0.0, None,
     "IoU(real + map + crop synthetic) > IoU(real): augmentation helps"),
    ("crop", "synthetic", "real", "real", -0.05, 0.05,
     "IoU(map + crop synthetic) within 0.05 of IoU(real)"),
)  # fmt: skip
#: (a, b, claim) on layout adherence: "adherence(a) > adherence(b)".
ADHERENCE_CLAIMS = (
    ("crop", "unconditional", "adherence(map + crop) > adherence(unconditional): layouts followed"),
    ("crop", "semantic_map", "adherence(map + crop) > adherence(map only)"),
)


def encoders(scores: Mapping[str, Any]) -> dict[str, str]:
    """The FD encoders (key: label) in key order, whether the results were just computed or
    reloaded from JSON."""
    for per_seed in scores.get("frechet", {}).values():
        for metrics in per_seed.values():
            return {k: v["label"] for k, v in sorted(metrics.get("encoders", {}).items())}
    return {}


def _claim(text: str, est: sm.Estimate, verdict: str) -> dict[str, Any]:
    return {"claim": text, "verdict": verdict, "difference": est.to_dict()}


def _real_setting(scores: Mapping[str, Any]) -> dict[Any, Any]:
    """DeepLabv3+ results of the first arm per seed (its ``real`` setting is every arm's)."""
    return next(iter(scores.get("deeplabv3plus", {}).values()), {})


def orderings(scores: Mapping[str, Any], arms: list[str]) -> list[dict[str, Any]]:
    """Every claim whose arms ran, as ``{"claim", "verdict", "difference", ["kid"]}`` (the
    KID twin of an FD claim under ``kid``)."""
    out = []
    frechet = scores.get("frechet", {})
    for key, label in encoders(scores).items():
        for a, b, scale, text in DISTANCE_CLAIMS:
            if a not in frechet or b not in frechet:
                continue
            d = sm.difference(frechet[a], frechet[b], sm.fd(key, label), scale)
            item = _claim(text.format(m="FD") + f", {label}", d, sm.verdict(d, upper=0.0))
            k = sm.difference(frechet[a], frechet[b], sm.kid(key, label), scale)
            item["kid"] = _claim(text.format(m="KID") + f", {label}", k, sm.verdict(k, upper=0.0))
            out.append(item)
    seg = scores.get("deeplabv3plus", {})
    real = _real_setting(scores)
    degenerate = _at_chance(real)
    for a, sa, b, sb, lower, upper, text in IOU_CLAIMS:
        if a not in seg or (b != "real" and b not in seg):
            continue
        other = real if b == "real" else seg[b]
        d = sm.difference(seg[a], other, sm.iou(sa), metric_b=sm.iou(sb))
        verdict = sm.verdict(d, lower, upper)
        if degenerate:
            verdict = "not measured (DeepLabv3+ trained on real data scored at or below chance)"
        out.append(_claim(text, d, verdict))
    adh = scores.get("layout_adherence", {})
    blind = any(_ceiling_at_chance(per_seed) for per_seed in adh.values())
    for a, b, text in ADHERENCE_CLAIMS:
        if a in adh and b in adh:
            d = sm.difference(adh[a], adh[b], sm.adherence())
            verdict = sm.verdict(d, lower=0.0)
            if blind:
                verdict = (
                    "not measured (the real-data network scored at or below chance on real patches)"
                )
            out.append(_claim(text, d, verdict))
    return out


def _ceiling_at_chance(per_seed: Mapping[Any, Any]) -> bool:
    """True when layout adherence's network scored at or below chance on the held-out real
    patches (its ceiling) at every seed: it cannot read any layout."""
    pairs = [(m.get("ceiling", {}).get("mean_iou"), m.get("chance_mean_iou"))
             for m in per_seed.values()]  # fmt: skip
    pairs = [(v, c) for v, c in pairs if v is not None and c is not None]
    return bool(pairs) and all(v <= c for v, c in pairs)


def _at_chance(real: Mapping[Any, Any]) -> bool:
    """True when the real-data network scored at or below chance at every seed."""
    values = [
        (m.get("settings", {}).get("real", {}).get("mean_iou"), m.get("chance_mean_iou"))
        for m in real.values()
    ]
    values = [(v, c) for v, c in values if v is not None and c is not None]
    return bool(values) and all(v <= c for v, c in values)
