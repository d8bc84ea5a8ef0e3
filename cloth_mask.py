"""A binary cloth mask for an in-shop product photo, computed without a model.

CP-VTON needs, for every in-shop cloth photo, a mask of the cloth (VITON's ``cloth-mask/NNNNNN_1.jpg``,
255 = cloth). For product shots on a light or at least smooth background (white studio, catalogue and
cut-out shots) ``cloth_mask(image)`` computes one with classical image processing only (numpy,
scipy.ndimage, scikit-image):

1. **Background model.** From a band along the image border (3 px at 256x192): the mode of its colours
   (CIE Lab, 3-unit bins), then a quadratic surface in x and y fitted three times to the band's pixels
   within 6 Lab units of the current model, so a studio sweep's gradient or a vignette is background and
   a garment crossing one side stays out of the fit. The noise level is the 99th percentile of the
   distance to that surface in each side's band, the second smallest of the four sides (JPEG ringing of a
   garment close to one or two sides does not inflate it).
2. **Colour evidence.** Per pixel, the distance to the background in Lab with the chroma (a, b) at half
   weight (JPEG's chroma subsampling smears colour 2-4 px into the background), after a separable 3-point
   median per channel (JPEG speckle goes; unlike a Gaussian it does not bleed a dark sleeve's colour into
   the narrow gap beside it). Hysteresis: pixels above ``max(1.5, 1.5 x noise)`` are cloth where connected
   to a pixel above ``max(3, 2.5 x noise)``. This finds white and off-white clothes on white (their fabric
   lies 2-6 Lab units from studio white, the background within about 1), where a grey-level threshold of
   245-250 loses them.
3. **Edge evidence.** The colour gradient (Sobel, a step of s reads s/2) above ``max(2.5, 3 x`` its border
   noise) is weak evidence, above twice that strong, so the thin grey outline or the shading along the
   edge of a white cloth whose fabric equals the background still encloses it.
4. **Background by flood fill.** What the border reaches without crossing evidence is background, the
   rest is cloth: white regions inside the garment (logos, prints, white stripes, a lining seen through
   the neck) stay cloth, and **every enclosed hole is filled** (a handle loop closed all round becomes
   cloth, and so does the space between a sleeve and the torso where the cuff touches the hip; VITON's
   masks have no holes either). Space open to the outside (between two straps, between an arm and the
   torso) stays background. Where the cloth runs off the image (a crop), gaps of up to 8 px between its
   stretches along a side count as closed; wider openings there stay background (two straps reaching the
   top edge keep the space between them). If the evidence does not enclose the cloth (a faint outline with
   breaks), it is dilated by a disk of 2, 4 or 8 px, filled and eroded back, and the smallest radius that
   makes the filled area at least 30 % larger is kept (none, on all 120 VITON clothes).
5. **Components.** Components of at least 10 % of the largest stay (two garments in one shot), smaller
   ones (specks, dust, a stray tag) go.
6. **Outline and smoothing.** A watershed on the colour gradient within ±3 px of the outline puts it on the
   strongest edge (the hysteresis grows the region a pixel or two into the JPEG halo), then an opening by a
   disk of radius 1 px and the hole filling again.

Lengths are relative to the image size: given in pixels of VITON's 256x192 and scaled by the shorter
side / 192. Images whose longer side exceeds 512 px are processed at 512 (box filter) and the mask is
scaled back (bilinear, threshold 0.5): the mask always has the input's size, the cost is bounded (about
25-30 ms per 256x192 image and 95-140 ms per 1000x667 one, on one core of a loaded 2-core machine).

Measured on the 120 real clothes of ../shared/viton_samples against VITON's own masks (IoU, VITON's mask
binarised at 128): mean 0.963, median 0.992, 5th percentile 0.866, minimum 0.12, 10 below 0.9. VITON's masks
of several white and pink clothes are broken (fragments of the cloth, from a threshold), which accounts for
the low tail; on the 110 clothes whose VITON mask is in one piece: mean 0.989, 5th percentile 0.971. A
grey-level threshold (245) with hole filling, measured the same way: mean 0.924, 5th percentile 0.644.

Limits: the background must hold the largest share of the image border and be smooth (a tight crop in
which the cloth covers most of the border, or a busy background, gets it wrong); a cloth of exactly the
background's colour without a visible outline over long stretches is lost there (VITON's 000001_1: a white
top over a black one); shadows cast on the background count as cloth where darker than the noise allows;
a thin frame line around the whole photo encloses everything.
"""
import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from cp_dataset import ALPHA_MODES, composite_on_white

__all__ = ['cloth_mask']

