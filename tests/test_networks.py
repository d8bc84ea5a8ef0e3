"""GMM and TOM are the original networks: state-dict layout, outputs, checkpoints, devices."""
from collections import OrderedDict

import pytest
import torch

from conftest import REFERENCE, make_opt, require
from networks import (GMM, CheckpointError, TpsGridGen, build_tom, load_checkpoint, save_checkpoint, select_device,
                      tom_tryon, warp, warp_cloth)

PARITY = REFERENCE / 'parity'


def layout(model):
    return [(k, 'x'.join(map(str, v.shape)) or 'scalar', str(v.dtype).replace('torch.', ''))
            for k, v in model.state_dict().items()]


def reference_layout(name):
    lines = require(REFERENCE / f'{name}_state_dict.tsv').read_text().splitlines()[1:]
    return [tuple(line.split('\t')) for line in lines if line]


@pytest.mark.parametrize('name, build', [('gmm', lambda: GMM(make_opt())), ('tom', build_tom)])
def test_state_dict_layout_is_the_original(name, build):
    assert layout(build()) == reference_layout(name)


def test_tps_constants_are_not_in_the_state_dict():
    assert not any(k.startswith('gridGen') for k in GMM(make_opt()).state_dict())


def load_gmm_fixture():
    model = GMM(make_opt())
    model.load_state_dict(torch.load(require(PARITY / 'gmm_weights.pth'), weights_only=True))
    return model.eval(), torch.load(PARITY / 'gmm_io.pt', weights_only=True)


def test_gmm_outputs_match_the_original():
    model, io = load_gmm_fixture()
    with torch.no_grad():
        grid, theta = model(io['agnostic'], io['cloth'])
        warped_cloth, warped_mask = warp_cloth(io['cloth'], io['cloth_mask'], grid)
    torch.testing.assert_close(theta, io['theta'], atol=1e-4, rtol=0)
    torch.testing.assert_close(grid, io['grid'], atol=1e-4, rtol=0)
    torch.testing.assert_close(warped_cloth, io['warped_cloth'], atol=1e-3, rtol=0)
    torch.testing.assert_close(warped_mask, io['warped_mask'], atol=1e-2, rtol=0)
    # The warp itself, on the stored grid, is exact (same torch build).
    assert torch.equal(warp(io['cloth'], io['grid'], 'border'), io['warped_cloth'])


def test_tps_grid_matches_the_original():
    io = torch.load(require(PARITY / 'tps_io.pt'), weights_only=True)
    torch.testing.assert_close(TpsGridGen(256, 192, grid_size=5)(io['theta']), io['grid'], atol=5e-5, rtol=0)


def test_tps_of_zero_offsets_is_the_identity_grid():
    grid = TpsGridGen(256, 192, grid_size=5)(torch.zeros(1, 50))
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 256), torch.linspace(-1, 1, 192), indexing='ij')
    torch.testing.assert_close(grid[0], torch.stack([xs, ys], -1), atol=1e-5, rtol=0)


def test_tom_outputs_match_the_original():
    model = build_tom()
    model.load_state_dict(torch.load(require(PARITY / 'tom_weights.pth'), weights_only=True))
    io = torch.load(PARITY / 'tom_io.pt', weights_only=True)
    with torch.no_grad():
        output = model.eval()(io['input'])
        p_rendered, m_composite, p_tryon = tom_tryon(output, io['input'][:, 22:25])
    for value, key in ((output, 'output'), (p_rendered, 'p_rendered'), (m_composite, 'm_composite'),
                       (p_tryon, 'p_tryon')):
        torch.testing.assert_close(value, io[key], atol=1e-4, rtol=0, msg=key)


def test_checkpoint_without_num_batches_tracked_loads(tmp_path):
    """Checkpoints saved by torch 0.4.0 lack the BatchNorm counters."""
    model, io = load_gmm_fixture()
    old = OrderedDict((k, v) for k, v in torch.load(PARITY / 'gmm_weights.pth', weights_only=True).items()
                      if not k.endswith('num_batches_tracked'))
    path = tmp_path / 'gmm_final.pth'
    torch.save(old, path)
    fresh = load_checkpoint(GMM(make_opt()), str(path), torch.device('cpu')).eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(io['agnostic'], io['cloth'])[0], io['grid'], atol=1e-4, rtol=0)


def test_saved_checkpoint_round_trips_in_the_original_layout(tmp_path):
    model = build_tom()
    path = tmp_path / 'sub' / 'tom_final.pth'
    save_checkpoint(model, str(path))
    saved = torch.load(path, weights_only=True)
    assert list(saved) == list(model.state_dict())
    assert not list(tmp_path.glob('sub/.*tmp*')), 'temporary file left behind'
    other = load_checkpoint(build_tom(), str(path))
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values()))


def test_missing_and_wrong_checkpoints_are_refused_clearly(tmp_path):
    with pytest.raises(CheckpointError, match='not found'):
        load_checkpoint(GMM(make_opt()), str(tmp_path / 'nope.pth'))
    tom_path = tmp_path / 'tom_final.pth'
    save_checkpoint(build_tom(), str(tom_path))
    with pytest.raises(CheckpointError, match='tom_final.pth does not fit GMM'):
        load_checkpoint(GMM(make_opt()), str(tom_path))


def test_gmm_runs_at_512x384():
    opt = make_opt(fine_height=512, fine_width=384)
    model = GMM(opt).eval()
    with torch.no_grad():
        grid, theta = model(torch.rand(1, 22, 512, 384) * 2 - 1, torch.rand(1, 3, 512, 384) * 2 - 1)
    assert grid.shape == (1, 512, 384, 2) and theta.shape == (1, 50)
    assert model.regression.linear.in_features == 64 * 8 * 6
    with torch.no_grad():
        assert build_tom().eval()(torch.zeros(1, 25, 512, 384)).shape == (1, 4, 512, 384)


def test_image_size_must_be_a_multiple_of_64():
    with pytest.raises(ValueError, match='multiple of 64'):
        GMM(make_opt(fine_height=250))


def test_device_selection_follows_gpu_ids():
    assert select_device('-1') == torch.device('cpu')
    expected = torch.device('cuda:0') if torch.cuda.is_available() else torch.device('cpu')
    assert select_device('') == expected
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match='--gpu_ids 0 asks for a GPU'):
            select_device('0')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_parity_on_cuda():
    model, io = load_gmm_fixture()
    device = torch.device('cuda:0')
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        grid, theta = model.to(device)(io['agnostic'].to(device), io['cloth'].to(device))
    torch.testing.assert_close(grid.cpu(), io['grid'], atol=1e-4, rtol=0)
    tom = build_tom()
    tom.load_state_dict(torch.load(PARITY / 'tom_weights.pth', weights_only=True))
    tom_io = torch.load(PARITY / 'tom_io.pt', weights_only=True)
    with torch.no_grad():
        output = tom.to(device).eval()(tom_io['input'].to(device))
    torch.testing.assert_close(output.cpu(), tom_io['output'], atol=1e-4, rtol=0)


def test_tps_grid_stays_float32_under_autocast():
    theta = torch.randn(2, 50) * 0.1
    generator = TpsGridGen(256, 192, grid_size=5)
    with torch.autocast(device_type='cpu', dtype=torch.bfloat16):
        grid = generator(theta.bfloat16())
    assert grid.dtype == torch.float32
    torch.testing.assert_close(grid, generator(theta.bfloat16().float()), atol=1e-6, rtol=0)
