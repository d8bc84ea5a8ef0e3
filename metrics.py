"""The metric maths of evaluate.py: small pure functions on numpy arrays, no files, no networks.

    ssim_score, matlab_ssim_map, matlab_ssim_score   two uint8 images (0..255) of one shape, RGB [H,W,3]
                                    (``matlab_*``: also grayscale [H,W]). ``ssim_score`` is skimage's
                                    structural_similarity, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=255; ``matlab_ssim_score`` is SSIM
                                    as MATLAB's ``ssim(A, ref)`` computes it on the same arrays (CP-VTON+'s
                                    SSIM; see ``matlab_ssim_map``). Both in [-1, 1], 1 for identical images.
    mask_iou                        two boolean masks of one shape -> intersection over union in [0, 1]
                                    (both empty: 1.0).
    inception_score_from_probs      class probabilities [N,K] (rows sum to 1) -> (mean, std) of the Inception
                                    Score over consecutive splits.
    symmetric_sqrt                  a symmetric positive semi-definite matrix -> its square root.
    frechet_distance                means [D] and covariances [D,D] of two Gaussians -> their Fréchet distance.
    fid_from_features               two feature sets [N1,D], [N2,D] (N >= 2) -> FID, as pytorch-fid computes it.
"""
import numpy as np
from scipy import ndimage
from scipy.special import rel_entr
from skimage.metrics import structural_similarity

# The settings under which skimage's SSIM follows Wang et al. 2004 (and MATLAB, for one 2-D channel).
SKIMAGE_SSIM_SETTINGS = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
MATLAB_SSIM_SIGMA = 1.5
MATLAB_SSIM_RADIUS = 5   # MATLAB: ceil(3 * sigma)
MATLAB_SSIM_C1 = (0.01 * 255) ** 2   # MATLAB's defaults for uint8 input (DynamicRange 255)
MATLAB_SSIM_C2 = (0.03 * 255) ** 2


def ssim_score(image, reference):
    """SSIM of two uint8 RGB images [H,W,3] (0..255): skimage's per-channel SSIM, averaged over channels.

    Each channel's SSIM map excludes a 5-pixel border (skimage crops the filter radius)."""
    return float(structural_similarity(image, reference, channel_axis=-1, **SKIMAGE_SSIM_SETTINGS))


def matlab_ssim_map(image, reference):
    """Local SSIM at every element, as MATLAB's ``[~, map] = ssim(A, ref)`` computes it for uint8 input.

    MATLAB filters with a Gaussian of sigma 1.5 and radius ceil(3 * sigma) over *all* axes of the array,
    with replicate padding, and keeps the border. So an H x W x 3 RGB array is a 3-D volume whose
    11x11x11 window also mixes neighbouring channels, and a 2-D array is an ordinary grayscale image.
    MATLAB's normalised 3-D kernel is the product of normalised 1-D ones (none of its weights is small
    enough for MATLAB to zero), so a separable filter gives the same numbers.

    image, reference: uint8 arrays of one shape, [H,W] or [H,W,3]. Returns float64 of that shape.
    """
    x = np.asarray(image, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)

    def weighted_mean(values):
        return ndimage.gaussian_filter(values, sigma=MATLAB_SSIM_SIGMA, mode='nearest',
                                       truncate=MATLAB_SSIM_RADIUS / MATLAB_SSIM_SIGMA)

    mu_x, mu_y = weighted_mean(x), weighted_mean(y)
    var_x = weighted_mean(x * x) - mu_x ** 2
    var_y = weighted_mean(y * y) - mu_y ** 2
    cov_xy = weighted_mean(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + MATLAB_SSIM_C1) * (2 * cov_xy + MATLAB_SSIM_C2)
    denominator = (mu_x ** 2 + mu_y ** 2 + MATLAB_SSIM_C1) * (var_x + var_y + MATLAB_SSIM_C2)
    return numerator / denominator


def matlab_ssim_score(image, reference):
    """MATLAB's ``ssim(A, ref)`` for uint8 arrays [H,W] or [H,W,3]: the mean of ``matlab_ssim_map``."""
    return float(matlab_ssim_map(image, reference).mean())


def mask_iou(pred, target):
    """Intersection over union of two boolean masks of one shape. Both empty counts as full agreement (1.0)."""
    pred, target = np.asarray(pred, dtype=bool), np.asarray(target, dtype=bool)
    union = np.logical_or(pred, target).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, target).sum() / union)


def inception_score_from_probs(probs, splits=10):
    """Inception Score of class probabilities [N,K] (rows sum to 1): (mean, std) of exp(E_x KL(p(y|x) || p(y)))
    over `splits` consecutive parts, split as the original implementation (Salimans et al.) does."""
    probs = np.asarray(probs, dtype=np.float64)
    count = len(probs)
    if count < splits:
        raise ValueError(f'the Inception Score needs at least {splits} images (one per split), got {count}')
    scores = []
    for split in range(splits):
        part = probs[split * count // splits:(split + 1) * count // splits]
        marginal = part.mean(axis=0, keepdims=True)
        kl_divergences = rel_entr(part, marginal).sum(axis=1)   # rel_entr: 0 where p(y|x) = 0
        scores.append(np.exp(kl_divergences.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def symmetric_sqrt(matrix):
    """Square root of a symmetric positive semi-definite matrix; round-off negative eigenvalues count as 0."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2):
    |mu1 - mu2|^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^(1/2)).

    sigma1 sigma2 has the eigenvalues of the symmetric PSD matrix S = sigma1^(1/2) sigma2 sigma1^(1/2), so the
    trace of its square root is the sum of the square roots of S's eigenvalues: real by construction, with
    no complex sqrtm and no epsilon added to singular covariances (as they are with fewer images than
    features)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    sqrt_sigma1 = symmetric_sqrt(sigma1)
    product = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)   # symmetrise away round-off
    trace_sqrt_product = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    difference = mu1 - mu2
    return float(difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product)


def fid_from_features(features1, features2):
    """FID of two feature sets [N1,D] and [N2,D]: Fréchet distance of their means and (unbiased) covariances,
    as pytorch-fid computes them."""
    features1, features2 = np.asarray(features1, dtype=np.float64), np.asarray(features2, dtype=np.float64)
    if min(len(features1), len(features2)) < 2:
        raise ValueError('FID needs at least 2 images in each set')
    return frechet_distance(features1.mean(axis=0), np.cov(features1, rowvar=False),
                            features2.mean(axis=0), np.cov(features2, rowvar=False))
