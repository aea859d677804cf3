"""The MNIST shape and pixel scale, for every module that needs them (no I/O, no imports)."""

N_CLASSES = 10
IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE
PIXEL_MAX = 255
