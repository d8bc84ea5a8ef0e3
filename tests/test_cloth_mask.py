"""cloth_mask.cloth_mask: the model-free cloth mask, on VITON's real clothes (against VITON's own masks) and on
constructed product shots whose masks are drawn independently here."""
import io
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
from skimage.color import rgb2lab

from conftest import VITON_SAMPLES, require
from cloth_mask import cloth_mask

# ----------------------------------------------------------------------------------------------------
# Constructed product shots
# ----------------------------------------------------------------------------------------------------

# A T-shirt outline in relative coordinates (x, y), sleeves out; and a tank top with straps up to the top edge.
TSHIRT = [(0.36, 0.10), (0.44, 0.15), (0.56, 0.15), (0.64, 0.10), (0.85, 0.20), (0.95, 0.38), (0.80, 0.44),
          (0.76, 0.36), (0.76, 0.90), (0.24, 0.90), (0.24, 0.36), (0.20, 0.44), (0.05, 0.38), (0.15, 0.20)]
TANK_TOP = [(0.30, 0.0), (0.38, 0.0), (0.42, 0.30), (0.58, 0.30), (0.62, 0.0), (0.70, 0.0), (0.72, 0.35),
            (0.78, 0.45), (0.78, 0.92), (0.22, 0.92), (0.22, 0.45), (0.28, 0.35)]
SUPER = 4  # drawings are made at 4x and reduced, for anti-aliased edges like a photo's


def polygon(points, width, height, scale=1):
    return [(x * width * scale, y * height * scale) for x, y in points]


def drawn_mask(points, width, height):
    """The expected mask: the polygon drawn at the image's own size (independently of the photo's drawing)."""
    im = Image.new('1', (width, height), 0)
    ImageDraw.Draw(im).polygon(polygon(points, width, height), fill=1, outline=1)
    return np.asarray(im, dtype=bool)


def photo(width, height, background, draw, jpeg=None, noise=0.0, seed=0, clip=None):
    """A product shot: ``draw(ImageDraw, width, height)`` at 4x on ``background`` (with ``clip``, a polygon,
    only what lies inside it is kept), reduced to (width, height), optionally with Gaussian noise and JPEG
    compression."""
    im = Image.new('RGB', (width * SUPER, height * SUPER), background)
    draw(ImageDraw.Draw(im), width * SUPER, height * SUPER)
    if clip is not None:
        inside = Image.new('L', im.size, 0)
        ImageDraw.Draw(inside).polygon(polygon(clip, *im.size), fill=255)
        im = Image.composite(im, Image.new('RGB', im.size, background), inside)
    im = im.resize((width, height), Image.LANCZOS)
    if noise:
        a = np.asarray(im).astype(np.float32) + np.random.default_rng(seed).normal(0, noise, (height, width, 3))
        im = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8))
    if jpeg:
        buffer = io.BytesIO()
        im.save(buffer, 'JPEG', quality=jpeg)
        im = Image.open(io.BytesIO(buffer.getvalue()))
    return np.asarray(im.convert('RGB'))


def iou(a, b):
    union = (a | b).sum()
    return (a & b).sum() / union if union else 1.0


def white_shirt(d, w, h, fabric=252, gaps=0.0):
    """A white shirt on white (drawn with clip=TSHIRT): the fabric ``fabric`` (252 is 1.2 Lab units from the
    background, below the noise allowance), a thin grey outline (1 px at 256x192) and a soft shading band inside
    it (3 px); with ``gaps`` > 0, the outline and shading have three breaks 2 x gaps x the height wide."""
    pts = polygon(TSHIRT, w, h)
    d.polygon(pts, fill=(fabric,) * 3)
    s = w / 192   # w is the drawing width, 4x the photo: line widths in pixels of a 192-wide photo
    for width, grey in ((6, 246), (4, 240), (2, 200)):     # centred on the edge: half of each is inside
        d.line(pts + pts[:1], fill=(grey,) * 3, width=max(1, round(width * s)))
    for (x0, y0), (x1, y1) in ((pts[8], pts[9]), (pts[7], pts[8]), (pts[10], pts[11])) if gaps else ():
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, gaps * h
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(fabric,) * 3)


def navy_shirt_with_white_logo(d, w, h):
    d.polygon(polygon(TSHIRT, w, h), fill=(25, 35, 80))
    d.rectangle([0.38 * w, 0.30 * h, 0.62 * w, 0.42 * h], fill=(255, 255, 255))   # pure white: the background's
    d.ellipse([0.44 * w, 0.50 * h, 0.56 * w, 0.59 * h], fill=(255, 255, 255))


