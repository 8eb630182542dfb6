"""Request contents to model inputs: JSON pixel counts, binary arrays or image files to (n, 8, 8), with messages saying what to fix.

Every form is checked the same way, once, on the whole array with numpy (numbers, never booleans, counts 0..16, one of
the four shapes): the checks cost microseconds, not one Python call per image."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import orjson

from mlproj.preprocess import MAX_COUNT, InputError, decode_image, to_model_input
from mlproj.settings import Serving

__all__ = [
    'TooManyImages',
    'Unreadable',
    'counts_json',
    'images_batch',
    'json_batch',
    'loads_json',
    'npy_batch',
    'pixels_batch',
    'raw_batch',
    'too_many',
]

_FORMS = 'one image as 64 counts or as 8 rows of 8 counts, or a list of such images (n x 64 or n x 8 x 8)'


class TooManyImages(InputError):
    "More images in one request than settings.ini [serving] max_batch allows."


class Unreadable(ValueError):
    "A body that cannot be parsed at all in its declared format (answered with 400, like invalid JSON)."


def too_many(n: int | str, max_batch: int) -> TooManyImages:
    return TooManyImages(f'{n} images in one request; at most {max_batch} are allowed: send them in several requests')


def _kind(x) -> str:
    if x is None:
        return 'null'
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, str):
        return f'a string ({x[:20]!r})'
    if isinstance(x, dict):
        return 'an object'
    if isinstance(x, list):
        return 'a list'
    return f'the number {x}'


def _desc(shape: tuple) -> str:
    return 'a number' if not shape else f'a list of {"x".join(map(str, shape))}'


def _shape(x, where: str, depth: int = 0) -> tuple:
    "The shape of nested lists of numbers, or an InputError naming the first thing that is not one."
    if isinstance(x, list):
        if depth == 3:
            raise InputError(f'{where} is nested too deeply: send {_FORMS}')
        if not x:
            raise InputError(f'{where} is an empty list: send {_FORMS}')
        shapes = [_shape(v, f'{where}[{i}]', depth + 1) for i, v in enumerate(x)]
        for i, s in enumerate(shapes):
            if s != shapes[0]:
                raise InputError(f'{where} is ragged: {where}[0] is {_desc(shapes[0])} but {where}[{i}] is {_desc(s)}')
        return (len(x), *shapes[0])
    if depth == 0:
        raise InputError(f'pixels must be a list, not {_kind(x)}: send {_FORMS}')
    if type(x) not in (int, float):
        raise InputError(f'{where} is {_kind(x)}; pixel values must be numbers, counts from 0 to 16')
    return ()


def loads_json(body: bytes):
    "A JSON body parsed by orjson (5x the standard library's speed); what orjson refuses goes to the standard library, so NaN, Infinity and numbers beyond float range get the answers they always got. ValueError or RecursionError: not JSON."
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _as_array(pixels, may_hold_booleans: bool = True) -> np.ndarray:
    "A numeric array of `pixels` if it is regular nested lists of numbers; else an InputError saying where it is not."
    if isinstance(pixels, list):
        try:
            a = np.array(pixels)  # the fast path: a regular array of numbers
        except (ValueError, TypeError, OverflowError):
            a = None  # ragged
        if a is not None and a.dtype.kind in 'iuf' and a.size:
            if not may_hold_booleans:
                return a
            _shape(pixels, 'pixels')  # numpy reads true as 1: walk the lists to refuse booleans wherever they are
            return a
    _shape(pixels, 'pixels')  # raises, saying what is wrong, for everything but integers beyond float range
    try:
        return np.array(pixels, dtype=np.float64)
    except OverflowError:
        raise InputError('pixels holds a number far outside 0..16; pixel values are counts from 0 to 16') from None


# Besides its key, the usual body holds only these bytes: unsigned integers in lists. One pass of bytes.translate (C,
# a fraction of a microsecond) proves it, and numpy then builds int16 straight away, without inferring a type.
_COUNTS_TEXT, _COUNTS_ONLY = b'0123456789,[] \t\n\r', b'{"pixels":}'


def pixels_batch(
    body,  # a parsed JSON body: {"pixels": ...}
    max_batch: int,  # the most images accepted
    raw: bytes
    | None = None,  # the JSON text it was parsed from: lets the usual body (unsigned integers) skip type inference and the walk for booleans
) -> np.ndarray:
    "(n, 8, 8) float32 model inputs for a JSON body holding one image or a list of images of UCI counts."
    if not isinstance(body, dict):
        raise InputError(f'the JSON body must be an object {{"pixels": ...}}, not {_kind(body)}')
    if 'pixels' not in body:
        raise InputError(f'the JSON body has no "pixels" field: send {{"pixels": ...}} with {_FORMS}')
    if len(body) > 1:
        extra = sorted(set(body) - {'pixels'})
        raise InputError(
            f'unexpected field{"s" * (len(extra) > 1)} {", ".join(map(repr, extra))}: the body takes only "pixels"'
        )
    rest = None if raw is None else raw.translate(None, _COUNTS_TEXT)
    if rest == _COUNTS_ONLY:  # no sign, fraction, exponent, string, boolean or null anywhere
        try:
            a = np.array(body['pixels'], dtype=np.int16)  # faster to build than uint8 for large batches
        except (ValueError, OverflowError):
            a = None  # ragged, or a number beyond int16: the general path says which
        if a is not None and a.ndim and a.size:
            return _batch(a.view(np.uint16), max_batch, 'pixels')  # no sign: one reduction
    # true and false are the only JSON tokens with a t or an f (outside strings, which the walk refuses anyway)
    return _batch(_as_array(body['pixels'], rest is None or b't' in rest or b'f' in rest), max_batch, 'pixels')


_PREFIX, _WS, _DIGITS = re.compile(rb'[ \t\n\r]*\{[ \t\n\r]*"pixels"[ \t\n\r]*:'), b' \t\n\r', b'0123456789'
_ROW, _IMAGE = (
    b'[' + b',' * 63 + b']',
    b'[' + b','.join([b'[,,,,,,,]'] * 8) + b']',
)  # 64 counts, 8 x 8: numbers left out


def counts_json(
    raw: bytes,  # a JSON body's text
) -> np.ndarray | None:
    """The pixels of the usual body, `{"pixels": ...}` holding unsigned integers of at most two digits in one of the four
    shapes, read straight from the text by numpy (18 ns a count at 256 images, against 43 ns for orjson and numpy's list
    conversion); None for any other body, valid JSON or not: the general path then reads it and says what is wrong.
    An array it returns holds exactly the counts orjson would read (as uint8, up to 99): `json_batch` then refuses one
    over 16 in `pixels_batch`'s words."""
    if raw.translate(None, _COUNTS_TEXT) != _COUNTS_ONLY:
        return None
    m, end = _PREFIX.match(raw), len(raw.rstrip(_WS))
    if m is None or raw[end - 1 : end] != b'}':
        return None
    mid = raw[m.end() : end - 1]  # the pixels: digits, brackets, commas and whitespace
    b = np.frombuffer(mid, np.uint8)
    if not len(b) or ((b[:-1] - np.uint8(48) < 10) & (b[1:] <= 32)).any():
        return None  # whitespace after a digit
    text = mid.translate(None, _WS)  # no whitespace left inside a number: drop it all
    c = np.frombuffer(text + b'\0', np.uint8)  # a last byte that is nothing of the above
    d = c - np.uint8(48)  # a digit's value; brackets, commas and the last byte wrap round to 10 or more
    isd = d < 10
    last = isd[:-1] & ~isd[1:]  # each number's last digit
    opens, closes = (c == 91) | (c == 44), (c == 44) | (c == 93)  # [ or , before a number; , or ] after it
    pair = isd[:-1] & isd[1:]
    if (
        (last & ~closes[1:]).any()
        or (opens[:-1] & closes[1:]).any()
        or (pair[:-1] & isd[2:]).any()
        or (pair & (d[:-1] == 0)).any()
    ):
        return (
            None  # a number not followed by , or ]; no number between [ or , and , or ]; three digits; a leading zero
        )
    at = np.flatnonzero(last)
    k, extra = divmod(len(at), 64)
    if extra or not k:
        return None
    # the brackets and commas must be those of one of the shapes; then, with no place for a number left empty, each of
    # the 64 k places holds one number and there are no others
    skeleton = text.translate(None, _DIGITS)
    if skeleton == b'[' + b','.join([_ROW] * k) + b']':
        shape = (k, 64)
    elif skeleton == b'[' + b','.join([_IMAGE] * k) + b']':
        shape = (k, 8, 8)
    elif skeleton == _ROW:
        shape = (64,)
    elif skeleton == _IMAGE:
        shape = (8, 8)
    else:
        return None
    tens = at - 1  # the digit before a number's last, if it has two (the text starts with a bracket: at >= 1)
    return (d[at] + np.where(isd[tens], d[tens] * np.uint8(10), np.uint8(0))).reshape(shape)


