"""Write a synthetic try-on dataset in the VITON layout that cp_dataset.CPDataset reads.

The persons are drawn figures wearing an in-shop shirt that was warped onto the torso
by a *known* warp, so the whole CP-VTON pipeline (train/test GMM, train/test TOM) can
run anywhere in minutes, and the GMM can be scored against the true warp.

Usage::

    python synthetic_data.py --dataroot demo/data --n_train 200 --n_test 20 --seed 0 \
        [--textured_share 0.5] [--occluded_share 0.3] [--workers N] [--overwrite]

Layout written under ``dataroot`` (``<id>`` is a 6-digit number, train and test ids disjoint)::

    <split>/image/<id>_0.jpg              person, RGB JPEG 192x256 (W x H)
    <split>/image-parse/<id>_0.png        LIP labels, palette ('P') PNG: pixel = label 0..19,
                                          palette = LIP_PALETTE
    <split>/image-mask/<id>_0.png         body mask, L PNG, 255 on the person, 0 background
    <split>/cloth/<id>_1.jpg              in-shop shirt on white, RGB JPEG 192x256
    <split>/cloth-mask/<id>_1.jpg         L JPEG, 255 on the shirt, 0 background (binarise >= 128)
    <split>/pose/<id>_0_keypoints.json    OpenPose COCO-18 under "pose_keypoints", pixels;
                                          a keypoint that is not visible is 0, 0, 0
    <split>/warp_params.json              per person: texture, arm crossing, shirt shape and the
                                          warp (affine + TPS) that put the shirt on the person
    train_pairs.txt                       "<id>_0.jpg <id>_1.jpg", one line per train person
    test_pairs_paired.txt                 each test person with their own shirt
    test_pairs_unpaired.txt               each test person with another test person's shirt
    test_pairs.txt                        the unpaired lines, then the paired lines (as VITON)
    synthetic_dataset.json                the settings; marks the folder as ours (see --overwrite)

Value conventions:
  * JPEGs are written with quality 75 and 4:2:0 chroma subsampling (Pillow's defaults),
    the same quantisation tables the VITON files carry.
  * Parse labels used (LIP): 0 background, 2 hair, 5 upper-clothes, 9 pants, 13 face,
    14 left-arm, 15 right-arm, 16 left-leg, 17 right-leg, 18 left-shoe, 19 right-shoe.
    Left/right are the person's: the figure faces the camera, so its left is on the
    image's right, as in VITON. The neck and the chest skin seen through the neckline are
    labelled 13 (face), as VITON's LIP parses label them; 10 (jumpsuit) is never used.
    Hands are part of the arms (LIP has no hand label).
  * Label 5 is exactly where the warped shirt is visible: the warped shirt mask minus the
    pixels that the head and the arms cover. Arms lie over the shirt below the armpits
    and under its sleeves and shoulders.
  * Keypoints outside the image, and ears hidden under hair, are 0, 0, 0.
  * Same arguments -> byte-identical files: each person draws from its own generator,
    seeded by (seed, split, index), so persons can be drawn in parallel (--workers).

The warp (see ``warp_planes``): for a person pixel p, the shirt point shown there is
``s = q + tps(q)`` with ``q = A^-1 p``; ``A`` (2x3, "affine") maps shirt-image pixels to
person pixels and places the shirt's shoulders on the person's shoulders and its hem at
the hips; ``tps`` is the thin-plate spline that interpolates the "tps_offsets" (shirt
pixels) given at a 5x5 grid of control points spanning the shirt image (evaluated every
4 person pixels, linear in between). So the person pixel ``A(c_k)`` shows the shirt point
``c_k + offset_k``. ``ground_truth_warped_mask`` rebuilds the warped shirt mask (before
occlusion) from a person's entry in warp_params.json.
"""
import argparse
import colorsys
import ctypes
import json
import math
import multiprocessing
import os
import os.path as osp
import shutil
import sys
import time
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import flags
from cp_dataset import VITON_LIP_PALETTE as LIP_PALETTE
from mpv_dataset import PARSE_FOLDER, PHOTO_FOLDER, POSE_FOLDER, TRIPLET_LIST

IMAGE_WIDTH, IMAGE_HEIGHT = 192, 256
JPEG_QUALITY = 75
PNG_COMPRESS_LEVEL = 1     # label maps compress almost as well as at the default 6, much faster

BACKGROUND, HAIR, UPPER_CLOTHES, PANTS, FACE = 0, 2, 5, 9, 13
LEFT_ARM, RIGHT_ARM, LEFT_LEG, RIGHT_LEG, LEFT_SHOE, RIGHT_SHOE = 14, 15, 16, 17, 18, 19

SOLID = 'solid'
TEXTURES = ('stripes_h', 'stripes_v', 'checks', 'logo')
SPLITS = ('train', 'test')
PAIR_LISTS = ('train_pairs.txt', 'test_pairs.txt', 'test_pairs_paired.txt', 'test_pairs_unpaired.txt')
MARKER_FILE = 'synthetic_dataset.json'
SUBFOLDERS = ('image', 'image-parse', 'image-mask', 'cloth', 'cloth-mask', 'pose')
LAYOUTS = ('viton', 'mpv')
MPV_FOLDERS = (PHOTO_FOLDER, PARSE_FOLDER, POSE_FOLDER)
MPV_LISTS = (TRIPLET_LIST, 'test_own_cloth.txt', 'test_other_cloth.txt')
MPV_MOST_SHIFT = 16      # pixels a figure moves sideways, at most, between its two poses

# Shirt-frame part labels (never written to disk): the shirt below the armpits, the part
# that lies over the arms (sleeves and shoulders), and the neck opening.
SHIRT_BODY, SHIRT_OVER_ARMS, NECK_OPENING = 1, 2, 3
# Head-layer codes for facial details; they become FACE in the parse map.
EYE_CODE, MOUTH_CODE = 250, 251

GLIBC_M_TRIM_THRESHOLD, GLIBC_M_MMAP_THRESHOLD = -1, -3   # mallopt parameters (see keep_freed_memory)

TPS_GRID_SIZE = 5
TPS_EVALUATION_STEP = 4   # pixels between exact TPS evaluations (see source_points)

SKIN_TONES = [(255, 224, 196), (241, 194, 164), (224, 172, 138), (198, 134, 100),
              (161, 102, 74), (120, 76, 54), (92, 58, 42)]
HAIR_COLOURS = [(22, 18, 16), (55, 38, 28), (95, 64, 40), (160, 120, 70),
                (205, 175, 115), (120, 50, 30), (150, 150, 150)]
PANTS_COLOURS = [(40, 55, 90), (25, 25, 30), (180, 160, 120), (90, 95, 100),
                 (70, 90, 60), (110, 140, 180)]
SHOE_COLOURS = [(30, 30, 30), (235, 235, 235), (120, 80, 50), (190, 40, 40)]


class DatasetExistsError(FileExistsError):
    """The target folder already holds a dataset that we may not replace."""


# ----------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------

def point(x, y):
    """A 2-D point or vector as a float64 array."""
    return np.array([x, y], dtype=np.float64)


@lru_cache(maxsize=1)
def pixel_grid():
    """(ys, xs) float32 [H,W] pixel coordinates, computed once (read-only)."""
    ys, xs = np.mgrid[0:IMAGE_HEIGHT, 0:IMAGE_WIDTH].astype(np.float32)
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


def uniform_noise(rng, shape, std):
    """Zero-mean noise, float32, uniform over 256 levels, with standard deviation ~`std`.

    Made from random bytes: several times faster than rng.random or rng.normal.
    """
    noise = np.frombuffer(rng.bytes(math.prod(shape)), np.uint8).astype(np.float32)
    noise -= 127.5
    noise *= std * math.sqrt(12) / 256
    return noise.reshape(shape)


# ----------------------------------------------------------------------------------------
# The figure
# ----------------------------------------------------------------------------------------

@dataclass
class Figure:
    """Geometry (pixel coordinates, float (x, y) arrays) and style of one drawn person.

    "r_"/"l_" are the person's right/left: r_ is on the image's left.
    """
    unit: float              # head height in pixels; every length scales with it
    face_center: np.ndarray
    face_half: tuple         # (half width, half height) of the face ellipse
    feature_shift: float     # horizontal shift of eyes/nose/mouth (head turned a little)
    hair_style: str          # 'short', 'bob' or 'long'
    ears_visible: tuple      # (right, left)
    neck: np.ndarray         # base of the neck (OpenPose "neck")
    r_shoulder: np.ndarray
    l_shoulder: np.ndarray
    r_elbow: np.ndarray
    l_elbow: np.ndarray
    r_wrist: np.ndarray
    l_wrist: np.ndarray
    crossing_arms: tuple     # subset of ('right', 'left'): forearms in front of the torso
    r_hip: np.ndarray
    l_hip: np.ndarray
    r_knee: np.ndarray
    l_knee: np.ndarray
    r_ankle: np.ndarray
    l_ankle: np.ndarray
    shorts: bool