def ring_bag(d, w, h):
    """A bag with a closed handle: the handle's hole is background enclosed by cloth."""
    d.rectangle([0.2 * w, 0.45 * h, 0.8 * w, 0.9 * h], fill=(150, 60, 40))
    d.ellipse([0.3 * w, 0.1 * h, 0.7 * w, 0.6 * h], outline=(150, 60, 40), width=round(0.06 * w))


def tank_top(d, w, h):
    d.polygon(polygon(TANK_TOP, w, h), fill=(200, 30, 60))


def red_shirt(d, w, h):
    d.polygon(polygon(TSHIRT, w, h), fill=(180, 40, 40))


def light_blue_shirt(d, w, h):
    d.polygon(polygon(TSHIRT, w, h), fill=(205, 220, 240))


def dark_shirt(d, w, h):
    d.polygon(polygon(TSHIRT, w, h), fill=(30, 30, 55))


SIZES = [(192, 256), (667, 1000)]   # (W, H): VITON's size and a large product shot


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
def test_white_shirt_on_white_with_a_thin_outline(size):
    w, h = size
    image = photo(w, h, (255, 255, 255), white_shirt, jpeg=90, clip=TSHIRT)
    assert iou(cloth_mask(image), drawn_mask(TSHIRT, w, h)) > 0.97


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('gaps', [0.01, 0.025], ids=['gaps-5px', 'gaps-13px'])
def test_white_shirt_whose_outline_has_gaps(size, gaps):
    # fabric exactly the background's white, the outline broken in three places: the evidence does not enclose
    # the fabric; bridging the gaps does, and makes the filled area many times larger
    w, h = size
    image = photo(w, h, (255, 255, 255), lambda d, w, h: white_shirt(d, w, h, fabric=255, gaps=gaps), jpeg=90,
                  clip=TSHIRT)
    assert iou(cloth_mask(image), drawn_mask(TSHIRT, w, h)) > 0.96


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
def test_a_white_logo_inside_stays_cloth(size):
    w, h = size
    mask = cloth_mask(photo(w, h, (255, 255, 255), navy_shirt_with_white_logo, jpeg=90))
    expected = drawn_mask(TSHIRT, w, h)
    assert iou(mask, expected) > 0.97
    assert mask[round(0.36 * h), round(0.5 * w)] and mask[round(0.545 * h), round(0.5 * w)]  # the logo


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
def test_an_enclosed_hole_is_filled(size):
    # documented rule: every hole enclosed by the cloth becomes cloth (VITON's masks have none either)
    w, h = size
    mask = cloth_mask(photo(w, h, (255, 255, 255), ring_bag, jpeg=90))
    expected = np.zeros((h, w), bool)
    im = Image.new('1', (w, h), 0)
    draw = ImageDraw.Draw(im)
    draw.rectangle([0.2 * w, 0.45 * h, 0.8 * w, 0.9 * h], fill=1)
    draw.ellipse([0.3 * w, 0.1 * h, 0.7 * w, 0.6 * h], fill=1)    # the handle with its hole filled
    expected = np.asarray(im, dtype=bool)
    assert iou(mask, expected) > 0.97
    assert mask[round(0.3 * h), round(0.5 * w)]   # the middle of the handle's hole


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
def test_background_between_straps_open_to_the_border_stays_background(size):
    # the straps reach the top edge: the space between them is enclosed only by the image border, and stays out
    w, h = size
    mask = cloth_mask(photo(w, h, (255, 255, 255), tank_top, jpeg=90))
    assert iou(mask, drawn_mask(TANK_TOP, w, h)) > 0.97
    assert not mask[round(0.1 * h), round(0.5 * w)]
    assert mask[0, round(0.34 * w)] and mask[0, round(0.66 * w)]   # the straps up to the edge


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('draw', [red_shirt, light_blue_shirt], ids=['red', 'light-blue'])
def test_noisy_jpeg_background(size, draw):
    # an off-white background with sensor noise (sigma 4 grey levels) and JPEG at quality 70
    w, h = size
    image = photo(w, h, (242, 240, 236), draw, jpeg=70, noise=4.0)
    mask = cloth_mask(image)
    assert iou(mask, drawn_mask(TSHIRT, w, h)) > 0.96


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
def test_dark_cloth_on_light_grey(size):
    w, h = size
    image = photo(w, h, (200, 200, 200), dark_shirt, jpeg=90)
    assert iou(cloth_mask(image), drawn_mask(TSHIRT, w, h)) > 0.97


