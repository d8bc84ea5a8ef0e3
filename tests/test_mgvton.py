"""MG-VTON: the MPV layout and its triplet list (malformed lines too), the synthetic two-pose persons, each stage's
shapes and training step (frozen earlier stages), the feature warp against grid_sample, parse accuracy and mean IoU
by hand, and the step scripts end to end."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import data_check
import evaluate
import mgvton
import multipose_comparison
import train
from conftest import make_opt, run_step_scripts, step_script_env
from cp_dataset import DataError
from data_check import validate_dataset
from mpv_dataset import TRIPLET_LIST, MPVDataset, Triplet, read_triplets, scan_triplets, triplet_key
from networks import TpsGridGen
from synthetic_data import (FACE, HAIR, LEFT_ARM, PANTS, RIGHT_ARM, UPPER_CLOTHES, design_shirt, draw_two_poses,
                            generate_mpv_dataset, mpv_names, source_pose_answer)

TINY = dict(mgvton_ngf=8, mgvton_blocks=1)


@pytest.fixture(scope='module')
def mpv(tmp_path_factory):
    root = tmp_path_factory.mktemp('mpv') / 'mpv'
    generate_mpv_dataset(str(root), n_train=2, n_test=2, seed=3, workers=1)
    return root


def mpv_opt(root, datamode='train', **overrides):
    return make_opt(**{'dataroot': str(root), 'datamode': datamode, 'data_list': TRIPLET_LIST,
                       'stage': 'MGVTON_PARSE', **TINY, **overrides})


def batch_of(root, datamode='train'):
    dataset = MPVDataset(mpv_opt(root, datamode), mgvton.MGVTON_DATA)
    items = [dataset[i] for i in range(2)]
    return {key: torch.stack([item[key] for item in items]) if torch.is_tensor(items[0][key])
            else [item[key] for item in items] for key in items[0]}


# --------------------------------------------------------------------------- the MPV layout

def test_the_triplet_list_is_read_by_split_with_mpv_folder_names(tmp_path):
    listed = tmp_path / TRIPLET_LIST
    listed.write_text('\ufeffRE1/RE1-Q@10=person_half_front.jpg RE1/RE1-Q@8=person_whole_front.jpg '
                      'RE1/RE1-Q@12=cloth_front.jpg train\r\n\n'
                      'RE2/a.jpg\tRE2/b.jpg RE2/c.jpg   test  \n')
    assert read_triplets(listed, 'train') == [Triplet('RE1/RE1-Q@10=person_half_front.jpg',
                                                      'RE1/RE1-Q@8=person_whole_front.jpg',
                                                      'RE1/RE1-Q@12=cloth_front.jpg')]
    test = read_triplets(listed, 'test')
    assert test == [Triplet('RE2/a.jpg', 'RE2/b.jpg', 'RE2/c.jpg')]
    assert triplet_key(test[0]) == 'RE2+a_RE2+b_RE2+c.jpg' and '/' not in triplet_key(test[0])


@pytest.mark.parametrize('line, message', [
    ('a.jpg b.jpg c.jpg', 'line 2: expected "personA.jpg personB.jpg cloth.jpg train|test"'),
    ('a.jpg b.jpg c.jpg val', "line 2: the split 'val' is neither train nor test"),
    ('a.jpg ../b.jpg c.jpg train', "the person B name '../b.jpg' has the part '..', which names a folder"),
    ('/etc/a.jpg b.jpg c.jpg train', "the person A name '/etc/a.jpg' is an absolute path"),
    ('a.jpg b.jpg x//c.jpg train', 'has an empty part'),
])
def test_malformed_triplet_lines_are_named_with_their_line_and_fix(tmp_path, line, message):
    listed = tmp_path / 'list.txt'
    listed.write_text(f'a.jpg b.jpg c.jpg train\n{line}\n')
    triplets, errors = scan_triplets(listed, 'train')
    assert len(errors) == 1 and message in str(errors[0]) and 'Fix:' in str(errors[0]), errors
    with pytest.raises(DataError, match='line 2'):
        read_triplets(listed, 'train')


def test_two_triplets_whose_results_would_share_a_name_are_an_error(tmp_path):
    listed = tmp_path / 'list.txt'
    listed.write_text('x_y.jpg z.jpg c.jpg train\nx.jpg y_z.jpg c.jpg train\nx_y.jpg z.jpg c.jpg train\n')
    triplets, errors = scan_triplets(listed, 'train')
    assert [str(e) for e in errors] == [f"{listed}, line 2: its results would be named 'x_y_z_c.jpg', as those of "
                                        f"line 1. Fix: rename one of the photos"]
    assert triplets == [Triplet('x_y.jpg', 'z.jpg', 'c.jpg')] * 2   # the same triplet twice is no clash


def test_a_missing_list_an_unknown_split_and_a_split_without_lines_are_errors(tmp_path):
    (tmp_path / 'list.txt').write_text('a.jpg b.jpg c.jpg train\n')
    for path, split, message in ((tmp_path / 'none.txt', 'train', 'file not found'),
                                 (tmp_path / 'list.txt', 'val', "--datamode 'val' is not a split"),
                                 (tmp_path / 'list.txt', 'test', 'has no test triplets')):
        _, errors = scan_triplets(path, split)
        assert len(errors) == 1 and message in str(errors[0])


def test_train_py_stops_on_a_bad_list_in_one_line(mpv, tmp_path, capsys):
    (mpv / 'bad.txt').write_text('000001/000001_A.jpg 000001/000001_B.jpg\n')
    with pytest.raises(SystemExit) as stop:
        train.main(['--stage', 'MGVTON_PARSE', '--dataroot', str(mpv), '--data_list', 'bad.txt',
                    '--checkpoint_dir', str(tmp_path), '--tensorboard_dir', str(tmp_path), '--workers', '0'])
    message = str(stop.value) + capsys.readouterr().err
    assert 'bad.txt, line 1' in message and 'Traceback' not in message


def test_the_data_check_names_missing_files_and_announces_computed_cloth_masks(mpv, tmp_path):
    root = tmp_path / 'copy'
    os.system(f'cp -r {mpv} {root}')
    (root / 'all_parsing' / '000001' / '000001_B.png').unlink()
    (root / 'all' / '000002' / '000002_cloth_mask.jpg').unlink()
    report = validate_dataset(mpv_opt(root), log=lambda _: None, spec=mgvton.MGVTON_DATA)
    assert [(e.kind, os.path.basename(e.path)) for e in report.errors] == [('missing parse map', '000001_B.png')]
    assert [(w.kind, os.path.basename(w.path)) for w in report.warnings] == [
        ('cloth mask computed from the photo', '000002_cloth_mask.jpg')]
    assert '2 train triplets' in report.summary()
    assert data_check.main(['--dataroot', str(root), '--data_list', TRIPLET_LIST, '--stage', 'MGVTON_GMM']) == 1


def test_items_hold_the_documented_tensors_and_a_missing_mask_is_computed(mpv, tmp_path):
    item = MPVDataset(mpv_opt(mpv), mgvton.MGVTON_DATA)[0]
    shapes = {key: tuple(value.shape) for key, value in item.items() if torch.is_tensor(value)}
    assert shapes == {'source_image': (3, 256, 192), 'image': (3, 256, 192), 'cloth': (3, 256, 192),
                      'cloth_mask': (1, 256, 192), 'appearance': (3, 256, 192), 'reference': (3, 256, 192),
                      'source_parse': (20, 256, 192), 'target_parse': (20, 256, 192), 'target_labels': (256, 192),
                      'target_pose': (18, 256, 192), 'target_pose_image': (1, 256, 192),
                      'target_cloth_mask': (1, 256, 192)}
    assert torch.equal(item['source_parse'].sum(0), torch.ones(256, 192))
    assert torch.equal(item['target_parse'].argmax(0), item['target_labels'])
    labels = np.asarray(Image.open(mpv / 'all_parsing' / '000001' / '000001_A.png'))
    upper = torch.from_numpy(np.isin(labels, (5, 6, 7)))
    assert torch.all(item['reference'][:, upper] == 0) and torch.equal(item['reference'][:, ~upper],
                                                                        item['source_image'][:, ~upper])
    assert torch.equal(item['appearance'][0].bool(), torch.from_numpy(np.isin(labels, (1, 2))))
    stored = item['cloth_mask']
    (mpv / 'all' / '000001' / '000001_cloth_mask.jpg').rename(tmp_path / 'kept.jpg')
    try:
        computed = MPVDataset(mpv_opt(mpv), mgvton.MGVTON_DATA)[0]['cloth_mask']
    finally:
        (tmp_path / 'kept.jpg').rename(mpv / 'all' / '000001' / '000001_cloth_mask.jpg')
    intersection, union = (computed * stored).sum(), ((computed + stored) > 0).sum()
    assert intersection / union > 0.95   # cloth_mask.py on a shirt on white


# --------------------------------------------------------------------------- synthetic two-pose persons

def test_the_two_poses_are_one_person_pixel_for_pixel_up_to_the_pose_change():
    """Head, hair and trousers: the same pixels in both poses after the sideways shift, wherever the labels of
    the pixel and its neighbours (the outlines) agree; the arms are what changed."""
    drawing = draw_two_poses(0, 'test', 4, '000005', True, False, ('000006', design_shirt(0, 'test', 5, False)))
    names = mpv_names('000005')
    other = {pose: name.replace('.jpg', '_in_000006.jpg') for pose, name in names.items()}
    for a_name, b_name in ((names['A'], names['B']), (other['A'], other['B'])):
        (rgb_a, labels_a, _), (rgb_b, labels_b, _) = drawing.persons[a_name], drawing.persons[b_name]
        shift = drawing.shift
        back = np.roll(rgb_b, -shift, axis=1), np.roll(labels_b, -shift, axis=1)
        kept = slice(max(shift, 0) + 1, labels_a.shape[1] + min(shift, 0) - 1)   # the columns both frames show
        a, b, la, lb = rgb_a[:, kept], back[0][:, kept], labels_a[:, kept], back[1][:, kept]
        same = np.ones_like(la, bool)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                same &= np.roll(la, (dy, dx), (0, 1)) == np.roll(lb, (dy, dx), (0, 1))
        head_and_trousers = np.isin(la, (HAIR, FACE, PANTS))
        compared = head_and_trousers & same
        assert compared.sum() > 0.9 * head_and_trousers.sum()
        assert np.array_equal(a[compared], b[compared])
        assert not np.array_equal(np.isin(la, (LEFT_ARM, RIGHT_ARM)), np.isin(lb, (LEFT_ARM, RIGHT_ARM)))


def test_the_written_set_holds_both_poses_other_clothes_and_their_answers(mpv):
    lines = (mpv / TRIPLET_LIST).read_text().splitlines()
    assert lines == ['000001/000001_A.jpg 000001/000001_B.jpg 000001/000001_cloth.jpg train',
                     '000002/000002_A.jpg 000002/000002_B.jpg 000002/000002_cloth.jpg train',
                     '000003/000003_A.jpg 000003/000003_B.jpg 000003/000003_cloth.jpg test',
                     '000004/000004_A.jpg 000004/000004_B.jpg 000004/000004_cloth.jpg test',
                     '000003/000003_A.jpg 000003/000003_B_in_000004.jpg 000004/000004_cloth.jpg test',
                     '000004/000004_A.jpg 000004/000004_B_in_000003.jpg 000003/000003_cloth.jpg test']
    assert (mpv / 'test_other_cloth.txt').read_text().splitlines() == lines[4:]
    shift = json.loads((mpv / 'synthetic_dataset.json').read_text())['identities']['000003']['shift']
    parse = {name: np.asarray(Image.open(mpv / 'all_parsing' / '000003' / f'{name}.png'))
             for name in ('000003_A', '000003_B', '000003_B_in_000004', '000003_A_in_000004')}
    moved = {name: np.roll(labels, -shift, axis=1) for name, labels in parse.items()}
    unchanged = ~np.isin(parse['000003_A'], (LEFT_ARM, RIGHT_ARM, UPPER_CLOTHES, FACE))
    unchanged &= ~np.isin(moved['000003_B'], (LEFT_ARM, RIGHT_ARM, UPPER_CLOTHES, FACE))
    unchanged[:, :abs(shift) + 1] = unchanged[:, -abs(shift) - 1:] = False
    assert unchanged.sum() > 0.5 * unchanged.size
    assert np.array_equal(parse['000003_A'][unchanged], moved['000003_B'][unchanged])   # the same legs and hair
    assert source_pose_answer('000003/000003_B_in_000004.jpg') == '000003/000003_A_in_000004.jpg'
    assert (mpv / 'all' / source_pose_answer('000003/000003_B_in_000004.jpg')).is_file()


# --------------------------------------------------------------------------- the stages

def stage_step(stage, batch, donor=None):
    """One training step of ``stage`` (the earlier stages' modules from ``donor``), checking who learns: the
    frozen modules get no gradient and keep their BatchNorm statistics; every module of the stage gets one; a
    discriminator's gradient is that of its own loss alone (the generator's loss sees it frozen)."""
    opt = mpv_opt(None, stage=stage, **{f'{name}_weight': default for name, default, _ in mgvton.WEIGHTS})
    model = mgvton.MGVTON(opt, stage)
    if donor is not None:
        for name in model.frozen_modules():
            getattr(model, name).load_state_dict(getattr(donor, name).state_dict())
    model.train()
    loss_fn = mgvton.MgvtonLoss(opt, stage, VGG_LOSS if stage in mgvton.STAGE_NAMES[2:] else None)
    optimizer = torch.optim.Adam(mgvton.trained_parameters(model), lr=1e-3)
    buffers_before = {name: b.clone() for name, b in model.named_buffers()}
    trained_before = [p.clone() for p in mgvton.trained_parameters(model)]
    out = model(batch)
    loss, terms = loss_fn(batch, out)
    discriminators = [name for name in model.trained_modules() if name.endswith('discriminator')]
    own = {}
    for name in discriminators:
        term = terms['D_parse' if name == 'parse_discriminator' else 'D_adv']
        own[name] = torch.autograd.grad(term, list(getattr(model, name).parameters()), retain_graph=True)
    optimizer.zero_grad()
    loss.backward()
    assert torch.isfinite(loss) and set(mgvton.LOG_TERMS[stage]) <= set(terms)
    for name in model.frozen_modules():
        module = getattr(model, name)
        assert not module.training and all(p.grad is None for p in module.parameters()), name
    assert all(torch.equal(b, buffers_before[name]) for name, b in model.named_buffers()
               if name.split('.')[0] in model.frozen_modules())
    for name in model.trained_modules():
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0, name
    for name, grads in own.items():
        assert all(torch.allclose(p.grad, g, atol=1e-6) for p, g in zip(getattr(model, name).parameters(), grads))
    optimizer.step()
    assert all(not torch.equal(p, before) for p, before in zip(mgvton.trained_parameters(model), trained_before)
               if p.grad.abs().sum() > 0)
    return model, out


VGG_LOSS = mgvton.build_vgg_loss('random', log=lambda _: None)


def test_each_stage_has_its_shapes_and_trains_its_own_modules_only(mpv):
    batch = batch_of(mpv)
    model, out = stage_step('MGVTON_PARSE', batch)
    assert out['parse_logits'].shape == (2, 20, 256, 192)
    assert len(out['real_outputs']) == 2 and out['real_outputs'][1][-1].shape[2] < out['real_outputs'][0][-1].shape[2]
    for stage in mgvton.STAGE_NAMES[1:]:
        model, out = stage_step(stage, batch, donor=model)
    assert out['warped_cloth'].shape == (2, 3, 256, 192) and out['grid'].shape == (2, 256, 192, 2)
    assert out['coarse'].shape == out['p_tryon'].shape == (2, 3, 256, 192)
    mask = out['composition_mask']
    assert mask.shape == (2, 1, 256, 192) and 0 <= mask.min() and mask.max() <= 1
    assert torch.allclose(out['p_tryon'], mask * out['warped_cloth'] + (1 - mask) * out['coarse'])
    assert {key.split('.')[0] for key in model.state_dict()} == {'parser', 'gmm', 'parse_matcher', 'warp_gan',
                                                                 'refiner'}


def test_the_warp_gan_warps_the_reference_features_as_grid_sample_does():
    """The bottleneck features of person A, sampled at the transform resized to their size, are what the
    generator joins with the condition's: checked with grid_sample on an affine grid made at that size
    (resizing an affine grid with align_corners=True is exact)."""
    torch.manual_seed(0)
    generator = mgvton.WarpGanGenerator(ngf=8, blocks=1).eval()
    reference, condition = torch.rand(2, 3, 64, 48) * 2 - 1, torch.rand(2, 41, 64, 48)
    theta = torch.tensor([[[0.9, 0.1, 0.05], [-0.08, 1.1, -0.1]]]).repeat(2, 1, 1)
    grid = F.affine_grid(theta, (2, 3, 64, 48), align_corners=True)
    seen = {}
    generator.fuse.register_forward_pre_hook(lambda module, inputs: seen.update(fused=inputs[0]))
    generator(reference, condition, grid)
    features = generator.reference_encoder(reference)
    small_grid = F.affine_grid(theta, features.shape, align_corners=True)
    expected = F.grid_sample(features, small_grid, mode='bilinear', padding_mode='zeros', align_corners=True)
    assert torch.allclose(seen['fused'][:, :features.shape[1]], expected, atol=1e-5)
    assert torch.equal(seen['fused'][:, features.shape[1]:], generator.condition_encoder(condition))
    identity = TpsGridGen(64, 48, grid_size=5)(torch.zeros(1, 50)).repeat(2, 1, 1, 1)
    assert torch.allclose(mgvton.warp_features(features, identity), features, atol=1e-4)


def test_stage_flags_are_checked_in_one_line(mpv, tmp_path, capsys):
    common = ['--dataroot', str(mpv), '--data_list', TRIPLET_LIST]
    for argv, message in ((['--stage', 'MGVTON_GMM'], '--previous_checkpoint is missing'),
                          (['--stage', 'MGVTON_WARP', '--previous_checkpoint', 'none.pth'],
                           '--previous_checkpoint none.pth: no such file; train --stage MGVTON_GMM first'),
                          (['--stage', 'MGVTON_PARSE', '--previous_checkpoint', 'x.pth'],
                           '--previous_checkpoint is an option of --stage MGVTON_GMM or MGVTON_WARP or MGVTON_REFINE'),
                          (['--stage', 'MGVTON_PARSE', '--fm_weight', '2'], 'option of --stage MGVTON_WARP'),
                          (['--stage', 'MGVTON_PARSE', '--body_shape', 'image-mask'], 'which MG-VTON does not read'),
                          (['--stage', 'GMM', '--mgvton_ngf', '8'], 'option of --stage MGVTON_PARSE')):
        with pytest.raises(SystemExit):
            train.get_opt(common + argv)
        error = capsys.readouterr().err
        assert message in error and 'Traceback' not in error, error


# --------------------------------------------------------------------------- the parse scores

def test_parse_accuracy_and_mean_iou_by_hand():
    truth = np.array([[0, 0, 5, 5], [0, 0, 5, 5], [2, 2, 2, 2]])
    predicted = np.array([[0, 5, 5, 5], [0, 0, 5, 5], [2, 2, 0, 13]])
    confusion = evaluate.parse_confusion(predicted, truth)
    accuracy, miou = evaluate.parse_scores(confusion)
    assert accuracy == pytest.approx(9 / 12)
    # class 0: 3 in both, 4 + 4 - 3 = 5 in either; 5: 4 / 5; 2: 2 / 4; 13: 0 / 1 (predicted only)
    assert miou == pytest.approx((3 / 5 + 4 / 5 + 2 / 4 + 0 / 1) / 4)
    perfect = evaluate.parse_confusion(truth, truth)
    assert evaluate.parse_scores(perfect) == (1.0, 1.0)


def test_evaluate_scores_multi_pose_results_against_person_b(mpv, tmp_path, capsys):
    """A run whose try-ons are person B's photos and whose parses are person B's parses scores SSIM 1, parse
    accuracy 1; replacing the parses of one triplet by background gives the hand-computed accuracy."""
    triplets = read_triplets(mpv / TRIPLET_LIST, 'test')
    folder = tmp_path / 'result' / 'mgvton_refine_final.pth' / 'test'
    for kind in ('try-on', 'parse'):
        (folder / kind).mkdir(parents=True)
    for triplet in triplets:
        key = triplet_key(triplet)
        Image.open(mpv / 'all' / triplet.target).save(folder / 'try-on' / key, quality=100, subsampling=0)
        parse = folder / 'parse' / key.replace('.jpg', '.png')
        Image.open(mpv / 'all_parsing' / triplet.target.replace('.jpg', '.png')).save(parse)
    argv = ['--dataroot', str(mpv), '--triplets', TRIPLET_LIST, '--result_dir', str(tmp_path / 'result'),
            '--metrics', 'ssim,parse_accuracy,parse_miou', '--workers', '0']
    assert evaluate.main(argv) == 0
    report = json.loads((folder / 'metrics.json').read_text())
    assert report['metrics']['ssim']['value'] > 0.98 and report['metrics']['ssim']['num_images'] == 4
    assert report['metrics']['parse_accuracy']['value'] == 1.0 and report['metrics']['parse_miou']['value'] == 1.0
    first = triplet_key(triplets[0]).replace('.jpg', '.png')
    labels = np.asarray(Image.open(folder / 'parse' / first))
    Image.fromarray(np.zeros_like(labels), 'L').save(folder / 'parse' / first)
    assert evaluate.main(argv) == 0
    report = json.loads((folder / 'metrics.json').read_text())
    all_labels = [np.asarray(Image.open(mpv / 'all_parsing' / t.target.replace('.jpg', '.png'))) for t in triplets]
    expected = 1 - (all_labels[0] > 0).sum() / sum(labels.size for labels in all_labels)
    assert report['metrics']['parse_accuracy']['value'] == pytest.approx(expected)
    assert 'parse acc' in capsys.readouterr().out
    assert evaluate.main(argv[:-4] + ['--mgvton_checkpoint_name', 'other.pth']) == 2
    assert 'no results in' in capsys.readouterr().err


# --------------------------------------------------------------------------- the step scripts

@pytest.fixture(scope='module')
def pipeline(mpv, tmp_path_factory):
    """scripts/mgvton/step1..6 on the tiny synthetic MPV set: one training step per stage."""
    root = tmp_path_factory.mktemp('mgvton_pipeline')
    env = step_script_env(root, mpv, MGVTON_BATCH_SIZE='2', MGVTON_PARSE_STEPS='1', MGVTON_GMM_STEPS='1',
                          MGVTON_WARP_STEPS='1', MGVTON_REFINE_STEPS='1', MGVTON_STRIPS_SIMPLE=str(root / 'strips'),
                          MGVTON_STRIPS_VERBOSE=str(root / 'verbose'))
    list(run_step_scripts('mgvton', [(script, SMALL) for script in ('step1-train-parse.sh', 'step2-train-gmm.sh',
                                                                   'step3-train-warp.sh', 'step4-train-refine.sh')]
                          + [('step5-test.sh', []), ('step6-evaluate.sh', ['--metrics', 'iou,ssim,parse_miou'])], env))
    return root


SMALL = ['--mgvton_ngf', '8', '--mgvton_blocks', '1', '--vgg_init', 'random', '--display_count', '1']


def test_the_stages_build_on_each_other_and_the_last_checkpoint_is_the_whole_model(pipeline):
    checkpoints = pipeline / 'checkpoints'
    parse = torch.load(checkpoints / 'mgvton_parse' / 'mgvton_parse_final.pth', weights_only=True)
    whole = torch.load(checkpoints / 'mgvton_refine' / 'mgvton_refine_final.pth', weights_only=True)
    assert {key.split('.')[0] for key in whole} == {'parser', 'gmm', 'parse_matcher', 'warp_gan', 'refiner'}
    assert all(torch.equal(value, whole[key]) for key, value in parse.items() if key.startswith('parser.'))
    events = EventAccumulator(str(pipeline / 'tensorboard' / 'mgvton_warp'))
    events.Reload()
    assert {'metric', 'G_adv', 'FM', 'VGG', 'L1', 'Lmatch', 'D_adv'} <= set(events.Tags()['scalars'])
    assert events.Tags()['images']


def test_the_step_scripts_write_results_scores_and_strips_of_every_test_triplet(pipeline, mpv):
    keys = {triplet_key(t) for t in read_triplets(mpv / TRIPLET_LIST, 'test')}
    folder = pipeline / 'result' / 'mgvton_refine_final.pth' / 'test'
    for kind in ('try-on', 'coarse-person', 'warp-cloth', 'warp-mask'):
        assert set(os.listdir(folder / kind)) == keys, kind
    assert set(os.listdir(folder / 'parse')) == {key.replace('.jpg', '.png') for key in keys}
    metrics = json.loads((folder / 'metrics.json').read_text())['metrics']
    assert set(metrics) == {'iou', 'ssim', 'parse_miou'} and metrics['ssim']['num_images'] == 4
    assert set(os.listdir(pipeline / 'strips')) == {key.replace('.jpg', '.png') for key in keys}
    with Image.open(next((pipeline / 'strips').iterdir())) as strip:
        assert strip.size == (7 * 192, 256)
    assert len(list((pipeline / 'logs').glob('mgvton-train-*.log'))) == 4


def test_a_later_stage_resumes_and_names_a_checkpoint_of_the_wrong_stage(pipeline, mpv, capsys):
    checkpoints = pipeline / 'checkpoints'
    env = step_script_env(pipeline, mpv, MGVTON_BATCH_SIZE='2', MGVTON_GMM_STEPS='2')
    resumed, = run_step_scripts('mgvton', [('step2-train-gmm.sh', SMALL + ['--resume'])], env)
    assert 'step:        2' in resumed.stdout and 'step:        1,' not in resumed.stdout
    wrong = str(checkpoints / 'mgvton_parse' / 'mgvton_parse_final.pth')
    with pytest.raises(SystemExit) as stop:
        train.main(['--stage', 'MGVTON_WARP', '--dataroot', str(mpv), '--data_list', TRIPLET_LIST, '--workers', '0',
                    '--previous_checkpoint', wrong, '--mgvton_ngf', '8', '--mgvton_blocks', '1',
                    '--checkpoint_dir', str(pipeline / 'other'), '--tensorboard_dir', str(pipeline / 'other')])
    message = str(stop.value) + capsys.readouterr().err
    assert (f'--previous_checkpoint {wrong} holds the modules of --stage MGVTON_PARSE; --stage MGVTON_WARP builds on '
            f'--stage MGVTON_GMM: pass its mgvton_gmm_final.pth') in message and 'Traceback' not in message


# --------------------------------------------------------------------------- the comparison's rows

def test_the_naive_baseline_reads_person_a_in_the_viton_layout(mpv, tmp_path):
    from cp_dataset import CPDataset, read_pairs
    view = multipose_comparison.source_pose_view(str(mpv), str(tmp_path / 'view'))
    pairs = read_pairs(os.path.join(view, 'test_pairs_paired.txt'))
    assert pairs == [(f'{flat}_A.jpg', cloth) for flat, cloth in (
        ('000003+000003', '000003+000003_cloth.jpg'), ('000004+000004', '000004+000004_cloth.jpg'),
        ('000003+000003', '000004+000004_cloth.jpg'), ('000004+000004', '000003+000003_cloth.jpg'))]
    item = CPDataset(make_opt(dataroot=view, datamode='test', data_list='test_pairs_paired.txt'))[2]
    person_a = np.asarray(Image.open(mpv / 'all' / '000003' / '000003_A.jpg'), dtype=np.float32) / 127.5 - 1
    assert np.allclose(item['image'].permute(1, 2, 0).numpy(), person_a, atol=1e-6)
    cloth = np.asarray(Image.open(mpv / 'all' / '000004' / '000004_cloth_mask.jpg')) >= 128
    assert np.array_equal(item['cloth_mask'][0].numpy() > 0, cloth)


def test_the_source_pose_answer_row_scores_person_a_against_person_b(mpv, tmp_path):
    """Its try-ons are the generator's person A in the triplet's cloth; its SSIM is skimage's of those photos
    against person B's, computed here from the files."""
    from metrics import ssim_score
    args = multipose_comparison.parse_args(['--out', str(tmp_path), '--workers', '0'])
    results, name = multipose_comparison.gathered_results(args, 'answer', str(mpv), lambda kind, t: os.path.join(
        mpv, 'all', source_pose_answer(t.target)) if kind == 'try-on' else None)
    run = multipose_comparison.Runner(str(tmp_path))
    reports = multipose_comparison.evaluate_row(args, run, str(mpv), 'answer', results, name)
    for clothes, list_name in multipose_comparison.TEST_LISTS:
        triplets = read_triplets(mpv / list_name, 'test')
        expected = np.mean([ssim_score(np.asarray(Image.open(mpv / 'all' / source_pose_answer(t.target))),
                                       np.asarray(Image.open(mpv / 'all' / t.target))) for t in triplets])
        assert reports[clothes]['metrics']['ssim']['value'] == pytest.approx(expected)
        assert 'unavailable' in reports[clothes]['metrics']['parse_miou']
    own = read_triplets(mpv / 'test_own_cloth.txt', 'test')[0]
    assert own.source == source_pose_answer(own.target)   # in their own cloth, person A is the answer's photo
