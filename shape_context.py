"""VITON's non-learned cloth warp: shape-context matching of two masks and a thin-plate spline (TPS).

VITON (Han et al., CVPR 2018) warps the in-shop cloth onto the person with Belongie's shape-context
matcher, in the MATLAB scripts of its repository (xthan/VITON, ``shape_context/``): ``tps_main.m`` (the
matching loop and its parameters), ``extract_tps_keypoint.m`` (masks, size, control points),
``bdry_extract_3.m`` (contour points and tangents), ``get_samples_1.m`` (sampling), ``sc_compute.m``
(descriptors), ``hist_cost_2.m`` (chi^2 cost), ``bookstein.m`` (regularised TPS fit) and ``dist2.m``.
This module re-implements them in numpy/scipy and writes the warps as CP-VTON's GMM test does::

    python shape_context.py --dataroot data --datamode train --data_list train_pairs.txt \\
        --target parse|coarse --result_dir result --workers 2 [--coarse_dir DIR] \\
        [--fine_height 256 --fine_width 192]

It writes ``<result_dir>/shape_context/<datamode>/{warp-cloth,warp-mask}/<pair key>`` (visualization.save_images:
the warped cloth in [-1,1], the warped mask as mask*2-1), replacing results of the same pair.

The source mask is the in-shop cloth's (``cloth-mask/``, >= 128); the target mask is the person's clothing:
``--target parse`` the LIP label 5 (upper-clothes) of the person's parse map (VITON's training masks,
``V2 == 5``), ``--target coarse`` VITON's coarse-stage prediction ``<coarse_dir>/coarse-mask/<pair key>``
(>= 128), with coarse_dir defaulting to ``<result_dir>/viton_coarse_final.pth/<datamode>``.

The algorithm (tps_main.m), per pair:
  1. Both masks are taken at half size (extract_tps_keypoint.m works at 128x96: ``imresize(.., 'nearest')``,
     which picks the pixels 1, 3, 5, ... counted from 0); the cloth mask's holes are filled and it is
     3x3-median filtered (``imfill``, ``medfilt2``), the person's is used as it is.
  2. Contour points: where the 0.5 level crosses the edge between two 4-neighbouring pixels of different
     value (the vertices ``contourc(V, [.5 .5])`` returns, holes' contours included), each with the tangent
     angle atan2(dV/dy, dV/dx) + pi/2 of ``gradient(V)`` at the rounded point.
  3. Sampling (get_samples_1.m): 300 of them at random (all if fewer), then the point of the closest pair
     that comes first is dropped until 100 remain.
  4. Six iterations of: shape contexts of the (warped) cloth points and the person points (12 angle x 5
     log-radius bins, edges logspace(log10(1/8), log10(2), 5) times the shape's mean pairwise distance,
     outliers of the last matching left out of the counts); cost 0.9 * chi^2 + 0.1 * 0.5 (1 - cos(tangent
     difference)); Hungarian matching with 25 dummy points at cost 0.25; Bookstein's TPS (U = r^2 log r^2)
     from the *original* cloth points to their matched person points, with beta = mean_dist_person^2 *
     lambda added to K's diagonal, lambda = 1000 in the first iteration (an affine start) and 1 after;
     the cloth points and their tangents are moved by it for the next iteration.
  5. The fitted map f goes from cloth to person pixels. The sampling grid needs the other direction:
     extract_tps_keypoint.m finds, for each of 10x10 regular person points, the cloth point whose image
     under f is nearest (a dense search over [-2w, 2w] x [-2h, 2h] at 1 px), and VITON's TPS STN
     interpolates those 10x10 control points. Here theta = f^-1(regular point) - regular point in [-1,1]
     coordinates (N x-offsets then N y-offsets, the order of networks.tps_control_points), and
     ``networks.TpsGridGen(H, W, 10)(theta)`` gives the dense grid that ``networks.warp_cloth`` samples.

Choices and deviations (everything not listed follows the MATLAB):
  * f^-1 is solved exactly (Newton's method from the TPS fitted the other way through the matched points,
    the MATLAB's dense nearest-point search only for points where Newton does not converge) instead of
    the nearest point of a 1-px grid at half size (up to 2 px of error at 256x192).
  * Coordinates are full-size pixels counted from 0 (a half-size pixel i is pixel 2i + 1): the TPS fit
    is invariant to this change of scale and origin (beta scales with mean_dist^2 as K does), and it
    makes the control points land on align_corners=True's [-1,1] exactly.
  * The random choice of the 300 candidates (MATLAB's randperm, seeded however MATLAB was) uses numpy's
    generator seeded with ``seed`` (0) for every pair: the same masks always give the same warp, whatever
    the worker or the order.
  * The cloth mask is CP-VTON's ``cloth-mask/`` file, not MATLAB's "no channel is 255" test on the photo.
  * VITON warps the cloth with griddata / its TF TPS STN; here the grid is CP-VTON's TpsGridGen with
    grid_sample (bilinear, align_corners=True, cloth 'border', mask 'zeros'), so the files equal the
    GMM's in format and convention.
  * Where a mask has fewer than 100 contour points (empty, or a speck) the MATLAB raised an error and
    VITON skipped the pair; here the pair gets the identity warp (theta = 0, the cloth as it is) and the
    command reports how many pairs that was, naming a few.
  * The MATLAB's quirks are kept: a point counts itself in its own histogram (distance 0, angle 0 bin)
    and the mean distance includes the zero diagonal; the TPS system is solved with np.linalg.solve
    rather than inv(L) (same solution, better rounding).
  * Contour points come in raster order (horizontal-edge crossings, then vertical ones), contourc's along
    each contour, with each closed contour's first point repeated at its end. The points are the same
    set; the order only changes which random 300 are drawn and which point of a tied closest pair goes.
  * Bin order of a descriptor here: [angle bin (12), radius bin (5, innermost first)] flattened, where
    sc_compute.m's sparse(theta_q, r_q) has the radius bins the other way round; chi^2 does not depend
    on the order.

Measured (2-core machine shared with other work): 0.07-0.08 s per pair on one core (load, match, warp,
write) on the real VITON samples, so VITON's 14,221 training pairs take about 9 min with --workers 2;
warped-mask IoU against the person's label 5 on their 80 test pairs 0.850 (the unwarped cloth mask
0.348), on their 40 training pairs 0.798 (the low ones have broken VITON cloth masks, in fragments).
"""
import argparse
import functools
import os.path as osp
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