@dataclass
class Colours:
    """The flat colours (float RGB) of one person's parts and background."""
    background: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    pants: np.ndarray
    shoes: np.ndarray


def direction(angle_deg, side):
    """Unit vector pointing down, turned by `angle_deg` away from the body's midline.

    side is -1 for the person's right (image left), +1 for the left; negative angles
    turn towards the midline.
    """
    angle = math.radians(angle_deg)
    return point(side * math.sin(angle), math.cos(angle))


def sample_arm(rng, shoulder, side, unit, crossing):
    """Elbow and wrist of one arm. A crossing forearm points across the torso."""
    if crossing:
        upper_angle = rng.uniform(0, 18)
        fore_angle = rng.uniform(-105, -65)
    else:
        upper_angle = rng.uniform(6, 30)
        fore_angle = max(upper_angle + rng.uniform(-12, 22), -4)
    elbow = shoulder + 1.3 * unit * direction(upper_angle, side)
    wrist = elbow + 1.1 * unit * direction(fore_angle, side)
    return elbow, wrist


def choose_crossing_arms(rng, occluded):
    """Which forearms cross the torso: none, one at random, or (35%) both."""
    if not occluded:
        return ()
    if rng.random() < 0.35:
        return ('right', 'left')
    return (('right', 'left')[rng.integers(2)],)


def sample_figure(rng, occluded):
    """A random standing figure facing the camera; `occluded` makes forearm(s) cross the torso."""
    unit = rng.uniform(30, 50)
    center_x = IMAGE_WIDTH / 2 + rng.uniform(-14, 14)
    top = rng.uniform(2, 14)
    face_half = (unit * rng.uniform(0.34, 0.4), 0.5 * unit)
    face_center = point(center_x + rng.uniform(-0.04, 0.04) * unit, top + 0.1 * unit + face_half[1])
    neck = point(center_x, face_center[1] + face_half[1] + 0.35 * unit)

    tilt = rng.uniform(-0.06, 0.06)
    shoulder_half = unit * rng.uniform(0.8, 0.95)
    offset = shoulder_half * point(math.cos(tilt), math.sin(tilt))
    r_shoulder = neck + point(0, 0.15 * unit) - offset
    l_shoulder = neck + point(0, 0.15 * unit) + offset

    crossing_arms = choose_crossing_arms(rng, occluded)
    r_elbow, r_wrist = sample_arm(rng, r_shoulder, -1, unit, 'right' in crossing_arms)
    l_elbow, l_wrist = sample_arm(rng, l_shoulder, +1, unit, 'left' in crossing_arms)

    hip_y = neck[1] + unit * rng.uniform(2.3, 2.5)
    hip_half = shoulder_half * rng.uniform(0.5, 0.62)
    r_hip, l_hip = point(center_x - hip_half, hip_y), point(center_x + hip_half, hip_y)
    stance = unit * rng.uniform(0, 0.25)
    r_knee, l_knee = r_hip + point(-stance / 2, 1.75 * unit), l_hip + point(stance / 2, 1.75 * unit)
    r_ankle, l_ankle = r_hip + point(-stance, 3.5 * unit), l_hip + point(stance, 3.5 * unit)

    return Figure(
        unit=unit, face_center=face_center, face_half=face_half,
        feature_shift=rng.uniform(-0.08, 0.08) * unit,
        hair_style=('short', 'bob', 'long')[rng.integers(3)],
        ears_visible=(bool(rng.random() > 0.3), bool(rng.random() > 0.3)),
        neck=neck, r_shoulder=r_shoulder, l_shoulder=l_shoulder,
        r_elbow=r_elbow, l_elbow=l_elbow, r_wrist=r_wrist, l_wrist=l_wrist,
        crossing_arms=crossing_arms,
        r_hip=r_hip, l_hip=l_hip, r_knee=r_knee, l_knee=l_knee, r_ankle=r_ankle, l_ankle=l_ankle,
        shorts=bool(rng.random() < 0.4))


def pick(rng, choices, jitter):
    """One of `choices` (RGB tuples) with a uniform per-channel jitter, as float RGB."""
    base = np.asarray(choices[rng.integers(len(choices))], dtype=np.float64)
    return np.clip(base + rng.uniform(-jitter, jitter, 3), 0, 255)


def sample_colours(rng):
    """A light, slightly tinted background and random skin, hair, pants and shoe colours."""
    grey = rng.uniform(215, 248)
    return Colours(background=np.clip(grey + rng.uniform(-6, 6, 3), 0, 255),
                   skin=pick(rng, SKIN_TONES, 8), hair=pick(rng, HAIR_COLOURS, 10),
                   pants=pick(rng, PANTS_COLOURS, 12), shoes=pick(rng, SHOE_COLOURS, 10))


def face_features(figure):
    """(nose, right eye, left eye, right ear, left ear) positions."""
    (fx, fy), (half_w, half_h) = figure.face_center, figure.face_half
    shifted_x = fx + figure.feature_shift
    nose = point(shifted_x, fy + 0.15 * half_h)
    r_eye, l_eye = (point(shifted_x + side * 0.38 * half_w, fy - 0.1 * half_h) for side in (-1, 1))
    r_ear, l_ear = (point(fx + side * 0.98 * half_w, fy + 0.05 * half_h) for side in (-1, 1))
    return nose, r_eye, l_eye, r_ear, l_ear


def figure_keypoints(figure, rng):
    """OpenPose COCO-18 [x, y, confidence] * 18; hidden or out-of-image points are 0, 0, 0."""
    nose, r_eye, l_eye, r_ear, l_ear = face_features(figure)
    f = figure
    points = [nose, f.neck, f.r_shoulder, f.r_elbow, f.r_wrist, f.l_shoulder, f.l_elbow, f.l_wrist,
              f.r_hip, f.r_knee, f.r_ankle, f.l_hip, f.l_knee, f.l_ankle, r_eye, l_eye,
              r_ear if f.ears_visible[0] else None, l_ear if f.ears_visible[1] else None]
    confidences = rng.uniform(0.55, 0.95, len(points))
    flat = []
    for p, confidence in zip(points, confidences):
        if p is None or not (0 <= p[0] < IMAGE_WIDTH and 0 <= p[1] < IMAGE_HEIGHT):
            flat += [0, 0, 0]
        else:
            flat += [round(float(p[0]), 3), round(float(p[1]), 3), round(float(confidence), 3)]
    return flat


# ----------------------------------------------------------------------------------------
# Drawing the figure's layers (label images; colours come later from the labels)
# ----------------------------------------------------------------------------------------

def new_layer():
    """An empty label image (mode L) and a drawing context on it."""
    image = Image.new('L', (IMAGE_WIDTH, IMAGE_HEIGHT), 0)
    return image, ImageDraw.Draw(image)


def ellipse_box(center, half_w, half_h):
    """PIL bounding box of an ellipse."""
    return [center[0] - half_w, center[1] - half_h, center[0] + half_w, center[1] + half_h]


def draw_limb(draw, start, end, start_width, end_width, label):
    """A segment tapering from start_width to end_width, with round ends."""
    along = (end - start) / np.linalg.norm(end - start)
    across = point(-along[1], along[0]) / 2
    draw.polygon([tuple(start + start_width * across), tuple(end + end_width * across),
                  tuple(end - end_width * across), tuple(start - start_width * across)], fill=label)
    for center, width in ((start, start_width), (end, end_width)):
        draw.ellipse(ellipse_box(center, width / 2, width / 2), fill=label)


def draw_back_layer(figure):
    """What lies behind the shirt: long hair, legs, pants, shoes, neck. Returns uint8 labels."""
    layer, draw = new_layer()
    u = figure.unit
    (fx, fy), (half_w, half_h) = figure.face_center, figure.face_half
    if figure.hair_style == 'long':
        draw.polygon([(fx - 1.15 * half_w, fy - 0.2 * half_h), (fx + 1.15 * half_w, fy - 0.2 * half_h),
                      (fx + 1.35 * half_w, figure.neck[1] + 0.6 * u),
                      (fx - 1.35 * half_w, figure.neck[1] + 0.6 * u)], fill=HAIR)

    legs = ((figure.r_hip, figure.r_knee, figure.r_ankle, RIGHT_LEG, RIGHT_SHOE, -1),
            (figure.l_hip, figure.l_knee, figure.l_ankle, LEFT_LEG, LEFT_SHOE, +1))
    for hip, knee, ankle, leg_label, shoe_label, side in legs:
        draw_limb(draw, hip, knee, 0.62 * u, 0.45 * u, leg_label)
        draw_limb(draw, knee, ankle, 0.45 * u, 0.34 * u, leg_label)
        draw.ellipse(ellipse_box(ankle + point(side * 0.12 * u, 0.15 * u), 0.3 * u, 0.14 * u), fill=shoe_label)
    waist_y, hip_y = figure.r_hip[1] - 0.3 * u, (figure.r_hip[1] + figure.l_hip[1]) / 2
    outer = (figure.l_hip[0] - figure.r_hip[0]) / 2 + 0.3 * u
    mid_x = (figure.l_hip[0] + figure.r_hip[0]) / 2
    draw.polygon([(mid_x - outer, waist_y), (mid_x + outer, waist_y), (mid_x + outer, hip_y),
                  (mid_x, hip_y + 0.45 * u), (mid_x - outer, hip_y)], fill=PANTS)
    for hip, knee, ankle, *_ in legs:
        if figure.shorts:
            draw_limb(draw, hip, hip + 0.6 * (knee - hip), 0.7 * u, 0.64 * u, PANTS)
        else:
            draw_limb(draw, hip, knee, 0.7 * u, 0.53 * u, PANTS)
            draw_limb(draw, knee, ankle, 0.53 * u, 0.45 * u, PANTS)

    # The neck, from behind the face to under the collar, widening into the shoulders.
    draw.polygon([(figure.neck[0] - 0.24 * u, fy), (figure.neck[0] + 0.24 * u, fy),
                  (figure.neck[0] + 0.34 * u, figure.neck[1] + 0.1 * u),
                  (figure.neck[0] - 0.34 * u, figure.neck[1] + 0.1 * u)], fill=FACE)
    return np.asarray(layer)