FAST_JSON_BYTES = 4096  # below this (16 images), orjson and numpy's list conversion are as fast


def json_batch(
    raw: bytes,  # a JSON body's text
    max_batch: int,  # the most images accepted
) -> np.ndarray:
    "(n, 8, 8) float32 model inputs for a JSON body: the usual large body read from its text by `counts_json`, any other parsed by orjson and checked by `pixels_batch`. Unreadable: not JSON; InputError: JSON, but not pixels."
    a = counts_json(raw) if len(raw) > FAST_JSON_BYTES else None
    if a is not None:
        return _batch(a, max_batch, 'pixels')
    try:
        body = loads_json(raw)
    except (ValueError, RecursionError) as e:
        raise Unreadable(f'the body is not valid JSON ({e}): send {{"pixels": ...}} with {_FORMS}') from None
    return pixels_batch(body, max_batch, raw)


def _batch(a: np.ndarray, max_batch: int, what: str) -> np.ndarray:
    "(n, 8, 8) float32 counts from a numeric array of one of the four shapes; an InputError saying what is wrong."
    return _counts(a, what if _check_shape(a.shape, max_batch, what) else None, what)


def _check_shape(shape: tuple, max_batch: int, what: str) -> bool:
    "True for one image (64 or 8x8), False for a list of at most `max_batch`; else an InputError (413 past max_batch)."
    one = shape in ((64,), (8, 8))
    if (
        not (one or (len(shape) == 2 and shape[1] == 64) or (len(shape) == 3 and shape[1:] == (8, 8)))
        or min(shape, default=0) < 1
    ):
        raise InputError(f'{what} has shape {"x".join(map(str, shape)) or "of a single number"}: send {_FORMS}')
    if not one and shape[0] > max_batch:
        raise too_many(shape[0], max_batch)
    return one


