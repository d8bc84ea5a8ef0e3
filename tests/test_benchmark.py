"""benchmark.py: its re-implementations of the original computations give the original's
numbers, and a tiny run writes every result. No speed is asserted here."""
import json

import numpy as np
import pytest
import torch

import benchmark
from conftest import COMPACT_PARITY
from cp_dataset import draw_pose_maps
from networks import TpsGridGen


@pytest.mark.parametrize('height, width, grid_size', [(256, 192, 5), (128, 64, 3)])
def test_original_tps_equals_the_fast_one(height, width, grid_size):
    theta = torch.randn(3, 2 * grid_size ** 2, generator=torch.Generator().manual_seed(0)) * 0.1
    original = benchmark.OriginalTpsGridGen(height, width, grid_size)(theta)
    assert original.shape == (3, height, width, 2)
    torch.testing.assert_close(original, TpsGridGen(height, width, grid_size)(theta), atol=1e-5, rtol=0)


def test_original_tps_parity():
    io = torch.load(COMPACT_PARITY / 'tps_io.pt', weights_only=True)
    torch.testing.assert_close(benchmark.OriginalTpsGridGen(256, 192, 5)(io['theta']), io['grid'],
                               atol=5e-5, rtol=0)


def test_original_tps_keeps_its_constants_out_of_the_state_dict():
    assert benchmark.OriginalTpsGridGen().state_dict() == {}


EDGE_KEYPOINTS = [
    [0.0, 0.0, 0.0],        # missing
    [1.0, 50.0, 0.9],       # x exactly 1: skipped
    [50.0, 1.0, 0.9],       # y exactly 1: skipped
    [1.01, 1.01, 0.9],      # just above 1: drawn, clipped at the top-left corner
    [10.7, 20.2, 0.9],      # fractional corners are truncated
    [2.5, 254.0, 0.9],      # clipped by the left and bottom borders
    [190.9, 3.3, 0.9],      # clipped by the right and top borders
    [195.0, 100.0, 0.9],    # square partly outside on the right
    [300.0, 300.0, 0.9],    # entirely outside the image
    [96.0, 128.0, 0.0],     # zero confidence is still drawn, as the original
    [96.5, 128.5, 0.5],     # overlaps the previous square
]


@pytest.mark.parametrize('radius', [5, 0, 3])
def test_pil_pose_drawing_equals_draw_pose_maps_bitwise(radius):
    keypoints = np.asarray(EDGE_KEYPOINTS + [[0.0, 0.0, 0.0]] * (18 - len(EDGE_KEYPOINTS)))
    pil_map, pil_image = benchmark.draw_pose_maps_pil(keypoints, 256, 192, radius)
    fast_map, fast_image = draw_pose_maps(keypoints, 256, 192, radius)
    assert torch.equal(pil_map, fast_map)
    assert torch.equal(pil_image, fast_image)


def test_pil_pose_drawing_equals_draw_pose_maps_on_random_points():
    rng = np.random.default_rng(0)
    keypoints = np.column_stack([rng.uniform(-10, 205, 18), rng.uniform(-10, 270, 18), rng.uniform(0, 1, 18)])
    for result, expected in zip(benchmark.draw_pose_maps_pil(keypoints, 256, 192, 5),
                                draw_pose_maps(keypoints, 256, 192, 5)):
        assert torch.equal(result, expected)


def positive_numbers(tree):
    """Every number in a JSON tree, except the settings."""
    if isinstance(tree, dict):
        return [n for key, value in tree.items() if key != 'settings' for n in positive_numbers(value)]
    if isinstance(tree, list):
        return [n for value in tree for n in positive_numbers(value)]
    return [tree] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


def test_tiny_run_writes_every_result(tmp_path, capsys):
    json_path = tmp_path / 'benchmark.json'
    exit_code = benchmark.main(['--device', 'cpu', '--batch_size', '1', '--repeats', '1', '--warmup', '0',
                                '--n_train', '2', '--workers', '0,1', '--compare-baseline', '--compare_rounds', '1',
                                '--method_steps', 'WUTON,MGVTON_GMM', '--json', str(json_path)])
    assert exit_code == 0
    results = json.loads(json_path.read_text())
    assert set(results) == {'machine', 'settings', 'tps', 'data_item', 'loader', 'gmm_step', 'tom_step',
                            'method_steps', 'projection', 'baseline'}
    wuton_step = results['method_steps']['WUTON']
    assert wuton_step['ratio_to_gmm_plus_tom'] == pytest.approx(
        wuton_step['median_s'] / (results['gmm_step']['median_s'] + results['tom_step']['median_s']))
    assert results['tps']['agree'] and results['data_item']['agree']
    assert set(results['loader']) == {'0', '1'}
    for stage in (results['gmm_step'], results['tom_step']):
        assert {'median_s', 'steps_per_s', 'peak_rss_bytes'} <= set(stage)
    for part in ('fast', 'original'):
        assert {'median_s', 'peak_live_bytes', 'constant_bytes'} <= set(results['tps'][part])
        assert {'median_s', 'step_peak_bytes'} <= set(results['baseline']['gmm_step'][part])
    for speedup in (results['tps'], results['data_item'], results['baseline']['gmm_step']):
        assert 'speedup' in speedup
    numbers = positive_numbers(results)
    assert numbers and all(n > 0 for n in numbers)
    report = capsys.readouterr().out
    assert '| GMM training step |' in report and 'randomly initialised VGG19' in report
    assert '| WUTON training step (WUTON) |' in report and 'x GMM + TOM' in report
    assert '| MGVTON_GMM training step (MG-VTON) |' in report   # on two-pose data, stage I's checkpoint made for it


def test_data_path_at_512x384_on_256x192_files(tmp_path):
    # The synthetic data is 256x192: CPDataset resizes it on load, the original loader cannot read it.
    args = benchmark.get_args(['--device', 'cpu', '--batch_size', '1', '--repeats', '1', '--warmup', '0',
                               '--n_train', '2', '--fine_height', '512', '--fine_width', '384',
                               '--compare-baseline'])
    benchmark.prepare_dataroot(args, str(tmp_path))
    opt = benchmark.dataset_opt(args)
    items = benchmark.measure_data_items(args, opt, args.compare_baseline, str(tmp_path))
    assert set(items) == {'fast', 'files_resized_from'} and items['files_resized_from'] == [192, 256]
    assert benchmark.CPDataset(opt)[0]['agnostic'].shape == (22, 512, 384)
    assert benchmark.measure_loader(args, opt, 0)['samples_per_s'] > 0
    assert 'n/a' in benchmark.data_item_comparison(items)
    assert 'resized on load to 512x384' in benchmark.resize_note(items, {'fine_height': 512, 'fine_width': 384})