def on_graded_background(width, height, draw, points, kind, jpeg=90):
    """``draw`` on white at 4x, then composited (by the polygon's anti-aliased coverage) on a background that
    darkens from 252 to 232 towards the bottom ('sweep') or towards the corners ('vignette')."""
    cloth = photo(width, height, (255, 255, 255), draw, clip=points).astype(np.float32)
    cover = Image.new('L', (width * SUPER, height * SUPER), 0)
    ImageDraw.Draw(cover).polygon(polygon(points, width * SUPER, height * SUPER), fill=255)
    cover = np.asarray(cover.resize((width, height), Image.BOX)).astype(np.float32)[..., None] / 255
    y, x = np.mgrid[0:height, 0:width] / np.array([height - 1, width - 1])[:, None, None]
    shade = 20 * y if kind == 'sweep' else 10 * ((2 * x - 1) ** 2 + (2 * y - 1) ** 2)
    background = np.repeat((252 - shade)[..., None], 3, axis=2)
    image = Image.fromarray(np.round(cloth * cover + background * (1 - cover)).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, 'JPEG', quality=jpeg)
    return np.asarray(Image.open(buffer).convert('RGB'))


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('kind', ['sweep', 'vignette'])
def test_graded_background(size, kind):
    # the background model is a surface fitted to the border, not one colour: a white shirt whose fabric equals
    # the lightest background stays found (with one colour for the background it is lost entirely at 192x256)
    w, h = size
    expected = drawn_mask(TSHIRT, w, h)
    white = on_graded_background(w, h, lambda d, w, h: white_shirt(d, w, h, fabric=255), TSHIRT, kind)
    assert iou(cloth_mask(white), expected) > 0.93
    blue = on_graded_background(w, h, light_blue_shirt, TSHIRT, kind)
    assert iou(cloth_mask(blue), expected) > 0.97


def test_landscape_product_shot_any_size():
    # 1000x667 (landscape) and the same shot reduced to 300x200: the same mask, relative to the size
    for w, h in ((1000, 667), (300, 200)):
        image = photo(w, h, (255, 255, 255), red_shirt, jpeg=85)
        mask = cloth_mask(image)
        assert mask.shape == (h, w) and mask.dtype == bool
        assert iou(mask, drawn_mask(TSHIRT, w, h)) > 0.97


def test_cloth_cut_by_the_border():
    # a crop: the shirt runs off the bottom and the left edge of the photo
    w, h = 192, 256
    shifted = [(x - 0.1, y + 0.25) for x, y in TSHIRT]
    image = photo(w, h, (255, 255, 255), lambda d, w, h: d.polygon(polygon(shifted, w, h), fill=(40, 120, 60)),
                  jpeg=90)
    mask = cloth_mask(image)
    assert mask[-1].any() and mask[:, 0].any()
    assert iou(mask, drawn_mask(shifted, w, h)) > 0.97


def test_all_white_and_uniform_images_give_an_empty_mask():
    for image in (np.full((256, 192, 3), 255, np.uint8), np.full((100, 300, 3), 180, np.uint8),
                  photo(192, 256, (255, 255, 255), lambda d, w, h: None, jpeg=60, noise=2.0)):
        mask = cloth_mask(image)
        assert mask.shape == image.shape[:2] and mask.dtype == bool
        assert mask.mean() < 0.001
    assert not cloth_mask(np.full((5, 4, 3), 255, np.uint8)).any()   # too small to tell: empty, no error


def test_a_swatch_filling_the_photo_is_all_cloth():
    # no background anywhere: the whole photo is cloth (prepare_data.py warns about such a mask)
    swatch = np.random.default_rng(0).normal(120, 25, (256, 192, 3)).clip(0, 255).astype(np.uint8)
    assert cloth_mask(swatch).all()


def test_rgba_and_pil_inputs():
    w, h = 192, 256
    im = Image.new('RGBA', (w, h), (0, 0, 0, 0))            # a cut-out: transparent background (black beneath)
    ImageDraw.Draw(im).polygon(polygon(TSHIRT, w, h), fill=(30, 90, 160, 255))
    expected = drawn_mask(TSHIRT, w, h)
    for image in (im, np.asarray(im)):                       # PIL RGBA and an (H, W, 4) array: on white
        assert iou(cloth_mask(image), expected) > 0.98
    composited = Image.alpha_composite(Image.new('RGBA', (w, h), (255, 255, 255, 255)), im).convert('RGB')
    assert iou(cloth_mask(composited), expected) > 0.98     # PIL RGB, composited by the caller
    grey = np.asarray(composited.convert('L'))
    assert iou(cloth_mask(grey), expected) > 0.98                  # a grey (H, W) array
    assert iou(cloth_mask(grey[..., None]), expected) > 0.98       # and (H, W, 1)


