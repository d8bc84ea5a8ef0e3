"""CP-VTON's two stages, GMM and TOM (with the CP-VTON+ options): what each runs, its loss, its TensorBoard
grid and its results. The networks are networks.py's (the original's module); the data is cp_dataset.py's.

Results (test.py) in the result layout <result_dir>/<checkpoint file name>/<datamode>/:
    GMM: warp-cloth/<pair key> (warped cloth, [-1,1] -> 0..255) and warp-mask/<pair key> (0/255)
    TOM: try-on/<pair key>
"""
import torch
import torch.nn as nn

import flags
from cp_dataset import CPVTON_DATA, pair_key
from networks import (GMM, TOM_INPUT_CHANNELS, build_tom, build_vgg_loss, grid_interval_consistency, tom_tryon,
                      unwrap_model, warp, warp_cloth)
from stages import Stage
from visualization import save_images


def pair_keys(inputs):
    return [pair_key(p, c) for p, c in zip(inputs['im_name'], inputs['c_name'])]


# --------------------------------------------------------------------------- GMM

def run_gmm(model, inputs):
    """GMM forward and warp: returns dict(grid, theta, warped_cloth, warped_mask)."""
    grid, theta = model(inputs['agnostic'], inputs['cloth'])
    warped_cloth, warped_mask = warp_cloth(inputs['cloth'], inputs['cloth_mask'], grid)
    return {'grid': grid, 'theta': theta, 'warped_cloth': warped_cloth, 'warped_mask': warped_mask}


def gmm_visuals(inputs, out):
    """Rows: head/shape/pose . cloth/warped cloth/target . warped grid/overlay/person."""
    warped_grid = warp(inputs['grid_image'], out['grid'], 'zeros')
    return [[inputs['head'], inputs['shape'], inputs['pose_image']],
            [inputs['cloth'], out['warped_cloth'], inputs['parse_cloth']],
            [warped_grid, (out['warped_cloth'] + inputs['image']) * 0.5, inputs['image']]]


class GMMLoss(nn.Module):
    """L1 between the warped cloth and the cloth region of the person; with ``gic_weight`` > 0,
    plus that weight times CP-VTON+'s grid-interval-consistency loss of the grid."""

    def __init__(self, gic_weight=0.0):
        super().__init__()
        self.gic_weight = gic_weight

    def forward(self, inputs, out):
        loss_warp = nn.functional.l1_loss(out['warped_cloth'], inputs['parse_cloth'])
        if not self.gic_weight:
            return loss_warp, {'metric': loss_warp}
        loss_gic = grid_interval_consistency(out['grid'])
        loss = loss_warp + self.gic_weight * loss_gic
        return loss, {'metric': loss, 'Lwarp': loss_warp, 'Lgic': loss_gic}


def save_warp_results(inputs, out, results):
    """warp-cloth/ and warp-mask/ of the pairs: GMM's, and any other warp's in the same form."""
    names = pair_keys(inputs)
    save_images(out['warped_cloth'], names, results.kind_dir('warp-cloth'))
    save_images(out['warped_mask'] * 2 - 1, names, results.kind_dir('warp-mask'))


def check_gmm_options(parser, opt, training):
    if training:
        flags.check_gmm_trainable_size(parser, opt.fine_height, opt.fine_width)


def refuse_cpvton_representation_options(parser, opt, which):
    """The flags that shape CP-VTON's person representation (CP-VTON+'s) are an error for a method that does not
    read it; ``which`` completes the message, e.g. 'MG-VTON does not read'."""
    for name, original in (('reserved_regions', 'original'), ('body_shape', 'parse')):
        if getattr(opt, name, original) != original:
            parser.error(f'--{name} {getattr(opt, name)} shapes CP-VTON\'s person representation, which {which}')


def gmm_log_terms(values):
    line = 'loss: %4f' % values['metric']
    if 'Lgic' in values:
        line += ', warp: %.6f, gic: %.8f' % (values['Lwarp'], values['Lgic'])
    return line


