"""Figures of the single-camera experiment, drawn with OpenCV (no matplotlib): metrics against focal ratio on a log
axis, A's training curve, and an example test image where A and C differ."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from util.vis import colorize

WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (150, 150, 150)
COLOURS = {"constant": GREY, "A": (60, 60, 220), "B": (30, 150, 240), "C": (60, 160, 40), "D": (190, 110, 30)}  # BGR
FONT = cv2.FONT_HERSHEY_SIMPLEX
RATIO_TICKS = (0.4, 0.5, 0.7, 1.0, 1.4, 2.0, 2.6)


def colour_of(key: str) -> tuple[tuple[int, int, int], bool]:
    """(BGR colour, dashed) of a model key: frozen-backbone variants are lighter and dashed."""
    base = COLOURS[key.partition("_")[0]]
    if "_" not in key:
        return base, False
    return tuple(int(c + (255 - c) * 0.45) for c in base), True


def text(canvas: np.ndarray, label: str, at: tuple[int, int], scale: float = 0.42, colour=BLACK) -> None:
    """Anti-aliased text with its baseline starting at pixel `at`; `scale` is OpenCV's font scale."""
    cv2.putText(canvas, label, at, FONT, scale, colour, 1, cv2.LINE_AA)


@dataclass
class Axes:
    """A plot area of `canvas`: pixel box (left, top, right, bottom), data limits, log or linear axes."""

    canvas: np.ndarray
    box: tuple[int, int, int, int]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    xlog: bool = False
    ylog: bool = False

    def _t(self, value: float, lim: tuple[float, float], log: bool) -> float:
        f = math.log if log else float
        return (f(value) - f(lim[0])) / (f(lim[1]) - f(lim[0]))

    def px(self, x: float, y: float) -> tuple[int, int]:
        left, top, right, bottom = self.box
        tx, ty = (
            self._t(x, self.xlim, self.xlog),
            self._t(min(max(y, self.ylim[0]), self.ylim[1]), self.ylim, self.ylog),
        )
        return int(round(left + tx * (right - left))), int(round(bottom - ty * (bottom - top)))

    def frame(self, title: str, xticks, yticks, xlabel: str) -> None:
        left, top, right, bottom = self.box
        for x in xticks:
            px = self.px(x, self.ylim[0])[0]
            cv2.line(self.canvas, (px, top), (px, bottom), (235, 235, 235), 1)
            text(self.canvas, f"{x:g}", (px - 10, bottom + 16), 0.38)
        for y in yticks:
            py = self.px(self.xlim[0], y)[1]
            cv2.line(self.canvas, (left, py), (right, py), (235, 235, 235), 1)
            text(self.canvas, f"{y:g}", (left - 38, py + 4), 0.38)
        cv2.rectangle(self.canvas, (left, top), (right, bottom), BLACK, 1)
        text(self.canvas, title, (left, top - 10), 0.5)
        text(self.canvas, xlabel, ((left + right) // 2 - 60, bottom + 34), 0.4)

    def line(self, xs, ys, colour, dashed: bool = False, thickness: int = 2, markers: bool = True) -> None:
        points = [self.px(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
        for p, q in zip(points[:-1], points[1:]):
            if not dashed:
                cv2.line(self.canvas, p, q, colour, thickness, cv2.LINE_AA)
                continue
            length = max(1.0, math.dist(p, q))
            for s in np.arange(0.0, length, 12.0):
                a, b = s / length, min(s + 7.0, length) / length
                start = (int(p[0] + a * (q[0] - p[0])), int(p[1] + a * (q[1] - p[1])))
                cv2.line(self.canvas, start, (int(p[0] + b * (q[0] - p[0])), int(p[1] + b * (q[1] - p[1]))),
                         colour, thickness, cv2.LINE_AA)  # fmt: skip
        for p in points if markers else []:
            cv2.circle(self.canvas, p, 3, colour, -1, cv2.LINE_AA)

    def ranges(self, xs, lows, highs, colour) -> None:
        for x, lo, hi in zip(xs, lows, highs):
            if math.isfinite(lo) and math.isfinite(hi):
                cv2.line(self.canvas, self.px(x, lo), self.px(x, hi), colour, 1, cv2.LINE_AA)


def linear_ticks(top: float) -> list[float]:
    """Round tick values from 0 to `top`: a step of 1, 2, 2.5 or 5 times a power of ten, at most 6 ticks."""
    power = 10.0 ** math.floor(math.log10(top / 5)) if top > 0 else 1.0
    step = next(power * m for m in (1, 2, 2.5, 5, 10) if top / (power * m) <= 5)
    return [round(i * step, 10) for i in range(int(top / step) + 1)]


def _series(summary: dict, key: str, metric: str) -> tuple[list[float], list[float], list[float]]:
    """Mean, min and max over seeds of a metric in each bin."""
    stats = [b[metric] for b in summary[key]["bins"]]
    finite = [[v for v in s["values"] if math.isfinite(v)] or [math.nan] for s in stats]
    return [s["mean"] for s in stats], [min(v) for v in finite], [max(v) for v in finite]


def plot_results(summary: dict, bins: list[dict], curves: dict, path) -> None:
    """abs_rel and median(pred / true) against focal ratio (log axes; bars: range over seeds) for every model,
    with the focal-blind (1 / ratio) and camera-aware (1) references, and A's validation curve per seed."""
    canvas = np.full((470, 1320, 3), 255, np.uint8)
    xs = [b["centre"] for b in bins]
    xlim = (min(0.35, bins[0]["lo"]), max(3.0, bins[-1]["hi"]))
    abs_max = max([v for k in summary for b in summary[k]["bins"] for v in b["abs_rel"]["values"]] + [0.1])
    scales = [v for k in summary for b in summary[k]["bins"] for v in b["median_scale"]["values"] if v > 0]
    ylim = (min([0.3, *scales]) * 0.9, max([3.0, *scales]) * 1.1)
    ax_rel = Axes(canvas, (60, 40, 440, 380), xlim, (0.0, abs_max * 1.1), xlog=True)
    ax_rel.frame("abs_rel per focal-ratio bin", RATIO_TICKS, linear_ticks(abs_max), "f_test / f_train")
    ax_scale = Axes(canvas, (500, 40, 880, 380), xlim, ylim, xlog=True, ylog=True)
    ax_scale.frame("median(pred / true)", RATIO_TICKS, (0.3, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0), "f_test / f_train")
    grid = np.exp(np.linspace(math.log(xlim[0]), math.log(xlim[1]), 20))
    ax_scale.line(xlim, (1.0, 1.0), BLACK, thickness=1, markers=False)
    ax_scale.line(grid, 1 / grid, GREY, dashed=True, thickness=1, markers=False)
    text(canvas, "dashed: 1 / ratio (focal-blind)", ax_scale.px(xlim[0] * 1.05, ylim[0] * 1.08), 0.38, GREY)
    for key in summary:
        colour, dashed = colour_of(key)
        for ax, metric in ((ax_rel, "abs_rel"), (ax_scale, "median_scale")):
            mean, lo, hi = _series(summary, key, metric)
            ax.ranges(xs, lo, hi, colour)
            ax.line(xs, mean, colour, dashed)
    steps = [row[0] for c in curves.values() for row in c["eval"]] or [0, 1]
    last = max(steps) or 1
    ax_curve = Axes(canvas, (940, 40, 1300, 380), (0, last), (-1.1, 1.1))
    ax_curve.frame("A during training (train camera)", linear_ticks(last), (-1, -0.5, 0, 0.5, 1), "step")
    ax_curve.line((0, last), (0.0, 0.0), BLACK, thickness=1, markers=False)
    for curve in curves.values():
        rows = curve["eval"]
        ax_curve.line([r[0] for r in rows], [r[1] for r in rows], COLOURS["A"])
        ax_curve.line([r[0] for r in rows], [r[3] for r in rows], (150, 60, 150), dashed=True)
    text(canvas, "abs_rel", (950, 60), 0.4, COLOURS["A"])
    text(canvas, "zoom slope (dashed)", (950, 76), 0.4, (150, 60, 150))
    x = 60
    for key in summary:
        colour, dashed = colour_of(key)
        Axes(canvas, (x, 420, x + 30, 430), (0, 1), (0, 1)).line((0, 1), (0.5, 0.5), colour, dashed)
        label = key if key != "constant" else "constant median depth"
        text(canvas, label, (x + 38, 430), 0.42)
        x += 60 + 9 * len(label)
    cv2.imwrite(str(path), canvas)


def plot_examples(examples: dict, bins: list[dict], results: dict, path) -> bool:
    """The first test image of the lowest and the highest focal-ratio bin: image | truth | A | C (or the camera
    model run), one colour range per row (the truth's 1st-99th percentile). Returns False when A or a camera
    model is missing (nothing written)."""
    other = next((k for k in ("C", "D", "B", "C_frozen", "D_frozen", "B_frozen") if k in examples), None)
    if "A" not in examples or other is None:
        return False
    rows = []
    for i in (0, len(bins) - 1):
        truth_ex = examples["A"][i]
        if truth_ex is None or examples[other][i] is None:
            return False
        lo, hi = np.percentile(truth_ex.depth[truth_ex.valid], [1, 99])
        zoom = max(1, round(160 / truth_ex.image.shape[0]))
        tiles = [truth_ex.image[..., ::-1], colorize(np.where(truth_ex.valid, truth_ex.depth, np.nan), lo, hi),
                 colorize(truth_ex.pred, lo, hi), colorize(examples[other][i].pred, lo, hi)]  # fmt: skip
        tiles = [cv2.resize(np.ascontiguousarray(t), None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
                 for t in tiles]  # fmt: skip
        gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
        row = np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)
        header = np.full((26, row.shape[1], 3), 255, np.uint8)
        scale_a = results["A"]["bins"][i]["per_image"]["median_scale"][0]
        scale_o = results[other]["bins"][i]["per_image"]["median_scale"][0]
        text(header, f"f_test / f_train {truth_ex.ratio:.2f}: image | truth | A (median scale {scale_a:.2f}) | "
             f"{other} ({scale_o:.2f})", (4, 18), 0.45)  # fmt: skip
        rows += [header, row]
    cv2.imwrite(str(path), np.concatenate(rows, axis=0))
    return True
