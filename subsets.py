"""Difficulty subsets of a pair list: textured clothes, occluded persons (used by evaluate.py's report,
smart_show_test_result.py's worst cases, ablation.py and gallery.py).

    textured  pairs whose in-shop cloth's texture energy (``cloth_texture_energy``: the mean colour gradient
              magnitude inside the cloth mask eroded by 3 pixels) is above TEXTURED_THRESHOLD (0.015);
    occluded  pairs whose person's arms (LIP labels 14, 15) cover more than OCCLUDED_THRESHOLD (0.06) of the
              torso (``torso_occlusion``: the quadrilateral of the OpenPose shoulders and hips).

``difficulty_measures`` gives each pair's measures, ``subset_members`` the subsets of such measures and
``difficulty_subsets`` the subsets of any pair list. Files read (see cp_dataset.DataLayout)::

    <dataroot>/<datamode>/cloth/<cloth>.jpg, cloth-mask/<cloth>.jpg             texture energy
    <dataroot>/<datamode>/image/<person>.jpg (its size), image-parse/<person>.png,
    pose/<person>_keypoints.json                                                torso occlusion
"""
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from cp_dataset import (CLOTH_LABELS, MASK_THRESHOLD, DataLayout, existing_file, load_coco18_keypoints, load_mask,
                        load_parse_labels, load_photo, open_image, pair_key, parallel_map)

# Difficulty subsets (see "Difficulty subsets" below for the measures and how the thresholds were chosen).
TEXTURED_THRESHOLD = 0.015    # texture energy above which an in-shop cloth is 'textured'
OCCLUDED_THRESHOLD = 0.06     # torso occlusion above which a person is 'occluded'
TEXTURE_MEASURE_SIZE = (192, 256)   # (W, H): the cloth is measured at VITON's size, so one threshold fits all
TEXTURE_EROSION_PIXELS = 3          # the cloth's outline is an edge of every cloth, plain or not
ARM_LABELS = (14, 15)               # LIP left arm, right arm (hands included)
TORSO_KEYPOINTS = (2, 5, 11, 8)     # COCO-18 RShoulder, LShoulder, LHip, RHip: the torso quadrilateral's corners
FALLBACK_TORSO_SHARE = 0.5          # without those keypoints: the central half of the cloth labels' bounding box

#
# CP-VTON is known to blur and distort prints and stripes, and to paint the cloth over arms held in front of
# the body. Two per-pair measures pick out such pairs, so that every metric can also be read on them:
#   texture_energy   of the pair's in-shop cloth (``cloth_texture_energy``), >= 0
#   torso_occlusion  of the pair's person (``torso_occlusion``), in [0, 1]
# and a pair is in a subset when its measure is above the subset's threshold (TEXTURED_THRESHOLD,
# OCCLUDED_THRESHOLD). The README's "Difficulty subsets" gives the figures the thresholds were chosen from.

SUBSET_DEFINITIONS = {
    'textured': {'of': "the pair's in-shop cloth", 'measure': 'texture_energy',
                 'description': f'mean colour gradient magnitude (Sobel / 8, root mean square over RGB, image in '
                                f'[0,1]) inside the cloth mask eroded by {TEXTURE_EROSION_PIXELS} pixels, at '
                                f'{TEXTURE_MEASURE_SIZE[0]}x{TEXTURE_MEASURE_SIZE[1]}',
                 'function': 'subsets.cloth_texture_energy'},
    'occluded': {'of': "the pair's person", 'measure': 'torso_occlusion',
                 'description': 'fraction of the torso (quadrilateral of the OpenPose shoulders and hips; without '
                                'them the central half of the cloth labels\' bounding box) labelled LIP left or '
                                'right arm (14, 15)',
                 'function': 'subsets.torso_occlusion'},
}


def colour_gradient_magnitude(rgb):
    """Gradient magnitude of an RGB image float [H,W,3] in [0,1] -> float [H,W] >= 0.

    Sobel derivatives divided by 8 (units per pixel: a step of height c between flat areas reads c/2 on the two
    pixels beside it), magnitude per channel, root mean square over the channels: a gray image reads its gray
    gradient, and stripes of two colours of equal brightness still have edges."""
    squared = sum(ndimage.sobel(rgb[..., channel], axis=axis) ** 2
                  for channel in range(rgb.shape[2]) for axis in (0, 1))
    return np.sqrt(squared / rgb.shape[2]) / 8


def cloth_texture_energy(cloth_path, mask_path):
    """High-frequency energy of an in-shop cloth: the mean colour gradient magnitude (``colour_gradient_magnitude``)
    inside its mask eroded by TEXTURE_EROSION_PIXELS, with both images at TEXTURE_MEASURE_SIZE (loaded and
    resized as cp_dataset loads them; the mask binarised >= 128). A float >= 0: on the VITON samples about
    0.002-0.01 for plain fabric, 0.015-0.03 for printed graphics, 0.03-0.17 for stripes and all-over prints;
    0.0 for a mask with no interior."""
    cloth, _ = load_photo(existing_file(cloth_path), TEXTURE_MEASURE_SIZE)
    mask = load_mask(existing_file(mask_path), TEXTURE_MEASURE_SIZE) >= MASK_THRESHOLD
    # scipy erodes until nothing changes for iterations=0, so no erosion is spelt out
    interior = ndimage.binary_erosion(mask, iterations=TEXTURE_EROSION_PIXELS) if TEXTURE_EROSION_PIXELS else mask
    if not interior.any():
        return 0.0
    gradient = colour_gradient_magnitude(np.asarray(cloth, dtype=np.float64) / 255)
    return float(gradient[interior].mean())


