"""shape_context.py: VITON's shape-context TPS warp (descriptors, costs, sampling, matching, the command)."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import shape_context as sc
from conftest import VITON_SAMPLES, require
from cp_dataset import DataLayout, ResultLayout, label_region, load_mask, load_parse_labels, pair_key, read_pairs
from networks import TpsGridGen, tps_control_points, warp
from synthetic_data import generate_dataset

H, W = 256, 192


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


# ------------------------------------------------------------------------------------------ descriptors

def test_shape_context_counts_of_a_right_angle_by_hand():
    # Three points (0,0), (1,0), (0,1): distances 1, 1, sqrt 2; the mean over all 9 pairs, the zero diagonal
    # included (sc_compute.m), is (4 + 2 sqrt 2) / 9 = 0.7587, so 1 -> 1.318 and sqrt 2 -> 1.864, both in the
    # outer radius bin [1, 2) (bin 4). A point counts itself in bin (angle 0, radius 0).
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    histograms, mean_dist = sc.shape_contexts(points)
    assert mean_dist == pytest.approx((4 + 2 * np.sqrt(2)) / 9)
    expected = np.zeros((3, 60))
    # point 0: itself; (1,0) at 0 degrees (angle bin 0); (0,1) at 90 degrees (bin 3; y grows downwards)
    expected[0, [0 * 5 + 0, 0 * 5 + 4, 3 * 5 + 4]] = 1
    # point 1: itself; (0,0) at 180 degrees (bin 6); (0,1) at 135 degrees (bin 4)
    expected[1, [0 * 5 + 0, 6 * 5 + 4, 4 * 5 + 4]] = 1
    # point 2: itself; (0,0) at -90 = 270 degrees (bin 9); (1,0) at -45 = 315 degrees (bin 10)
    expected[2, [0 * 5 + 0, 9 * 5 + 4, 10 * 5 + 4]] = 1
    np.testing.assert_array_equal(histograms, expected)


def test_shape_context_radius_bins_outliers_and_far_points():
    # Mean distance forced by a far point: points on the x axis at 0, 0.1, 0.3, 0.6, 1.5 and 20.
    points = np.array([[0.0, 0], [0.1, 0], [0.3, 0], [0.6, 0], [1.5, 0], [20.0, 0]])
    histograms, mean_dist = sc.shape_contexts(points)
    distances = np.abs(points[:, None, 0] - points[None, :, 0])
    assert mean_dist == pytest.approx(distances.mean())
    # from point 0, all at angle 0: radius bins by the edges 1/8, 1/4, 1/2, 1, 2 (times mean_dist)
    edges = np.array([1 / 8, 1 / 4, 1 / 2, 1, 2]) * mean_dist
    expected = np.zeros(5)
    for d in distances[0]:
        if d < edges[-1]:
            expected[np.searchsorted(edges, d, side='right')] += 1
    np.testing.assert_array_equal(histograms[0, :5], expected)
    assert histograms[0].sum() == (distances[0] < 2 * mean_dist).sum()   # the far point is not counted
    # an outlier is left out of everyone's counts (and of the mean), and still gets a histogram
    outliers = np.array([False, True, False, False, False, False])
    without, mean_without = sc.shape_contexts(points, outliers)
    inliers = ~outliers
    assert mean_without == pytest.approx(distances[np.ix_(inliers, inliers)].mean())
    assert without[0].sum() == (distances[0, inliers] < 2 * mean_without).sum()
    assert without[1].sum() > 0


def test_chi2_and_tangent_costs_by_hand():
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 1.0], [2.0, 0.0]])
    # [1,0] vs [0,1]: 0.5 (1/1 + 1/1) = 1; [1,0] vs [1,0] (normalised): 0
    # [.5,.5] vs [0,1]: 0.5 (0.25/0.5 + 0.25/1.5) = 1/3; [.5,.5] vs [1,0]: the same, 1/3
    np.testing.assert_allclose(sc.chi2_costs(a, b), [[1, 0], [1 / 3, 1 / 3]], atol=1e-12)
    # 0.5 (1 - cos d): 0 for the same angle, 0.5 at 90 degrees, 1 opposite (edge polarity counts)
    np.testing.assert_allclose(sc.tangent_costs(np.array([0.0]), np.array([0.0, np.pi / 2, np.pi])),
                               [[0, 0.5, 1]], atol=1e-12)
    # 0.9 chi^2 + 0.1 tangent
    np.testing.assert_allclose(sc.matching_costs(a, b, np.array([0.0, 0.0]), np.array([np.pi, np.pi / 2])),
                               [[0.9 + 0.1, 0 + 0.05], [0.3 + 0.1, 0.3 + 0.05]], atol=1e-12)


def test_dummies_take_the_points_that_match_nothing():
    # 4 points, costs 0 on the diagonal except point 3, which costs 1 to everything: with one dummy
    # (round(0.25 * 4)) at 0.25 it is matched to the dummy on both sides.
    costs = np.ones((4, 4))
    costs[[0, 1, 2], [0, 1, 2]] = 0
    pairs, source_outliers, target_outliers = sc.match_with_dummies(costs)
    np.testing.assert_array_equal(pairs, [[0, 0], [1, 1], [2, 2]])
    np.testing.assert_array_equal(source_outliers, [False, False, False, True])
    np.testing.assert_array_equal(target_outliers, [False, False, False, True])


def test_bookstein_tps_interpolates_without_and_smooths_with_regularisation():
    rng = np.random.default_rng(1)
    source = rng.uniform(0, 100, (30, 2))
    target = source * 1.1 + [5, -3] + rng.normal(0, 2, (30, 2))
    np.testing.assert_allclose(sc.fit_tps(source, target, 0)(source), target, atol=1e-6)
    # a huge regularisation leaves the affine least-squares fit (tps_main.m's first iteration)
    affine = sc.fit_tps(source, target, 1e9)
    design = np.concatenate([np.ones((30, 1)), source], 1)
    least_squares = design @ np.linalg.lstsq(design, target, rcond=None)[0]
    np.testing.assert_allclose(affine(source), least_squares, atol=1e-3)


# ------------------------------------------------------------------------------------------ contours

def square_mask(size=40, side=20):
    mask = np.zeros((size, size), dtype=bool)
    mask[10:10 + side, 10:10 + side] = True
    return mask


def test_contour_points_of_a_square():
    # a 20x20 square: 4 x 20 crossings, at half-pixel positions along its sides (contourc's vertices)
    points, tangents = sc.contour_points(square_mask())
    assert len(points) == 80
    top = points[:, 1] == 9.5
    assert top.sum() == 20 and set(points[top, 0]) == set(range(10, 30))
    # tangents run along the sides: horizontal on the top and bottom, vertical on the left and right; a
    # point takes the gradient at the pixel it rounds to (half up), diagonal at the square's corner pixels
    horizontal = (points[:, 1] == 9.5) | (points[:, 1] == 29.5)
    corner = np.isin(np.floor(points + 0.5), [10, 29]).all(1)
    np.testing.assert_allclose(np.abs(np.cos(tangents[horizontal & ~corner])), 1, atol=1e-12)
    np.testing.assert_allclose(np.abs(np.sin(tangents[~horizontal & ~corner])), 1, atol=1e-12)
    np.testing.assert_allclose(np.abs(np.cos(tangents[corner])), np.sqrt(0.5), atol=1e-12)
    assert corner.sum() == 4   # (10, 9.5), (9.5, 10) -> pixel (10, 10); (29, 9.5); (9.5, 29); none at (29, 29)
    assert len(sc.contour_points(np.zeros((10, 10), dtype=bool))[0]) == 0


def matlab_get_samples(points, n_samples):
    """get_samples_1.m after its random choice, literally: drop column d of min(min(d2)) until n remain."""
    points = list(map(tuple, points))
    d2 = ((np.array(points)[:, None] - np.array(points)[None]) ** 2).sum(-1) + np.diag([np.inf] * len(points))
    while len(points) > n_samples:
        column = int(np.argmin(d2.min(0)))
        del points[column]
        d2 = np.delete(np.delete(d2, column, 0), column, 1)
    return np.array(points)


def test_sampling_keeps_100_of_300_spread_along_the_contour():
    mask = np.zeros((200, 200), dtype=bool)
    yy, xx = np.mgrid[:200, :200]
    mask[(xx - 100) ** 2 / 80 ** 2 + (yy - 100) ** 2 / 50 ** 2 <= 1] = True
    points, tangents = sc.contour_points(mask)
    assert len(points) > 300
    sampled, sampled_tangents = sc.sample_points(points, tangents, 100, np.random.default_rng(0))
    assert sampled.shape == (100, 2) and sampled_tangents.shape == (100,)
    # the same as the literal MATLAB loop on the same 300 candidates, ties included
    candidates = points[np.random.default_rng(0).permutation(len(points))[:300]]
    np.testing.assert_array_equal(sampled, matlab_get_samples(candidates, 100))
    # spread: removing the closest pairs leaves no two points much closer than the contour length / 100
    d2 = sc.squared_distances(sampled, sampled) + np.diag([np.inf] * 100)
    nearest = np.sqrt(d2.min(1))
    perimeter = np.pi * (3 * (80 + 50) - np.sqrt((3 * 80 + 50) * (80 + 3 * 50)))
    assert nearest.min() > 0.5 * perimeter / 100
    candidate_d2 = sc.squared_distances(candidates, candidates) + np.diag([np.inf] * 300)
    assert np.sqrt(candidate_d2.min(1)).min() < nearest.min()


# ------------------------------------------------------------------------------------------ matching

def shirt_mask():
    """A shirt-like polygon (body and two sleeves), bool [H,W]."""
    image = Image.new('L', (W, H), 0)
    ImageDraw.Draw(image).polygon([(70, 40), (122, 40), (165, 80), (150, 105), (132, 92), (135, 220),
                                   (57, 220), (60, 92), (42, 105), (27, 80)], fill=255)
    return np.asarray(image) >= 128


def warp_mask(mask, theta, grid_size):
    grid = TpsGridGen(H, W, grid_size=grid_size)(torch.as_tensor(theta, dtype=torch.float32).reshape(1, -1))
    return warp(torch.from_numpy(mask.astype(np.float32))[None, None], grid, 'zeros')[0, 0].numpy() >= 0.5


def test_matcher_recovers_a_known_tps():
    # the target: the shirt scaled by 0.8-1.25 and shifted by up to 15 % of the image (an affine theta),
    # plus random offsets of up to 0.12 at a 4x4 grid of control points, through TpsGridGen and grid_sample
    source = shirt_mask()
    rng = np.random.default_rng(3)
    p_x, p_y = (points.numpy().astype(np.float64) for points in tps_control_points(4))
    ious, before = [], []
    for _ in range(4):
        scale, shift = rng.uniform(0.8, 1.25, 2), rng.uniform(-0.15, 0.15, 2)
        true_theta = (np.concatenate([p_x * scale[0] + shift[0] - p_x, p_y * scale[1] + shift[1] - p_y])
                      + rng.uniform(-0.12, 0.12, 2 * 4 ** 2))
        target = warp_mask(source, true_theta, 4)
        theta = sc.match_masks(source, target)
        assert theta.shape == (200,) and theta.dtype == np.float32
        ious.append(iou(warp_mask(source, theta, sc.GRID_SIZE), target))
        before.append(iou(source, target))
    # measured: IoU 0.961, 0.980, 0.968, 0.973 (the unwarped shirt: 0.65, 0.68, 0.61, 0.62)
    assert min(ious) > 0.94, (ious, before)
    assert max(before) < 0.7


def test_a_mask_without_enough_contour_is_refused_by_the_matcher():
    with pytest.raises(sc.TooFewPoints):
        sc.match_masks(shirt_mask(), np.zeros((H, W), dtype=bool))


# ------------------------------------------------------------------------------------------ the command

@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp('shape_context') / 'data'
    generate_dataset(str(root), n_train=6, n_test=2, seed=4)
    return root


def run_command(root, result, *extra, data_list='train_pairs.txt', datamode='train'):
    return sc.main(['--dataroot', str(root), '--datamode', datamode, '--data_list', data_list,
                    '--result_dir', str(result), '--workers', '0', *extra])


def label5_ious(root, result, datamode='train', data_list='train_pairs.txt'):
    layout, results = DataLayout(Path(root), datamode), ResultLayout(result, 'shape_context', datamode)
    ious = []
    for im_name, c_name in read_pairs(str(Path(root) / data_list)):
        person = label_region(load_parse_labels(layout.parse_map(im_name), (W, H)), (5,))
        warped = load_mask(results.file('warp-mask', im_name, c_name), (W, H)) >= 128
        ious.append(iou(warped, person))
    return np.array(ious)


def test_command_warps_synthetic_persons_onto_their_shirts(synthetic, tmp_path, capsys):
    assert run_command(synthetic, tmp_path / 'result', '--target', 'parse') == 0
    folder = tmp_path / 'result' / 'shape_context' / 'train'
    pairs = read_pairs(str(synthetic / 'train_pairs.txt'))
    for kind in ('warp-cloth', 'warp-mask'):
        assert sorted(p.name for p in (folder / kind).iterdir()) == sorted(pair_key(*pair) for pair in pairs)
    with Image.open(folder / 'warp-cloth' / pair_key(*pairs[0])) as image:
        assert (image.mode, image.size) == ('RGB', (W, H))
    with Image.open(folder / 'warp-mask' / pair_key(*pairs[0])) as image:
        assert (image.mode, image.size) == ('L', (W, H))
    ious = label5_ious(synthetic, tmp_path / 'result')
    # measured on these 6 persons: 0.789, 0.855, 0.948, 0.968, 0.973, 0.979, mean 0.919 (label 5 is the
    # warped shirt minus what the arms and the head cover, so the full warp cannot reach 1 on occluded persons)
    assert ious.mean() > 0.88 and ious.min() > 0.72, ious
    assert 'wrote the warps of 6 pairs' in capsys.readouterr().out
    # a second run replaces the files of the same pairs
    assert run_command(synthetic, tmp_path / 'result', '--target', 'parse') == 0


def test_command_reads_coarse_masks(synthetic, tmp_path):
    # VITON's coarse masks stand-ins: each person's label-5 region as a JPEG under the pair key
    layout = DataLayout(synthetic, 'train')
    coarse = tmp_path / 'coarse' / 'coarse-mask'
    coarse.mkdir(parents=True)
    pairs = read_pairs(str(synthetic / 'train_pairs.txt'))
    for im_name, c_name in pairs:
        region = label_region(load_parse_labels(layout.parse_map(im_name), (W, H)), (5,))
        Image.fromarray(region.astype(np.uint8) * 255).save(coarse / pair_key(im_name, c_name))
    coarse_dir = str(tmp_path / 'coarse')
    assert run_command(synthetic, tmp_path / 'result', '--target', 'coarse', '--coarse_dir', coarse_dir) == 0
    assert label5_ious(synthetic, tmp_path / 'result').mean() > 0.88
    # the default coarse_dir: <result_dir>/viton_coarse_final.pth/<datamode>
    default = tmp_path / 'result2' / 'viton_coarse_final.pth' / 'train'
    default.mkdir(parents=True)
    shutil.copytree(coarse, default / 'coarse-mask')
    assert run_command(synthetic, tmp_path / 'result2', '--target', 'coarse') == 0
    assert (tmp_path / 'result2' / 'shape_context' / 'train' / 'warp-mask' / pair_key(*pairs[0])).is_file()


def test_missing_coarse_mask_is_one_line_naming_it(synthetic, tmp_path):
    with pytest.raises(SystemExit) as error:
        run_command(synthetic, tmp_path / 'result', '--target', 'coarse')
    message = str(error.value)
    first = read_pairs(str(synthetic / 'train_pairs.txt'))[0]
    expected = ResultLayout(tmp_path / 'result', 'viton_coarse_final.pth', 'train').file('coarse-mask', *first)
    assert message.startswith('error: file not found: ') and str(expected) in message
    assert '--coarse_dir' in message and '\n' not in message


def test_missing_pairs_file_and_bad_flags(synthetic, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        run_command(synthetic, tmp_path / 'result', '--target', 'parse', data_list='nope.txt')
    assert 'nope.txt' in str(error.value) and '--data_list' in str(error.value) and '\n' not in str(error.value)
    for flags in (['--target', 'mask'], ['--target', 'parse', '--coarse_dir', 'x'], ['--workers', '-1']):
        with pytest.raises(SystemExit) as error:
            run_command(synthetic, tmp_path / 'result', *flags)
        assert error.value.code == 2
    assert 'error:' in capsys.readouterr().err


def test_empty_mask_gets_the_identity_warp_and_is_reported(synthetic, tmp_path, capsys):
    root = tmp_path / 'data'
    shutil.copytree(synthetic, root)
    im_name, c_name = read_pairs(str(root / 'train_pairs.txt'))[0]
    Image.new('L', (W, H), 0).save(root / 'train' / 'cloth-mask' / c_name)
    assert run_command(root, tmp_path / 'result', '--target', 'parse') == 0
    out = capsys.readouterr().out
    assert '1 pairs got the identity warp' in out and pair_key(im_name, c_name) in out
    warped = ResultLayout(tmp_path / 'result', 'shape_context', 'train').file('warp-cloth', im_name, c_name)
    with Image.open(warped) as image, Image.open(root / 'train' / 'cloth' / c_name) as cloth:
        difference = np.abs(np.asarray(image, dtype=int) - np.asarray(cloth, dtype=int))
        assert difference.mean() < 3   # the cloth itself, re-encoded as JPEG


def test_parallel_workers_write_the_same_files(synthetic, tmp_path):
    sc.main(['--dataroot', str(synthetic), '--datamode', 'train', '--data_list', 'train_pairs.txt',
             '--target', 'parse', '--result_dir', str(tmp_path / 'a'), '--workers', '2'])
    run_command(synthetic, tmp_path / 'b', '--target', 'parse')
    for path in (tmp_path / 'a').rglob('*.jpg'):
        assert path.read_bytes() == (tmp_path / 'b' / path.relative_to(tmp_path / 'a')).read_bytes()


def test_real_viton_samples(tmp_path):
    root = require(VITON_SAMPLES)
    pairs = read_pairs(str(root / 'test_pairs.txt'))[:6]
    data = tmp_path / 'data'      # the first 6 test pairs, reading the samples in place
    data.mkdir()
    (data / 'test').symlink_to(root / 'test')
    (data / 'pairs.txt').write_text(''.join(f'{person} {cloth}\n' for person, cloth in pairs))
    assert run_command(data, tmp_path / 'result', '--target', 'parse', datamode='test', data_list='pairs.txt') == 0
    ious = label5_ious(data, tmp_path / 'result', 'test', 'pairs.txt')
    # measured on these 6 pairs: 0.791, 0.842, 0.829, 0.809, 0.889, 0.877, mean 0.840 (all 80 test pairs:
    # mean 0.850; the unwarped cloth masks: 0.348)
    assert ious.mean() > 0.8 and ious.min() > 0.75, ious
