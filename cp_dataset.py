"""VITON-format dataset for CP-VTON's two stages (GMM and TOM).

Every tensor this module returns equals what the original CP-VTON loader
returns (with the one-channel Normalize fix that modern torchvision needs),
except ``grid_image``, which the project draws itself.

Layout read from ``<dataroot>/<datamode>/``::

    image/<person>.jpg                 RGB person photo, fine_width x fine_height
    image-parse/<person>.png           LIP label map (palette or L mode; pixel = label 0..19)
    pose/<person>_keypoints.json       OpenPose COCO-18 ("pose_keypoints" or "pose_keypoints_2d")
    cloth/<cloth>.jpg, cloth-mask/     in-shop cloth and its mask           (stage GMM)
    warp-cloth/, warp-mask/            GMM's warped cloth and mask          (stage TOM)

Value ranges of an item (H = fine_height, W = fine_width):
    cloth [3,H,W] in [-1,1]; cloth_mask [1,H,W] in {0,1}; image [3,H,W] in [-1,1];
    agnostic [22,H,W] = shape(1) + head(3) + pose(18), all in [-1,1];
    parse_cloth [3,H,W] in [-1,1] (+1 outside the cloth); head [3,H,W] (-1 outside the head);
    shape [1,H,W], pose_image [1,H,W], grid_image [3,H,W] in [-1,1] (GMM) or '' (TOM).
"""
import json
import os
import os.path as osp

import numpy as np
import torch
import torch.utils.data as data
from PIL import Image

# LIP labels used by CP-VTON's person representation.
HEAD_LABELS = (1, 2, 4, 13)      # hat, hair, sunglasses, face
CLOTH_LABELS = (5, 6, 7)         # upper-clothes, dress, coat
NUM_POSE_KEYPOINTS = 18          # OpenPose COCO-18
POSE_KEYS = ('pose_keypoints', 'pose_keypoints_2d')  # old (VITON) and new OpenPose names


class DataError(ValueError):
    """A problem with the user's data, with a message that names the file and the fix."""


def read_pairs(pairs_path):
    """Read a pairs file: one ``<person>.jpg <cloth>.jpg`` per line. Returns [(im_name, c_name)]."""
    if not osp.isfile(pairs_path):
        raise DataError(f'pairs file not found: {pairs_path}. Pass --dataroot and --data_list so that '
                        f'<dataroot>/<data_list> is a file of "person.jpg cloth.jpg" lines.')
    pairs = []
    with open(pairs_path) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise DataError(f'{pairs_path}, line {line_no}: expected "person.jpg cloth.jpg", '
                                f'got {line.strip()!r}')
            pairs.append((fields[0], fields[1]))
    if not pairs:
        raise DataError(f'pairs file is empty: {pairs_path}')
    return pairs


def pair_key(im_name, c_name):
    """File name of a pair's test outputs: unique per (person, cloth), e.g. '000001_0_001744_1.jpg'."""
    return f'{osp.splitext(im_name)[0]}_{c_name}'


def pose_file_name(im_name):
    return im_name.replace('.jpg', '_keypoints.json')


def parse_file_name(im_name):
    return im_name.replace('.jpg', '.png')


def to_tensor_normalized(pil_image):
    """PIL image (RGB or L) -> float tensor [C,H,W] in [-1,1].

    Same arithmetic as torchvision's ToTensor followed by Normalize(0.5, 0.5), so the
    values are bitwise identical to the original loader's.
    """
    array = np.asarray(pil_image)
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
    return tensor.float().div(255).sub(0.5).div(0.5)


def read_keypoints(pose_path):
    """OpenPose JSON -> float array [K,3] of (x, y, confidence) for the first person."""
    with open(pose_path) as f:
        try:
            pose_label = json.load(f)
        except json.JSONDecodeError as error:
            raise DataError(f'{pose_path}: not valid JSON ({error}); re-export it from OpenPose') from None
    people = pose_label.get('people') if isinstance(pose_label, dict) else None
    if not people:
        raise DataError(f'{pose_path}: no person in "people"; OpenPose detected nobody in this image, '
                        f'remove the pair from the pairs file')
    person = people[0]
    for key in POSE_KEYS:
        if key in person:
            return np.asarray(person[key], dtype=np.float64).reshape(-1, 3)
    raise DataError(f'{pose_path}: no keypoints; expected one of the keys {POSE_KEYS}')