def keypoint_found(keypoint):
    """Whether a keypoint (x, y, confidence) was detected: OpenPose writes 0, 0, 0 otherwise, and cp_dataset
    draws a point only where x > 1 and y > 1."""
    return keypoint[0] > 1 and keypoint[1] > 1


def torso_region(labels, keypoints):
    """The person's torso in a LIP label map [H,W]: (bool [H,W], how it was found).

    'keypoints': the quadrilateral RShoulder-LShoulder-LHip-RHip of the COCO-18 keypoints [18,3] (pixels of the
    label map), rasterised with its outline. Arms hanging at the sides lie outside it but for the shoulder
    joints; forearms held in front of the chest or belly lie inside.
    'cloth box': where one of those four keypoints is missing, the central FALLBACK_TORSO_SHARE of the columns
    of the bounding box of the cloth labels (5, 6, 7), over all its rows: the box spans the sleeves, the arms
    at the sides lie in its outer columns.
    'none': neither is available (no keypoint and no cloth label); the region is empty."""
    height, width = labels.shape
    corners = keypoints[list(TORSO_KEYPOINTS)]
    if all(keypoint_found(corner) for corner in corners):
        canvas = Image.new('1', (width, height))
        ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y, _ in corners], fill=1, outline=1)
        return np.asarray(canvas, dtype=bool), 'keypoints'
    region = np.zeros((height, width), dtype=bool)
    rows, columns = np.nonzero(np.isin(labels, CLOTH_LABELS))
    if len(rows) == 0:
        return region, 'none'
    margin = (1 - FALLBACK_TORSO_SHARE) / 2 * (columns.max() + 1 - columns.min())
    left, right = round(columns.min() + margin), round(columns.max() + 1 - margin)
    region[rows.min():rows.max() + 1, left:right] = True
    return region, 'cloth box'


def torso_occlusion(parse_path, pose_path, photo_size=None):
    """How much of a person's torso their arms cover: (fraction in [0,1], how the torso was found).

    The fraction of the ``torso_region`` pixels labelled left or right arm (ARM_LABELS) in the person's LIP
    parse map, 0.0 when the region is empty. The keypoints are in the pixels of the person photo, of
    `photo_size` (W, H; default: the parse map's size, as in VITON), and are scaled to the parse map."""
    parse_path, pose_path = existing_file(parse_path), existing_file(pose_path)
    parse_size = Image.open(parse_path).size
    labels = load_parse_labels(parse_path, parse_size)
    photo_size = photo_size or parse_size
    keypoints = load_coco18_keypoints(pose_path, (parse_size[0] / photo_size[0], parse_size[1] / photo_size[1]))
    region, found_by = torso_region(labels, keypoints)
    if not region.any():
        return 0.0, found_by
    return float(np.isin(labels[region], ARM_LABELS).mean()), found_by


def cloth_measures(c_name, layout):
    """(c_name, {'texture_energy': float >= 0}): the cloth's measures, a parallel_map function."""
    return c_name, {'texture_energy': cloth_texture_energy(layout.cloth(c_name), layout.cloth_mask(c_name))}


def person_measures(im_name, layout):
    """(im_name, {'torso_occlusion': float in [0,1], 'torso_region': how it was found}): a parallel_map function."""
    fraction, found_by = torso_occlusion(layout.parse_map(im_name), layout.pose(im_name),
                                         open_image(layout.person_image(im_name)).size)
    return im_name, {'torso_occlusion': fraction, 'torso_region': found_by}


def difficulty_measures(dataroot, datamode, pairs, workers=0):
    """Per-pair difficulty measures: {pair_key: {'texture_energy': float >= 0 (of the pair's in-shop cloth),
    'torso_occlusion': float in [0,1] (of the pair's person), 'torso_region': 'keypoints' | 'cloth box' | 'none'}},
    in the order of `pairs`. Each cloth and person is measured once, by `workers` processes. Reads the
    <dataroot>/<datamode>/ cloth, cloth-mask, image, image-parse and pose files; a missing one is a DataError."""
    layout = DataLayout(Path(dataroot), datamode)
    c_names = list(dict.fromkeys(c_name for _, c_name in pairs))
    im_names = list(dict.fromkeys(im_name for im_name, _ in pairs))
    of_cloth = dict(parallel_map(partial(cloth_measures, layout=layout), c_names, workers, 'cloth texture'))
    of_person = dict(parallel_map(partial(person_measures, layout=layout), im_names, workers, 'torso occlusion'))
    return {pair_key(im_name, c_name): {**of_cloth[c_name], **of_person[im_name]} for im_name, c_name in pairs}


def subset_members(measures, textured_threshold=TEXTURED_THRESHOLD, occluded_threshold=OCCLUDED_THRESHOLD,
                   keys=None):
    """{'textured': [pair keys], 'occluded': [pair keys]}: the pairs among `keys` (default: all of `measures`, a
    ``difficulty_measures`` result), in their order, whose measure is above the subset's threshold."""
    thresholds = {'textured': textured_threshold, 'occluded': occluded_threshold}
    keys = measures.keys() if keys is None else keys
    return {subset: [key for key in keys if measures[key][definition['measure']] > thresholds[subset]]
            for subset, definition in SUBSET_DEFINITIONS.items()}


def difficulty_subsets(dataroot, datamode, pairs, textured_threshold=TEXTURED_THRESHOLD,
                       occluded_threshold=OCCLUDED_THRESHOLD, workers=0):
    """{'textured': [pair keys], 'occluded': [pair keys]} of `pairs` [(im_name, c_name)], in their order: textured
    by the pair's in-shop cloth, occluded by the pair's person (see ``difficulty_measures``)."""
    return subset_members(difficulty_measures(dataroot, datamode, pairs, workers), textured_threshold,
                          occluded_threshold)