# --------------------------------------------------------------------------- TOM

def build_tom_of(opt):
    return build_tom(TOM_INPUT_CHANNELS + (1 if getattr(opt, 'tom_mask_input', False) else 0))


def tom_input(model, inputs):
    """TOM's input: agnostic (22) + warped cloth (3), and the warped mask (1) for a 26-channel
    TOM (--tom_mask_input, CP-VTON+); the model's own input width decides."""
    parts = [inputs['agnostic'], inputs['cloth']]
    if unwrap_model(model).input_nc == TOM_INPUT_CHANNELS + 1:
        parts.append(inputs['cloth_mask'])
    return torch.cat(parts, 1)


def run_tom(model, inputs):
    """TOM forward and composition: returns dict(p_rendered, m_composite, p_tryon)."""
    outputs = model(tom_input(model, inputs))
    p_rendered, m_composite, p_tryon = tom_tryon(outputs, inputs['cloth'])
    return {'p_rendered': p_rendered, 'm_composite': m_composite, 'p_tryon': p_tryon}


def tom_visuals(inputs, out):
    """Rows: head/shape/pose . cloth/mask/composition mask . rendered/try-on/person."""
    return [[inputs['head'], inputs['shape'], inputs['pose_image']],
            [inputs['cloth'], inputs['cloth_mask'] * 2 - 1, out['m_composite'] * 2 - 1],
            [out['p_rendered'], out['p_tryon'], inputs['image']]]


TOM_MASK_TARGETS = {'warped_mask': 'cloth_mask', 'person_cloth': 'parse_cloth_mask'}   # option -> input key


class TOMLoss(nn.Module):
    """L1(try-on, person) + VGG(try-on, person) + L1(composition mask, target), the target being
    the warped-cloth mask (original) or the person's cloth region (``mask_target='person_cloth'``)."""

    def __init__(self, vgg_loss, mask_target='warped_mask'):
        super().__init__()
        self.vgg_loss = vgg_loss
        self.mask_key = TOM_MASK_TARGETS[mask_target]

    def forward(self, inputs, out):
        loss_l1 = nn.functional.l1_loss(out['p_tryon'], inputs['image'])
        loss_vgg = self.vgg_loss(out['p_tryon'], inputs['image'])
        loss_mask = nn.functional.l1_loss(out['m_composite'], inputs[self.mask_key])
        loss = loss_l1 + loss_vgg + loss_mask
        return loss, {'metric': loss, 'L1': loss_l1, 'VGG': loss_vgg, 'MaskL1': loss_mask}


def save_tryon_results(inputs, out, results):
    save_images(out['p_tryon'], pair_keys(inputs), results.kind_dir('try-on'))


def tom_log_terms(values):
    return 'loss: %.4f, l1: %.4f, vgg: %.4f, mask: %.4f' % (values['metric'], values['L1'], values['VGG'],
                                                             values['MaskL1'])


STAGES = (
    Stage('GMM', 'CP-VTON', CPVTON_DATA['GMM'], 'gmm_final.pth', build_model=GMM,
          build_loss=lambda opt, log: GMMLoss(opt.gic_weight), run=run_gmm, visuals=gmm_visuals,
          save_results=save_warp_results, log_terms=gmm_log_terms, options=('gic_weight',),
          check_options=check_gmm_options),
    Stage('TOM', 'CP-VTON', CPVTON_DATA['TOM'], 'tom_final.pth', build_model=build_tom_of,
          build_loss=lambda opt, log: TOMLoss(build_vgg_loss(opt.vgg_init, opt.vgg_weights, log), opt.tom_mask_target),
          run=run_tom, visuals=tom_visuals, save_results=save_tryon_results, log_terms=tom_log_terms,
          options=('tom_mask_input', 'tom_mask_target'), batch_statistics=False),   # instance norm only
)