# Lengths in pixels of a 256x192 image (scaled by min(H, W) / 192); thresholds in Lab units.
WORK_SIZE = 512            # images with a longer side above this are processed at this size
BORDER_BAND = 3            # width of the border band that defines the background
CHROMA_WEIGHT = 0.5        # weight of Lab a, b against L in the colour distance
T_LOW, K_LOW = 1.5, 1.5    # hysteresis low threshold: max(T_LOW, K_LOW * border noise)
T_HIGH, K_HIGH = 3.0, 2.5  # hysteresis high threshold: max(T_HIGH, K_HIGH * border noise)
G_MIN, G_K = 2.5, 3.0      # edge evidence: gradient above max(G_MIN, G_K * border gradient noise)
CLOSINGS = (2, 4, 8)       # radii of the gap bridging tried when the evidence does not enclose the cloth
CLOSING_GAIN = 1.3         # ... a radius is kept when it makes the filled area this much larger
BORDER_GAP = 8             # gaps along the image border up to this wide between cloth stretches are closed
KEEP_FRACTION = 0.1        # components of at least this fraction of the largest are kept
REFINE_BAND = 3            # half width of the band of the watershed refinement
OPEN_RADIUS = 1.15         # radius of the final opening


# ----------------------------------------------------------------------------------------------------
# Input and colour conversion
# ----------------------------------------------------------------------------------------------------

def _to_rgb(image):
    """An RGB uint8 array (H, W, 3) from what cloth_mask accepts: an RGB uint8 array, an RGBA one or a grey
    (H, W) or (H, W, 1) one, or a PIL image of any mode. Alpha is composited on white."""
    if isinstance(image, Image.Image):
        if image.mode in ALPHA_MODES or 'transparency' in image.info:
            image = composite_on_white(image)     # as cp_dataset loads a cloth photo
        return np.asarray(image.convert('RGB'))
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise TypeError(f'cloth_mask: expected a uint8 image (values 0..255), got an array of dtype {a.dtype}')
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f'cloth_mask: expected an RGB image of shape (H, W, 3), got shape {a.shape}')
    if a.shape[2] == 4:
        alpha = a[..., 3:].astype(np.float32) / 255
        a = np.round(a[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return a


_LINEAR = None


def _rgb2lab(rgb):
    """sRGB uint8 (H, W, 3) -> CIE Lab (D65) float32, channels first (3, H, W); as skimage.color.rgb2lab (to
    1e-3), several times faster."""
    global _LINEAR
    if _LINEAR is None:
        c = np.arange(256) / 255.0
        _LINEAR = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)
    r, g, b = _LINEAR[rgb[..., 0]], _LINEAR[rgb[..., 1]], _LINEAR[rgb[..., 2]]
    f = []
    for (cr, cg, cb), white in (((0.412453, 0.357580, 0.180423), 0.95047), ((0.212671, 0.715160, 0.072169), 1.0),
                                ((0.019334, 0.119193, 0.950227), 1.08883)):
        t = r * np.float32(cr / white) + g * np.float32(cg / white) + b * np.float32(cb / white)
        low = t <= 216 / 24389
        t = np.cbrt(t)
        if low.any():
            t[low] = (24389 / 27 * t[low] ** 3 + 16) / 116
        f.append(t)
    fx, fy, fz = f
    return np.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)])


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------

def _disk(radius):
    r = int(np.floor(radius))
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= radius * radius


def _sides(a, bw):
    """The bands of width bw along the four sides of the last two axes of a."""
    return [a[..., :bw, :], a[..., -bw:, :], a[..., :, :bw], a[..., :, -bw:]]


def _background(lab, bw, tolerance=6.0):
    """The background's colour at every pixel, (3, H, W), from the border band of the (3, H, W) Lab image:
    the mode of the band's colours (3-unit Lab bins) to start with, then a quadratic surface in x and y fitted
    to the band's pixels within ``tolerance`` of the current model, three times (a studio sweep's gradient, a
    vignette; the pixels of a garment crossing the border stay out of the fit)."""
    h, w = lab.shape[1:]
    yy, xx = np.mgrid[0:h, 0:w]
    band = np.zeros((h, w), bool)
    for side in _sides(band, bw):
        side[...] = True
    border = lab[:, band].T                                   # (N, 3)
    q = np.round(border / 3.0).astype(np.int64) + 100
    key = (q[:, 0] * 256 + q[:, 1]) * 256 + q[:, 2]
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    mode = border[inverse.ravel() == np.argmax(counts)].mean(0)
    x, y = xx[band] / max(w - 1, 1) * 2 - 1, yy[band] / max(h - 1, 1) * 2 - 1
    design = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], 1).astype(np.float64)
    model = np.broadcast_to(mode, border.shape)
    coef = None
    for _ in range(3):
        inliers = np.linalg.norm(border - model, axis=1) < tolerance
        if inliers.sum() < 2 * design.shape[1] * 10:
            break
        a = design[inliers]
        coef = np.linalg.solve(a.T @ a + 1e-6 * np.eye(a.shape[1]), a.T @ border[inliers])   # (6, 3)
        model = design @ coef
    if coef is None:
        return np.asarray(mode, np.float32)[:, None, None] * np.ones((1, h, w), np.float32)
    X, Y = (xx / max(w - 1, 1) * 2 - 1).astype(np.float32), (yy / max(h - 1, 1) * 2 - 1).astype(np.float32)
    terms = (1, X, Y, X * X, Y * Y, X * Y)
    return np.stack([sum(np.float32(coef[k, c]) * t for k, t in enumerate(terms)) for c in range(3)])


