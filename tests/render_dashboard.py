"""Draw the Grafana dashboard's panels from a real Prometheus, without Grafana.

Each panel of deploy/grafana/dashboards/topicwatch.json becomes one small chart: every
target's PromQL (Grafana's ``$__rate_interval``/``$__range`` replaced by fixed windows) is
run as a range query and drawn with its legend format, in the dashboard's layout order.
This is how docs/img/dashboard.png is made:

    .venv/bin/python -m tests.render_dashboard docs/img/dashboard.png

starts the live stack of tests/live_stack.py (Redis, the three services, Prometheus,
Alertmanager, a dead webhook), drives traffic for a few minutes, and draws the last minutes.
``--prometheus URL`` draws from a Prometheus that is already running instead.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.live_stack import DASHBOARD, _panels, grafana_to_promql

UNIT_SCALE = {"percentunit": (100.0, "%"), "bytes": (1 / 2**20, "MiB")}
UNIT_LABEL = {"ops": "/s", "reqps": "req/s", "s": "s", "short": ""}


def render(prometheus_url: str, out: Path, *, minutes: float = 10.0, step: float = 2.0) -> Path:
    """Query every panel over the last ``minutes`` and write a PNG grid to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = json.loads(DASHBOARD.read_text())
    panels = [p for p in _panels(board["panels"]) if p.get("type") != "row"]
    end = time.time()
    start = end - minutes * 60
    columns = 3
    rows = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 2.9 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels, strict=False):
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        scale, label = UNIT_SCALE.get(unit, (1.0, UNIT_LABEL.get(unit, unit)))
        drawn = 0
        for target in panel.get("targets", []):
            for series in _range(prometheus_url, target["expr"], start, end, step):
                xs = [float(t) - end for t, _ in series["values"]]
                ys = [float(v) * scale for _, v in series["values"]]
                name = _legend(target.get("legendFormat", ""), series["metric"])
                ax.plot(xs, ys, linewidth=1.2, label=name[:48])
                drawn += 1
        ax.set_title(panel["title"], fontsize=10, loc="left")
        ax.set_ylabel(label, fontsize=8)
        ax.set_xlim(-minutes * 60, 0)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if drawn and drawn <= 8:
            ax.legend(fontsize=6, loc="upper left", framealpha=0.6)
        elif drawn:
            ax.text(
                0.99,
                0.97,
                f"{drawn} series",
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=7,
            )
    fig.suptitle(
        f"{board['title']} - drawn from Prometheus, last {minutes:g} min (x: seconds before now)",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def _range(url: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    params = {"query": grafana_to_promql(expr), "start": start, "end": end, "step": step}
    body = httpx.get(f"{url}/api/v1/query_range", params=params, timeout=30).json()
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    series = body["data"]["result"]
    return [s for s in series if any(v not in ("NaN", "+Inf", "-Inf") for _, v in s["values"])]


def _legend(fmt: str, labels: dict[str, str]) -> str:
    if not fmt:
        return ",".join(f"{k}={v}" for k, v in labels.items())
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--prometheus", help="draw from this Prometheus instead of a live stack")
    parser.add_argument("--minutes", type=float, default=5.0, help="time range drawn")
    parser.add_argument("--rounds", type=int, default=8, help="traffic rounds (live stack)")
    args = parser.parse_args(argv)
    if args.prometheus:
        render(args.prometheus, args.out, minutes=args.minutes)
        return 0
    from services.common.redis_server import RedisServer
    from tests.live_stack import LiveStack

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with RedisServer(data_dir=work / "redis", appendonly=False) as server:
            with LiveStack(server.url, work) as stack:
                stack.drive(articles=10)
                # Waves of traffic spread over the time range, so rates have a shape.
                pause = args.minutes * 60 / (args.rounds + 1)
                for round_ in range(args.rounds):
                    time.sleep(pause)
                    stack.publish(offset=10 + 5 * round_, count=5)
                time.sleep(pause)
                render(stack.prometheus.url, args.out, minutes=args.minutes)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