def draw_arm_layer(figure):
    """Both arms with hands; crossing arms are drawn last so they are in front."""
    layer, draw = new_layer()
    u = figure.unit
    arms = [('right', figure.r_shoulder, figure.r_elbow, figure.r_wrist, RIGHT_ARM),
            ('left', figure.l_shoulder, figure.l_elbow, figure.l_wrist, LEFT_ARM)]
    arms.sort(key=lambda arm: arm[0] in figure.crossing_arms)
    for _, shoulder, elbow, wrist, label in arms:
        # Start a little below the joint so the round end stays under the shirt's shoulder.
        upper_arm = (elbow - shoulder) / np.linalg.norm(elbow - shoulder)
        draw_limb(draw, shoulder + 0.2 * u * upper_arm, elbow, 0.4 * u, 0.33 * u, label)
        draw_limb(draw, elbow, wrist, 0.33 * u, 0.26 * u, label)
        along = (wrist - elbow) / np.linalg.norm(wrist - elbow)
        draw.ellipse(ellipse_box(wrist + 0.2 * u * along, 0.17 * u, 0.17 * u), fill=label)
    return np.asarray(layer)


def draw_head_layer(figure):
    """Hair, face, eyes and mouth (EYE_CODE/MOUTH_CODE mark the details)."""
    layer, draw = new_layer()
    u = figure.unit
    (fx, fy), (half_w, half_h) = figure.face_center, figure.face_half
    draw.ellipse(ellipse_box(point(fx, fy - 0.12 * half_h), 1.13 * half_w, 1.07 * half_h), fill=HAIR)
    if figure.hair_style == 'bob':
        draw.rectangle([fx - 1.13 * half_w, fy - 0.2 * half_h, fx + 1.13 * half_w, fy + 0.75 * half_h], fill=HAIR)
    draw.ellipse(ellipse_box(figure.face_center, half_w, half_h), fill=FACE)
    fringe_center = point(fx + figure.feature_shift, fy - 0.38 * half_h)
    draw.chord(ellipse_box(fringe_center, 1.1 * half_w, 0.75 * half_h), 180, 360, fill=HAIR)
    _, r_eye, l_eye, _, _ = face_features(figure)
    for eye in (r_eye, l_eye):
        draw.ellipse(ellipse_box(eye, 0.05 * u, 0.035 * u), fill=EYE_CODE)
    mouth_x, mouth_y = fx + figure.feature_shift, fy + 0.52 * half_h
    draw.line([(mouth_x - 0.1 * u, mouth_y), (mouth_x + 0.1 * u, mouth_y)], fill=MOUTH_CODE,
              width=max(1, int(round(0.04 * u))))
    return np.asarray(layer)


# ----------------------------------------------------------------------------------------
# The in-shop shirt
# ----------------------------------------------------------------------------------------

def sample_shirt_shape(rng):
    """Parameters of a flat T-shirt silhouette in the 192x256 shirt image (pixels)."""
    shoulder_half = rng.uniform(48, 58)
    armpit_inset = rng.uniform(6, 14)
    sleeve_angle = rng.uniform(40, 62)
    sleeve_length = rng.uniform(24, 38)
    # The cuff's inner end must stay outside the armpit, or the sleeve folds over itself.
    angle = math.radians(sleeve_angle)
    max_cuff = 0.85 * (sleeve_length * math.cos(angle) + armpit_inset) / math.sin(angle)
    round_neck = bool(rng.random() < 0.6)
    return {
        'center_x': IMAGE_WIDTH / 2 + rng.uniform(-3, 3),
        'neck_y': rng.uniform(24, 40),
        'neck_half': shoulder_half * rng.uniform(0.27, 0.36),
        'neck_style': 'round' if round_neck else 'v',
        'neck_depth': rng.uniform(8, 18) if round_neck else rng.uniform(18, 34),
        'shoulder_half': shoulder_half,
        'shoulder_drop': rng.uniform(6, 14),
        'armpit_half': shoulder_half - armpit_inset,
        'armpit_drop': rng.uniform(40, 52),
        'hem_half': shoulder_half + rng.uniform(-12, 2),
        'hem_y': rng.uniform(212, 240),
        'sleeve_length': sleeve_length,
        'sleeve_angle': sleeve_angle,
        'cuff_width': min(rng.uniform(20, 30), max_cuff),
    }


def shirt_shoulder_y(shape):
    """Height of the shirt's shoulder points (its affine anchor) in the shirt image."""
    return shape['neck_y'] + shape['shoulder_drop']


def shirt_polygons(shape):
    """(body, shoulders, [right sleeve, left sleeve], neck opening) polygons as (x, y) lists.

    The body polygon is the whole shirt but the sleeves; "shoulders" is its part above the
    armpits, which covers the top of the arms on the person."""
    cx, neck_y = shape['center_x'], shape['neck_y']
    shoulder_y = shirt_shoulder_y(shape)
    armpit_y = shoulder_y + shape['armpit_drop']
    neck_half, neck_depth = shape['neck_half'], shape['neck_depth']
    if shape['neck_style'] == 'round':
        angles = np.linspace(0, math.pi, 9)
        neckline = [(cx + neck_half * math.cos(a), neck_y + neck_depth * math.sin(a)) for a in angles]
    else:
        neckline = [(cx + neck_half, neck_y), (cx, neck_y + neck_depth), (cx - neck_half, neck_y)]
    left_side = [(cx - neck_half, neck_y), (cx - shape['shoulder_half'], shoulder_y),
                 (cx - shape['armpit_half'], armpit_y)]
    right_side = [(cx + shape['armpit_half'], armpit_y), (cx + shape['shoulder_half'], shoulder_y)]
    hem = [(cx - shape['hem_half'], shape['hem_y']), (cx + shape['hem_half'], shape['hem_y'])]
    body = left_side + hem + right_side + neckline
    shoulders = left_side + right_side + neckline
    angle = math.radians(shape['sleeve_angle'])
    sleeves = []
    for side in (-1, +1):
        shoulder = point(cx + side * shape['shoulder_half'], shoulder_y)
        outer_cuff = shoulder + shape['sleeve_length'] * point(side * math.cos(angle), math.sin(angle))
        inner_cuff = outer_cuff + shape['cuff_width'] * point(-side * math.sin(angle), math.cos(angle))
        sleeves.append([tuple(shoulder), tuple(outer_cuff), tuple(inner_cuff),
                        (cx + side * shape['armpit_half'], armpit_y)])
    return body, shoulders, sleeves, neckline


def shirt_mask(parts):
    """Shirt-frame part labels -> float32 0/1 mask of the shirt (body and sleeves)."""
    return ((parts == SHIRT_BODY) | (parts == SHIRT_OVER_ARMS)).astype(np.float32)


def draw_shirt_parts(shape):
    """Shirt-frame part labels: SHIRT_BODY, SHIRT_OVER_ARMS, NECK_OPENING, 0 elsewhere."""
    body, shoulders, sleeves, neckline = shirt_polygons(shape)
    layer, draw = new_layer()
    draw.polygon(body, fill=SHIRT_BODY)
    for polygon in sleeves + [shoulders]:
        draw.polygon(polygon, fill=SHIRT_OVER_ARMS)
    draw.polygon(neckline, fill=NECK_OPENING)
    return np.asarray(layer)


def random_colour(rng, min_value=0.25, max_value=0.88):
    """A random fabric colour, float32 RGB; `value` bounds keep it off pure black and white."""
    hue, saturation, value = rng.random(), rng.uniform(0.2, 0.9), rng.uniform(min_value, max_value)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32) * 255