def _side_noise(values, bw, limit):
    """The 99th percentile of ``values`` (inliers below ``limit``) on each side's band; the second smallest."""
    q = []
    for side in _sides(values, bw):
        v = side[side < limit]
        q.append(np.percentile(v, 99) if v.size >= 10 else np.inf)
    q = np.sort(q)[1]
    return float(q) if np.isfinite(q) else 0.0


def _gradient(lab):
    """The colour gradient magnitude of a (C, H, W) array: Sobel per channel, root of the sum of squares, / 8
    (a step of height s reads s / 2)."""
    total = 0
    for c in lab:
        p = np.pad(c, 1, mode='edge')
        sy = p[:-2] + 2 * p[1:-1] + p[2:]            # smoothed along y, differenced along x
        gx = sy[:, 2:] - sy[:, :-2]
        sx = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]   # smoothed along x, differenced along y
        gy = sx[2:] - sx[:-2]
        total = total + gx * gx + gy * gy
    return np.sqrt(total) / 8


def _blur(lab):
    """A [1, 2, 1] / 4 binomial blur (about a Gaussian of sigma 0.7) of each channel of a (C, H, W) array."""
    out = np.empty_like(lab)
    for c in range(lab.shape[0]):
        p = np.pad(lab[c], 1, mode='edge')
        p = p[:-2] + 2 * p[1:-1] + p[2:]
        out[c] = (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) / 16
    return out


def _fill(mask, gap):
    """Fill the holes of a mask. Where the mask touches the image border, gaps of at most ``gap`` pixels
    between its stretches along a side count as closed (a patterned cloth cut by the border, whose white
    stripes reach it, is filled up to it); wider openings stay open (the space between two straps that
    reach the border is background)."""
    h, w = mask.shape
    p = np.zeros((h + 2, w + 2), bool)
    p[1:-1, 1:-1] = mask
    for line, frame in ((mask[0], p[0, 1:-1]), (mask[-1], p[-1, 1:-1]), (mask[:, 0], p[1:-1, 0]),
                        (mask[:, -1], p[1:-1, -1])):
        idx = np.flatnonzero(line)
        for a, b in zip(idx[:-1], idx[1:]):
            if 1 < b - a <= gap + 1:
                frame[a:b + 1] = True
    return ndi.binary_fill_holes(p)[1:-1, 1:-1] | mask


def _dilate(mask, radius):
    """Dilation by a Euclidean disk (exact, via the distance transform; fast for any radius)."""
    if not mask.any():
        return mask.copy()
    return ndi.distance_transform_edt(~mask) <= radius


def _erode(mask, radius):
    """Erosion by a Euclidean disk; outside the image counts as set (no erosion from the image border)."""
    if mask.all():
        return mask.copy()
    return ndi.distance_transform_edt(mask) > radius


def _closed_fill(mask, radius, gap):
    """Dilate by a disk, fill the holes, erode back: what the mask encloses once gaps in it narrower than about
    2 x radius are bridged (a plain closing does not bridge a gap between the ends of a thin line). The image
    is extended by its edge pixels, so the border itself closes nothing."""
    pad = int(np.ceil(radius)) + 1
    grown = _dilate(np.pad(mask, pad, mode='edge'), radius)
    return _erode(_fill(grown, gap), radius)[pad:-pad, pad:-pad]


def _median3(a):
    """A separable 3-point median (rows, then columns) of a 2-D array: JPEG speckle goes, edges stay."""
    for axis in (0, 1):
        p = np.pad(a, [(1, 1) if ax == axis else (0, 0) for ax in (0, 1)], mode='edge')
        x, y, z = (p[i:i + a.shape[0]] if axis == 0 else p[:, i:i + a.shape[1]] for i in range(3))
        a = np.maximum(np.minimum(x, y), np.minimum(np.maximum(x, y), z))
    return a


