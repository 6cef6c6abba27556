"""One look for every picture: fixed figure size, and a fixed colour and marker per allocator.

Known allocators have hand-picked styles; any other name gets a style chosen by a CRC of the name,
so it is the same in every plot and every run (Python's hash() is salted per process).
"""

import zlib

import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

WIDTH_PX, HEIGHT_PX, DPI = 1000, 600, 100

KNOWN = {
    "system": ("#4d4d4d", "o"),
    "hakmem": ("#d62728", "s"),
    "hakmem-static": ("#ff7f0e", "D"),
    "jemalloc": ("#1f77b4", "^"),
    "tcmalloc": ("#2ca02c", "v"),
    "mimalloc": ("#9467bd", "P"),
}
FALLBACK_COLOURS = ("#8c564b", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f", "#aec7e8",
                    "#98df8a", "#c5b0d5", "#c49c94", "#dbdb8d")
FALLBACK_MARKERS = ("X", "*", "h", "<", ">", "p", "8", "d")
LINK_LINESTYLES = {"preload": "-", "none": "-", "static": "--"}


def allocator_colour(name):
    if name in KNOWN:
        return KNOWN[name][0]
    return FALLBACK_COLOURS[zlib.crc32(name.encode()) % len(FALLBACK_COLOURS)]


def allocator_marker(name):
    if name in KNOWN:
        return KNOWN[name][1]
    h = zlib.crc32(name.encode())
    return FALLBACK_MARKERS[(h // len(FALLBACK_COLOURS)) % len(FALLBACK_MARKERS)]


def series_linestyle(series):
    return LINK_LINESTYLES.get(series.link, ":") if series.split else "-"


def new_figure(nrows=1, ncols=1, **subplot_kw):
    """A fixed-size figure (WIDTH_PX x HEIGHT_PX) and its axes, outside pyplot's global state."""
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def save(fig, path):
    # No bbox_inches="tight": it would change the pixel size the report promises.
    fig.savefig(path, dpi=DPI, format="png")