def _counts(a: np.ndarray, one: str | None, what: str) -> np.ndarray:
    "`a` as contiguous float32 (n, 8, 8) if every value is a count 0..16 as the model gets it (float32); else to_model_input's message for the first image that is not."
    if a.dtype.kind == 'u':
        ok = a.max() <= MAX_COUNT
    elif a.dtype.kind == 'i':  # one reduction: read as unsigned, a negative count is larger than any count
        ok = a.view(a.dtype.str.replace('i', 'u')).max() <= MAX_COUNT
    else:
        ok = a.min() >= 0 and a.max() <= MAX_COUNT  # two reductions: NaN fails both comparisons, infinities one
    if not ok:  # rare: check image by image as float32, in to_model_input's words (training's check)
        with np.errstate(over='ignore', invalid='ignore'):
            a = a.astype(np.float32)  # a huge float becomes inf: refused
        for i, img in enumerate(a.reshape(-1, 8, 8)):
            try:
                to_model_input(img)
            except InputError as e:
                raise InputError(f'{one or f"{what}[{i}]"}: {e}') from None
    return np.ascontiguousarray(a, dtype=np.float32).reshape(-1, 8, 8)  # in range: the cast cannot overflow


NPY_SEND = 'send the output of numpy.save of an array of counts 0..16 (64, 8x8, n x 64 or n x 8 x 8; any integer or float dtype)'


def npy_batch(
    body: bytes,  # a .npy file, as numpy.save writes it
    max_batch: int,  # the most images accepted
) -> np.ndarray:
    "(n, 8, 8) float32 model inputs from a .npy file; the header is read and checked before any array is made."
    f = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f'.npy format version {version[0]}.{version[1]} is not read here')
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f, max_header_size=1024)
    except (ValueError, SyntaxError) as e:
        raise Unreadable(f'the body is not a .npy file ({e}): {NPY_SEND}') from None
    if dtype.kind not in 'iuf':
        raise InputError(
            f'the array holds {dtype.name} values; pixel values must be numbers (an integer or float dtype), counts from 0 to 16'
        )
    one = _check_shape(shape, max_batch, 'the array')  # before any array is made: a header may claim any size
    n = int(np.prod(shape))
    if len(body) - f.tell() != n * dtype.itemsize:
        raise Unreadable(
            f'the .npy header says {n * dtype.itemsize} bytes of data but {len(body) - f.tell()} follow it: {NPY_SEND}'
        )
    a = np.frombuffer(body, dtype, n, f.tell()).reshape(shape, order='F' if fortran else 'C')
    return _counts(a, 'the array' if one else None, 'the array')


RAW_SEND = 'send 64 bytes per image, one count 0..16 a byte, row by row (numpy: counts.astype("uint8").tobytes())'


def raw_batch(
    body: bytes,  # 64 bytes per image: unsigned counts 0..16, row by row
    max_batch: int,  # the most images accepted
) -> np.ndarray:
    "(n, 8, 8) float32 model inputs from raw uint8 counts, no header: the fastest form to send and to read."
    if len(body) % 64:
        raise InputError(f'the body holds {len(body)} bytes, not a multiple of 64: {RAW_SEND}')
    n = len(body) // 64
    if n > max_batch:
        raise too_many(n, max_batch)
    return _counts(np.frombuffer(body, np.uint8).reshape(n, 8, 8), None, 'images')


def _pixels(data: bytes) -> int:
    "Width x height an image file declares in its header (0 when it is not one: decoding then says why)."
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size[0] * im.size[1]
    except Exception:
        return 0


def images_batch(
    files: list[tuple[str, bytes]],  # (name, encoded image) per uploaded file, in order
    serving: Serving,  # its max_image_side, max_image_pixels and max_request_pixels
) -> np.ndarray:
    "(n, 8, 8) float32 model inputs for image files (PNG, JPEG, TIFF, anything Pillow reads), either polarity."
    total = sum(_pixels(data) for _, data in files)
    if total > serving.max_request_pixels:
        raise TooManyImages(
            f'the images hold {total} pixels in all; at most {serving.max_request_pixels} are allowed '
            'in one request: send them in several requests, or smaller'
        )
    out = []
    for i, (name, data) in enumerate(files, 1):
        where = f'file {i} ({name!r})'
        if not data:
            raise InputError(f'{where} is empty')
        try:
            out.append(
                to_model_input(
                    decode_image(data, serving.max_image_side, serving.max_image_pixels), serving.max_image_side
                )
            )
        except InputError as e:
            raise InputError(f'{where}: {e}') from None
    return np.stack(out)