def stripe_mask(coordinate, rng):
    """Boolean stripes along a coordinate grid with a random period (6..28 px) and duty."""
    period = rng.uniform(6, 28)
    return ((coordinate + rng.uniform(0, period)) % period) < rng.uniform(0.3, 0.6) * period


@lru_cache(maxsize=8)
def logo_font(size):
    """Pillow's built-in font at `size` pixels (cached: loading it is slow)."""
    return ImageFont.load_default(size=size)


def draw_logo(rng, shape):
    """Mask of a logo on the chest: a simple shape or a capital letter."""
    layer, draw = new_layer()
    size = rng.uniform(26, 46)
    cx = shape['center_x'] + rng.uniform(-10, 10)
    cy = shirt_shoulder_y(shape) + shape['neck_depth'] + rng.uniform(18, 50)
    kind = ('circle', 'square', 'triangle', 'star', 'letter')[rng.integers(5)]
    half = size / 2
    if kind == 'circle':
        draw.ellipse(ellipse_box((cx, cy), half, half), fill=1)
    elif kind == 'square':
        draw.rectangle([cx - half, cy - half, cx + half, cy + half], fill=1)
    elif kind == 'triangle':
        draw.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=1)
    elif kind == 'star':
        angles = np.arange(10) * math.pi / 5 - math.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, half, 0.45 * half)
        draw.polygon([(cx + r * math.cos(a), cy + r * math.sin(a)) for a, r in zip(angles, radii)], fill=1)
    else:
        letter = chr(ord('A') + int(rng.integers(26)))
        draw.text((cx, cy), letter, fill=1, font=logo_font(int(size * 1.5)), anchor='mm',
                  stroke_width=int(size / 12), stroke_fill=1)   # the default font is thin
    return np.asarray(layer).astype(bool)


def texture_pattern(rng, kind, shape):
    """Where the second colour shows, [H,W] float32 in [0, 1] (None for a solid shirt)."""
    ys, xs = pixel_grid()
    if kind == 'stripes_h':
        return stripe_mask(ys, rng).astype(np.float32)
    if kind == 'stripes_v':
        return stripe_mask(xs, rng).astype(np.float32)
    if kind == 'checks':
        # Gingham: the second colour where the two stripe sets cross, half of it where one does.
        return (stripe_mask(xs, rng).astype(np.float32) + stripe_mask(ys, rng)) / 2
    if kind == 'logo':
        return draw_logo(rng, shape).astype(np.float32)
    return None


def render_texture(rng, kind, shape):
    """Fabric colours [3,H,W] float32 over the whole shirt image, with soft folds."""
    ys, xs = pixel_grid()
    base, other = random_colour(rng), random_colour(rng, 0.15, 0.95)
    pattern = texture_pattern(rng, kind, shape)
    fold_angle, wavelength = rng.uniform(0, math.pi), rng.uniform(40, 90)
    fold_phase = (xs * math.cos(fold_angle) + ys * math.sin(fold_angle)) * (2 * math.pi / wavelength)
    folds = 1 + rng.uniform(0.02, 0.05) * np.sin(fold_phase + rng.uniform(0, 2 * math.pi))
    texture = np.empty((3, IMAGE_HEIGHT, IMAGE_WIDTH), np.float32)
    for channel in range(3):
        plane = folds * base[channel]
        if pattern is not None:
            plane += folds * pattern * (other[channel] - base[channel])
        texture[channel] = plane
    return texture


def in_shop_images(rng, texture, parts):
    """The in-shop cloth (RGB uint8 [H,W,3] on white, with mild noise) and its mask (uint8 0/255)."""
    off_shirt = shirt_mask(parts) == 0
    cloth = uniform_noise(rng, texture.shape, 1.5)
    cloth += texture
    for plane in cloth:
        np.copyto(plane, 255, where=off_shirt)
    return interleave(cloth), (~off_shirt).astype(np.uint8) * 255


def interleave(planes):
    """Float planes [3,H,W] -> RGB uint8 [H,W,3], clipped to 0..255 (clips `planes` in place)."""
    channels = np.clip(planes, 0, 255, out=planes).astype(np.uint8)
    rgb = np.empty(channels.shape[1:] + (3,), np.uint8)
    for index, channel in enumerate(channels):   # faster than a transposed copy
        rgb[..., index] = channel
    return rgb


# ----------------------------------------------------------------------------------------
# The warp: affine placement + thin-plate spline
# ----------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def tps_system():
    """The 5x5 control grid [N,2] (x varying slowest, as in networks.TpsGridGen) and the inverse of
    its TPS system matrix [[K, P], [P^T, 0]], in float64 numpy.

    numpy, not networks.py's torch version: the generator runs in forked worker processes, where
    torch ops can deadlock on the parent's thread pool."""
    axis = np.linspace(-1, 1, TPS_GRID_SIZE)
    p_y, p_x = np.meshgrid(axis, axis)
    control = np.stack([p_x.ravel(), p_y.ravel()], axis=1)
    n = len(control)
    affine_part = np.hstack([np.ones((n, 1)), control])
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = tps_radial(((control[:, None] - control[None]) ** 2).sum(-1))
    system[:n, n:], system[n:, :n] = affine_part, affine_part.T
    return control, np.linalg.inv(system)


def tps_radial(squared_distance):
    """U(r) = r^2 log r^2 (0 at r = 0)."""
    return squared_distance * np.log(np.maximum(squared_distance, 1e-20))


def to_normalised(points):
    """Shirt pixels [N,2] -> the [-1, 1] coordinates of the TPS control grid."""
    return points / np.array([IMAGE_WIDTH - 1, IMAGE_HEIGHT - 1]) * 2 - 1


def tps_displacement(points, offsets):
    """Displacement (pixels, float32 [N,2]) at shirt-frame points [N,2] of the TPS that
    interpolates `offsets` [5,5,2] (pixels) at the control grid."""
    control, system_inverse = tps_system()
    control = control.astype(np.float32)
    # offsets are [row, column, xy]; the control points run with x slowest, so columns go first.
    values = np.vstack([np.asarray(offsets, dtype=np.float64).transpose(1, 0, 2).reshape(-1, 2), np.zeros((3, 2))])
    # float32 halves the time; its rounding is ~1e-5 pixel.
    weights = (system_inverse @ values).astype(np.float32)
    normalised = to_normalised(points).astype(np.float32)
    squared = ((normalised[:, None, 0] - control[None, :, 0]) ** 2
               + (normalised[:, None, 1] - control[None, :, 1]) ** 2)
    return (tps_radial(squared) @ weights[:-3] + weights[-3]
            + normalised[:, :1] * weights[-2] + normalised[:, 1:] * weights[-1])


def sample_tps_offsets(rng):
    """Smooth random control-point offsets [5,5,2], RMS 3..9 shirt pixels."""
    raw = rng.standard_normal((TPS_GRID_SIZE, TPS_GRID_SIZE, 2))
    padded = np.pad(raw, ((1, 1), (1, 1), (0, 0)), mode='edge')
    smooth = sum(padded[dy:dy + TPS_GRID_SIZE, dx:dx + TPS_GRID_SIZE] for dy in range(3) for dx in range(3))
    return smooth * (rng.uniform(3, 9) / np.sqrt(np.mean(smooth ** 2)))


def sample_placement(rng, shape, figure):
    """Affine [2,3] from shirt pixels to person pixels: shirt shoulders a little outside and
    above the shoulder keypoints, hem -0.05..0.3 head heights below the hips, slight shear."""
    u = figure.unit
    across = figure.l_shoulder - figure.r_shoulder
    across /= np.linalg.norm(across)
    down = point(-across[1], across[0])
    outward, lift = u * rng.uniform(0.08, 0.18), u * rng.uniform(0.1, 0.16)
    r_target = figure.r_shoulder - outward * across - lift * down
    l_target = figure.l_shoulder + outward * across - lift * down
    middle = (r_target + l_target) / 2
    hip_middle = (figure.r_hip + figure.l_hip) / 2
    hem_distance = (hip_middle - middle) @ down + u * rng.uniform(-0.05, 0.3)
    scale_x = np.linalg.norm(l_target - r_target) / (2 * shape['shoulder_half'])
    scale_y = hem_distance / (shape['hem_y'] - shirt_shoulder_y(shape))
    sheared_down = down + rng.uniform(-0.06, 0.06) * across
    linear = np.stack([across * scale_x, sheared_down * scale_y], axis=1)
    anchor = point(shape['center_x'], shirt_shoulder_y(shape))
    return np.hstack([linear, (middle - linear @ anchor)[:, None]])