def _keep_large(mask, fraction):
    labels, n = ndi.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes >= fraction * sizes.max()
    return keep[labels]


# ----------------------------------------------------------------------------------------------------
# The mask
# ----------------------------------------------------------------------------------------------------

def cloth_mask(image):
    """The cloth mask of an in-shop cloth photo (a product shot on a light or smooth background).

    image: an RGB uint8 numpy array of shape (H, W, 3), any size. Also accepted: an (H, W, 4) RGBA array
    (composited on white), an (H, W) or (H, W, 1) grey array, a PIL image of any mode (transparency
    composited on white). Other dtypes raise TypeError, other shapes ValueError.
    Returns a bool numpy array of shape (H, W), True on the cloth (write it as VITON does with
    ``Image.fromarray(mask.astype(np.uint8) * 255)``). An image with nothing on its background (all white,
    one colour) gives an all-False mask. The method and its limits: the module docstring."""
    rgb = _to_rgb(image)
    H, W = rgb.shape[:2]
    scale = min(1.0, WORK_SIZE / max(H, W))
    if scale < 1.0:
        rgb = np.asarray(Image.fromarray(rgb).resize((max(1, round(W * scale)), max(1, round(H * scale))),
                                                     Image.BOX))
    h, w = rgb.shape[:2]
    if min(h, w) < 8:
        return np.zeros((H, W), bool)
    u = min(h, w) / 192.0  # working pixels per pixel of a 256x192 image
    bw = max(2, int(round(BORDER_BAND * u)))

    lab = _rgb2lab(rgb)
    background = _background(lab, bw)
    weight = np.array([1.0, CHROMA_WEIGHT, CHROMA_WEIGHT], np.float32)[:, None, None]
    smooth = np.stack([_median3(lab[c]) for c in range(3)]) * weight
    diff = smooth - background * weight
    d = np.sqrt((diff * diff).sum(0))
    noise = _side_noise(d, bw, 6.0)
    weak = d > max(T_LOW, K_LOW * noise)
    strong = d > max(T_HIGH, K_HIGH * noise)
    # edge evidence, on the same smoothed colours
    g = _gradient(smooth)
    t_grad = max(G_MIN, G_K * _side_noise(np.where(d < T_LOW, g, np.inf), bw, np.inf))
    weak |= g > t_grad
    strong |= g > 2 * t_grad

    labels, n = ndi.label(weak)
    if n == 0:
        return np.zeros((H, W), bool)
    hit = np.zeros(n + 1, bool)
    hit[labels[strong]] = True
    hit[0] = False
    evidence = hit[labels]
    if not evidence.any():
        return np.zeros((H, W), bool)

    gap = BORDER_GAP * u
    mask = _fill(evidence, gap)
    # an outline with gaps: the smallest closing that encloses markedly more (the largest decides whether any)
    area = mask.sum()
    largest = _closed_fill(evidence, CLOSINGS[-1] * u, gap) | mask
    if largest.sum() >= CLOSING_GAIN * area:
        for r in CLOSINGS[:-1]:
            closed = _closed_fill(evidence, r * u, gap) | mask
            if closed.sum() >= CLOSING_GAIN * area:
                largest = closed
                break
        mask = largest
    mask = _keep_large(mask, KEEP_FRACTION)
    if mask.all():       # nothing left of the background (the cloth fills the photo, a frame line round it)
        return np.ones((H, W), bool)

    # the outline on the strongest edge, within a band around it (city-block distances: only its width matters)
    rb = max(1.0, REFINE_BAND * u)
    inner = ndi.distance_transform_cdt(mask, 'taxicab') > rb
    outer = ndi.distance_transform_cdt(~mask, 'taxicab') > rb
    markers = np.zeros((h, w), np.int32)
    markers[outer] = 1
    markers[inner] = 2
    edges = _gradient(_blur(lab) if u < 1.5 else ndi.gaussian_filter(lab, (0, 0.5 * u, 0.5 * u)))
    band = ndi.binary_dilation(~(inner | outer), np.ones((3, 3), bool))  # and the markers' pixels next to it
    mask = inner | (watershed(edges, markers, mask=band) == 2)

    ro = OPEN_RADIUS * u
    if ro >= 1:
        mask = ndi.binary_opening(mask, _disk(ro))  # a small disk: faster than two distance transforms
    mask = _keep_large(_fill(mask, gap), KEEP_FRACTION)

    if scale < 1.0:
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((W, H), Image.BILINEAR)) >= 128
    return mask