def test_bad_inputs_are_refused():
    with pytest.raises(TypeError, match='uint8'):
        cloth_mask(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        cloth_mask(np.zeros((64, 64, 2), np.uint8))


def test_speed():
    # about 25 ms per 256x192 image on one loaded core here; the bound only catches a large regression
    image = photo(192, 256, (255, 255, 255), white_shirt, jpeg=90, clip=TSHIRT)
    cloth_mask(image)
    start = time.perf_counter()
    for _ in range(5):
        cloth_mask(image)
    assert (time.perf_counter() - start) / 5 < 0.25


# ----------------------------------------------------------------------------------------------------
# VITON's real clothes, against VITON's own masks
# ----------------------------------------------------------------------------------------------------

# Measured on the 120 clothes: mean 0.963, median 0.992, 5th percentile 0.866, min 0.12, 10 below 0.9. The low
# tail is mostly VITON's own masks: those of several white and pink clothes are broken (fragments of the cloth,
# made by a threshold). On the 110 clothes whose VITON mask is in one piece (fewer than 20 connected components):
# mean 0.989, 5th percentile 0.971. The 30 light clothes (mean L* > 80 inside VITON's mask): mean 0.929; the 23
# of them with a mask in one piece: 0.991.
MIN_MEAN, MIN_P5 = 0.95, 0.85
MIN_CLEAN_MEAN, MIN_CLEAN_P5 = 0.98, 0.95
MIN_LIGHT_MEAN, MIN_LIGHT_CLEAN_MEAN = 0.91, 0.98


@pytest.fixture(scope='module')
def viton_scores():
    require(VITON_SAMPLES)
    rows = []
    for split in ('test', 'train'):
        for path in sorted((VITON_SAMPLES / split / 'cloth').glob('*.jpg')):
            rgb = np.asarray(Image.open(path).convert('RGB'))
            reference = np.asarray(Image.open(VITON_SAMPLES / split / 'cloth-mask' / path.name).convert('L')) >= 128
            light = rgb2lab(rgb)[..., 0][reference].mean() > 80     # mean L* inside VITON's mask
            clean = ndi.label(reference)[1] < 20
            rows.append((f'{split}/{path.name}', iou(cloth_mask(rgb), reference), light, clean))
    assert len(rows) == 120
    return rows


def test_viton_clothes_all(viton_scores):
    scores = np.array([r[1] for r in viton_scores])
    worst = sorted(viton_scores, key=lambda r: r[1])[:5]
    assert scores.mean() >= MIN_MEAN, worst
    assert np.percentile(scores, 5) >= MIN_P5, worst


def test_viton_clothes_with_a_mask_in_one_piece(viton_scores):
    scores = np.array([r[1] for r in viton_scores if r[3]])
    assert len(scores) == 110
    assert scores.mean() >= MIN_CLEAN_MEAN
    assert np.percentile(scores, 5) >= MIN_CLEAN_P5


def test_viton_light_clothes(viton_scores):
    # light = mean L* > 80 inside VITON's mask: 30 clothes, 23 of them with a mask in one piece
    light = [r for r in viton_scores if r[2]]
    assert len(light) == 30
    light_clean = np.array([r[1] for r in light if r[3]])
    assert len(light_clean) == 23
    assert light_clean.mean() >= MIN_LIGHT_CLEAN_MEAN
    assert np.mean([r[1] for r in light]) >= MIN_LIGHT_MEAN


def test_viton_cloth_at_another_size():
    # a real cloth stretched to a 1000x667 landscape frame, and shrunk to 96x128: still VITON's mask
    require(VITON_SAMPLES)
    for name in ('000010_1.jpg', '000048_1.jpg', '000074_1.jpg'):   # dark, black, white
        rgb = Image.open(VITON_SAMPLES / 'test' / 'cloth' / name).convert('RGB')
        ref = Image.open(VITON_SAMPLES / 'test' / 'cloth-mask' / name).convert('L')
        for size in ((1000, 667), (96, 128)):
            image = np.asarray(rgb.resize(size, Image.LANCZOS))
            expected = np.asarray(ref.resize(size, Image.BILINEAR)) >= 128
            assert iou(cloth_mask(image), expected) > 0.95, (name, size)
