"""Read a radiograph from a path or bytes into float32 H×W in [0, 1] (0 = black / no attenuation shown).

One reader for the CLI, segmentation and the app's upload. PNG/JPEG (8/16-bit, gray/RGB/RGBA, EXIF orientation
applied) through Pillow, DICOM through pydicom (MONOCHROME1 inverted, modality and VOI LUT / window applied); any
other format (GIF, BMP, TIFF, WebP), whatever its file name, is refused. Only pixels leave `read_radiograph`; DICOM
patient tags are never returned (`acquisition_tags` gives the five non-identifying ones). Limits: MAX_BYTES,
MAX_SIDE, MAX_PIXELS; `max_side=WORK_SIDE` reads a bounded analysis copy. Every refusal is an `ImageReadError`
naming the file and the problem.
"""
from __future__ import annotations

import io
import os
import warnings

import numpy as np

MIN_SIDE = 32  # smaller than this is not a radiograph we can say anything about
MAX_SIDE = 16_384  # larger than any detector at 0.03 mm; guards against decompression bombs
MAX_PIXELS = MAX_SIDE * MAX_SIDE
MAX_BYTES = 100 * 1024 * 1024  # a 16-bit 8k DICOM is ~130 MB raw but ships compressed; PNG/JPEG far less
# Longer side of the copy the models analyse: segmentation masks are made at the analysed image's resolution, so an
# 8192² upload analysed at full size made ~100 full-size masks (11.85 GB peak, issue 17). The full-resolution
# pixels stay for viewing.
WORK_SIDE = 1024
_ROWS_PER_CHUNK = 1024  # pixels are converted to float this many rows at a time, so the float copy stays small
_READ_FORMATS = ("PNG", "JPEG", "MPO")  # MPO: a phone's multi-picture JPEG; its first picture is the photo


class ImageReadError(ValueError):
    """The input is not a readable radiograph; the message says why."""


def _load_bytes(source) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > MAX_BYTES:
            raise ImageReadError(f"<bytes>: {len(data):,} bytes; the limit is {MAX_BYTES:,} bytes")
        return data, "<bytes>"
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise ImageReadError(f"{path}: no such file")
    size = os.path.getsize(path)
    if size > MAX_BYTES:  # checked before reading: a huge file is never loaded
        raise ImageReadError(f"{path}: file is {size:,} bytes; the limit is {MAX_BYTES:,} bytes")
    with open(path, "rb") as fh:
        return fh.read(), path


def _why(exc: BaseException) -> str:
    """A library's message on one line (pydicom's list every decoder it tried, one per line), at most 300 chars."""
    return " ".join(str(exc).split())[:300]


def _is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def _check_size(width: int, height: int, name: str) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageReadError(f"{name}: image is {width}x{height}; at least {MIN_SIDE}x{MIN_SIDE} pixels are needed")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageReadError(f"{name}: image claims {width}x{height} pixels; refusing anything larger than "
                             f"{MAX_SIDE}x{MAX_SIDE} (possible decompression bomb)")


