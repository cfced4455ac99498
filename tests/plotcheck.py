"""Reads a timeline PNG back: how many bars it has (bands of rows holding a state colour)."""
import matplotlib.image
import numpy
from matplotlib.colors import to_rgb

from spmd.report import COLOURS


def count_bars(path: str) -> int:
    """Bands of pixel rows with a state colour inside the axes (the legend is right of them)."""
    pixels = matplotlib.image.imread(path)[:, :, :3]
    height, width, _ = pixels.shape
    assert height > 150 and width > 400  # a real figure, grown with the number of tasks
    # The axes' right spine is the rightmost long vertical dark line; the legend is beyond it.
    dark = (pixels.max(axis=2) < 0.2).sum(axis=0)
    spine = int(numpy.nonzero(dark > 0.5 * dark.max())[0].max())
    area = pixels[:, :spine]
    rows = numpy.zeros(height, dtype=bool)
    for colour in COLOURS.values():
        rows |= (numpy.abs(area - numpy.array(to_rgb(colour))).max(axis=2) < 0.02).sum(axis=1) >= 4
    return int(numpy.sum(rows[1:] & ~rows[:-1]) + rows[0])