def draw_pose_maps(keypoints, height, width, radius):
    """Keypoints [K,3] -> (pose_map [K,H,W], pose_image [1,H,W]), both -1 background and +1 squares.

    As the original (PIL's rectangle with float corners, truncated to int, both ends
    inclusive), a point is drawn only if x > 1 and y > 1, as a square of 2*radius+1
    pixels clipped at the image border.
    """
    pose_map = torch.full((len(keypoints), height, width), -1.0)
    for i, (x, y, _confidence) in enumerate(keypoints):
        if not (x > 1 and y > 1):
            continue
        x0, x1 = max(int(x - radius), 0), min(int(x + radius), width - 1)
        y0, y1 = max(int(y - radius), 0), min(int(y + radius), height - 1)
        if x0 <= x1 and y0 <= y1:
            pose_map[i, y0:y1 + 1, x0:x1 + 1] = 1.0
    pose_image = pose_map.amax(dim=0, keepdim=True) if len(keypoints) else torch.full((1, height, width), -1.0)
    return pose_map, pose_image


def make_grid_image(height, width, spacing=16, line_width=2):
    """The picture warped for visualisation: white lines every `spacing` pixels on black, [3,H,W] in [-1,1]."""
    grid = torch.full((3, height, width), -1.0)
    for offset in range(line_width):
        grid[:, offset::spacing, :] = 1.0
        grid[:, :, offset::spacing] = 1.0
    return grid


