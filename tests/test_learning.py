"""Training learns: short CPU runs on synthetic data improve the warp (GMM) and the try-on (TOM)."""

import numpy as np
import pytest
import torch

import cpvton
import train
from conftest import cloth_named_warps
from cp_dataset import CPDataset
from metrics import mask_iou
from synthetic_data import generate_dataset


@pytest.fixture(scope='module')
def dataroot(tmp_path_factory):
    root = tmp_path_factory.mktemp('learning')
    generate_dataset(str(root), n_train=32, n_test=8, seed=5)
    cloth_named_warps(str(root))   # TOM reads GMM's warps; the in-shop cloth stands in for them
    return str(root)


def trainer_for(dataroot, workdir, stage, steps, lr, batch_size, *extra):
    opt = train.get_opt(['--name', stage, '--stage', stage, '--dataroot', dataroot, '--gpu_ids', '-1',
                         '--workers', '0', '--batch-size', str(batch_size), '--keep_step', str(steps),
                         '--decay_step', '0', '--lr', str(lr), '--shuffle', '--seed', '0',
                         '--checkpoint_dir', str(workdir / 'checkpoints'),
                         '--tensorboard_dir', str(workdir / 'tensorboard'), *extra])
    return train.Trainer(opt)


def mean_warp_iou(model, dataset):
    """Mean IoU of the warped cloth mask (>= 0.5) and the person's cloth region, over the dataset."""
    model.eval()
    scores = []
    with torch.no_grad():
        for item in dataset:
            batch = {k: v.unsqueeze(0) if torch.is_tensor(v) else v for k, v in item.items()}
            out = cpvton.run_gmm(model, batch)
            target = (batch['parse_cloth'] < 1).any(1)[0].numpy()   # +1 (white) outside the cloth
            scores.append(mask_iou(out['warped_mask'][0, 0].numpy() >= 0.5, target))
    model.train()
    return float(np.mean(scores))


def test_a_short_gmm_run_improves_the_warp(dataroot, tmp_path):
    trainer = trainer_for(dataroot, tmp_path, 'GMM', 50, 2e-4, 4)
    test_set = CPDataset(train.get_opt(['--dataroot', dataroot, '--datamode', 'test',
                                        '--data_list', 'test_pairs_paired.txt']))
    before = mean_warp_iou(trainer.model, test_set)
    trainer.train()
    trainer.close()
    after = mean_warp_iou(trainer.model, test_set)
    print(f'warped-mask IoU on unseen test persons: untrained {before:.3f}, after 50 steps {after:.3f}')
    assert after > before + 0.1, (before, after)


def test_a_short_tom_run_lowers_its_l1(dataroot, tmp_path):
    trainer = trainer_for(dataroot, tmp_path, 'TOM', 12, 1e-3, 2, '--vgg_init', 'random')
    batch = train.to_device(next(iter(torch.utils.data.DataLoader(trainer.dataset, batch_size=4))), trainer.device)

    def l1():
        with torch.no_grad():
            return torch.nn.functional.l1_loss(cpvton.run_tom(trainer.model, batch)['p_tryon'], batch['image']).item()

    before = l1()
    trainer.train()
    trainer.close()
    after = l1()
    print(f'try-on L1: untrained {before:.3f}, after 12 steps {after:.3f}')
    assert after < 0.8 * before, (before, after)
