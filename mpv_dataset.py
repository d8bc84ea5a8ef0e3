"""The MPV layout (Dong et al., "Towards Multi-pose Guided Virtual Try-on Network", ICCV 2019), which MG-VTON's
stages read (mgvton.py): a person in one pose, the same person in another pose, and a cloth.

Layout read from ``<dataroot>/`` (the MPV release, as the public MPV loaders read it)::

    all/<name>.jpg                                  person and cloth photos (256 x 192 in MPV)
    all/<cloth stem>_mask.jpg                       the cloth's mask, white on black: optional; where it is
                                                    missing, the mask is computed from the photo on load
                                                    (cloth_mask.py), and the data check says so
    all_parsing/<person stem>.png                   LIP label map (pixel = label 0..19)
    all_person_clothes_keypoints/<person stem>_keypoints.json    OpenPose COCO-18 (or BODY_25)
    all_poseA_poseB_clothes_0607.txt                the triplet list (--data_list), one line per triplet:
                                                    "<person A> <person B> <cloth> train|test"

MPV's names hold a folder (``RE321D05M/RE321D05M-Q11@10=person_half_front.jpg``): a name here is a relative
path of plain file names below all/ (see triplet_name_problem), never one that leaves its folder. --datamode is
the split word of the list (train or test). The paper's set: 35,687 person and 13,524 cloth photos, 52,236
training and 10,544 test triplets.

An item (H x W = the model size; person A is the source, person B the target, whose photo is the answer):
    key: the file name of the triplet's results (triplet_key); im_name: person B; c_name: the cloth;
    source_name: person A;
    source_image [3,H,W], image [3,H,W] (person B), cloth [3,H,W]: in [-1,1]; cloth_mask [1,H,W] in {0,1};
    appearance [3,H,W]: person A's hair and face masks in {0,1} and body shape (CP-VTON's, in [-1,1]);
    reference [3,H,W] in [-1,1]: person A's photo with the upper clothes (labels 5, 6, 7) at 0 (mid-grey);
    source_parse, target_parse [20,H,W] in {0,1}: the LIP parses one-hot; target_labels [H,W] int64;
    target_pose [18,H,W] in [-1,1] (CP-VTON's squares), target_pose_image [1,H,W] in [-1,1];
    target_cloth_mask [1,H,W] in {0,1}: person B's upper clothes.
"""
import os.path as osp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.utils.data as data
from PIL import Image

from cp_dataset import (CLOTH_LABELS, MASK_THRESHOLD, NUM_LIP_LABELS, DataError, FileProblem, LoadFix,
                        downsampled_body_shape, draw_pose_maps, label_region, load_coco18_keypoints, load_mask,
                        load_parse_labels, load_photo, masked_image, name_problem, normalized, shown)

TRIPLET_LIST = 'all_poseA_poseB_clothes_0607.txt'
SPLITS = ('train', 'test')
PHOTO_FOLDER, PARSE_FOLDER, POSE_FOLDER = 'all', 'all_parsing', 'all_person_clothes_keypoints'
HAIR_LABELS = (1, 2)          # hat, hair
FACE_LABELS = (4, 13)         # sunglasses, face
TRIPLET_LINE_FIX = ('write one triplet per line: person A\'s photo, person B\'s photo, the cloth\'s photo (names '
                    'below all/) and train or test, separated by spaces')
TRIPLET_NAME_FIX = ('write names relative to all/ (MPV\'s <folder>/<file>.jpg is fine): no root, drive, \'.\' or '
                    '\'..\' part, no control or invisible character; save the list as UTF-8')
MASK_FROM_PHOTO = 'computed from the cloth photo on load (cloth_mask.py: its border is the background)'


@dataclass(frozen=True)
class Triplet:
    source: str   # person A (the reference)
    target: str   # person B (the pose, and the answer)
    cloth: str


def stem(name):
    return osp.splitext(name)[0]


