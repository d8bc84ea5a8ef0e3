"""WUTON: gradients reach the geometric module (they never do in CP-VTON), the feature warp at each scale, the
unpaired cloth draw, the relativistic loss and the gradient penalty by hand, the agnostic photo, training steps
through train.py, and the step scripts end to end."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import cpvton
import train
import wuton
from conftest import REPO, make_opt, run_step_scripts, step_script_env
from cp_dataset import CPDataLoader, CPDataset, masked_photo, pair_key, read_pairs, unpaired_cloth_name
from networks import GMM, TpsGridGen, build_tom, save_checkpoint
from synthetic_data import generate_dataset

H = W = 128     # the smallest size whose GMM regressor still trains (BatchNorm needs more than 1x1 features)


def small_opt(**overrides):
    return make_opt(fine_height=H, fine_width=W, grid_size=5, wuton_agnostic='photo', **overrides)


def batch(seed=0, size=2):
    generator = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=generator) * 2 - 1   # noqa: E731
    return {'masked_photo': rand(size, 3, H, W), 'cloth': rand(size, 3, H, W), 'image': rand(size, 3, H, W),
            'cloth_mask': (torch.rand(size, 1, H, W, generator=generator) > 0.3).float(),
            'unpaired_cloth': rand(size, 3, H, W), 'parse_cloth': rand(size, 3, H, W)}


def grads_of(module):
    return [p.grad for p in module.parameters()]


def test_the_try_on_loss_reaches_the_geometric_module_which_cpvtons_tom_never_does():
    torch.manual_seed(0)
    model = wuton.WutonModel(small_opt()).train()
    inputs = batch()
    out = model(inputs['masked_photo'], inputs['cloth'], inputs['cloth_mask'])
    F.l1_loss(out['p_tryon'], inputs['image']).backward()
    assert model.gmm.regression.linear.weight.grad.abs().sum() > 0
    assert all(g is not None and g.abs().sum() > 0 for g in grads_of(model.gmm.extractionB))
    # CP-VTON: TOM trains on the warps GMM's test wrote (detached images): its loss has no path to GMM at all
    gmm, tom = GMM(make_opt(fine_height=H, fine_width=W)), build_tom()
    cp_inputs = {'agnostic': torch.rand(2, 22, H, W), 'cloth': inputs['cloth'], 'cloth_mask': inputs['cloth_mask']}
    warped = cpvton.run_gmm(gmm, cp_inputs)
    tom_inputs = {'agnostic': cp_inputs['agnostic'], 'cloth': warped['warped_cloth'].detach(),
                  'cloth_mask': warped['warped_mask'].detach()}
    F.l1_loss(cpvton.run_tom(tom, tom_inputs)['p_tryon'], inputs['image']).backward()
    assert all(g is None for g in grads_of(gmm)) and all(g is not None for g in grads_of(tom))


def test_each_loss_reaches_only_its_own_players():
    torch.manual_seed(0)
    model = wuton.WutonModel(small_opt()).train()
    inputs = batch()

    def gradients(term):
        model.zero_grad(set_to_none=True)
        out = wuton.run_wuton(model, inputs)
        loss = {'G_adv': lambda: wuton.relativistic_generator_loss(out['real_logits'].detach(),
                                                                  out['generator_fake_logits']),
                'D_adv': lambda: wuton.relativistic_discriminator_loss(out['real_logits'], out['fake_logits']),
                'GP': lambda: out['gradient_penalty']}[term]()
        loss.backward()
        return {name: any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
                for name, part in (('gmm', model.gmm), ('generator', model.generator),
                                   ('discriminator', model.discriminator))}

    # the adversarial gradient of the unpaired try-on reaches the warp too
    assert gradients('G_adv') == {'gmm': True, 'generator': True, 'discriminator': False}
    assert gradients('D_adv') == {'gmm': False, 'generator': False, 'discriminator': True}
    assert gradients('GP') == {'gmm': False, 'generator': False, 'discriminator': True}


def test_features_are_warped_at_each_scale_by_the_tps_of_that_scale():
    torch.manual_seed(0)
    theta = (torch.rand(2, 50) - 0.5) * 0.2
    full = TpsGridGen(256, 192, grid_size=5)(theta)
    for h, w in ((128, 96), (32, 24), (8, 6), (4, 3)):
        # smooth features: the two grids differ by up to ~1e-4 (the resized one interpolates the full one), which
        # on pixel-to-pixel noise would move values by far more than on features of any trained network
        features = F.interpolate(torch.rand(2, 7, 4, 3), size=(h, w), mode='bilinear', align_corners=True)
        # independent: the TPS evaluated directly on this scale's pixel grid
        direct = F.grid_sample(features, TpsGridGen(h, w, grid_size=5)(theta), align_corners=True)
        difference = (wuton.warp_features(features, full) - direct).abs()
        # measured: mean 6e-6, max 2.4e-3 at 128 x 96, the max where a grid point lies just outside [-1,1] (the
        # zero padding makes the value there steep in the position)
        assert difference.mean() < 2e-5 and difference.max() < 5e-3, (h, w)
        assert torch.allclose(wuton.resized_grid(full, h, w), TpsGridGen(h, w, grid_size=5)(theta), atol=1e-3)
    identity = TpsGridGen(256, 192, grid_size=5)(torch.zeros(1, 50))
    features = torch.rand(1, 4, 16, 12)
    assert torch.allclose(wuton.warp_features(features, identity), features, atol=1e-4)   # TpsGridGen: 1e-6 grid


def test_the_generator_shapes_and_its_two_encoders_share_nothing():
    generator = wuton.SiameseUnetGenerator(person_nc=3)
    out = generator(torch.rand(2, 3, 256, 192), torch.rand(2, 3, 256, 192),
                    TpsGridGen(256, 192, 5)(torch.zeros(2, 50)))
    assert out.shape == (2, 3, 256, 192) and out.abs().max() <= 1
    cloth = {id(p) for p in generator.cloth_encoder.parameters()}
    assert cloth and not cloth & {id(p) for p in generator.person_encoder.parameters()}
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in generator.cloth_encoder.modules()) == 5
    assert wuton.define_D()(torch.rand(1, 3, 256, 192)).shape == (1, 1, 30, 22)     # PatchGAN logits


def test_relativistic_losses_by_hand():
    real, fake = torch.tensor([2.0]), torch.tensor([0.0])
    softplus = lambda x: math.log1p(math.exp(x))   # noqa: E731  BCE-with-logits: target 1 -> softplus(-x), 0 -> softplus(x)
    # D: real - mean(fake) = 2 judged real, fake - mean(real) = -2 judged fake
    assert wuton.relativistic_discriminator_loss(real, fake).item() == pytest.approx(2 * softplus(-2))
    assert wuton.relativistic_generator_loss(real, fake).item() == pytest.approx(2 * softplus(2))
    # several patches: each judged against the other side's average
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 2.0])   # means 2 and 1
    expected = np.mean([softplus(-(1 - 1)), softplus(-(3 - 1))]) + np.mean([softplus(0 - 2), softplus(2 - 2)])
    assert wuton.relativistic_discriminator_loss(real, fake).item() == pytest.approx(expected)


def test_the_gradient_penalty_by_hand():
    linear = torch.nn.Conv2d(1, 1, 1)        # D(x) = a * x + b per pixel: its gradient is a at every pixel
    with torch.no_grad():
        linear.weight.fill_(3.0)
        linear.bias.fill_(0.5)
    real, fake = torch.rand(4, 1, 2, 2), torch.rand(4, 1, 2, 2)
    # ||grad||_2 over the 4 pixels = sqrt(4 * 9) = 6: (6 - 1)^2 = 25, whatever the interpolation
    assert wuton.gradient_penalty(linear, real, fake).item() == pytest.approx(25.0)
    with torch.no_grad():
        linear.weight.fill_(0.5)             # ||grad|| = 1: no penalty
    assert wuton.gradient_penalty(linear, real, fake).item() == pytest.approx(0.0, abs=1e-12)


def test_the_unpaired_cloth_is_never_the_persons_own_and_follows_seed_epoch_and_index():
    clothes = [f'{i:06d}_1.jpg' for i in range(5)]
    draws = {(seed, epoch, index): unpaired_cloth_name(clothes, clothes[index], seed, epoch, index)
             for seed in (0, 1) for epoch in range(4) for index in range(5)}
    assert all(draw != clothes[index] and draw in clothes for (_, _, index), draw in draws.items())
    assert draws == {key: unpaired_cloth_name(clothes, clothes[key[2]], *key) for key in draws}   # reproducible
    assert len({draws[(0, epoch, 0)] for epoch in range(4)}) > 1       # a new draw in a new epoch
    assert len(set(draws.values())) == 5


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp('wuton_synthetic')
    generate_dataset(str(root / 'data'), n_train=5, n_test=2, seed=8, workers=1)
    return root


def test_the_loader_hands_out_unpaired_clothes_resumably(synthetic):
    opt = make_opt(dataroot=str(synthetic / 'data'), stage='WUTON', batch_size=2, shuffle=True, seed=3)

    def names(loader, steps):
        return [(tuple(b['c_name']), tuple(b['unpaired_c_name'])) for b in (loader.next_batch() for _ in range(steps))]

    dataset = CPDataset(opt, wuton.WUTON_DATA)
    whole = names(CPDataLoader(opt, dataset), 7)             # 14 items: across epochs of 5
    assert all(own != other for owns, others in whole for own, other in zip(owns, others))
    first = CPDataLoader(opt, dataset)
    names(first, 4)
    resumed = CPDataLoader(opt, dataset)
    resumed.load_state(first.state())
    assert names(resumed, 3) == whole[4:]


def test_the_agnostic_photo_hides_arms_upper_clothes_and_the_neck():
    image = torch.rand(3, 64, 48) * 2 - 1
    parse = np.zeros((64, 48), np.uint8)
    parse[20:40, 10:38] = 5
    parse[20:40, 38:44] = 15
    parse[50:60, 10:38] = 9                    # pants stay
    keypoints = np.zeros((18, 3))
    keypoints[1] = (24.0, 10.0, 1.0)           # the neck
    photo = masked_photo(image, parse, keypoints, box_side=8)
    hidden = np.isin(parse, (5, 14, 15))
    hidden[6:14, 20:28] = True
    assert torch.count_nonzero(photo[:, torch.from_numpy(hidden)]) == 0
    assert torch.equal(photo[:, torch.from_numpy(~hidden)], image[:, torch.from_numpy(~hidden)])


def test_a_cpvton_gmm_initialises_the_geometric_module(tmp_path, capsys):
    torch.manual_seed(1)
    donor = GMM(make_opt())
    save_checkpoint(donor, str(tmp_path / 'gmm_final.pth'))
    for agnostic, every_tensor in (('cpvton', True), ('photo', False)):
        opt = make_opt(wuton_agnostic=agnostic, gmm_checkpoint=str(tmp_path / 'gmm_final.pth'))
        model = wuton.build_wuton(opt)
        taken = {k: torch.equal(v, donor.state_dict()[k]) for k, v in model.gmm.state_dict().items()
                 if v.shape == donor.state_dict()[k].shape}
        assert all(taken.values()) and (wuton.FIRST_PERSON_CONV in taken) == every_tensor
        assert ('keeps its initialisation' in capsys.readouterr().out) != every_tensor


@pytest.fixture(scope='module')
def pipeline(tmp_path_factory):
    """scripts/wuton/step1..2 on a tiny synthetic set: one training step, then both test lists."""
    root = tmp_path_factory.mktemp('wuton_pipeline')
    generate_dataset(str(root / 'data'), n_train=4, n_test=2, seed=9, workers=1)
    env = step_script_env(root, root / 'data', WUTON_BATCH_SIZE='2', WUTON_KEEP_STEP='1', WUTON_DECAY_STEP='0',
                          SAVE_COUNT='2')
    list(run_step_scripts('wuton', (('step1-train-wuton.sh', ['--vgg_init', 'random', '--display_count', '1',
                                                             '--seed', '2']),
                                    ('step2-test-wuton.sh', [])), env))
    return root


def test_training_logs_every_loss_term_and_saves_the_three_players(pipeline):
    run = pipeline / 'checkpoints' / 'wuton_train'
    state = torch.load(run / 'wuton_final.pth', weights_only=True)
    assert {key.split('.')[0] for key in state} == {'gmm', 'generator', 'discriminator'}
    options = json.loads((run / 'options.json').read_text())
    assert options['stage'] == 'WUTON' and options['wuton_agnostic'] == 'photo'
    events = EventAccumulator(str(pipeline / 'tensorboard' / 'wuton_train'))
    events.Reload()
    assert {'metric', 'Lwarp', 'L1', 'VGG', 'G_adv', 'D_adv', 'GP', 'lr'} <= set(events.Tags()['scalars'])
    assert events.Tags()['images'] and len(events.Scalars('G_adv')) == 1


def test_the_step_scripts_try_on_both_test_lists_in_the_standard_layout(pipeline):
    tested = {pair_key(*pair) for name in ('test_pairs.txt', 'test_pairs_paired.txt')
              for pair in read_pairs(str(pipeline / 'data' / name))}
    for kind in ('try-on', 'warp-cloth', 'warp-mask'):
        assert set(os.listdir(pipeline / 'result' / 'wuton_final.pth' / 'test' / kind)) == tested, kind
    assert list((pipeline / 'logs').glob('wuton-step1-train-*.log'))
    assert len(list((pipeline / 'logs').glob('wuton-step2-test-*.log'))) == 2


def test_wuton_flag_errors_are_one_line(capsys):
    for argv, message in ((['--gmm_checkpoint', 'nowhere.pth'], '--gmm_checkpoint nowhere.pth: no such file'),
                          (['--body_shape', 'image-mask'], 'only with --wuton_agnostic cpvton'),
                          (['--fine_height', '64', '--fine_width', '64'], 'BatchNorm')):
        with pytest.raises(SystemExit):
            train.get_opt(['--stage', 'WUTON', *argv])
        error = capsys.readouterr().err
        assert message in error and 'Traceback' not in error, error
    assert train.get_opt(['--stage', 'WUTON', '--wuton_agnostic', 'cpvton', '--body_shape', 'image-mask'])


def test_testing_needs_no_second_cloth(tmp_path):
    """A test list of one cloth (one cloth on every person) is fine: only training draws other clothes."""
    generate_dataset(str(tmp_path / 'data'), n_train=2, n_test=2, seed=1, workers=1)
    pairs = read_pairs(str(tmp_path / 'data' / 'test_pairs.txt'))
    (tmp_path / 'data' / 'one_cloth.txt').write_text(''.join(f'{im} {pairs[0][1]}\n' for im, _ in pairs))
    opt = make_opt(dataroot=str(tmp_path / 'data'), datamode='test', data_list='one_cloth.txt', stage='WUTON')
    item = CPDataset(opt, wuton.WUTON_TEST_DATA)[0]
    assert 'unpaired_cloth' not in item and item['masked_photo'].shape == (3, 256, 192)
    with pytest.raises(ValueError, match='at least two clothes'):
        CPDataset(opt, wuton.WUTON_DATA)


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(synthetic, tmp_path):
    """The unpaired draws (seed, epoch, index) and the penalty's random interpolation (torch's generator) resume
    with the data position and the random state: 2 steps, or 1 step + --resume 1 step, give the same weights."""
    def run(name, keep_step, *extra):
        return train.main(['--name', name, '--stage', 'WUTON', '--dataroot', str(synthetic / 'data'), '--workers', '0',
                           '--batch-size', '1', '--keep_step', str(keep_step), '--decay_step', '0',
                           '--save_count', '100', '--fine_height', '128', '--fine_width', '128',
                           '--vgg_init', 'random', '--seed', '5', '--shuffle', '--checkpoint_dir',
                           str(tmp_path / 'checkpoints'), '--tensorboard_dir', str(tmp_path / 'tensorboard'), *extra])
    assert run('whole', 2) == 0
    assert run('parts', 1) == 0 and run('parts', 2, '--resume') == 0
    whole, parts = (torch.load(tmp_path / 'checkpoints' / name / 'wuton_final.pth', weights_only=True)
                    for name in ('whole', 'parts'))
    assert whole.keys() == parts.keys() and all(torch.equal(whole[k], parts[k]) for k in whole)


def test_two_process_ddp_keeps_every_player_in_sync(synthetic, tmp_path):
    """torchrun, gloo on the CPU, at 128 x 128: the generator, the warp and the discriminator all get their
    gradients from the one backward (the penalty's autograd.grad is taken for the images only)."""
    completed = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'train.py',
         '--name', 'ddp', '--stage', 'WUTON', '--dataroot', str(synthetic / 'data'), '--gpu_ids', '-1', '--workers',
         '0', '--batch-size', '1', '--keep_step', '2', '--decay_step', '0', '--fine_height', '128', '--fine_width',
         '128', '--vgg_init', 'random', '--seed', '4', '--checkpoint_dir', str(tmp_path / 'checkpoints'),
         '--tensorboard_dir', str(tmp_path / 'tensorboard')],
        cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert 'processes 2, batch 1 per process (2 in all)' in completed.stdout
    assert 'largest parameter difference between ranks 0' in completed.stdout