import cp_dataset
from cp_dataset import MASK_THRESHOLD, DataError, DataLayout, ResultLayout
from networks import TpsGridGen, tps_control_points, warp_cloth
from visualization import save_images

# tps_main.m's parameters
N_SAMPLES = 100
CANDIDATE_FACTOR = 3          # get_samples_1.m: k = 3, so 300 candidates
N_ANGLE_BINS, N_RADIUS_BINS = 12, 5
R_INNER, R_OUTER = 1 / 8, 2
ORIENTATION_WEIGHT = 0.1      # ori_weight
DUMMY_COST = 0.25             # eps_dum
DUMMY_FRACTION = 0.25         # ndum_frac: 25 dummies for 100 points
N_ITERATIONS = 6
LAMBDA_FIRST, LAMBDA_LATER = 1000.0, 1.0   # affine start, then beta_init * r^(k-2) = 1
TANGENT_STEP = 1.0            # tan_eps
GRID_SIZE = 10                # n_control
MATCH_STEP = 2                # extract_tps_keypoint.m matches at half size (128x96)
NEWTON_TOLERANCE = 1e-3       # px: the inverse's accuracy
COARSE_SEARCH_STEP = 8        # px: the grid searched for a Newton start where the first start fails
MATLAB_EPS = np.finfo(np.float64).eps
COARSE_CHECKPOINT_NAME = 'viton_coarse_final.pth'
RESULT_NAME = 'shape_context'
TARGETS = ('parse', 'coarse')
UPPER_CLOTHES_LABEL = 5


# --------------------------------------------------------------------------------------------------
# Contour points and sampling

