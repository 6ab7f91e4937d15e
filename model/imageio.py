"""Read a radiograph from a path or bytes into float32 H×W in [0, 1] (0 = black / no attenuation shown).

One reader for the CLI, segmentation and the app's upload. PNG/JPEG (8/16-bit, gray/RGB/RGBA) through Pillow,
DICOM through pydicom (MONOCHROME1 inverted, modality and VOI LUT / window applied). Only pixels leave this
module: DICOM patient tags are never returned. Every refusal is an `ImageReadError` naming the problem.
"""
from __future__ import annotations

import io
import os
import warnings

import numpy as np

MIN_SIDE = 32  # smaller than this is not a radiograph we can say anything about
MAX_SIDE = 8192  # larger than any detector (43 cm at 0.05 mm); guards against decompression bombs
MAX_PIXELS = MAX_SIDE * MAX_SIDE


class ImageReadError(ValueError):
    """The input is not a readable radiograph; the message says why."""


def _load_bytes(source) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise ImageReadError(f"{path}: no such file")
    with open(path, "rb") as fh:
        return fh.read(), path


def _is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def _check_size(width: int, height: int, name: str) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageReadError(f"{name}: image is {width}x{height}; at least {MIN_SIDE}x{MIN_SIDE} pixels are needed")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ImageReadError(f"{name}: image claims {width}x{height} pixels; refusing anything larger than "
                             f"{MAX_SIDE}x{MAX_SIDE} (possible decompression bomb)")


def _to_unit(arr: np.ndarray, name: str) -> np.ndarray:
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ImageReadError(f"{name}: image has non-finite pixel values")
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.float32)  # a constant image reads fine; judging it is segmentation's job
    return (arr - lo) / (hi - lo)


def _read_pil(data: bytes, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        # Image.open only parses the header, so the size check runs before any pixel is decoded.
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not a PNG, JPEG or DICOM image") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{name}: refusing an image larger than {MAX_SIDE}x{MAX_SIDE} pixels "
                             f"(possible decompression bomb: {exc})") from None
    except Exception as exc:  # Pillow raises assorted errors on malformed headers
        raise ImageReadError(f"{name}: unreadable image header ({exc})") from None
    _check_size(img.width, img.height, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
    except Exception as exc:
        raise ImageReadError(f"{name}: image data is truncated or corrupt ({exc})") from None
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        scale = 65535.0 if mode.startswith("I;16") else None
    else:
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
            # Transparent pixels are background; composite on black so they do not read as bone.
            rgba = img.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            img = Image.alpha_composite(bg, rgba)
        arr = np.asarray(img.convert("L"), dtype=np.float32)
        scale = 255.0
    if scale is None:
        return _to_unit(arr, name)
    return np.clip(arr / scale, 0.0, 1.0).astype(np.float32)


def _read_dicom(data: bytes, name: str) -> np.ndarray:
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError as exc:  # pragma: no cover - pydicom is a pinned requirement
        raise ImageReadError(f"{name}: DICOM support needs pydicom ({exc})") from None
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise ImageReadError(f"{name}: unreadable DICOM ({exc})") from None
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    if "PixelData" not in ds:
        raise ImageReadError(f"{name}: DICOM has no pixel data")
    _check_size(cols, rows, name)
    if int(getattr(ds, "NumberOfFrames", 1) or 1) != 1:
        raise ImageReadError(f"{name}: DICOM has {ds.NumberOfFrames} frames; a single radiograph is expected")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise ImageReadError(f"{name}: DICOM pixel data is truncated or undecodable ({exc})") from None
    if arr.ndim == 3:  # colour DICOM (rare for CR/DX): luminance
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    else:
        arr = apply_modality_lut(arr, ds)
        arr = apply_voi_lut(arr, ds)  # uses the stored VOI LUT or window centre/width when present
    if arr.shape != (rows, cols):
        raise ImageReadError(f"{name}: DICOM pixel array is {arr.shape}, header says {rows}x{cols}")
    out = _to_unit(np.asarray(arr), name)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 1.0 - out  # MONOCHROME1 stores bright air; show air dark like every other radiograph
    return out


def read_radiograph(source) -> np.ndarray:
    """`source`: a path or bytes. Returns float32 H×W in [0, 1]; raises ImageReadError with the reason."""
    data, name = _load_bytes(source)
    if len(data) == 0:
        raise ImageReadError(f"{name}: file is empty (0 bytes)")
    if _is_dicom(data):
        return _read_dicom(data, name)
    return _read_pil(data, name)


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