def triplet_name_problem(name):
    """Why ``name`` is not a relative path of plain file names (cp_dataset.name_problem per part), or None."""
    if name.startswith(('/', '\\')):
        return 'is an absolute path'
    if '\\' in name:
        return 'holds a backslash (write folders with /)'
    for part in name.split('/'):
        problem = 'has an empty part (//)' if not part else name_problem(part)
        if problem:
            return problem if part == name else f'has the part {part!r}, which {problem}'
    return None


def file_below(folder, name):
    """``folder``/``name`` for a name of the triplet list (or one made from it), never outside ``folder``."""
    problem = triplet_name_problem(name)
    if problem:
        raise DataError(f'{name!r} {problem}, so it is not a file below {shown(str(folder))}')
    return Path(folder).joinpath(*name.split('/'))


def flat_name(name):
    """A triplet-list name as one file name: its folders joined by '+'."""
    return name.replace('/', '+')


def triplet_key(triplet):
    """The file name of a triplet's results: unique per (person A, person B, cloth), the cloth's extension."""
    return f'{flat_name(stem(triplet.source))}_{flat_name(stem(triplet.target))}_{flat_name(triplet.cloth)}'


def parse_result_name(key):
    """The file name of a triplet's synthesised parse (a PNG) among its results, named ``key`` (triplet_key)."""
    return f'{stem(key)}.png'


@dataclass(frozen=True)
class MPVLayout:
    """Where the files of a triplet list's names lie (see the module docstring)."""
    dataroot: Path

    def photo(self, name):
        return file_below(self.dataroot / PHOTO_FOLDER, name)

    def cloth_mask(self, name):
        return file_below(self.dataroot / PHOTO_FOLDER, f'{stem(name)}_mask.jpg')

    def parse_map(self, name):
        return file_below(self.dataroot / PARSE_FOLDER, f'{stem(name)}.png')

    def pose(self, name):
        return file_below(self.dataroot / POSE_FOLDER, f'{stem(name)}_keypoints.json')

    def real_images(self, triplets):
        """The person-B photos of ``triplets`` (FID's real set), each once, sorted."""
        return sorted({self.photo(t.target) for t in triplets})


def scan_triplets(list_path, split):
    """(the triplets of ``split``, errors) of a triplet list: every malformed line is an error (FileProblem),
    the other lines are kept. Read as editors write it (byte-order mark, CRLF, tabs, blank lines)."""
    if not osp.isfile(list_path):
        return [], [FileProblem('missing triplet list', str(list_path), 'file not found',
                                f'pass --dataroot (the MPV folder) and --data_list (MPV\'s {TRIPLET_LIST})')]
    if split not in SPLITS:
        return [], [FileProblem('unknown split', str(list_path), f'--datamode {split!r} is not a split of the list',
                                f'pass --datamode {" or ".join(SPLITS)}')]
    triplets, errors, named = [], [], {}   # named: result name -> (line, triplet)
    with open(list_path, encoding='utf-8-sig', errors='surrogateescape') as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            where = f'{list_path}, line {line_no}'
            if len(fields) != 4:
                errors.append(FileProblem('malformed triplet line', where, f'expected "personA.jpg personB.jpg '
                                          f'cloth.jpg train|test", got {line.strip()!r}', TRIPLET_LINE_FIX))
                continue
            if fields[3] not in SPLITS:
                errors.append(FileProblem('malformed triplet line', where, f'the split {fields[3]!r} is neither '
                                          f'train nor test', TRIPLET_LINE_FIX))
                continue
            unsafe = [FileProblem('name is not a relative file name', where, f'the {role} name {name!r} {problem}',
                                  TRIPLET_NAME_FIX)
                      for role, name in zip(('person A', 'person B', 'cloth'), fields)
                      if (problem := triplet_name_problem(name))]
            errors += unsafe
            if unsafe or fields[3] != split:
                continue
            triplet = Triplet(*fields[:3])
            key = triplet_key(triplet)
            if key in named and named[key][1] != triplet:
                errors.append(FileProblem('triplets with one result name', where, f'its results would be named '
                                          f'{key!r}, as those of line {named[key][0]}', 'rename one of the photos'))
                continue
            named.setdefault(key, (line_no, triplet))
            triplets.append(triplet)
    if not triplets and not errors:
        errors.append(FileProblem('no triplets', str(list_path), f'has no {split} triplets',
                                  f'pass the --datamode of its lines, or a list with {split} lines'))
    return triplets, errors