def warp_bounding_box(params):
    """Person-frame box (x0, y0, x1, y1), end-exclusive, outside which the warped shirt is empty:
    the shirt's bounding box, grown by twice the largest offset, mapped by the affine."""
    body, _, sleeves, _ = shirt_polygons(params['shirt'])
    corners = np.array(body + [p for sleeve in sleeves for p in sleeve])
    margin = 2 * np.abs(np.asarray(params['tps_offsets'])).max() + 2
    (x0, y0), (x1, y1) = corners.min(0) - margin, corners.max(0) + margin
    box = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
    affine = np.asarray(params['affine'])
    mapped = box @ affine[:, :2].T + affine[:, 2]
    lo, hi = np.floor(mapped.min(0)), np.ceil(mapped.max(0)) + 1
    return (int(np.clip(lo[0], 0, IMAGE_WIDTH)), int(np.clip(lo[1], 0, IMAGE_HEIGHT)),
            int(np.clip(hi[0], 0, IMAGE_WIDTH)), int(np.clip(hi[1], 0, IMAGE_HEIGHT)))


def interpolate_rows(values, count, step):
    """Linear interpolation of `values` [n,m], known every `step` rows, at rows 0..count-1."""
    position = np.arange(count, dtype=np.float32) / step
    below = np.minimum(position.astype(np.intp), len(values) - 2)
    weight = (position - below)[:, None]
    return values[below] * (1 - weight) + values[below + 1] * weight