def _factor(height: int, width: int, max_side: int | None) -> int:
    """The integer block size that brings the longer side to at most `max_side` (1: keep full resolution)."""
    if not max_side or max(height, width) <= max_side:
        return 1
    return -(-max(height, width) // max_side)


def _reduced(height: int, width: int, factor: int, rows) -> np.ndarray:
    """float32 image of ceil(h/f)×ceil(w/f): `rows(a, b)` gives rows a..b as float32, each block of f×f pixels is
    averaged (an area filter). Built chunk by chunk, so memory is the output plus one chunk, not a float copy of
    the full image."""
    step = max(factor, (_ROWS_PER_CHUNK // factor) * factor)
    out = np.empty((-(-height // factor), -(-width // factor)), np.float32)
    for a in range(0, height, step):
        chunk = rows(a, min(a + step, height))
        if factor > 1:
            pad_h, pad_w = -chunk.shape[0] % factor, -chunk.shape[1] % factor
            if pad_h or pad_w:  # edge blocks repeat their last row / column instead of being cropped
                chunk = np.pad(chunk, ((0, pad_h), (0, pad_w)), mode="edge")
            chunk = chunk.reshape(chunk.shape[0] // factor, factor, chunk.shape[1] // factor, factor).mean((1, 3))
        out[a // factor:a // factor + chunk.shape[0]] = chunk
    return out


def _to_unit(arr: np.ndarray, name: str) -> np.ndarray:
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ImageReadError(f"{name}: image has non-finite pixel values")
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.float32)  # a constant image reads fine; judging it is segmentation's job
    arr -= lo
    arr /= hi - lo
    return arr


def _open_pil(data: bytes, name: str):
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # our limit, checked below with a clearer message, replaces Pillow's 89 M
    try:
        # Image.open only parses the header, so the size check runs before any pixel is decoded.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # _check_size says it more plainly
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not a PNG, JPEG or DICOM image") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{name}: refusing an image larger than {MAX_SIDE}x{MAX_SIDE} pixels "
                             f"(possible decompression bomb: {_why(exc)})") from None
    except Exception as exc:  # Pillow raises assorted errors on malformed headers
        raise ImageReadError(f"{name}: unreadable image header ({_why(exc)})") from None
    if img.format not in _READ_FORMATS:
        ext = os.path.splitext(name)[1].lower()
        named = f" named {ext}" if ext else ""
        raise ImageReadError(f"{name}: file is {img.format or 'unknown'} image data{named}; only PNG, JPEG and "
                             "DICOM radiographs are read (convert it to PNG first)")
    if img.format == "PNG" and getattr(img, "n_frames", 1) > 1:
        raise ImageReadError(f"{name}: animated PNG with {img.n_frames} frames; a single radiograph is expected")
    _check_size(img.width, img.height, name)
    return img


def _read_pil(data: bytes, name: str, max_side: int | None) -> np.ndarray:
    from PIL import Image, ImageOps

    img = _open_pil(data, name)
    factor = _factor(img.height, img.width, max_side)
    if factor > 1 and img.format in ("JPEG", "MPO"):
        img.draft("L", (img.width // factor, img.height // factor))  # JPEG decodes at 1/2, 1/4 or 1/8 directly
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
            # A phone or scanner JPEG may be stored sideways with an EXIF Orientation saying how to turn it.
            img = ImageOps.exif_transpose(img)
    except Exception as exc:
        raise ImageReadError(f"{name}: image data is truncated or corrupt ({_why(exc)})") from None
    mode = img.mode
    alpha = None
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        scale = 65535.0 if mode.startswith("I;16") else None
    else:
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
            # Transparent pixels are background: composited on black so they do not read as bone.
            img = img.convert("LA")
            alpha = img.getchannel("A")
        img, scale = img.convert("L"), 255.0
    factor = _factor(img.height, img.width, max_side)  # after draft and rotation

    def rows(a: int, b: int) -> np.ndarray:
        x = np.asarray(img.crop((0, a, img.width, b)), dtype=np.float32)
        if alpha is not None:
            x *= np.asarray(alpha.crop((0, a, img.width, b)), dtype=np.float32) / 255.0
        return x

    arr = _reduced(img.height, img.width, factor, rows)
    if scale is None:
        return _to_unit(arr, name)
    arr /= scale
    return np.clip(arr, 0.0, 1.0, out=arr)


def _read_dicom(data: bytes, name: str, max_side: int | None) -> np.ndarray:
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - pydicom is a pinned requirement
        raise ImageReadError(f"{name}: DICOM support needs pydicom ({_why(exc)})") from None
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise ImageReadError(f"{name}: unreadable DICOM ({_why(exc)})") from None
    try:
        rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise ImageReadError(f"{name}: DICOM Rows / Columns / NumberOfFrames are not numbers ({_why(exc)})") from None
    if "PixelData" not in ds:
        raise ImageReadError(f"{name}: DICOM has no pixel data")
    _check_size(cols, rows, name)
    if frames != 1:
        raise ImageReadError(f"{name}: DICOM has {frames} frames; a single radiograph is expected")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise ImageReadError(f"{name}: DICOM pixel data is truncated or undecodable ({_why(exc)})") from None
    if arr.shape[:2] != (rows, cols):
        raise ImageReadError(f"{name}: DICOM pixel array is {arr.shape}, header says {rows}x{cols}")
    colour = arr.ndim == 3
    factor = _factor(rows, cols, max_side)
    out = _reduced(rows, cols, factor, lambda a, b: _dicom_rows(arr[a:b], ds, colour, name))
    out = _to_unit(out, name)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 1.0 - out  # MONOCHROME1 stores bright air; show air dark like every other radiograph
    return out


def _dicom_rows(arr: np.ndarray, ds, colour: bool, name: str) -> np.ndarray:
    """Rows of stored pixels through the modality and VOI LUTs (both pointwise, so rows go through alone)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if colour:  # colour DICOM (rare for CR/DX): luminance
        return arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = apply_modality_lut(arr, ds)
    except Exception as exc:
        raise ImageReadError(f"{name}: malformed modality LUT or rescale slope / intercept "
                             f"({type(exc).__name__}: {_why(exc)})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = apply_voi_lut(arr, ds)  # the stored VOI LUT, or window centre / width, when present
    except Exception as exc:
        raise ImageReadError(f"{name}: malformed VOI LUT or window centre / width "
                             f"({type(exc).__name__}: {_why(exc)})") from None
    return np.asarray(arr, dtype=np.float32)


def read_radiograph(source, max_side: int | None = None) -> np.ndarray:
    """`source`: a path or bytes. Returns float32 H×W in [0, 1]; raises ImageReadError with the reason.
    `max_side`: reduce by an integer area filter so that the longer side is at most this (WORK_SIDE for analysis),
    without ever holding a full-resolution float copy."""
    data, name = _load_bytes(source)
    if len(data) == 0:
        raise ImageReadError(f"{name}: file is empty (0 bytes)")
    if _is_dicom(data):
        return _read_dicom(data, name, max_side)
    return _read_pil(data, name, max_side)


ACQUISITION_TAGS = {"ViewPosition": "view_position", "PixelSpacing": "pixel_spacing", "BitsStored": "bits_stored",
                    "PhotometricInterpretation": "photometric_interpretation", "Modality": "modality"}


def acquisition_tags(source) -> dict:
    """The non-identifying acquisition tags of a DICOM (ACQUISITION_TAGS; never a name, date, id or institution),
    as plain JSON values; {} for PNG/JPEG or a tag that is absent or malformed."""
    data, _ = _load_bytes(source)
    if not _is_dicom(data):
        return {}
    import pydicom
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True,
                             specific_tags=list(ACQUISITION_TAGS))
    except Exception:
        return {}
    tags = {}
    for keyword, key in ACQUISITION_TAGS.items():
        try:
            value = ds.get(keyword)
            if value is None or value == "":
                continue
            if keyword == "PixelSpacing":
                value = [float(v) for v in value][:2]
            elif keyword == "BitsStored":
                value = int(value)
            else:
                value = str(value)[:16]
            tags[key] = value
        except (TypeError, ValueError):
            continue
    return tags


def as_gray_unit(image) -> np.ndarray:
    """An in-memory image (uint8 / uint16 / float, H×W or H×W×3/4) as float32 H×W in [0, 1]. Integer images are
    scaled by their dtype's range; float images are min-max stretched unless already within [0, 1]."""
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageReadError(f"image array has shape {arr.shape}; expected a grayscale H×W image "
                             "(or H×W×3 / H×W×4)")
    _check_size(arr.shape[1], arr.shape[0], "<array>")
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "ui":
        arr = arr.astype(np.float32) / np.iinfo(arr.dtype).max
    else:
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ImageReadError("<array>: image has non-finite pixel values")
        if arr.min() < 0.0 or arr.max() > 1.0:
            arr = _to_unit(arr, "<array>")
    if arr.ndim == 3:
        if arr.shape[2] == 4:  # transparent pixels are background: composite on black
            arr = arr[..., :3] * arr[..., 3:4]
        arr = arr @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.ascontiguousarray(arr, dtype=np.float32)