def read_triplets(list_path, split):
    """The triplets of ``split``; DataError listing every malformed line."""
    triplets, errors = scan_triplets(list_path, split)
    if errors:
        raise DataError('\n'.join(str(e) for e in errors))
    return triplets


def cloth_mask_fixes(path):
    """[] where the cloth's mask file exists; else the fix loading applies (the mask from the photo)."""
    if path.is_file():
        return []
    return [LoadFix('cloth mask computed from the photo', str(path), 'no mask file', MASK_FROM_PHOTO, None)]


def one_hot(labels):
    """LIP labels [H,W] (uint8) -> [20,H,W] float in {0,1}."""
    return torch.from_numpy(np.eye(NUM_LIP_LABELS, dtype=np.float32)[labels].transpose(2, 0, 1).copy())


def region_tensor(labels, wanted):
    return torch.from_numpy(label_region(labels, wanted).astype(np.float32)).unsqueeze(0)


class MPVDataset(data.Dataset):
    """Triplets of an MPV triplet list. ``opt`` needs dataroot, datamode (the split), data_list, fine_height,
    fine_width, radius; ``spec`` is the stage's DataSpec (layout 'mpv')."""

    def __init__(self, opt, spec=None):
        super().__init__()
        self.spec = spec
        self.layout = MPVLayout(Path(opt.dataroot))
        self.triplets = read_triplets(osp.join(opt.dataroot, opt.data_list), opt.datamode)
        self.height, self.width, self.radius = opt.fine_height, opt.fine_width, opt.radius

    def __len__(self):
        return len(self.triplets)

    def cloth(self, name, size):
        pixels, _ = load_photo(self.layout.photo(name), size)
        mask_path = self.layout.cloth_mask(name)
        if cloth_mask_fixes(mask_path):
            from cloth_mask import cloth_mask   # scikit-image and scipy: imported only where a mask is missing
            mask = cloth_mask(Image.fromarray(pixels))
        else:
            mask = load_mask(mask_path, size) >= MASK_THRESHOLD
        return normalized(pixels), torch.from_numpy(np.asarray(mask, dtype=np.float32)).unsqueeze(0)

    def __getitem__(self, index):
        triplet = self.triplets[index]
        height, width = self.height, self.width
        size = (width, height)
        source_pixels, _ = load_photo(self.layout.photo(triplet.source), size)
        target_pixels, target_scale = load_photo(self.layout.photo(triplet.target), size, scales_keypoints=True)
        source_labels = load_parse_labels(str(self.layout.parse_map(triplet.source)), size)
        target_labels = load_parse_labels(str(self.layout.parse_map(triplet.target)), size)
        keypoints = load_coco18_keypoints(str(self.layout.pose(triplet.target)), target_scale)
        target_pose, target_pose_image = draw_pose_maps(keypoints, height, width, self.radius)
        cloth, cloth_mask = self.cloth(triplet.cloth, size)
        source_image = normalized(source_pixels)
        appearance = torch.empty((3, height, width))
        appearance[0:1] = region_tensor(source_labels, HAIR_LABELS)
        appearance[1:2] = region_tensor(source_labels, FACE_LABELS)
        downsampled_body_shape(source_labels > 0, height, width, out=appearance[2:3])
        return {
            'key': triplet_key(triplet), 'im_name': triplet.target, 'c_name': triplet.cloth,
            'source_name': triplet.source,
            'source_image': source_image, 'image': normalized(target_pixels),
            'cloth': cloth, 'cloth_mask': cloth_mask, 'appearance': appearance,
            'reference': masked_image(source_image, ~label_region(source_labels, CLOTH_LABELS), 0.0),
            'source_parse': one_hot(source_labels), 'target_parse': one_hot(target_labels),
            'target_labels': torch.from_numpy(target_labels.astype(np.int64)),
            'target_pose': target_pose, 'target_pose_image': target_pose_image,
            'target_cloth_mask': region_tensor(target_labels, CLOTH_LABELS),
        }