def source_points(params, box):
    """Shirt-frame positions (xs, ys), float32 [h,w] each, shown at the person pixels of
    `box`: q + tps(q) with q = A^-1 p.

    The TPS is evaluated every TPS_EVALUATION_STEP pixels and interpolated linearly in
    between, which moves positions by up to ~0.25 pixel from the exact spline (most near
    control points). The ground truth is this warp, so it stays exact.
    """
    x0, y0, x1, y1 = box
    step = TPS_EVALUATION_STEP
    coarse_x = x0 + step * np.arange((x1 - 1 - x0) // step + 2)
    coarse_y = y0 + step * np.arange((y1 - 1 - y0) // step + 2)
    grid_x, grid_y = np.meshgrid(coarse_x, coarse_y)
    person_points = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).astype(np.float64)
    affine = np.asarray(params['affine'])
    shirt_points = (person_points - affine[:, 2]) @ np.linalg.inv(affine[:, :2]).T
    source = (shirt_points + tps_displacement(shirt_points, params['tps_offsets'])).astype(np.float32)
    planes = []
    for coordinate in source.T:
        coarse = coordinate.reshape(len(coarse_y), len(coarse_x))
        # Rows first, while the array is small; float32 keeps the big one small too.
        planes.append(interpolate_rows(interpolate_rows(coarse, y1 - y0, step).T, x1 - x0, step).T)
    return planes


class BilinearTaps:
    """Where and how much of the four neighbours a bilinear sample at (xs, ys) reads, for
    reuse across channels. Positions outside the image read zeros."""

    def __init__(self, xs, ys):
        width, height = IMAGE_WIDTH, IMAGE_HEIGHT
        xs = np.clip(xs + 1, 0, width + 1)       # +1: coordinates in the zero-padded plane
        ys = np.clip(ys + 1, 0, height + 1)
        x0 = np.minimum(xs.astype(np.intp), width)
        y0 = np.minimum(ys.astype(np.intp), height)
        self.wx = (xs - x0).astype(np.float32)
        self.wy = (ys - y0).astype(np.float32)
        self.top_left = y0 * (width + 2) + x0
        self.bottom_left = self.top_left + width + 2

    def sample(self, plane):
        """Samples [N] float32 of one [H,W] plane."""
        # Channel by channel, with np.take: several times faster than fancy indexing of
        # [H,W,C], whose large temporaries dominate the time.
        flat = np.pad(np.asarray(plane, dtype=np.float32), 1).ravel()
        top_left, bottom_left = np.take(flat, self.top_left), np.take(flat, self.bottom_left)
        top = top_left + (np.take(flat, self.top_left + 1) - top_left) * self.wx
        bottom = bottom_left + (np.take(flat, self.bottom_left + 1) - bottom_left) * self.wx
        return top + (bottom - top) * self.wy


def warp_planes(planes, params):
    """Warp shirt-frame planes (a list of [H,W] arrays) into the person frame with one
    person's warp parameters (an entry of warp_params.json). Returns a list of float32 [H,W].

    Person pixel p (pixel centres at integer coordinates) gets the bilinear sample of each
    plane at ``source_points``; zero where that lies outside the shirt image, and outside
    ``warp_bounding_box``.
    """
    x0, y0, x1, y1 = box = warp_bounding_box(params)
    warped = [np.zeros((IMAGE_HEIGHT, IMAGE_WIDTH), np.float32) for _ in planes]
    if x1 <= x0 or y1 <= y0:
        return warped
    source_x, source_y = source_points(params, box)
    taps = BilinearTaps(source_x.ravel(), source_y.ravel())
    for plane, out in zip(planes, warped):
        out[y0:y1, x0:x1] = taps.sample(plane).reshape(y1 - y0, x1 - x0)
    return warped


def covered(warped_mask):
    """A warped 0/1 mask -> boolean: at least half covered."""
    return warped_mask >= 0.5


def ground_truth_warped_mask(params):
    """The ground-truth warped shirt mask [H,W] bool for one person's entry in warp_params.json.

    It is the shirt silhouette redrawn from params['shirt'], warped by params['affine'] and
    params['tps_offsets'] (see ``warp_planes``), before arms and head occlude it. Where
    nothing covers the shirt, it equals the parse map's label 5 exactly.
    """
    return covered(warp_planes([shirt_mask(draw_shirt_parts(params['shirt']))], params)[0])


def load_warp_params(dataroot, split):
    """{person id: params} from <dataroot>/<split>/warp_params.json."""
    with open(osp.join(dataroot, split, 'warp_params.json')) as f:
        return json.load(f)['persons']


# ----------------------------------------------------------------------------------------
# Composing the person
# ----------------------------------------------------------------------------------------

def compose_labels(back, arms, head, on_shirt, over_arms, opening):
    """Parse labels [H,W] and the facial-detail codes, from the layers back to front:
    back layer, skin in the neck opening, shirt, arms, the shirt's sleeves and shoulders,
    head. The last three arguments are the warped shirt, over-arms and neck-opening masks
    (bool)."""
    labels = back.copy()
    labels[opening & ~on_shirt] = FACE
    labels[on_shirt] = UPPER_CLOTHES
    labels[arms > 0] = arms[arms > 0]
    labels[on_shirt & over_arms] = UPPER_CLOTHES
    labels[head > 0] = head[head > 0]
    details = np.where(np.isin(labels, (EYE_CODE, MOUTH_CODE)), labels, 0)
    labels[details > 0] = FACE
    return labels, details


def colour_person(rng, labels, details, warped_rgb, colours):
    """Person RGB uint8 [H,W,3] from the labels: flat part colours, the warped shirt
    ([3,H,W]), dark outlines, a soft light gradient and sensor noise (so it is not
    trivially flat)."""
    lut = np.zeros((256, 3), np.float32)
    lut[BACKGROUND], lut[HAIR], lut[PANTS] = colours.background, colours.hair, colours.pants
    lut[FACE], lut[RIGHT_ARM], lut[LEFT_ARM] = colours.skin, colours.skin * 0.97, colours.skin * 0.94
    lut[[RIGHT_LEG, LEFT_LEG]] = colours.skin * 0.92
    lut[[RIGHT_SHOE, LEFT_SHOE]] = colours.shoes
    lut[EYE_CODE], lut[MOUTH_CODE] = (45, 30, 28), colours.skin * np.array([0.75, 0.5, 0.5])

    edges = np.zeros(labels.shape, bool)
    edges[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edges[1:] |= labels[1:] != labels[:-1]
    ys, xs = pixel_grid()
    gx, gy = rng.uniform(-0.06, 0.06, 2)
    light = 1 + gx * (xs / IMAGE_WIDTH - 0.5) * 2 + gy * (ys / IMAGE_HEIGHT - 0.5) * 2
    shading = np.where(edges, light * 0.85, light)

    # Plane by plane and in place: masked writes to [H,W,3] arrays cost more than the arithmetic.
    index = np.where(details > 0, details, labels)
    on_shirt = labels == UPPER_CLOTHES
    rgb = uniform_noise(rng, (3, IMAGE_HEIGHT, IMAGE_WIDTH), rng.uniform(1.5, 3.5))
    for channel in range(3):
        plane = np.take(lut[:, channel], index)
        np.copyto(plane, warped_rgb[channel], where=on_shirt)
        plane *= shading
        rgb[channel] += plane
    return interleave(rgb)


def shirt_planes(texture, parts):
    """The planes warped onto the person: shirt mask, over-arms mask, neck opening, and the
    texture's R, G, B. The texture covers the whole shirt image, so bilinear samples at
    the shirt's edge do not pick up the white background."""
    return [shirt_mask(parts), parts == SHIRT_OVER_ARMS, parts == NECK_OPENING] + list(texture)


# ----------------------------------------------------------------------------------------
# One person, end to end
# ----------------------------------------------------------------------------------------

def person_rng(seed, split, index):
    """The generator of one person: depends only on (seed, split, index)."""
    return np.random.default_rng([seed, SPLITS.index(split), 1, index])


def save_parse(labels, path):
    """Labels [H,W] -> palette PNG whose pixel values are the labels, coloured by LIP_PALETTE."""
    image = Image.fromarray(labels.astype(np.uint8), 'L')
    image.putpalette([channel for colour in LIP_PALETTE for channel in colour])
    image.save(path, compress_level=PNG_COMPRESS_LEVEL)


def save_keypoints(keypoints, path):
    """OpenPose JSON as VITON has it: one person, old key names, empty face and hands."""
    people = [{'pose_keypoints': keypoints, 'face_keypoints': [],
               'hand_left_keypoints': [], 'hand_right_keypoints': []}]
    with open(path, 'w') as f:
        json.dump({'version': 1.0, 'people': people}, f)


@dataclass
class PersonSample:
    """Everything drawn for one person, before it is written."""
    person: np.ndarray       # RGB uint8 [H,W,3]
    labels: np.ndarray       # LIP labels uint8 [H,W]
    cloth: np.ndarray        # in-shop RGB uint8 [H,W,3]
    cloth_mask: np.ndarray   # uint8 [H,W], 0/255
    keypoints: list          # OpenPose COCO-18, flat [x, y, confidence] * 18
    params: dict             # this person's entry of warp_params.json


def render_person(seed, split, index, textured, occluded):
    """Draw person `index` of `split` and their shirt; depends only on the arguments."""
    rng = person_rng(seed, split, index)
    figure = sample_figure(rng, occluded)
    colours = sample_colours(rng)
    texture_kind = TEXTURES[rng.integers(len(TEXTURES))] if textured else SOLID
    shape = sample_shirt_shape(rng)
    params = {
        'texture': texture_kind, 'textured': textured,
        'arms_cross': bool(figure.crossing_arms), 'crossing_arms': list(figure.crossing_arms),
        'shirt': shape,
        'affine': sample_placement(rng, shape, figure).tolist(),
        'tps_offsets': sample_tps_offsets(rng).tolist(),
    }
    parts = draw_shirt_parts(shape)
    texture = render_texture(rng, texture_kind, shape)
    cloth, cloth_mask = in_shop_images(rng, texture, parts)
    on_shirt, over_arms, opening, *warped_rgb = warp_planes(shirt_planes(texture, parts), params)
    labels, details = compose_labels(draw_back_layer(figure), draw_arm_layer(figure), draw_head_layer(figure),
                                     covered(on_shirt), covered(over_arms), covered(opening))
    person = colour_person(rng, labels, details, np.stack(warped_rgb), colours)
    return PersonSample(person, labels, cloth, cloth_mask, figure_keypoints(figure, rng), params)


def write_person(sample, folder, person_id):
    """Write one person's six files into `folder` (<dataroot>/<split>)."""
    Image.fromarray(sample.person).save(osp.join(folder, 'image', f'{person_id}_0.jpg'), quality=JPEG_QUALITY)
    save_parse(sample.labels, osp.join(folder, 'image-parse', f'{person_id}_0.png'))
    body_mask = Image.fromarray(((sample.labels > 0) * 255).astype(np.uint8))
    body_mask.save(osp.join(folder, 'image-mask', f'{person_id}_0.png'), compress_level=PNG_COMPRESS_LEVEL)
    Image.fromarray(sample.cloth).save(osp.join(folder, 'cloth', f'{person_id}_1.jpg'), quality=JPEG_QUALITY)
    Image.fromarray(sample.cloth_mask).save(osp.join(folder, 'cloth-mask', f'{person_id}_1.jpg'), quality=JPEG_QUALITY)
    save_keypoints(sample.keypoints, osp.join(folder, 'pose', f'{person_id}_0_keypoints.json'))


def generate_person(task):
    """Draw and write one person; returns their warp_params entry."""
    dataroot, split, index, person_id, seed, textured, occluded = task
    sample = render_person(seed, split, index, textured, occluded)
    write_person(sample, osp.join(dataroot, split), person_id)
    return dict(cloth=f'{person_id}_1.jpg', **sample.params)


# ----------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------

def chosen_indices(rng, count, share):
    """Exactly round(share * count) of range(count), chosen at random, as a set."""
    return set(rng.permutation(count)[:int(round(share * count))].tolist())


def plan_split(seed, split, count, textured_share, occluded_share):
    """(textured flags, occluded flags, cyclic derangement for the unpaired list)."""
    rng = np.random.default_rng([seed, SPLITS.index(split), 0])
    textured, occluded = chosen_indices(rng, count, textured_share), chosen_indices(rng, count, occluded_share)
    # Giving each person the next one's shirt in a random cycle leaves nobody with their own.
    cycle = rng.permutation(count)
    other = np.empty(count, dtype=np.intp)
    other[cycle] = np.roll(cycle, -1)
    return ([i in textured for i in range(count)], [i in occluded for i in range(count)], other.tolist())


def existing_dataset_entries(dataroot):
    """The names in `dataroot` that belong to a dataset (ours or not), of either layout."""
    names = PAIR_LISTS + SPLITS + MPV_FOLDERS + MPV_LISTS + (MARKER_FILE,)
    return [name for name in names if osp.exists(osp.join(dataroot, name))]


def prepare_dataroot(dataroot, overwrite, layout='viton'):
    """Make the output folders. An existing dataset is deleted only if `overwrite` is set and
    our marker file shows that this script made it: never someone's real data."""
    existing = existing_dataset_entries(dataroot)
    if existing:
        if not overwrite:
            raise DatasetExistsError(
                f'{dataroot} already holds a dataset ({", ".join(existing)}); refusing to overwrite it. '
                f'Pass --overwrite to replace it, or choose another --dataroot.')
        if not osp.isfile(osp.join(dataroot, MARKER_FILE)):
            raise DatasetExistsError(
                f'{dataroot} holds a dataset ({", ".join(existing)}) that synthetic_data.py did not make '
                f'(no {MARKER_FILE}); refusing to delete it even with --overwrite. '
                f'Choose another --dataroot, or remove it yourself.')
        # Whole split folders go: anything derived from the old persons (GMM warps) is stale.
        for name in existing:
            path = osp.join(dataroot, name)
            shutil.rmtree(path) if osp.isdir(path) else os.remove(path)
    folders = MPV_FOLDERS if layout == 'mpv' else [osp.join(split, sub) for split in SPLITS for sub in SUBFOLDERS]
    for folder in folders:
        os.makedirs(osp.join(dataroot, folder), exist_ok=True)


def write_lines(path, lines):
    """A text file with one line per item."""
    with open(path, 'w') as f:
        f.writelines(line + '\n' for line in lines)


def write_pair_lists(dataroot, train_ids, test_ids, test_other):
    """The four pair lists; test person i wears test person test_other[i]'s shirt when unpaired."""
    write_lines(osp.join(dataroot, 'train_pairs.txt'), [f'{i}_0.jpg {i}_1.jpg' for i in train_ids])
    paired = [f'{i}_0.jpg {i}_1.jpg' for i in test_ids]
    unpaired = [f'{i}_0.jpg {test_ids[j]}_1.jpg' for i, j in zip(test_ids, test_other)]
    write_lines(osp.join(dataroot, 'test_pairs_paired.txt'), paired)
    write_lines(osp.join(dataroot, 'test_pairs_unpaired.txt'), unpaired)
    write_lines(osp.join(dataroot, 'test_pairs.txt'), unpaired + paired)


def write_json(path, content):
    """Compact JSON: indenting would make json use its slow pure-Python encoder."""
    with open(path, 'w') as f:
        json.dump(content, f)


WARP_PARAMS_DESCRIPTION = (
    'Per person id: cloth (in-shop file), texture (solid|stripes_h|stripes_v|checks|logo), textured, '
    'arms_cross, crossing_arms, shirt (silhouette parameters in shirt-image pixels), affine (2x3, shirt '
    'pixel (x, y, 1) -> person pixel), tps_offsets ([5][5][2] shirt pixels at a 5x5 control grid spanning '
    'the shirt image, rows from the top): person pixel p shows shirt point q + tps(q), q = affine^-1 p '
    '(tps evaluated every 4 person pixels, linear in between). '
    'synthetic_data.ground_truth_warped_mask(params) rebuilds the warped shirt mask.')


def keep_freed_memory():
    """Let glibc reuse freed memory instead of handing each ~600 KB image array back to the
    kernel and faulting it in again, which costs a fifth of the run time. Process-wide, so
    only the pool workers call it. A no-op where libc is not glibc."""
    try:
        mallopt = ctypes.CDLL('libc.so.6').mallopt
    except (OSError, AttributeError):
        return
    mallopt(GLIBC_M_MMAP_THRESHOLD, 64 << 20)
    mallopt(GLIBC_M_TRIM_THRESHOLD, 128 << 20)


def run_tasks(function, tasks, workers):
    """``function`` over the tasks, in order, in `workers` processes."""
    if workers <= 1 or len(tasks) < 2:
        return [function(task) for task in tasks]
    with multiprocessing.Pool(workers, initializer=keep_freed_memory) as pool:
        return pool.map(function, tasks, chunksize=max(1, len(tasks) // (8 * workers)))


def check_arguments(n_train, n_test, seed, textured_share, occluded_share):
    """Raise ValueError for arguments generate_dataset cannot honour."""
    if n_train < 1 or n_test < 2:
        raise ValueError('need n_train >= 1 and n_test >= 2 (the unpaired list pairs test persons with each other)')
    if seed < 0:
        raise ValueError(f'seed must be >= 0, got {seed}')
    for name, share in (('textured_share', textured_share), ('occluded_share', occluded_share)):
        if not 0 <= share <= 1:
            raise ValueError(f'{name} must be within [0, 1], got {share}')


def generate_dataset(dataroot, n_train, n_test, seed, textured_share=0.5, occluded_share=0.3,
                     overwrite=False, workers=1):
    """Write the dataset (see the module docstring) and return a summary dict.

    Same arguments -> byte-identical files, whatever `workers` is. Raises DatasetExistsError
    when `dataroot` already holds a dataset and `overwrite` is false (or it is not ours).
    """
    check_arguments(n_train, n_test, seed, textured_share, occluded_share)
    start = time.perf_counter()
    prepare_dataroot(dataroot, overwrite)

    ids = {'train': [f'{i + 1:06d}' for i in range(n_train)],
           'test': [f'{n_train + i + 1:06d}' for i in range(n_test)]}
    plans = {split: plan_split(seed, split, len(ids[split]), textured_share, occluded_share) for split in SPLITS}
    tasks = [(dataroot, split, i, person_id, seed, plans[split][0][i], plans[split][1][i])
             for split in SPLITS for i, person_id in enumerate(ids[split])]
    persons = {split: {} for split in SPLITS}
    for (_, split, _, person_id, *_), params in zip(tasks, run_tasks(generate_person, tasks, workers)):
        persons[split][person_id] = params

    for split in SPLITS:
        write_json(osp.join(dataroot, split, 'warp_params.json'),
                   {'description': WARP_PARAMS_DESCRIPTION, 'tps_grid_size': TPS_GRID_SIZE, 'persons': persons[split]})
    write_pair_lists(dataroot, ids['train'], ids['test'], plans['test'][2])
    settings = {'generator': 'synthetic_data.py', 'seed': seed, 'n_train': n_train, 'n_test': n_test,
                'textured_share': textured_share, 'occluded_share': occluded_share}
    write_json(osp.join(dataroot, MARKER_FILE), settings)

    seconds = time.perf_counter() - start
    return dict(settings, dataroot=dataroot, seconds=seconds, pairs_per_second=(n_train + n_test) / seconds,
                textured={split: sum(plans[split][0]) for split in SPLITS},
                occluded={split: sum(plans[split][1]) for split in SPLITS})

# ----------------------------------------------------------------------------------------
# Two poses of one person, in the MPV layout (MG-VTON)
# ----------------------------------------------------------------------------------------

def second_pose(rng, figure):
    """The same figure in another pose: body, head and legs as they are, the arms drawn anew, crossing the torso
    where they hung in the first pose and hanging where they crossed (so one of the two poses is a hard case)."""
    crossing = () if figure.crossing_arms else choose_crossing_arms(rng, True)
    r_elbow, r_wrist = sample_arm(rng, figure.r_shoulder, -1, figure.unit, 'right' in crossing)
    l_elbow, l_wrist = sample_arm(rng, figure.l_shoulder, +1, figure.unit, 'left' in crossing)
    return replace(figure, r_elbow=r_elbow, r_wrist=r_wrist, l_elbow=l_elbow, l_wrist=l_wrist, crossing_arms=crossing)


@dataclass
class Shirt:
    """One in-shop shirt: its part labels, its fabric and its photo and mask."""
    shape: dict
    texture_kind: str
    parts: np.ndarray
    texture: np.ndarray
    cloth: np.ndarray        # RGB uint8 [H,W,3]
    cloth_mask: np.ndarray   # uint8 [H,W], 0/255


def design_shirt(seed, split, index, textured):
    """Identity ``index``'s shirt; depends only on the arguments."""
    rng = np.random.default_rng([seed, SPLITS.index(split), 3, index])
    texture_kind = TEXTURES[rng.integers(len(TEXTURES))] if textured else SOLID
    shape = sample_shirt_shape(rng)
    parts = draw_shirt_parts(shape)
    texture = render_texture(rng, texture_kind, shape)
    cloth, cloth_mask = in_shop_images(rng, texture, parts)
    return Shirt(shape, texture_kind, parts, texture, cloth, cloth_mask)


def placed(rng, shirt, figure):
    """The warp parameters (affine + TPS) that put ``shirt`` on ``figure``."""
    return {'shirt': shirt.shape, 'affine': sample_placement(rng, shirt.shape, figure).tolist(),
            'tps_offsets': sample_tps_offsets(rng).tolist()}


def dressed(figure, colours, shirt, params, colour_seed):
    """(RGB uint8 [H,W,3], labels [H,W]) of ``figure`` wearing ``shirt`` placed by ``params``. The light and the
    noise come from ``colour_seed``: two drawings with one seed have the same pixel wherever their labels agree
    on the pixel and on its neighbours (the outlines)."""
    on_shirt, over_arms, opening, *warped_rgb = warp_planes(shirt_planes(shirt.texture, shirt.parts), params)
    labels, details = compose_labels(draw_back_layer(figure), draw_arm_layer(figure), draw_head_layer(figure),
                                     covered(on_shirt), covered(over_arms), covered(opening))
    person = colour_person(np.random.default_rng(colour_seed), labels, details, np.stack(warped_rgb), colours)
    return person, labels


def sideways_shift(rng, labels):
    """Pixels (signed, integer) the second pose moves sideways: 6..MPV_MOST_SHIFT, less where a figure of
    ``labels`` (the label maps of the drawings) would come closer than the shift to an image side."""
    columns = np.flatnonzero(np.any(np.stack(labels) > 0, axis=(0, 1)))
    left, right = int(columns[0]), IMAGE_WIDTH - 1 - int(columns[-1])
    side = 1 if rng.random() < 0.5 else -1
    room = right if side > 0 else left
    return side * min(int(rng.integers(6, MPV_MOST_SHIFT + 1)), room)


def shifted(array, shift):
    """``array`` [H,W,...] moved ``shift`` pixels right (left where negative); the strip it uncovers mirrors the
    columns beside it (background, as sideways_shift leaves room), so the light gradient runs on without a seam."""
    if shift == 0:
        return array.copy()
    pad = [(0, 0)] * array.ndim
    pad[1] = (shift, 0) if shift > 0 else (0, -shift)
    kept = array[:, :IMAGE_WIDTH - shift] if shift > 0 else array[:, -shift:]
    return np.pad(kept, pad, mode='symmetric')


def shifted_keypoints(flat, shift):
    """Flat COCO-18 keypoints moved ``shift`` pixels sideways; a point that leaves the image is 0, 0, 0."""
    moved = []
    for x, y, confidence in zip(flat[0::3], flat[1::3], flat[2::3]):
        inside = confidence > 0 and 0 <= x + shift < IMAGE_WIDTH
        moved += [round(x + shift, 3), y, confidence] if inside else [0, 0, 0]
    return moved


@dataclass
class TwoPoses:
    """One identity drawn for the MPV layout: {photo name: (RGB, labels, keypoints)} of its persons, its shirt."""
    persons: dict
    shirt: Shirt
    shift: int


def mpv_names(person_id):
    """The MPV names (below all/) of an identity's photos, in a folder of its own as MPV's are."""
    folder = f'{person_id}/{person_id}'
    return {'A': f'{folder}_A.jpg', 'B': f'{folder}_B.jpg', 'cloth': f'{folder}_cloth.jpg'}


def in_other_cloth(name, other_id):
    """The photo name of the person of ``name`` (pose A or B) wearing identity ``other_id``'s shirt."""
    return name.replace('.jpg', f'_in_{other_id}.jpg')


def source_pose_answer(target_name):
    """The photo of person B's identity in pose A wearing person B's shirt (the try-on a method that keeps the
    source pose can at best give): the same name with pose B replaced by pose A."""
    folder, _, file_name = target_name.rpartition('/')
    return f'{folder}/{file_name.replace("_B", "_A", 1)}'


def draw_two_poses(seed, split, index, person_id, textured, occluded, other):
    """Identity ``index`` in poses A and B in its own shirt, and with ``other`` = (id, Shirt) also in that shirt in
    both poses (the ground truth of a try-on with another cloth). Depends only on the arguments."""
    rng = person_rng(seed, split, index)
    figure_a = sample_figure(rng, occluded)
    figure_b = second_pose(rng, figure_a)
    colours = sample_colours(rng)
    colour_seed = [seed, SPLITS.index(split), 4, index]
    shirt = design_shirt(seed, split, index, textured)
    own = placed(rng, shirt, figure_a)   # the shoulders and hips are the same in both poses
    names = mpv_names(person_id)
    drawings = {names['A']: (figure_a, shirt, own), names['B']: (figure_b, shirt, own)}
    if other is not None:
        other_id, other_shirt = other
        on_other = placed(rng, other_shirt, figure_a)
        drawings[in_other_cloth(names['A'], other_id)] = (figure_a, other_shirt, on_other)
        drawings[in_other_cloth(names['B'], other_id)] = (figure_b, other_shirt, on_other)
    rendered = {name: (figure, dressed(figure, colours, worn, params, colour_seed))
                for name, (figure, worn, params) in drawings.items()}
    shift = sideways_shift(rng, [labels for _, (_, labels) in rendered.values()])
    persons = {}
    for name, (figure, (rgb, labels)) in rendered.items():
        # The confidences are drawn once per pose: the same pose has the same keypoints in either shirt.
        keypoints = figure_keypoints(figure, np.random.default_rng([seed, SPLITS.index(split), 5, index,
                                                                    figure is figure_b]))
        move = shift if figure is figure_b else 0
        persons[name] = (shifted(rgb, move), shifted(labels, move), shifted_keypoints(keypoints, move))
    return TwoPoses(persons, shirt, shift)


def write_two_poses(dataroot, drawing, person_id):
    """Write an identity's photos, parses, keypoints, shirt and shirt mask in the MPV layout."""
    for folder in MPV_FOLDERS:
        os.makedirs(osp.join(dataroot, folder, person_id), exist_ok=True)
    for name, (rgb, labels, keypoints) in drawing.persons.items():
        stem = name[:-len('.jpg')]
        Image.fromarray(rgb).save(osp.join(dataroot, PHOTO_FOLDER, name), quality=JPEG_QUALITY)
        save_parse(labels, osp.join(dataroot, PARSE_FOLDER, f'{stem}.png'))
        save_keypoints(keypoints, osp.join(dataroot, POSE_FOLDER, f'{stem}_keypoints.json'))
    cloth = mpv_names(person_id)['cloth']
    Image.fromarray(drawing.shirt.cloth).save(osp.join(dataroot, PHOTO_FOLDER, cloth), quality=JPEG_QUALITY)
    Image.fromarray(drawing.shirt.cloth_mask).save(osp.join(dataroot, PHOTO_FOLDER, cloth.replace('.jpg', '_mask.jpg')),
                                                   quality=JPEG_QUALITY)


def generate_identity(task):
    """Draw and write one identity of the MPV layout; returns its entry of the marker file."""
    dataroot, split, index, person_id, seed, textured, occluded, other = task
    other_shirt = None
    if other is not None:
        other_id, other_index, other_textured = other
        other_shirt = (other_id, design_shirt(seed, split, other_index, other_textured))
    drawing = draw_two_poses(seed, split, index, person_id, textured, occluded, other_shirt)
    write_two_poses(dataroot, drawing, person_id)
    return {'texture': drawing.shirt.texture_kind, 'shift': drawing.shift}


def triplet_lines(split, person_id, other_id=None):
    """The triplet list's lines of an identity: its own shirt (and another identity's, with ``other_id``)."""
    names = mpv_names(person_id)
    lines = [f'{names["A"]} {names["B"]} {names["cloth"]} {split}']
    if other_id is not None:
        lines.append(f'{names["A"]} {in_other_cloth(names["B"], other_id)} {mpv_names(other_id)["cloth"]} {split}')
    return lines


def generate_mpv_dataset(dataroot, n_train, n_test, seed, textured_share=0.5, occluded_share=0.3,
                         overwrite=False, workers=1):
    """Write the two-pose dataset in the MPV layout (see mpv_dataset.py) and return a summary dict.

    Each identity is drawn in pose A and pose B (the arms anew, one pose with arms across the torso, the figure
    moved sideways) in its own shirt; each test identity also in another test identity's shirt, in both poses,
    so that a try-on with another cloth has its ground truth too. Lists: all_poseA_poseB_clothes_0607.txt (every
    line), test_own_cloth.txt and test_other_cloth.txt (the test lines by cloth)."""
    check_arguments(n_train, n_test, seed, textured_share, occluded_share)
    start = time.perf_counter()
    prepare_dataroot(dataroot, overwrite, 'mpv')
    ids = {'train': [f'{i + 1:06d}' for i in range(n_train)],
           'test': [f'{n_train + i + 1:06d}' for i in range(n_test)]}
    plans = {split: plan_split(seed, split, len(ids[split]), textured_share, occluded_share) for split in SPLITS}
    tasks = []
    for split in SPLITS:
        textured, occluded, others = plans[split]
        for i, person_id in enumerate(ids[split]):
            other = (ids[split][others[i]], others[i], textured[others[i]]) if split == 'test' else None
            tasks.append((dataroot, split, i, person_id, seed, textured[i], occluded[i], other))
    entries = dict(zip((task[3] for task in tasks), run_tasks(generate_identity, tasks, workers)))
    own = {split: [triplet_lines(split, person_id)[0] for person_id in ids[split]] for split in SPLITS}
    other = [triplet_lines('test', person_id, ids['test'][j])[1] for person_id, j in zip(ids['test'], plans['test'][2])]
    write_lines(osp.join(dataroot, TRIPLET_LIST), own['train'] + own['test'] + other)
    write_lines(osp.join(dataroot, 'test_own_cloth.txt'), own['test'])
    write_lines(osp.join(dataroot, 'test_other_cloth.txt'), other)
    settings = {'generator': 'synthetic_data.py', 'layout': 'mpv', 'seed': seed, 'n_train': n_train,
                'n_test': n_test, 'textured_share': textured_share, 'occluded_share': occluded_share}
    write_json(osp.join(dataroot, MARKER_FILE), {**settings, 'identities': entries})
    seconds = time.perf_counter() - start
    return dict(settings, dataroot=dataroot, seconds=seconds, pairs_per_second=(n_train + n_test) / seconds,
                textured={split: sum(plans[split][0]) for split in SPLITS},
                occluded={split: sum(plans[split][1]) for split in SPLITS})


def parse_args(argv=None):
    """Command-line options; their ranges meet check_arguments, so a bad value is a one-line usage error."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=flags.RangeHelpFormatter)
    parser.add_argument('--dataroot', required=True, help='output folder, e.g. demo/data')
    parser.add_argument('--n_train', type=flags.positive_int, default=200,
                        help='training persons (default: %(default)s)')
    # the unpaired list pairs test persons with each other
    parser.add_argument('--n_test', type=flags.int_at_least(2), default=20, help='test persons (default: %(default)s)')
    parser.add_argument('--seed', type=flags.seed, default=0, help='(default: %(default)s)')
    parser.add_argument('--textured_share', type=flags.share, default=0.5,
                        help='fraction of shirts that are striped, checked or carry a logo (rest: solid)')
    parser.add_argument('--occluded_share', type=flags.share, default=0.3,
                        help='fraction of persons whose forearm(s) cross in front of the torso')
    parser.add_argument('--workers', type=flags.non_negative_int, default=os.cpu_count() or 1,
                        help='processes drawing persons, 0 or 1: this one (the output does not depend on it)')
    parser.add_argument('--layout', choices=LAYOUTS, default='viton',
                        help="viton: one pose per person (CP-VTON, VITON, WUTON); mpv: each person in two poses, "
                             "MPV's layout (MG-VTON), see generate_mpv_dataset")
    parser.add_argument('--overwrite', action='store_true',
                        help='replace a dataset that this script wrote earlier in --dataroot (its folders go '
                             'entirely, GMM outputs in them included)')
    return parser.parse_args(argv)


def main(argv=None):
    """Command line: write the dataset and print a one-line summary."""
    args = parse_args(argv)
    try:
        generate = generate_mpv_dataset if args.layout == 'mpv' else generate_dataset
        summary = generate(args.dataroot, args.n_train, args.n_test, args.seed, textured_share=args.textured_share,
                           occluded_share=args.occluded_share, overwrite=args.overwrite, workers=args.workers)
    except DatasetExistsError as error:
        sys.exit(f'synthetic_data.py: {error}')
    textured = sum(summary['textured'].values())
    occluded = sum(summary['occluded'].values())
    poses = ' (each in two poses, MPV layout)' if args.layout == 'mpv' else ''
    print(f'wrote {args.n_train} train and {args.n_test} test persons{poses} ({textured} textured shirts, '
          f'{occluded} with crossing arms) to {args.dataroot} in {summary["seconds"]:.1f} s: '
          f'{summary["pairs_per_second"]:.0f} pairs/s with {args.workers} worker(s)')


if __name__ == '__main__':
    main()
