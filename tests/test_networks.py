"""GMM and TOM are the original networks: state-dict layout, outputs, checkpoints, devices.

The parity tests compare with outputs of the original CP-VTON networks. They always run on the
compact fixtures in tests/fixtures/parity/ (a copy of ../shared/reference/parity_compact/, made by
running the original code; see README "Checking parity yourself"), and again on the larger
../shared/reference/parity/ set where it is present.
"""
from collections import OrderedDict

import pytest
import torch

from conftest import COMPACT_PARITY, REFERENCE, make_opt, require
from networks import (GMM, CheckpointError, TpsGridGen, build_tom, load_checkpoint, save_checkpoint, select_device,
                      tom_tryon, warp, warp_cloth)

SHARED_PARITY = REFERENCE / 'parity'
PARITY_SETS = ('compact', 'shared')
# The tolerances the reference README suggests (float32 vs float64 of the original differ by about a tenth).
ATOL = {'theta': 1e-4, 'grid': 1e-4, 'tps.grid': 5e-5, 'warped_cloth': 1e-3, 'warped_mask': 1e-2,
        'tom': 1e-4}


def from_codes(codes):
    """The compact fixtures store inputs as uint8 codes of the float32 input: x = codes / 127.5 - 1."""
    return codes.float() / 127.5 - 1


def parity_dir(which):
    return COMPACT_PARITY if which == 'compact' else require(SHARED_PARITY)


def gmm_parity_io(which):
    """{'agnostic', 'cloth', 'cloth_mask', 'grid', 'theta', 'warped_cloth', 'warped_mask'} as float tensors."""
    io = torch.load(parity_dir(which) / 'gmm_io.pt', weights_only=True)
    if which == 'compact':
        io = {**io, 'agnostic': from_codes(io['agnostic_codes']), 'cloth': from_codes(io['cloth_codes']),
              'cloth_mask': io['cloth_mask'].float()}
    return io


def tom_parity_io(which):
    """{'input', 'output', 'p_tryon', ...}: the shared set also holds p_rendered and m_composite."""
    io = torch.load(parity_dir(which) / 'tom_io.pt', weights_only=True)
    if which == 'compact':
        io = {**io, 'input': from_codes(io['input_codes'])}
    return io


def parity_gmm(which):
    model = GMM(make_opt())
    model.load_state_dict(torch.load(parity_dir(which) / 'gmm_weights.pth', weights_only=True))
    return model.eval()


def parity_tom(which):
    model = build_tom()
    model.load_state_dict(torch.load(parity_dir(which) / 'tom_weights.pth', weights_only=True))
    return model.eval()


def layout(model):
    return [(k, 'x'.join(map(str, v.shape)) or 'scalar', str(v.dtype).replace('torch.', ''))
            for k, v in model.state_dict().items()]


def reference_layout(name):
    lines = require(REFERENCE / f'{name}_state_dict.tsv').read_text().splitlines()[1:]
    return [tuple(line.split('\t')) for line in lines if line]


@pytest.mark.parametrize('name, build', [('gmm', lambda: GMM(make_opt())), ('tom', build_tom)])
def test_state_dict_layout_is_the_original(name, build):
    assert layout(build()) == reference_layout(name)


def test_parity_weights_load_strictly_in_the_original_layout():
    """The compact fixtures' weights are original-code state dicts: every key and shape, strictly."""
    for name, build in (('gmm', lambda: GMM(make_opt())), ('tom', build_tom)):
        state = torch.load(COMPACT_PARITY / f'{name}_weights.pth', weights_only=True)
        model = build()
        assert list(state) == list(model.state_dict()), name
        model.load_state_dict(state, strict=True)


def test_tps_constants_are_not_in_the_state_dict():
    assert not any(k.startswith('gridGen') for k in GMM(make_opt()).state_dict())


@pytest.mark.parametrize('which', PARITY_SETS)
def test_gmm_parity(which):
    model, io = parity_gmm(which), gmm_parity_io(which)
    with torch.no_grad():
        grid, theta = model(io['agnostic'], io['cloth'])
        warped_cloth, warped_mask = warp_cloth(io['cloth'], io['cloth_mask'], grid)
    for value, key in ((theta, 'theta'), (grid, 'grid'), (warped_cloth, 'warped_cloth'),
                       (warped_mask, 'warped_mask')):
        torch.testing.assert_close(value, io[key], atol=ATOL[key], rtol=0, msg=key)
    # The warp itself, on the stored grid, is exact (same torch build).
    assert torch.equal(warp(io['cloth'], io['grid'], 'border'), io['warped_cloth'])


