"""Draw the test digits in this folder the way a user would: strokes in a paint program.

    python tests/digits/make_digits.py      # rewrites the pictures here, byte for byte
    PYTHONPATH=. python tests/digits/make_digits.py --montage   # and docs/drawn_digits.png

Each digit is a few pen strokes (polylines in a unit box), slanted, sized and placed somewhere on
a large canvas, drawn with a round pen of some width: dark on light paper, light on dark, one on
a transparent canvas, one on gray paper, one saved as JPEG. Nothing here comes from MNIST. The file name starts with
the digit that was drawn.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent


def arc(cx, cy, rx, ry, start, end, points=24):
    """Points of an elliptic arc, angles in degrees (0 = right, 90 = down)."""
    angles = np.radians(np.linspace(start, end, points))
    return list(zip(cx + rx * np.cos(angles), cy + ry * np.sin(angles)))


# Strokes in a unit box: x to the right, y down, the digit about 0.6 wide and 1 tall.
STROKES = {
    0: [arc(0.5, 0.5, 0.3, 0.48, 0, 360, 40)],
    1: [[(0.35, 0.2), (0.55, 0.02), (0.55, 1.0)]],
    2: [arc(0.5, 0.3, 0.28, 0.28, 200, 380) + [(0.22, 1.0), (0.8, 1.0)]],
    3: [arc(0.48, 0.27, 0.27, 0.25, 210, 450), arc(0.48, 0.74, 0.3, 0.26, 270, 510)],
    4: [[(0.62, 1.0), (0.62, 0.0), (0.15, 0.68), (0.82, 0.68)]],
    5: [[(0.78, 0.02), (0.28, 0.02), (0.24, 0.45)] + arc(0.48, 0.68, 0.3, 0.3, 240, 500)],
    6: [arc(0.62, 0.45, 0.35, 0.45, 250, 170) + arc(0.5, 0.72, 0.27, 0.27, 180, 540)],
    7: [[(0.2, 0.02), (0.8, 0.02), (0.4, 1.0)]],
    8: [arc(0.5, 0.26, 0.22, 0.24, 0, 360, 32), arc(0.5, 0.74, 0.28, 0.26, 0, 360, 32)],
    9: [arc(0.5, 0.3, 0.27, 0.28, 0, 360, 32) + [(0.77, 0.3), (0.7, 1.0)]],
}

# (name, digit, canvas (w, h), box height, slant, centre (fraction of canvas), pen width, look)
DRAWINGS = [
    ("0_round", 0, (400, 400), 280, 0.0, (0.5, 0.5), 28, "dark_on_light"),
    ("1_thin_left", 1, (600, 400), 260, 0.15, (0.3, 0.45), 10, "dark_on_light"),
    ("2_wide_canvas", 2, (800, 300), 220, 0.1, (0.6, 0.5), 22, "light_on_dark"),
    ("3_slanted", 3, (300, 500), 300, 0.3, (0.5, 0.55), 26, "dark_on_light"),
    ("4_corner", 4, (500, 500), 180, 0.0, (0.25, 0.3), 18, "light_on_dark"),
    ("5_bold", 5, (360, 360), 260, 0.1, (0.5, 0.5), 44, "dark_on_light"),
    ("6_small", 6, (640, 480), 110, -0.1, (0.7, 0.65), 9, "dark_on_light"),
    ("7_transparent", 7, (400, 400), 300, 0.05, (0.5, 0.5), 24, "transparent"),
    ("8_gray_paper", 8, (420, 420), 320, 0.15, (0.5, 0.5), 26, "gray_paper"),
    ("9_jpeg", 9, (320, 320), 230, 0.2, (0.5, 0.5), 20, "jpeg"),
]


def draw(digit, canvas, height, slant, centre, width, look):
    paper, pen = {"light_on_dark": (0, 255), "gray_paper": (180, 50)}.get(look, (255, 0))
    mode = "LA" if look == "transparent" else "L"
    image = Image.new(mode, canvas, (paper, 0) if mode == "LA" else paper)
    pen_colour = (pen, 255) if mode == "LA" else pen
    pencil = ImageDraw.Draw(image)
    cx, cy = centre[0] * canvas[0], centre[1] * canvas[1]
    for stroke in STROKES[digit]:
        # Slant leans the top to the right, as handwriting does; y runs from -0.5 (top) to 0.5.
        points = [(cx + height * (x - 0.5 - slant * (y - 0.5)), cy + height * (y - 0.5)) for x, y in stroke]
        pencil.line(points, fill=pen_colour, width=width, joint="curve")
        for x, y in (points[0], points[-1]):  # round pen ends
            pencil.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=pen_colour)
    return image


def montage(files, path, cell=84):
    """Each picture (top row) above what pipeline.digits makes of it (bottom row), as one PNG."""
    from pipeline.digits import read_digits

    sheet = Image.new("L", (cell * len(files), 2 * cell), 128)
    for i, file in enumerate(files):
        picture = Image.open(file).convert("RGBA")
        paper = Image.new("RGBA", picture.size, (255, 255, 255, 255))
        sheet.paste(Image.alpha_composite(paper, picture).convert("L").resize((cell - 4, cell - 4)), (i * cell + 2, 2))
        digit = Image.fromarray(read_digits(file)[0]).resize((cell - 4, cell - 4), Image.NEAREST)
        sheet.paste(digit, (i * cell + 2, cell + 2))
    sheet.save(path, optimize=True)


def main():
    files = []
    for name, digit, canvas, height, slant, centre, width, look in DRAWINGS:
        image = draw(digit, canvas, height, slant, centre, width, look)
        if look == "jpeg":
            files.append(HERE / f"{name}.jpg")
            image.save(files[-1], quality=70)
        else:
            files.append(HERE / f"{name}.png")
            image.save(files[-1], optimize=True)
    if "--montage" in sys.argv:
        montage(files, HERE.parent.parent / "docs" / "drawn_digits.png")


if __name__ == "__main__":
    main()
