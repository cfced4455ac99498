"""Reads a timeline PNG back: how many bars it has (bands of rows holding a state colour)."""
import matplotlib.image
import numpy
from matplotlib.colors import to_rgb

from spmd.report import COLOURS


def count_bars(path: str) -> int:
    """Bands of pixel rows with a state colour in the plot area (the legend is to the right)."""
    pixels = matplotlib.image.imread(path)[:, :, :3]
    height, width, _ = pixels.shape
    assert height > 150 and width > 400  # a real figure, grown with the number of tasks
    area = pixels[:, : int(width * 0.7)]
    rows = numpy.zeros(height, dtype=bool)
    for colour in COLOURS.values():
        rows |= (numpy.abs(area - numpy.array(to_rgb(colour))).max(axis=2) < 0.02).sum(axis=1) >= 4
    return int(numpy.sum(rows[1:] & ~rows[:-1]) + rows[0])
