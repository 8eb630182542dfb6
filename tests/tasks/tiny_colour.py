"""A task defined outside the package, as a team would write one: 3 classes of 16x16 colour images drawn by a
generator (a red square, a green disc, a blue cross). The conformance tests run the whole pipeline on it
(`[task] name = tests.tasks.tiny_colour`)."""

import io

import numpy as np

from mlproj.settings import Problem
from mlproj.task import Benchmark, ImageInput, Task

SIDE = 16
COLOURS = {0: (220, 40, 40), 1: (40, 200, 60), 2: (50, 80, 230)}


def draw(label: int, rng, noise: float = 0.08, brightness: float = 1.0) -> np.ndarray:
    "A (16, 16, 3) uint8 picture of class `label`, placed, sized and coloured at random."
    img = rng.normal(235, 12, (SIDE, SIDE, 3))
    r = rng.integers(3, 6)
    cy, cx = rng.integers(r, SIDE - r, 2)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    if label == 0:
        shape = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    elif label == 1:
        shape = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    else:
        shape = ((abs(yy - cy) <= r) & (abs(xx - cx) <= 1)) | ((abs(xx - cx) <= r) & (abs(yy - cy) <= 1))
    img[shape] = np.array(COLOURS[label]) + rng.normal(0, 20, 3)
    img = img * brightness + rng.normal(0, 255 * noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def png(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a, 'RGB').save(buf, 'PNG')
    return buf.getvalue()


class Shapes(Task):
    name = 'tests.tasks.tiny_colour'
    title = 'red squares, green discs and blue crosses in 16x16 colour images (a test task)'
    classes = ('square', 'disc', 'cross')
    input = ImageInput(SIDE, SIDE, channels=3, low=0.0, high=1.0)
    media_types = ('image/png',)
    slice_keys = ('light',)
    acceptance = Problem(0.8, 0.8, 0.6, 0.6, 0.3, 5, 6, 'Name the shape in a small colour image.', 'test split')

    def benchmark(self) -> Benchmark:
        rng = np.random.default_rng(0)
        labels = [i % 3 for i in range(240)]
        return Benchmark(
            items=[png(draw(y, rng)) for y in labels],
            labels=labels,
            media_type='image/png',
            source='tests/tasks/tiny_colour.py generator, seed 0',
            licence='generated',
            label_source='the generator',
            description='tiny colour shapes',
        )

    def decode(self, data: bytes, media_type: str) -> np.ndarray:
        from PIL import Image

        a = np.asarray(Image.open(io.BytesIO(data)).convert('RGB').resize((SIDE, SIDE)), np.float32) / 255
        return np.ascontiguousarray(a.transpose(2, 0, 1))

    def prepare(self, x) -> np.ndarray:
        if isinstance(x, (bytes, bytearray)):
            return self.decode(bytes(x), 'image/png')
        a = np.asarray(x, np.float32)
        return a if a.shape == self.input.shape else a.transpose(2, 0, 1)

    def network(self, width: int = 8, hidden: int = 32):
        from mlproj.model import NetConfig, SmallCNN

        return SmallCNN(NetConfig(min(width, 8), min(hidden, 32), n_classes=3, in_shape=self.input.shape, scale=1.0))

    def service_like(self, seed: int, per_class: int) -> list:
        rng = np.random.default_rng(seed)
        out = []
        for i in range(per_class * 3):
            light = ('dim', 'bright')[i % 2]
            a = draw(i % 3, rng, noise=0.12, brightness=0.7 if light == 'dim' else 1.1)
            out.append((png(a), 'image/png', i % 3, {'light': light}))
        return out

    def render(self, x: np.ndarray) -> bytes:
        return png((np.asarray(x).transpose(1, 2, 0) * 255).astype(np.uint8))


TASK = Shapes()
