"""model.imageio: every supported encoding reads to float32 [0, 1]; every bad input is refused by name."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from model.imageio import ImageReadError, as_gray_unit, read_radiograph


def _png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG") if mode else Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _ramp(h=64, w=48):
    return np.tile(np.linspace(0, 255, w, dtype=np.float32), (h, 1))


def test_8bit_gray_png_keeps_values_scaled_to_unit():
    arr = _ramp().astype(np.uint8)
    out = read_radiograph(_png_bytes(arr))
    assert out.dtype == np.float32 and out.shape == (64, 48)
    np.testing.assert_allclose(out, arr / 255.0, atol=1e-6)


def test_16bit_png_uses_full_16bit_range():
    arr = (np.tile(np.linspace(0, 65535, 48), (64, 1))).astype(np.uint16)
    out = read_radiograph(_png_bytes(arr))
    assert out.shape == (64, 48)
    np.testing.assert_allclose(out, arr / 65535.0, atol=1e-4)
    assert len(np.unique(out)) > 40  # not collapsed to 8 bits


def test_rgb_and_rgba_read_as_gray_with_transparent_as_black(tmp_path):
    gray = _ramp().astype(np.uint8)
    rgb = np.dstack([gray] * 3)
    np.testing.assert_allclose(read_radiograph(_png_bytes(rgb)), gray / 255.0, atol=1 / 255)
    rgba = np.dstack([gray] * 3 + [np.full_like(gray, 255)])
    rgba[:, :10, 3] = 0
    path = tmp_path / "x.png"
    path.write_bytes(_png_bytes(rgba))
    out = read_radiograph(str(path))
    assert np.all(out[:, :10] == 0) and out[:, -1].min() > 0.9


def test_jpeg_reads():
    buf = io.BytesIO()
    Image.fromarray(_ramp().astype(np.uint8)).save(buf, format="JPEG", quality=95)
    out = read_radiograph(buf.getvalue())
    assert out.shape == (64, 48) and out[:, -1].mean() > 0.9 and out[:, 0].mean() < 0.1


@pytest.mark.parametrize("data,needle", [
    (b"", "empty"),
    (b"definitely not an image at all", "not a PNG, JPEG or DICOM"),
    (_png_header_only(1, 1), "1x1"),
    (_png_header_only(60000, 60000), "decompression bomb"),
    (_png_header_only(17000, 17000), "larger than"),
])
def test_bad_inputs_are_refused_by_name(data, needle):
    with pytest.raises(ImageReadError, match=needle):
        read_radiograph(data)


def test_truncated_png_is_refused():
    data = _png_bytes(np.random.default_rng(0).integers(0, 255, (128, 128), dtype=np.uint8))
    with pytest.raises(ImageReadError, match="truncated|corrupt"):
        read_radiograph(data[: len(data) // 2])


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_radiograph(str(tmp_path / "nope.png"))


def _dicom_bytes(pixels: np.ndarray, photometric: str, window=None) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.PatientName = "Secret^Patient"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_dicom_monochrome1_is_inverted_and_window_applied():
    px = np.tile(np.linspace(0, 4000, 64), (64, 1)).astype(np.uint16)
    m2 = read_radiograph(_dicom_bytes(px, "MONOCHROME2"))
    m1 = read_radiograph(_dicom_bytes(px, "MONOCHROME1"))
    assert isinstance(m2, np.ndarray) and m2.dtype == np.float32  # pixels only: no tags travel
    assert m2[:, 0].mean() < 0.05 and m2[:, -1].mean() > 0.95
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-5)
    win = read_radiograph(_dicom_bytes(px, "MONOCHROME2", window=(1000, 500)))
    # Window 750..1250: everything below saturates black, above white.
    assert win[:, px[0] < 700].max() < 0.01 and win[:, px[0] > 1300].min() > 0.99


def test_truncated_dicom_is_refused():
    data = _dicom_bytes(np.zeros((64, 64), np.uint16), "MONOCHROME2")
    with pytest.raises(ImageReadError, match="DICOM"):
        read_radiograph(data[:-3000])


def test_as_gray_unit_scales_by_dtype_and_checks_shape():
    assert as_gray_unit(np.full((40, 40), 65535, np.uint16)).max() == pytest.approx(1.0)
    assert as_gray_unit(np.full((40, 40), 128, np.uint8)).max() == pytest.approx(128 / 255)
    f = as_gray_unit(np.linspace(-5, 5, 1600).reshape(40, 40))
    assert f.min() == 0.0 and f.max() == 1.0
    with pytest.raises(ImageReadError, match="shape"):
        as_gray_unit(np.zeros((40, 40, 2)))
    with pytest.raises(ImageReadError, match="at least"):
        as_gray_unit(np.zeros((4, 4)))


# ---- issue 17: formats, orientation, LUTs, limits, working size ---------------------------------------------------------


def _encoded(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "WEBP"])
def test_other_formats_named_png_are_refused_naming_the_real_format(tmp_path, fmt):
    path = tmp_path / "chest.png"
    path.write_bytes(_encoded(_ramp().astype(np.uint8), fmt))
    with pytest.raises(ImageReadError, match=f"chest.png: file is {fmt} image data named .png; only PNG, JPEG"):
        read_radiograph(str(path))


def test_exif_orientation_is_applied():
    img = np.zeros((40, 64), np.uint8)
    img[:, :8] = 255  # a bright band on the stored image's left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    out = read_radiograph(_encoded(img, "JPEG", quality=95, exif=exif.tobytes()))
    assert out.shape == (64, 40), "the displayed image is portrait"
    assert out[:8].mean() > 0.8 and out[-8:].mean() < 0.2, "the left band is now at the top"


def _dicom_with(mutate) -> bytes:
    import pydicom
    ds = pydicom.dcmread(io.BytesIO(_dicom_bytes(np.tile(np.linspace(0, 4000, 64), (64, 1)), "MONOCHROME2")))
    mutate(ds)
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def _modality_lut_without_data(ds):
    from pydicom.dataset import Dataset
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    ds.ModalityLUTSequence = [item]


def _short_voi_lut(ds):
    from pydicom.dataset import Dataset
    item = Dataset()
    item.LUTDescriptor = [10, 0, 16]
    item.LUTData = np.array([1, 2, 3], np.uint16).tobytes()
    ds.VOILUTSequence = [item]


def _zero_window(ds):
    ds.WindowCenter, ds.WindowWidth = 100, 0


@pytest.mark.parametrize("mutate, needle", [
    (_modality_lut_without_data, "malformed modality LUT"),
    (_short_voi_lut, "malformed VOI LUT"),
    (_zero_window, "malformed VOI LUT or window"),
])
def test_malformed_dicom_luts_are_refused_by_name(mutate, needle):
    with pytest.raises(ImageReadError, match=needle):
        read_radiograph(_dicom_with(mutate))


def test_unparseable_rescale_slope_is_refused():
    def rescale(ds):
        ds.RescaleSlope, ds.RescaleIntercept = "1.5", "0"
    data = _dicom_with(rescale)
    data = data.replace(b"1.5 ", b"abc ")  # DS is text: what a broken writer could leave
    with pytest.raises(ImageReadError, match="malformed modality LUT or rescale"):
        read_radiograph(data)


def test_a_file_over_the_byte_limit_is_refused_before_it_is_read(tmp_path):
    from model.imageio import MAX_BYTES
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(MAX_BYTES + 1)  # sparse: no disk or time spent
    with pytest.raises(ImageReadError, match="big.png: file is 104,857,601 bytes; the limit is 104,857,600"):
        read_radiograph(str(big))


def test_working_size_is_an_area_average_with_the_longer_side_bounded():
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (300, 200), dtype=np.uint8)
    small = read_radiograph(_png_bytes(arr), max_side=100)
    assert small.shape == (100, 67)  # factor 3; the last column block repeats its edge
    np.testing.assert_allclose(small[:, :66], arr[:, :198].reshape(100, 3, 66, 3).mean((1, 3)) / 255, atol=1e-5)
    assert read_radiograph(_png_bytes(arr), max_side=1024).shape == (300, 200), "small images are not touched"


def test_dicom_working_size_matches_the_full_read_reduced():
    px = np.tile(np.linspace(0, 4000, 128), (128, 1)).astype(np.uint16)
    data = _dicom_bytes(px, "MONOCHROME1", window=(2000, 3000))
    full, small = read_radiograph(data), read_radiograph(data, max_side=32)
    assert small.shape == (32, 32)
    reduced = full.reshape(32, 4, 32, 4).mean((1, 3))
    np.testing.assert_allclose(small, (reduced - reduced.min()) / (reduced.max() - reduced.min()), atol=1e-5)


def test_acquisition_tags_keep_only_the_five_non_identifying_ones():
    from model.imageio import acquisition_tags

    def tag(ds):
        ds.Modality, ds.ViewPosition, ds.PixelSpacing = "DX", "PA", [0.139, 0.139]
        ds.InstitutionName, ds.StudyDate = "St Example", "20260101"
    tags = acquisition_tags(_dicom_with(tag))
    assert tags == {"modality": "DX", "view_position": "PA", "pixel_spacing": [0.139, 0.139], "bits_stored": 12,
                    "photometric_interpretation": "MONOCHROME2"}
    assert acquisition_tags(_png_bytes(_ramp().astype(np.uint8))) == {}
