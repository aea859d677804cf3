"""The matplotlib pictures: loss curves, confusion matrix, mistakes (W's picture: test_w_picture)."""

import io

import numpy as np
from PIL import Image

from pipeline.pictures import confusion_figure, loss_curve_figure, mistakes_figure


def test_loss_curve_figure_has_a_log_axis_the_floor_and_the_divergence():
    history = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.6}, {"epoch": 2, "train_loss": 0.4, "val_loss": 0.55}]
    figure = loss_curve_figure(history, [1, 3, 5, 7], [0.9, 0.5, np.inf, np.nan], steps_per_epoch=4,
                               title="linear lr=10 bs=32", floor=0.3, diverged_at=7)

    [axes] = figure.axes
    assert axes.get_yscale() == "log"
    labels = [line.get_label() for line in axes.get_lines()]
    assert labels == ["train, per step", "train, epoch mean", "validation", "least-squares floor 0.3", "diverged at step 7"]
    np.testing.assert_array_equal(axes.get_lines()[0].get_xdata(), [0.25, 0.75, 1.25, 1.75])
    assert np.isnan(axes.get_lines()[0].get_ydata()[2:]).all()  # inf and NaN are left out
    png = io.BytesIO()
    figure.savefig(png, format="png")
    assert Image.open(png).size == (700, 420)


def test_confusion_figure_colours_row_shares_and_writes_the_counts():
    confusion = np.array([[3, 1, 0], [0, 2, 0], [0, 2, 2]])
    figure = confusion_figure(confusion, "softmax: test accuracy 70.0% on 10 digits")

    axes = figure.axes[0]
    assert axes.get_title() == "softmax: test accuracy 70.0% on 10 digits"
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("predicted", "actual")
    np.testing.assert_allclose(axes.get_images()[0].get_array(), [[0.75, 0.25, 0], [0, 1, 0], [0, 0.5, 0.5]])
    cells = {(text.get_position(), text.get_text()) for text in axes.texts}
    assert cells == {((0, 0), "3"), ((1, 0), "1"), ((1, 1), "2"), ((1, 2), "2"), ((2, 2), "2")}  # (x=predicted, y=actual)


def test_mistakes_figure_pastes_each_digit_under_its_label():
    images = np.zeros((9, 784), dtype=np.uint8)
    images[:, 0] = np.arange(1, 10) * 20  # digit i's top-left pixel says which it is
    figure = mistakes_figure(images, np.arange(9), (np.arange(9) + 1) % 10, np.linspace(0.9, 0.1, 9), "title")

    [axes] = figure.axes
    canvas = axes.get_images()[0].get_array()
    assert canvas.shape == (2 * (16 + 28 + 4), 8 * (28 + 4))
    assert canvas[16, 0] == 20 and canvas[16, 32] == 40 and canvas[16 + 48, 0] == 180  # 9th: second row
    assert np.ma.getmaskarray(canvas)[:16].all()  # the label band is blank
    assert [text.get_text() for text in axes.texts][:2] == ["true 0, predicted 1\nby 0.90", "true 1, predicted 2\nby 0.80"]
    assert figure.get_suptitle() == "title"
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=100)
    assert Image.open(png).size[0] == 8 * 130