def downsampled_body_shape(parse_array, height, width):
    """Blurry body shape: mask*255 resized by Pillow's bilinear filter to 1/16 and back, in [-1,1].

    Pillow (not torch.interpolate) because its antialiasing is what the original used.
    """
    mask = Image.fromarray((parse_array > 0).astype(np.uint8) * 255)
    mask = mask.resize((width // 16, height // 16), Image.BILINEAR)
    mask = mask.resize((width, height), Image.BILINEAR)
    return to_tensor_normalized(mask)


def labels_mask(parse_array, labels):
    return torch.from_numpy(np.isin(parse_array, labels).astype(np.float32))


class CPDataset(data.Dataset):
    """Dataset of (person, cloth) pairs. ``opt`` needs: dataroot, datamode, stage ('GMM' or 'TOM'),
    data_list, fine_height, fine_width, radius."""

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        self.root = opt.dataroot
        self.datamode = opt.datamode
        self.stage = opt.stage
        if self.stage not in ('GMM', 'TOM'):
            raise ValueError(f'stage must be GMM or TOM, got {self.stage!r}')
        self.data_list = opt.data_list
        self.fine_height = opt.fine_height
        self.fine_width = opt.fine_width
        self.radius = opt.radius
        self.data_path = osp.join(opt.dataroot, opt.datamode)
        pairs = read_pairs(osp.join(opt.dataroot, opt.data_list))
        self.im_names = [im_name for im_name, _ in pairs]
        self.c_names = [c_name for _, c_name in pairs]
        self.cloth_dir, self.mask_dir = ('cloth', 'cloth-mask') if self.stage == 'GMM' else ('warp-cloth', 'warp-mask')
        self.grid_image = make_grid_image(self.fine_height, self.fine_width) if self.stage == 'GMM' else ''

    def name(self):
        return 'CPDataset'

    def __len__(self):
        return len(self.im_names)

    def cloth_path(self, folder, im_name, c_name):
        """Where a pair's cloth (or mask) lies in `folder`.

        GMM reads the in-shop cloth by its name. TOM reads GMM's warp of this pair, written
        under the pair's key by test.py; folders made by the original code name warps by the
        cloth alone, so that name is read where no pair-keyed file exists.
        """
        if self.stage == 'TOM':
            keyed = osp.join(self.data_path, folder, pair_key(im_name, c_name))
            if osp.exists(keyed):
                return keyed
        return osp.join(self.data_path, folder, c_name)

    def __getitem__(self, index):
        c_name = self.c_names[index]
        im_name = self.im_names[index]
        height, width = self.fine_height, self.fine_width

        cloth = to_tensor_normalized(Image.open(self.cloth_path(self.cloth_dir, im_name, c_name)))
        mask_array = np.asarray(Image.open(self.cloth_path(self.mask_dir, im_name, c_name)))
        cloth_mask = torch.from_numpy((mask_array >= 128).astype(np.float32)).unsqueeze(0)

        image = to_tensor_normalized(Image.open(osp.join(self.data_path, 'image', im_name)))

        # np.asarray of a palette PNG gives the label indices, which is what we need.
        parse_array = np.asarray(Image.open(osp.join(self.data_path, 'image-parse', parse_file_name(im_name))))
        shape = downsampled_body_shape(parse_array, height, width)
        head_mask = labels_mask(parse_array, HEAD_LABELS)
        cloth_region = labels_mask(parse_array, CLOTH_LABELS)
        parse_cloth = image * cloth_region + (1 - cloth_region)   # +1 (white) outside the cloth
        head = image * head_mask - (1 - head_mask)                 # -1 (black) outside the head

        keypoints = read_keypoints(osp.join(self.data_path, 'pose', pose_file_name(im_name)))
        pose_map, pose_image = draw_pose_maps(keypoints, height, width, self.radius)

        agnostic = torch.cat([shape, head, pose_map], 0)
        return {
            'c_name': c_name,            # for visualisation
            'im_name': im_name,          # for visualisation or ground truth
            'cloth': cloth,              # input
            'cloth_mask': cloth_mask,    # input
            'image': image,              # ground truth (TOM), visualisation (GMM)
            'agnostic': agnostic,        # input
            'parse_cloth': parse_cloth,  # ground truth (GMM)
            'shape': shape,              # visualisation
            'head': head,                # visualisation
            'pose_image': pose_image,    # visualisation
            'grid_image': self.grid_image,  # visualisation
        }


class ResumableSampler(data.Sampler):
    """The indices of one epoch, for one process: shuffled by a permutation seeded with
    (seed, epoch) when ``shuffle`` is set, else in file order; split across ``world_size``
    processes like DistributedSampler (padded by wrapping around); and able to start part-way
    through an epoch, which is what makes an interrupted run resume on the same batches.
    """

    def __init__(self, num_samples, shuffle, seed=0, rank=0, world_size=1):
        super().__init__()
        self.num_samples, self.shuffle, self.seed = num_samples, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch, start=0):
        self.epoch, self.start = epoch, start

    def epoch_indices(self):
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = list(range(self.num_samples))
        per_rank = -(-self.num_samples // self.world_size)
        order = (order * self.world_size)[:per_rank * self.world_size]
        return order[self.rank::self.world_size]

    def __iter__(self):
        return iter(self.epoch_indices()[self.start:])

    def __len__(self):
        return len(self.epoch_indices()) - self.start


class CPDataLoader:
    """Endless batch iterator over a CPDataset. ``opt`` needs: batch_size, workers, shuffle (and
    optionally seed). Batches are [B,...] versions of the dataset's items.

    The original always shuffled (also in test runs, whatever --shuffle said); here the
    order is shuffled only when ``opt.shuffle`` is set. ``state()`` / ``load_state()`` save
    and restore the position in the data, for resuming.
    """

    def __init__(self, opt, dataset, rank=0, world_size=1, pin_memory=False):
        super().__init__()
        self.sampler = ResumableSampler(len(dataset), opt.shuffle, seed=getattr(opt, 'seed', None) or 0,
                                        rank=rank, world_size=world_size)
        self.data_loader = data.DataLoader(
            dataset, batch_size=opt.batch_size, shuffle=False, sampler=self.sampler,
            num_workers=opt.workers, pin_memory=pin_memory, persistent_workers=opt.workers > 0)
        self.dataset = dataset
        self.batch_size = opt.batch_size
        self.samples_done = 0   # samples of the current epoch already handed out
        self.data_iter = iter(self.data_loader)

    def next_batch(self):
        try:
            batch = next(self.data_iter)
        except StopIteration:
            self.restart(self.sampler.epoch + 1, 0)
            batch = next(self.data_iter)
        self.samples_done += len(batch['im_name'])
        return batch

    def restart(self, epoch, samples_done):
        self.sampler.set_epoch(epoch, start=samples_done)
        self.samples_done = samples_done
        self.data_iter = iter(self.data_loader)

    def state(self):
        return {'epoch': self.sampler.epoch, 'samples_done': self.samples_done}

    def load_state(self, state):
        self.restart(int(state['epoch']), int(state['samples_done']))