@pytest.mark.parametrize('which', PARITY_SETS)
def test_tps_parity(which):
    io = torch.load(parity_dir(which) / 'tps_io.pt', weights_only=True)
    torch.testing.assert_close(TpsGridGen(256, 192, grid_size=5)(io['theta']), io['grid'],
                               atol=ATOL['tps.grid'], rtol=0)


def test_tps_of_zero_offsets_is_the_identity_grid():
    grid = TpsGridGen(256, 192, grid_size=5)(torch.zeros(1, 50))
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 256), torch.linspace(-1, 1, 192), indexing='ij')
    torch.testing.assert_close(grid[0], torch.stack([xs, ys], -1), atol=1e-5, rtol=0)


@pytest.mark.parametrize('which', PARITY_SETS)
def test_tom_parity(which):
    model, io = parity_tom(which), tom_parity_io(which)
    with torch.no_grad():
        output = model(io['input'])
        p_rendered, m_composite, p_tryon = tom_tryon(output, io['input'][:, 22:25])
    results = {'output': output, 'p_rendered': p_rendered, 'm_composite': m_composite, 'p_tryon': p_tryon}
    compared = [key for key in results if key in io]
    assert {'output', 'p_tryon'} <= set(compared)
    for key in compared:
        torch.testing.assert_close(results[key], io[key], atol=ATOL['tom'], rtol=0, msg=key)


def test_checkpoint_without_num_batches_tracked_loads(tmp_path):
    """Checkpoints saved by torch 0.4.0 lack the BatchNorm counters."""
    io = gmm_parity_io('compact')
    old = OrderedDict((k, v) for k, v in torch.load(COMPACT_PARITY / 'gmm_weights.pth', weights_only=True).items()
                      if not k.endswith('num_batches_tracked'))
    path = tmp_path / 'gmm_final.pth'
    torch.save(old, path)
    fresh = load_checkpoint(GMM(make_opt()), str(path), torch.device('cpu')).eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(io['agnostic'], io['cloth'])[0], io['grid'], atol=ATOL['grid'], rtol=0)


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
    """The same networks on a GPU, float32 without TF32, within the CPU parity tolerances."""
    device = torch.device('cuda:0')
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    io = gmm_parity_io('compact')
    with torch.no_grad():
        grid, theta = parity_gmm('compact').to(device)(io['agnostic'].to(device), io['cloth'].to(device))
    torch.testing.assert_close(theta.cpu(), io['theta'], atol=ATOL['theta'], rtol=0)
    torch.testing.assert_close(grid.cpu(), io['grid'], atol=ATOL['grid'], rtol=0)
    tom_io = tom_parity_io('compact')
    with torch.no_grad():
        output = parity_tom('compact').to(device)(tom_io['input'].to(device))
    torch.testing.assert_close(output.cpu(), tom_io['output'], atol=ATOL['tom'], rtol=0)


def test_tps_grid_stays_float32_under_autocast():
    theta = torch.randn(2, 50) * 0.1
    generator = TpsGridGen(256, 192, grid_size=5)
    with torch.autocast(device_type='cpu', dtype=torch.bfloat16):
        grid = generator(theta.bfloat16())
    assert grid.dtype == torch.float32
    torch.testing.assert_close(grid, generator(theta.bfloat16().float()), atol=1e-6, rtol=0)


def test_the_board_grid_is_torchvisions_make_grid_without_padding():
    """visualization lays the TensorBoard canvas out itself (importing torchvision costs every process 2 s): the
    same pixels as make_grid(panels, nrow=columns, padding=0), short rows padded with grey, masks repeated to RGB."""
    from torchvision.utils import make_grid
    from visualization import tensor_for_board, tensor_list_for_board
    rows = [[torch.rand(2, 3, 8, 6) * 2 - 1, torch.rand(2, 1, 8, 6) * 2 - 1, torch.rand(2, 3, 8, 6) * 2 - 1],
            [torch.rand(2, 3, 8, 6) * 2 - 1]]
    tiles = [[tensor_for_board(t) for t in row] for row in rows]
    expected = torch.stack([make_grid([row[c][b] if c < len(row) else torch.full((3, 8, 6), 0.5)
                                       for row in tiles for c in range(3)], nrow=3, padding=0) for b in range(2)])
    assert torch.equal(tensor_list_for_board(rows), expected)
