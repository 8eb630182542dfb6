"""Request contents to model inputs: JSON pixel counts or image files to (n, 8, 8), with messages saying what to fix."""
from __future__ import annotations

import io

import numpy as np

from mlproj.preprocess import InputError, decode_image, to_model_input
from mlproj.settings import Serving

__all__ = ['TooManyImages', 'too_many', 'pixels_batch', 'images_batch']

_FORMS = 'one image as 64 counts or as 8 rows of 8 counts, or a list of such images (n x 64 or n x 8 x 8)'


class TooManyImages(InputError):
    "More images in one request than settings.ini [serving] max_batch allows."


def too_many(n: int | str, max_batch: int) -> TooManyImages:
    return TooManyImages(f'{n} images in one request; at most {max_batch} are allowed: '
                         'send them in several requests')


def _kind(x) -> str:
    if x is None: return 'null'
    if isinstance(x, bool): return str(x).lower()
    if isinstance(x, str): return f'a string ({x[:20]!r})'
    if isinstance(x, dict): return 'an object'
    if isinstance(x, list): return 'a list'
    return f'the number {x}'


def _desc(shape: tuple) -> str:
    return 'a number' if not shape else f"a list of {'x'.join(map(str, shape))}"


def _shape(x, where: str, depth: int = 0) -> tuple:
    "The shape of nested lists of numbers, or an InputError naming the first thing that is not one."
    if isinstance(x, list):
        if depth == 3: raise InputError(f'{where} is nested too deeply: send {_FORMS}')
        if not x: raise InputError(f'{where} is an empty list: send {_FORMS}')
        shapes = [_shape(v, f'{where}[{i}]', depth + 1) for i, v in enumerate(x)]
        for i, s in enumerate(shapes):
            if s != shapes[0]:
                raise InputError(f'{where} is ragged: {where}[0] is {_desc(shapes[0])} but {where}[{i}] is {_desc(s)}')
        return (len(x), *shapes[0])
    if depth == 0: raise InputError(f'pixels must be a list, not {_kind(x)}: send {_FORMS}')
    if type(x) not in (int, float):
        raise InputError(f'{where} is {_kind(x)}; pixel values must be numbers, counts from 0 to 16')
    return ()


def _as_array(pixels, may_hold_booleans: bool = True) -> np.ndarray:
    "A numeric array of `pixels` if it is regular nested lists of numbers; else an InputError saying where it is not."
    if isinstance(pixels, list):
        try: a = np.array(pixels) # the fast path: a regular array of numbers
        except (ValueError, TypeError, OverflowError): a = None # ragged
        if a is not None and a.dtype.kind in 'iuf' and a.size:
            if not may_hold_booleans: return a
            _shape(pixels, 'pixels') # numpy reads true as 1: walk the lists to refuse booleans wherever they are
            return a
    _shape(pixels, 'pixels') # raises, saying what is wrong, for everything but integers beyond float range
    try: return np.array(pixels, dtype=np.float64)
    except OverflowError:
        raise InputError('pixels holds a number far outside 0..16; pixel values are counts from 0 to 16') from None


def pixels_batch(body, # a parsed JSON body: {"pixels": ...}
                 max_batch: int, # the most images accepted
                 raw: bytes | None = None # the JSON text it was parsed from: without `true`/`false` in it, no walk for booleans
                ) -> np.ndarray:
    "(n, 8, 8) float32 model inputs for a JSON body holding one image or a list of images of UCI counts."
    if not isinstance(body, dict):
        raise InputError(f'the JSON body must be an object {{"pixels": ...}}, not {_kind(body)}')
    if 'pixels' not in body:
        raise InputError(f'the JSON body has no "pixels" field: send {{"pixels": ...}} with {_FORMS}')
    extra = sorted(set(body) - {'pixels'})
    if extra:
        raise InputError(f"unexpected field{'s' * (len(extra) > 1)} {', '.join(map(repr, extra))}: "
                         'the body takes only "pixels"')
    a = _as_array(body['pixels'], raw is None or b'true' in raw or b'false' in raw)
    one = a.shape in ((64,), (8, 8))
    if not (one or (a.ndim == 2 and a.shape[1] == 64) or (a.ndim == 3 and a.shape[1:] == (8, 8))):
        raise InputError(f"pixels has shape {'x'.join(map(str, a.shape))}: send {_FORMS}")
    a = a.reshape(-1, 8, 8)
    if len(a) > max_batch: raise too_many(len(a), max_batch)
    out = []
    with np.errstate(over='ignore', invalid='ignore'): # a huge float becomes inf in float32; to_model_input refuses it
        for i, img in enumerate(a):
            try: out.append(to_model_input(img))
            except InputError as e: raise InputError(f"{'pixels' if one else f'pixels[{i}]'}: {e}") from None
    return np.stack(out)


def _pixels(data: bytes) -> int:
    "Width x height an image file declares in its header (0 when it is not one: decoding then says why)."
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im: return im.size[0] * im.size[1]
    except Exception: return 0


def images_batch(files: list[tuple[str, bytes]], # (name, encoded image) per uploaded file, in order
                 serving: Serving # its max_image_side, max_image_pixels and max_request_pixels
                ) -> np.ndarray:
    "(n, 8, 8) float32 model inputs for image files (PNG, JPEG, TIFF, anything Pillow reads), either polarity."
    total = sum(_pixels(data) for _, data in files)
    if total > serving.max_request_pixels:
        raise TooManyImages(f'the images hold {total} pixels in all; at most {serving.max_request_pixels} are allowed '
                            'in one request: send them in several requests, or smaller')
    out = []
    for i, (name, data) in enumerate(files, 1):
        where = f'file {i} ({name!r})'
        if not data: raise InputError(f'{where} is empty')
        try: out.append(to_model_input(decode_image(data, serving.max_image_side, serving.max_image_pixels),
                                       serving.max_image_side))
        except InputError as e: raise InputError(f'{where}: {e}') from None
    return np.stack(out)