def half_size(mask, step=MATCH_STEP):
    """mask [H,W] -> the pixels MATLAB's imresize(.., 1/step, 'nearest') keeps (offset step // 2 for step 2)."""
    return mask[step // 2::step, step // 2::step]


def clean_cloth_mask(mask):
    """imfill (holes) then medfilt2 (3x3, zero padding) of a bool mask [h,w], as extract_tps_keypoint.m does
    to the cloth mask."""
    filled = ndimage.binary_fill_holes(mask)
    return ndimage.median_filter(filled.astype(np.uint8), size=3, mode='constant', cval=0).astype(bool)


def contour_points(mask):
    """Points where the 0.5 level of the bool mask [h,w] crosses a pixel edge: (points [n,2] as (x, y) in
    pixels from 0, tangents [n] in radians). n = 0 for an empty or full mask.

    These are the vertices of contourc(V, [.5 .5]) (bdry_extract_3.m): the midpoints between 4-neighbours
    of different value. The tangent is atan2(gy, gx) + pi/2 of MATLAB's gradient(V) (central differences,
    one-sided at the border, as np.gradient) at the point rounded half up."""
    values = mask.astype(np.float64)
    rows, cols = np.nonzero(values[:, 1:] != values[:, :-1])     # crossings between (r, c) and (r, c + 1)
    horizontal = np.stack([cols + 0.5, rows.astype(np.float64)], 1)
    rows, cols = np.nonzero(values[1:, :] != values[:-1, :])     # between (r, c) and (r + 1, c)
    vertical = np.stack([cols.astype(np.float64), rows + 0.5], 1)
    points = np.concatenate([horizontal, vertical], 0)
    grad_y, grad_x = np.gradient(values)
    x0, y0 = np.floor(points[:, 0] + 0.5).astype(int), np.floor(points[:, 1] + 0.5).astype(int)
    tangents = np.arctan2(grad_y[y0, x0], grad_x[y0, x0]) + np.pi / 2
    return points, tangents


def squared_distances(a, b):
    """[n,2], [m,2] -> [n,m] squared Euclidean distances (dist2.m, without its rounding below 0)."""
    dx = a[:, None, 0] - b[None, :, 0]
    dy = a[:, None, 1] - b[None, :, 1]
    return dx * dx + dy * dy


def sample_points(points, tangents, n_samples=N_SAMPLES, rng=None):
    """get_samples_1.m: n_samples of the points [N,2] (N >= n_samples), spread along the contour.

    CANDIDATE_FACTOR * n_samples candidates at random (all if fewer), then, until n_samples remain, the
    closest pair's point that comes first in the candidates' order is dropped (MATLAB's min over columns,
    first index on ties). Returns (points [n,2], tangents [n]) in the candidates' order."""
    rng = np.random.default_rng(0) if rng is None else rng
    order = rng.permutation(len(points))[:min(CANDIDATE_FACTOR * n_samples, len(points))]
    points, tangents = points[order], tangents[order]
    d2 = squared_distances(points, points)
    np.fill_diagonal(d2, np.inf)
    column_min = d2.min(0)        # each candidate's nearest neighbour, updated as points go
    keep = np.ones(len(points), dtype=bool)
    for _ in range(len(points) - n_samples):
        drop = int(np.argmin(column_min))
        # only the candidates whose nearest neighbour was the dropped one need a new minimum
        affected = np.nonzero(keep & (d2[drop] == column_min))[0]
        keep[drop] = False
        column_min[drop] = np.inf
        d2[drop, :] = np.inf
        d2[:, drop] = np.inf
        if len(affected):
            column_min[affected] = d2[:, affected].min(0)
    return points[keep], tangents[keep]


# --------------------------------------------------------------------------------------------------
# Shape contexts and costs

def radius_bin_edges(n_bins=N_RADIUS_BINS):
    """logspace(log10(1/8), log10(2), 5): the radius bin edges in units of the mean distance."""
    return np.logspace(np.log10(R_INNER), np.log10(R_OUTER), n_bins)


def shape_contexts(points, outliers=None):
    """sc_compute.m with zero tangents: points [n,2] -> (histograms [n, 12*5] of counts, mean distance).

    Bin [a, r] (flattened a * 5 + r) counts the inlier points j with the angle atan2(yj - yi, xj - xi)
    in [a, a+1) * 30 degrees and the distance / mean_dist in [edge r-1, edge r) (edge -1 = 0; beyond the
    outer edge, 2, not counted). mean_dist is the mean over all inlier pairs, the zero diagonal included;
    a point counts itself (distance 0, angle 0). ``outliers`` [n] bool: points left out of the counts
    (they still get a histogram)."""
    n = len(points)
    inliers = np.ones(n, dtype=bool) if outliers is None else ~np.asarray(outliers, dtype=bool)
    distances = np.sqrt(squared_distances(points, points))
    mean_dist = distances[np.ix_(inliers, inliers)].mean()
    radius_bins = np.searchsorted(radius_bin_edges(), distances / mean_dist, side='right')
    delta = points[None, :, :] - points[:, None, :]                 # [i, j] = point j - point i
    angles = np.arctan2(delta[..., 1], delta[..., 0])
    # rem(rem(t, 2 pi) + 2 pi, 2 pi) as MATLAB: a tiny negative angle lands in bin 0, not at 2 pi
    angles = np.fmod(np.fmod(angles, 2 * np.pi) + 2 * np.pi, 2 * np.pi)
    angle_bins = np.minimum(np.floor(angles / (2 * np.pi / N_ANGLE_BINS)).astype(int), N_ANGLE_BINS - 1)
    counted = (radius_bins < N_RADIUS_BINS) & inliers[None, :]
    bins = angle_bins * N_RADIUS_BINS + radius_bins + np.arange(n)[:, None] * (N_ANGLE_BINS * N_RADIUS_BINS)
    histograms = np.bincount(bins[counted], minlength=n * N_ANGLE_BINS * N_RADIUS_BINS)
    return histograms.reshape(n, N_ANGLE_BINS * N_RADIUS_BINS).astype(np.float64), mean_dist


def chi2_costs(histograms_a, histograms_b):
    """hist_cost_2.m: [n,B], [m,B] counts -> [n,m] chi^2 costs 0.5 sum (a - b)^2 / (a + b) of the
    normalised histograms (each divided by its sum + eps), in [0, 1]."""
    a = histograms_a / (histograms_a.sum(1, keepdims=True) + MATLAB_EPS)
    b = histograms_b / (histograms_b.sum(1, keepdims=True) + MATLAB_EPS)
    a, b = a[:, None, :], b[None, :, :]
    return 0.5 * (((a - b) ** 2) / (a + b + MATLAB_EPS)).sum(-1)


def tangent_costs(tangents_a, tangents_b):
    """tps_main.m's orientation cost with edge polarity: 0.5 (1 - cos(ta - tb)), [n,m] in [0, 1]."""
    return 0.5 * (1 - np.cos(tangents_a[:, None] - tangents_b[None, :]))


def matching_costs(histograms_a, histograms_b, tangents_a, tangents_b, orientation_weight=ORIENTATION_WEIGHT):
    """(1 - w) chi^2 + w tangent cost, w = 0.1: [n,m]."""
    return ((1 - orientation_weight) * chi2_costs(histograms_a, histograms_b)
            + orientation_weight * tangent_costs(tangents_a, tangents_b))


def match_with_dummies(costs, dummy_cost=DUMMY_COST, dummy_fraction=DUMMY_FRACTION):
    """Hungarian matching of costs [n,n] padded with round(n * 0.25) dummy rows and columns at
    ``dummy_cost``. Returns (pairs [k,2] of (source index, target index), both real, in target order;
    source outliers [n] bool; target outliers [n] bool), outliers being points matched to a dummy."""
    n = len(costs)
    size = n + int(round(dummy_fraction * n))
    padded = np.full((size, size), dummy_cost)
    padded[:n, :n] = costs
    rows, cols = linear_sum_assignment(padded)
    source_of_target = np.empty(size, dtype=int)
    source_of_target[cols] = rows
    target_of_source = cols[np.argsort(rows)]
    good = np.nonzero(source_of_target[:n] < n)[0]
    pairs = np.stack([source_of_target[good], good], 1)
    return pairs, target_of_source[:n] >= n, source_of_target[:n] >= n


# --------------------------------------------------------------------------------------------------
# Thin-plate splines (bookstein.m)

def tps_kernel(d2):
    """U = r^2 log r^2 of squared distances, 0 at r = 0."""
    return d2 * np.log(np.where(d2 > 0, d2, 1.0))


@dataclass(frozen=True)
class Tps:
    """A 2-D thin-plate spline: f(p) = affine [1, x, y] @ affine_coefficients + U(|p - c_k|^2) @ weights."""
    centres: np.ndarray     # [k,2]
    weights: np.ndarray     # [k,2]
    affine: np.ndarray      # [3,2]

    def __call__(self, points):
        """points [m,2] -> f(points) [m,2]."""
        points = np.asarray(points, dtype=np.float64)
        basis = np.concatenate([np.ones((len(points), 1)), points], 1)
        return basis @ self.affine + tps_kernel(squared_distances(points, self.centres)) @ self.weights


def fit_tps(source, target, regularisation):
    """bookstein.m: the TPS f with f(source) ~ target ([k,2] each), K + regularisation * I as the kernel."""
    k = len(source)
    L = np.zeros((k + 3, k + 3))
    L[:k, :k] = tps_kernel(squared_distances(source, source)) + regularisation * np.eye(k)
    L[:k, k] = 1
    L[:k, k + 1:] = source
    L[k, :k] = 1
    L[k + 1:, :k] = source.T
    rhs = np.zeros((k + 3, 2))
    rhs[:k] = target
    coefficients = np.linalg.solve(L, rhs)
    return Tps(source.copy(), coefficients[:k], coefficients[k:])


def warped_tangents(tps, points, tangents):
    """tps_main.m: the angles of f(p + (cos t, sin t)) - f(p), the tangents moved by the TPS."""
    moved = tps(points)
    ahead = tps(points + TANGENT_STEP * np.stack([np.cos(tangents), np.sin(tangents)], 1))
    return np.arctan2(ahead[:, 1] - moved[:, 1], ahead[:, 0] - moved[:, 0])


def newton_inverse(tps, targets, start, iterations=20):
    """Newton's method for tps(p) = targets [m,2] from ``start`` [m,2]: numerical Jacobian, a step halved
    (up to 6 times) while it does not reduce a point's residual. Returns (points [m,2], residuals [m] px)."""
    points = start.astype(np.float64).copy()
    residual = tps(points) - targets
    error = np.linalg.norm(residual, axis=1)
    h = 1e-3
    for _ in range(iterations):
        if error.max() < NEWTON_TOLERANCE:
            break
        jac_x = (tps(points + [h, 0]) - targets - residual) / h        # d f / d x, [m,2]
        jac_y = (tps(points + [0, h]) - targets - residual) / h
        det = jac_x[:, 0] * jac_y[:, 1] - jac_y[:, 0] * jac_x[:, 1]
        det = np.where(np.abs(det) > 1e-12, det, 1e-12)
        # the 2x2 inverse of [[jx0, jy0], [jx1, jy1]] applied to -residual
        step = -np.stack([jac_y[:, 1] * residual[:, 0] - jac_y[:, 0] * residual[:, 1],
                          -jac_x[:, 1] * residual[:, 0] + jac_x[:, 0] * residual[:, 1]], 1) / det[:, None]
        scale = np.ones(len(points))
        for _ in range(6):
            trial = points + scale[:, None] * step
            trial_residual = tps(trial) - targets
            trial_error = np.linalg.norm(trial_residual, axis=1)
            better = trial_error < error
            if better.all():
                break
            scale = np.where(better, scale, scale / 2)
        points[better], residual[better], error[better] = trial[better], trial_residual[better], trial_error[better]
    return points, error


def nearest_preimage(tps, targets, candidates):
    """extract_tps_keypoint.m's inverse: for each target [m,2], the candidate point [c,2] whose image is nearest."""
    return candidates[squared_distances(targets, tps(candidates)).argmin(1)]


def grid_points(x_range, y_range, step):
    """The points of a regular grid, [c,2] (x, y), over [x0, x1] x [y0, y1] every ``step`` px."""
    grid_x, grid_y = np.meshgrid(np.arange(x_range[0], x_range[1] + step / 2, step),
                                 np.arange(y_range[0], y_range[1] + step / 2, step))
    return np.stack([grid_x.ravel(), grid_y.ravel()], 1).astype(np.float64)


def invert_tps(tps, targets, start, bounds):
    """Points p [m,2] with tps(p) = targets [m,2]: Newton from ``start``; where it does not converge
    (a fold, a poor start), again from the nearest image of an 8-px grid over ``bounds`` ((x0, x1), (y0, y1),
    the MATLAB's search range); where that fails too, the nearest image of a 1-px grid within 8 px of the
    best point found, as the MATLAB's search at 1 px (it is the exact preimage to within that)."""
    points, error = newton_inverse(tps, targets, start)
    failed = np.nonzero(error >= NEWTON_TOLERANCE)[0]
    if len(failed):
        coarse = nearest_preimage(tps, targets[failed], grid_points(*bounds, COARSE_SEARCH_STEP))
        retried, retried_error = newton_inverse(tps, targets[failed], coarse)
        better = retried_error < error[failed]
        points[failed[better]], error[failed[better]] = retried[better], retried_error[better]
    for index in np.nonzero(error >= NEWTON_TOLERANCE)[0]:
        x, y = np.round(points[index])
        window = grid_points((x - COARSE_SEARCH_STEP, x + COARSE_SEARCH_STEP),
                             (y - COARSE_SEARCH_STEP, y + COARSE_SEARCH_STEP), 1)
        points[index] = nearest_preimage(tps, targets[index:index + 1], window)[0]
    return points


# --------------------------------------------------------------------------------------------------
# Matching two masks

class TooFewPoints(ValueError):
    """A mask whose contour has fewer points than the matcher samples (empty, or a speck)."""


def mask_contour_samples(mask, rng, n_samples=N_SAMPLES):
    """Contour points of the bool mask [h,w] sampled as get_samples_1.m: (points [n,2], tangents [n])."""
    points, tangents = contour_points(mask)
    if len(points) < n_samples:
        raise TooFewPoints(f'{len(points)} contour points, fewer than {n_samples}')
    return sample_points(points, tangents, n_samples, rng)


def fit_shape_context_tps(source_points, source_tangents, target_points, target_tangents,
                          n_iterations=N_ITERATIONS):
    """tps_main.m's loop: the TPS from the source points [n,2] to the target points [n,2] after
    ``n_iterations`` rounds of matching. Returns (tps, pairs [k,2] of the last matching)."""
    n = len(source_points)
    moved, moved_tangents = source_points, source_tangents
    source_outliers = target_outliers = np.zeros(n, dtype=bool)
    for iteration in range(n_iterations):
        source_histograms, _ = shape_contexts(moved, source_outliers)
        target_histograms, target_mean_dist = shape_contexts(target_points, target_outliers)
        lambda_o = LAMBDA_FIRST if iteration == 0 else LAMBDA_LATER
        costs = matching_costs(source_histograms, target_histograms, moved_tangents, target_tangents)
        pairs, source_outliers, target_outliers = match_with_dummies(costs)
        # always from the original source points: each iteration refits the whole warp
        tps = fit_tps(source_points[pairs[:, 0]], target_points[pairs[:, 1]], target_mean_dist ** 2 * lambda_o)
        moved = tps(source_points)
        moved_tangents = warped_tangents(tps, source_points, source_tangents)
    return tps, pairs


def pixel_to_normalised(points, width, height):
    """Pixels from 0 [m,2] (x, y) -> align_corners=True coordinates in [-1,1]."""
    return points / [(width - 1) / 2, (height - 1) / 2] - 1


def normalised_to_pixel(points, width, height):
    return (points + 1) * [(width - 1) / 2, (height - 1) / 2]


def theta_from_tps(tps, matched_source, width, height, grid_size=GRID_SIZE):
    """The TpsGridGen offsets, float32 [2N] (N x-offsets then N y-offsets, in [-1,1] units), of the TPS
    ``tps`` (source -> target pixels of a width x height image): at each regular control point q (in [-1,1],
    networks.tps_control_points' order), the source point f^-1(q) - q. The inverse starts from the TPS
    fitted the other way through the matched source points [k,2] and their images."""
    p_x, p_y = tps_control_points(grid_size)
    regular = np.stack([p_x.numpy(), p_y.numpy()], 1).astype(np.float64)
    targets = normalised_to_pixel(regular, width, height)
    backwards = fit_tps(tps(matched_source), matched_source, 1e-6)
    bounds = ((-2 * width, 2 * width), (-2 * height, 2 * height))
    sources = invert_tps(tps, targets, backwards(targets), bounds)
    offsets = pixel_to_normalised(sources, width, height) - regular
    return np.concatenate([offsets[:, 0], offsets[:, 1]]).astype(np.float32)


def match_masks(source_mask, target_mask, seed=0, clean_source=True, step=MATCH_STEP, grid_size=GRID_SIZE):
    """Shape-context TPS of the cloth mask ``source_mask`` onto the clothing mask ``target_mask`` (bool or
    0/1 arrays [H,W] of the same size). Returns theta, float32 [2 * grid_size^2] for
    networks.TpsGridGen(H, W, grid_size): the grid it makes samples the source at the target's pixels.

    Raises TooFewPoints when a mask has fewer than 100 contour points at the matching size (H/step x W/step)."""
    source_mask, target_mask = np.asarray(source_mask, dtype=bool), np.asarray(target_mask, dtype=bool)
    if source_mask.shape != target_mask.shape:
        raise ValueError(f'the masks differ in size: {source_mask.shape} and {target_mask.shape}')
    height, width = source_mask.shape
    small_source, small_target = half_size(source_mask, step), half_size(target_mask, step)
    if clean_source:
        small_source = clean_cloth_mask(small_source)
    rng = np.random.default_rng(seed)
    target_points, target_tangents = mask_contour_samples(small_target, rng)
    source_points, source_tangents = mask_contour_samples(small_source, rng)
    # half-size pixel i is full-size pixel step * i + step // 2 (half_size's offset)
    source_points, target_points = step * source_points + step // 2, step * target_points + step // 2
    tps, pairs = fit_shape_context_tps(source_points, source_tangents, target_points, target_tangents)
    return theta_from_tps(tps, source_points[pairs[:, 0]], width, height, grid_size)


@functools.lru_cache(maxsize=4)
def grid_generator(height, width, grid_size=GRID_SIZE):
    """One TpsGridGen per size and process (its basis takes a moment to build)."""
    return TpsGridGen(height, width, grid_size=grid_size)


def warp_pair(cloth, cloth_mask, theta):
    """Warp cloth [3,H,W] in [-1,1] and cloth_mask [1,H,W] in {0,1} (tensors) by theta [2N] as the GMM
    does (networks.warp_cloth: cloth 'border', mask 'zeros'). Returns (warped cloth [1,3,H,W], warped
    mask [1,1,H,W])."""
    height, width = cloth.shape[-2:]
    theta = torch.as_tensor(theta, dtype=torch.float32).reshape(1, -1)
    grid_size = int(round((theta.shape[1] // 2) ** 0.5))
    with torch.no_grad():
        grid = grid_generator(height, width, grid_size)(theta)
        return warp_cloth(cloth[None].float(), cloth_mask[None].float(), grid)


# --------------------------------------------------------------------------------------------------
# The command

@dataclass(frozen=True)
class PairJob:
    """What a worker needs for one pair: its names and the files to read and write."""
    im_name: str
    c_name: str
    cloth: str
    cloth_mask: str
    target: str            # the parse map (--target parse) or the coarse mask (--target coarse)
    target_kind: str
    warp_cloth: str
    warp_mask: str
    height: int
    width: int


def target_mask(job):
    """The person's clothing mask [H,W] bool: parse label 5, or the coarse mask >= 128."""
    size = (job.width, job.height)
    if job.target_kind == 'parse':
        return cp_dataset.load_parse_labels(job.target, size) == UPPER_CLOTHES_LABEL
    return cp_dataset.load_mask(job.target, size) >= MASK_THRESHOLD


def run_pair(job):
    """Match, warp and write one pair. Returns (pair key, None or why it got the identity warp, or
    'error: ...' for a data problem). DataLoader workers run torch on one thread each."""
    key = cp_dataset.pair_key(job.im_name, job.c_name)
    try:
        size = (job.width, job.height)
        pixels, _ = cp_dataset.load_photo(job.cloth, size)
        mask = cp_dataset.load_mask(job.cloth_mask, size) >= MASK_THRESHOLD
        person_mask = target_mask(job)
    except (DataError, OSError) as error:
        return key, f'error: {error}'
    note = None
    try:
        theta = match_masks(mask, person_mask)
    except TooFewPoints as error:
        theta, note = np.zeros(2 * GRID_SIZE ** 2, dtype=np.float32), str(error)
    cloth = cp_dataset.normalized(pixels)
    warped_cloth, warped_mask = warp_pair(cloth, torch.from_numpy(mask.astype(np.float32))[None], theta)
    save_images(warped_cloth, [osp.basename(job.warp_cloth)], osp.dirname(job.warp_cloth))
    save_images(warped_mask * 2 - 1, [osp.basename(job.warp_mask)], osp.dirname(job.warp_mask))
    return key, note


def coarse_mask_path(opt, im_name, c_name):
    if opt.coarse_dir:
        return Path(cp_dataset.file_in(osp.join(opt.coarse_dir, 'coarse-mask'), cp_dataset.pair_key(im_name, c_name)))
    return ResultLayout(opt.result_dir, COARSE_CHECKPOINT_NAME, opt.datamode).file('coarse-mask', im_name, c_name)


def pair_jobs(opt, pairs):
    """A PairJob per pair; DataError naming the first missing input file (and how many are missing)."""
    layout = DataLayout(Path(opt.dataroot), opt.datamode)
    results = ResultLayout(opt.result_dir, RESULT_NAME, opt.datamode)
    jobs, missing = [], []
    for im_name, c_name in pairs:
        target = layout.parse_map(im_name) if opt.target == 'parse' else coarse_mask_path(opt, im_name, c_name)
        files = (layout.cloth(c_name), layout.cloth_mask(c_name), target)
        missing.extend(str(path) for path in files if not path.is_file())
        jobs.append(PairJob(im_name, c_name, *(str(path) for path in files), opt.target,
                            str(results.file('warp-cloth', im_name, c_name)),
                            str(results.file('warp-mask', im_name, c_name)), opt.fine_height, opt.fine_width))
    if missing:
        more = f' (and {len(missing) - 1} more missing files)' if len(missing) > 1 else ''
        fix = ('--target coarse reads VITON\'s coarse-stage masks: run the coarse stage first, or pass '
               '--coarse_dir (the folder holding coarse-mask/)' if opt.target == 'coarse' and 'coarse-mask' in
               missing[0] else f'check --dataroot and --datamode ({layout.data_dir})')
        raise DataError(f'file not found: {cp_dataset.shown(missing[0])}{more}; {fix}')
    return jobs


def shape_context_warps(opt, log=print):
    """Run the command (see the module docstring); returns {pair key: why it got the identity warp}."""
    pairs_path = osp.join(opt.dataroot, opt.data_list)
    if not osp.isfile(pairs_path):
        raise DataError(f'pairs file not found: {cp_dataset.shown(pairs_path)}; check --dataroot and --data_list')
    jobs = pair_jobs(opt, cp_dataset.read_pairs(pairs_path))
    outcomes = cp_dataset.parallel_map(run_pair, jobs, opt.workers, f'shape context {opt.datamode}')
    errors = [note for _, note in outcomes if note and note.startswith('error: ')]
    if errors:
        raise DataError(f'{len(errors)} of {len(jobs)} pairs could not be read; the first: {errors[0][7:]}')
    identity = {key: note for key, note in outcomes if note}
    folder = ResultLayout(opt.result_dir, RESULT_NAME, opt.datamode).folder
    log(f'wrote the warps of {len(jobs)} pairs to {folder}/warp-cloth and warp-mask')
    if identity:
        names = ', '.join(f'{key} ({note})' for key, note in list(identity.items())[:5])
        log(f'{len(identity)} pairs got the identity warp (a mask with too few contour points): {names}'
            + (' ...' if len(identity) > 5 else ''))
    return identity


def positive(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f'must be a positive integer, got {text}')
    return value


def non_negative(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be 0 or more, got {text}')
    return value


def get_opt(argv=None):
    parser = argparse.ArgumentParser(description='VITON\'s shape-context TPS warp of the in-shop cloth.')
    parser.add_argument('--dataroot', default='data')
    parser.add_argument('--datamode', default='train')
    parser.add_argument('--data_list', default='train_pairs.txt')
    parser.add_argument('--target', choices=TARGETS, default='parse',
                        help='the person mask matched: parse label 5 (training) or VITON\'s coarse mask (test)')
    parser.add_argument('--coarse_dir', default='',
                        help='folder holding coarse-mask/ (default <result_dir>/viton_coarse_final.pth/<datamode>)')
    parser.add_argument('--result_dir', default='result')
    parser.add_argument('--workers', type=non_negative, default=2)
    parser.add_argument('--fine_height', type=positive, default=256)
    parser.add_argument('--fine_width', type=positive, default=192)
    opt = parser.parse_args(argv)
    if opt.coarse_dir and opt.target != 'coarse':
        parser.error('--coarse_dir is read with --target coarse only')
    return opt


def main(argv=None):
    opt = get_opt(argv)
    try:
        shape_context_warps(opt)
    except (DataError, OSError) as error:
        raise SystemExit(f'error: {error}') from None
    return 0


if __name__ == '__main__':
    sys.exit(main())
