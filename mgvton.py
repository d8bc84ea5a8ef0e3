"""MG-VTON (Dong et al., "Towards Multi-pose Guided Virtual Try-on Network", ICCV 2019, arXiv 1902.11026): the
person of a reference photo (person A) dressed in a cloth *and* moved into a target pose (person B's). No
official code is public: this follows the paper's text; every choice it leaves open is ours, a flag, and named
in README.md ("Methods"). Four stages, each trained on top of the previous one's final checkpoint, whose modules
it loads (--previous_checkpoint) and keeps frozen; the last stage's checkpoint is the whole model.

    MGVTON_PARSE, stage I, conditional parsing: a ResNet generator (pix2pixHD's global generator: 7x7 conv, 3
        stride-2 downsamplings, 9 residual blocks, 3 upsamplings, 64 base filters, instance norm) maps person A's
        hair, face and body-shape masks, the cloth and person B's 18 pose maps (24 channels) to the 20-class
        parse of the try-on; a pix2pixHD multi-scale discriminator (2 scales, LSGAN) judges [condition, parse];
        losses gan_weight * cGAN + parse_l1_weight * L1 (softmax vs one-hot) + parse_ce_weight * cross-entropy.
    MGVTON_GMM, geometric matching: CP-VTON's GMM (networks.GMM) between the synthesised parse's cloth region
        (labels 5, 6, 7, summed probabilities) and the cloth mask; loss L1(T(cloth mask), that region); the
        warped cloth is T(cloth) (networks.warp_cloth).
    MGVTON_WARP, stage II, Warp-GAN: a second GMM (the parse matcher) estimates the transform between the
        synthesised parse and person A's parse (TPS; the paper's affine + TPS: the TPS holds the affine part)
        and learns it by L1(T(A's parse), synthesised parse); a generator encodes person A without the upper
        clothes, warps those bottleneck features by that transform (wuton.warp_features: grid_sample at the
        features' size), joins them with the encoding of [warped cloth, pose maps, synthesised parse] and
        decodes, through residual blocks, the try-on; a multi-scale discriminator judges [pose maps, parse,
        image]; losses gan_weight * cGAN + fm_weight * feature matching + perceptual_weight * VGG +
        coarse_l1_weight * L1 + match_weight * the matcher's L1.
    MGVTON_REFINE, stage III: a U-Net (networks.UnetGenerator) predicts the composition mask G_p from the warped
        cloth, the Warp-GAN try-on and the synthesised cloth region; try-on = G_p * warped cloth + (1 - G_p) *
        Warp-GAN try-on; losses perceptual_weight * VGG + mask_weight * mean |1 - G_p|.

Inputs: an mpv_dataset.MPVDataset batch (see there: [-1,1] images, {0,1} masks and one-hot parses).
Outputs (B = batch, H x W = the model size): parse_logits [B,20,H,W], parse [B,20,H,W] (softmax, in [0,1]);
from MGVTON_GMM on grid [B,H,W,2], cloth_region [B,1,H,W] in [0,1], warped_cloth [B,3,H,W] in [-1,1],
warped_mask [B,1,H,W] in [0,1]; from MGVTON_WARP on coarse [B,3,H,W] in [-1,1] (tanh) and matched_parse; at
MGVTON_REFINE composition_mask [B,1,H,W] in [0,1] and p_tryon [B,3,H,W] in [-1,1] (at MGVTON_WARP p_tryon is
coarse); in training the discriminators' outputs. Results (test.py): parse/ (the argmax as a LIP palette PNG),
warp-cloth/, warp-mask/, try-on/ and, at MGVTON_REFINE, coarse-person/ (the Warp-GAN try-on), each named by
mpv_dataset.triplet_key.
"""
import os
import os.path as osp

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

import flags
from cp_dataset import CLOTH_LABELS, LIP_PALETTE, NUM_LIP_LABELS, DataSpec, file_in
from cpvton import check_gmm_options, refuse_cpvton_representation_options
from mpv_dataset import MPVDataset, parse_result_name
from networks import (GMM, CheckpointError, UnetGenerator, atomic_write, build_vgg_loss, frozen_call,
                      load_checkpoint, read_checkpoint, unwrap_model, warp, warp_cloth)
from stages import Stage
from visualization import save_images
from wuton import warp_features

STAGE_NAMES = ('MGVTON_PARSE', 'MGVTON_GMM', 'MGVTON_WARP', 'MGVTON_REFINE')
NUM_POSE_MAPS = 18
APPEARANCE_CHANNELS = 3    # hair, face, body shape
PARSE_CONDITION_CHANNELS = APPEARANCE_CHANNELS + 3 + NUM_POSE_MAPS          # 24, as the paper says
WARP_CONDITION_CHANNELS = 3 + NUM_POSE_MAPS + NUM_LIP_LABELS                # warped cloth, pose, parse: 41
DISCRIMINATOR_SCALES = 2   # pix2pixHD's num_D
DISCRIMINATOR_LAYERS = 3   # pix2pixHD's n_layers_D


# --------------------------------------------------------------------------- pix2pixHD's building blocks

class ResnetBlock(nn.Module):
    """x + (reflection pad, 3x3 conv, instance norm, ReLU, reflection pad, 3x3 conv, instance norm)(x)."""

    def __init__(self, channels):
        super().__init__()
        self.block = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
                                   nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3),
                                   nn.InstanceNorm2d(channels))

    def forward(self, x):
        return x + self.block(x)


def resnet_encoder(input_nc, ngf, downsamplings):
    """7x7 conv to ngf, then ``downsamplings`` 3x3 stride-2 convs doubling the width: [B,ngf*2^n,H/2^n,W/2^n]."""
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
    for n in range(downsamplings):
        width = ngf * 2 ** n
        layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.InstanceNorm2d(2 * width), nn.ReLU(True)]
    return nn.Sequential(*layers)


def resnet_decoder(ngf, upsamplings, output_nc):
    """The encoder's mirror: ``upsamplings`` 3x3 stride-2 transposed convs halving the width, then a 7x7 conv to
    ``output_nc`` channels (no activation)."""
    layers = []
    for n in range(upsamplings, 0, -1):
        width = ngf * 2 ** n
        layers += [nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1),
                   nn.InstanceNorm2d(width // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7)]
    return nn.Sequential(*layers)


class ParsingGenerator(nn.Module):
    """Stage I: pix2pixHD's global generator. [B,24,H,W] -> parse logits [B,20,H,W]."""

    def __init__(self, ngf=64, blocks=9, downsamplings=3):
        super().__init__()
        width = ngf * 2 ** downsamplings
        self.model = nn.Sequential(resnet_encoder(PARSE_CONDITION_CHANNELS, ngf, downsamplings),
                                   *[ResnetBlock(width) for _ in range(blocks)],
                                   resnet_decoder(ngf, downsamplings, NUM_LIP_LABELS))

    def forward(self, condition):
        return self.model(condition)


class WarpGanGenerator(nn.Module):
    """Stage II. (reference [B,3,H,W] in [-1,1], condition [B,41,H,W], grid [B,H,W,2]) -> [B,3,H,W] in [-1,1]:
    the reference's bottleneck features warped by ``grid``, concatenated with the condition's, reduced by a 1x1
    conv (ours), residual blocks, the decoder, tanh."""

    def __init__(self, ngf=64, blocks=9, downsamplings=3):
        super().__init__()
        width = ngf * 2 ** downsamplings
        self.reference_encoder = resnet_encoder(3, ngf, downsamplings)
        self.condition_encoder = resnet_encoder(WARP_CONDITION_CHANNELS, ngf, downsamplings)
        self.fuse = nn.Sequential(nn.Conv2d(2 * width, width, 1), nn.InstanceNorm2d(width), nn.ReLU(True))
        self.blocks = nn.Sequential(*[ResnetBlock(width) for _ in range(blocks)])
        self.decoder = resnet_decoder(ngf, downsamplings, 3)

    def forward(self, reference, condition, grid):
        features = torch.cat([warp_features(self.reference_encoder(reference), grid),
                              self.condition_encoder(condition)], 1)
        return torch.tanh(self.decoder(self.blocks(self.fuse(features))))


class NLayerDiscriminator(nn.Module):
    """pix2pixHD's PatchGAN: [B,C,H,W] -> the outputs of its 5 layers, the last the logits [B,1,h,w]."""

    def __init__(self, input_nc, ndf=64, n_layers=DISCRIMINATOR_LAYERS):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(input_nc, ndf, 4, 2, 2), nn.LeakyReLU(0.2, True))]
        width = ndf
        for n in range(1, n_layers + 1):
            wider = min(width * 2, 512)
            layers.append(nn.Sequential(nn.Conv2d(width, wider, 4, 2 if n < n_layers else 1, 2),
                                        nn.InstanceNorm2d(wider), nn.LeakyReLU(0.2, True)))
            width = wider
        layers.append(nn.Conv2d(width, 1, 4, 1, 2))
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs


class MultiscaleDiscriminator(nn.Module):
    """pix2pixHD's: ``scales`` PatchGANs, each on the input downsampled once more (3x3 average pooling, stride 2).
    [B,C,H,W] -> one list of layer outputs per scale."""

    def __init__(self, input_nc, scales=DISCRIMINATOR_SCALES):
        super().__init__()
        self.discriminators = nn.ModuleList([NLayerDiscriminator(input_nc) for _ in range(scales)])
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x):
        outputs = []
        for index, discriminator in enumerate(self.discriminators):
            if index:
                x = self.downsample(x)
            outputs.append(discriminator(x))
        return outputs


def lsgan_loss(outputs, real):
    """pix2pixHD's LSGAN loss of a MultiscaleDiscriminator's outputs: the mean squared distance of each scale's
    logits to 1 (``real``) or 0, summed over the scales."""
    return sum(F.mse_loss(scale[-1], torch.full_like(scale[-1], float(real))) for scale in outputs)


def discriminator_loss(out):
    """pix2pixHD's discriminator loss: half the LSGAN loss of the real outputs as real and the fake ones as fake."""
    return 0.5 * (lsgan_loss(out['real_outputs'], True) + lsgan_loss(out['fake_outputs'], False))


def feature_matching_loss(fake_outputs, real_outputs):
    """pix2pixHD's discriminator feature matching: L1 between the layer outputs (the logits aside) on the fake
    and on the real image (detached), each weighted 4 / (n_layers + 1) / scales, summed."""
    weight = 4.0 / (DISCRIMINATOR_LAYERS + 1) / len(fake_outputs)
    return sum(weight * F.l1_loss(fake, real.detach())
               for fake_scale, real_scale in zip(fake_outputs, real_outputs)
               for fake, real in zip(fake_scale[:-1], real_scale[:-1]))


def judged(discriminator, condition, real, fake):
    """The discriminator's outputs on [condition, real] and on [condition, fake] for its own loss (the fake
    detached), and on the fake through its frozen parameters for the generator's (see networks.frozen_call)."""
    return {'real_outputs': discriminator(torch.cat([condition, real], 1)),
            'fake_outputs': discriminator(torch.cat([condition, fake.detach()], 1)),
            'generator_outputs': frozen_call(discriminator, torch.cat([condition, fake], 1))}


# --------------------------------------------------------------------------- the model

def cloth_region(parse):
    """The upper-clothes probability [B,1,H,W] of a parse [B,20,H,W] (softmax or one-hot)."""
    return parse[:, list(CLOTH_LABELS)].sum(1, keepdim=True)


class MGVTON(nn.Module):
    """The modules of the stages up to ``stage`` (its discriminator too); the earlier stages' are frozen."""

    OWN_MODULES = {'MGVTON_PARSE': ('parser', 'parse_discriminator'), 'MGVTON_GMM': ('gmm',),
                   'MGVTON_WARP': ('parse_matcher', 'warp_gan', 'warp_discriminator'), 'MGVTON_REFINE': ('refiner',)}

    def __init__(self, opt, stage):
        super().__init__()
        self.opt, self.stage, self.level = opt, stage, STAGE_NAMES.index(stage)
        ngf, blocks = opt.mgvton_ngf, opt.mgvton_blocks
        self.parser = ParsingGenerator(ngf, blocks)
        if self.level == 0:
            self.parse_discriminator = MultiscaleDiscriminator(PARSE_CONDITION_CHANNELS + NUM_LIP_LABELS)
        if self.level >= 1:
            self.gmm = GMM(opt, agnostic_nc=1, cloth_nc=1)
        if self.level >= 2:
            self.parse_matcher = GMM(opt, agnostic_nc=NUM_LIP_LABELS, cloth_nc=NUM_LIP_LABELS)
            self.warp_gan = WarpGanGenerator(ngf, blocks)
        if self.level == 2:
            self.warp_discriminator = MultiscaleDiscriminator(NUM_POSE_MAPS + NUM_LIP_LABELS + 3)
        if self.level == 3:
            self.refiner = UnetGenerator(3 + 3 + 1, 1, 6, ngf=ngf, norm_layer=nn.InstanceNorm2d)
        for name in self.frozen_modules():
            getattr(self, name).requires_grad_(False)

    def trained_modules(self):
        return self.OWN_MODULES[self.stage]

    def frozen_modules(self):
        return [name for earlier in STAGE_NAMES[:self.level] for name in self.OWN_MODULES[earlier]
                if hasattr(self, name)]

    def train(self, mode=True):
        """The frozen stages stay in eval mode (the GMMs' BatchNorm keeps its running statistics)."""
        super().train(mode)
        for name in self.frozen_modules():
            getattr(self, name).eval()
        return self

    def load_previous(self, path):
        """The frozen modules from the final checkpoint of the previous stage (checked whole against it)."""
        previous = STAGE_NAMES[self.level - 1]
        donor = MGVTON(self.opt, previous)
        try:
            load_checkpoint(donor, path, torch.device('cpu'))
        except CheckpointError as error:
            held = stage_of_checkpoint(path)
            if held is not None and held != previous:
                raise CheckpointError(f'--previous_checkpoint {path} holds the modules of --stage {held}; --stage '
                                      f'{self.stage} builds on --stage {previous}: pass its '
                                      f'{FINAL_CHECKPOINTS[previous]}') from None
            raise CheckpointError(f'{error} Build every MG-VTON stage with the previous one\'s --mgvton_ngf, '
                                  f'--mgvton_blocks, --fine_height, --fine_width and --grid_size (its options.json '
                                  f'holds them).') from None
        for name in self.frozen_modules():
            getattr(self, name).load_state_dict(getattr(donor, name).state_dict())

    def forward(self, inputs):
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.level == 0):
            out = self.parse(inputs)
        if self.level >= 1:
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.level == 1):
                out.update(self.match_cloth(inputs, out['parse']))
        if self.level >= 2:
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.level == 2):
                out.update(self.warp_gan_tryon(inputs, out))
        if self.level == 3:
            out.update(self.refine(out))
        return out

    def parse(self, inputs):
        condition = torch.cat([inputs['appearance'], inputs['cloth'], inputs['target_pose']], 1)
        logits = self.parser(condition)
        parse = torch.softmax(logits, 1)
        out = {'parse_logits': logits, 'parse': parse}
        if self.level == 0 and self.training:
            out.update(judged(self.parse_discriminator, condition, inputs['target_parse'], parse))
        return out

    def match_cloth(self, inputs, parse):
        region = cloth_region(parse)
        grid, theta = self.gmm(region, inputs['cloth_mask'])
        warped_cloth, warped_mask = warp_cloth(inputs['cloth'], inputs['cloth_mask'], grid)
        return {'cloth_region': region, 'grid': grid, 'theta': theta, 'warped_cloth': warped_cloth,
                'warped_mask': warped_mask}

    def warp_gan_tryon(self, inputs, out):
        parse_grid, _ = self.parse_matcher(out['parse'], inputs['source_parse'])
        condition = torch.cat([out['warped_cloth'], inputs['target_pose'], out['parse']], 1)
        # The matcher learns from its own L1 only (ours): the generator's losses would bend the transform into
        # whatever helps the image, and it would no longer be one between the two parses.
        coarse = self.warp_gan(inputs['reference'], condition, parse_grid.detach())
        result = {'parse_grid': parse_grid, 'matched_parse': warp(inputs['source_parse'], parse_grid, 'zeros'),
                  'coarse': coarse, 'p_tryon': coarse}
        if self.level == 2 and self.training:
            judged_condition = torch.cat([inputs['target_pose'], out['parse']], 1)
            result.update(judged(self.warp_discriminator, judged_condition, inputs['image'], coarse))
        return result

    def refine(self, out):
        mask = torch.sigmoid(self.refiner(torch.cat([out['warped_cloth'], out['coarse'], out['cloth_region']], 1)))
        return {'composition_mask': mask, 'p_tryon': mask * out['warped_cloth'] + (1 - mask) * out['coarse']}


def stage_of_checkpoint(path):
    """The MG-VTON stage whose modules a checkpoint holds (by its keys' first parts), or None (another model)."""
    state = read_checkpoint(path)
    state = state.get('model', state) if isinstance(state, dict) else {}
    held = {key.split('.')[0] for key in state}
    for level, stage in enumerate(STAGE_NAMES):
        modules = {name for earlier in STAGE_NAMES[:level + 1] for name in MGVTON.OWN_MODULES[earlier]}
        modules -= {f'{kind}_discriminator' for kind in ('parse', 'warp')} - set(MGVTON.OWN_MODULES[stage])
        if held == modules:
            return stage
    return None


def build_mgvton(stage):
    def build(opt):
        """The stage's MGVTON; the earlier stages' modules from --previous_checkpoint (not on --resume: the resume
        state holds them)."""
        model = MGVTON(opt, stage)
        previous = getattr(opt, 'previous_checkpoint', '')
        if previous and getattr(opt, 'resume', None) is None:
            model.load_previous(previous)
            print(f'{", ".join(model.frozen_modules())} initialised from {previous} and frozen', flush=True)
        return model
    return build


def trained_parameters(model):
    """The optimizer's parameters: those of the stage's own modules."""
    model = unwrap_model(model)
    return [p for name in model.trained_modules() for p in getattr(model, name).parameters()]


def run_mgvton(model, inputs):
    return model(inputs)


# --------------------------------------------------------------------------- the losses

class MgvtonLoss(nn.Module):
    """The stage's loss (see the module docstring) and its terms, TensorBoard tags: Lparse_adv, Lparse_l1,
    Lparse_ce, D_parse (stage I); Lwarp (GMM); G_adv, FM, VGG, L1, Lmatch, D_adv (stage II); VGG, Lmask (stage III).
    The discriminator's loss is added to the generator's: each reaches only its own player (judged)."""

    def __init__(self, opt, stage, vgg_loss=None):
        super().__init__()
        self.level = STAGE_NAMES.index(stage)
        self.vgg_loss = vgg_loss
        self.w = {name: getattr(opt, f'{name}_weight') for name in
                  ('gan', 'parse_l1', 'parse_ce', 'fm', 'perceptual', 'coarse_l1', 'match', 'mask')}

    def forward(self, inputs, out):
        terms, loss = getattr(self, ('parse_terms', 'gmm_terms', 'warp_terms', 'refine_terms')[self.level])(inputs, out)
        return loss, {'metric': loss, **terms}

    def parse_terms(self, inputs, out):
        w = self.w
        terms = {'Lparse_adv': lsgan_loss(out['generator_outputs'], True),
                 'Lparse_l1': F.l1_loss(out['parse'], inputs['target_parse']),
                 'Lparse_ce': F.cross_entropy(out['parse_logits'], inputs['target_labels']),
                 'D_parse': discriminator_loss(out)}
        loss = (w['gan'] * terms['Lparse_adv'] + w['parse_l1'] * terms['Lparse_l1']
                + w['parse_ce'] * terms['Lparse_ce'] + terms['D_parse'])
        return terms, loss

    def gmm_terms(self, inputs, out):
        terms = {'Lwarp': F.l1_loss(out['warped_mask'], out['cloth_region'])}
        return terms, terms['Lwarp']

    def warp_terms(self, inputs, out):
        w = self.w
        terms = {'G_adv': lsgan_loss(out['generator_outputs'], True),
                 'FM': feature_matching_loss(out['generator_outputs'], out['real_outputs']),
                 'VGG': self.vgg_loss(out['coarse'], inputs['image']),
                 'L1': F.l1_loss(out['coarse'], inputs['image']),
                 'Lmatch': F.l1_loss(out['matched_parse'], out['parse']),
                 'D_adv': discriminator_loss(out)}
        loss = (w['gan'] * terms['G_adv'] + w['fm'] * terms['FM'] + w['perceptual'] * terms['VGG']
                + w['coarse_l1'] * terms['L1'] + w['match'] * terms['Lmatch'] + terms['D_adv'])
        return terms, loss

    def refine_terms(self, inputs, out):
        terms = {'VGG': self.vgg_loss(out['p_tryon'], inputs['image']),
                 'Lmask': (1 - out['composition_mask']).abs().mean()}
        return terms, self.w['perceptual'] * terms['VGG'] + self.w['mask'] * terms['Lmask']


def build_loss(stage):
    def build(opt, log):
        needs_vgg = STAGE_NAMES.index(stage) >= 2
        return MgvtonLoss(opt, stage, build_vgg_loss(opt.vgg_init, opt.vgg_weights, log) if needs_vgg else None)
    return build


LOG_TERMS = {'MGVTON_PARSE': ('Lparse_adv', 'Lparse_l1', 'Lparse_ce', 'D_parse'), 'MGVTON_GMM': ('Lwarp',),
             'MGVTON_WARP': ('G_adv', 'FM', 'VGG', 'L1', 'Lmatch', 'D_adv'), 'MGVTON_REFINE': ('VGG', 'Lmask')}


def log_terms(stage):
    def line(values):
        terms = [f'{name}: {values[name]:.4f}' for name in LOG_TERMS[stage]]
        return ', '.join([f'loss: {values["metric"]:.4f}'] + terms)
    return line


# --------------------------------------------------------------------------- pictures and results

PALETTE = torch.tensor(LIP_PALETTE, dtype=torch.float32) / 127.5 - 1   # [20,3] in [-1,1]


def parse_picture(parse):
    """A parse [B,20,H,W] (probabilities or one-hot) as its argmax in LIP's colours, [B,3,H,W] in [-1,1]."""
    return PALETTE.to(parse.device)[parse.argmax(1)].permute(0, 3, 1, 2)


def mgvton_visuals(inputs, out):
    """Rows: person A / cloth / target pose / synthesised parse / target parse . the stage's results / person B."""
    top = [inputs['source_image'], inputs['cloth'], inputs['target_pose_image'], parse_picture(out['parse']),
           parse_picture(inputs['target_parse'])]
    bottom = [out[name] for name in ('warped_cloth', 'coarse') if name in out]
    if 'composition_mask' in out:
        bottom += [out['composition_mask'] * 2 - 1, out['p_tryon']]
    return [top, bottom + [inputs['image']]]


def save_parses(parse, keys, folder):
    """Each parse's argmax as a palette PNG (pixel = LIP label), <key stem>.png in ``folder``."""
    os.makedirs(folder, exist_ok=True)
    palette = [channel for colour in LIP_PALETTE for channel in colour]
    for labels, key in zip(parse.argmax(1).to(torch.uint8).cpu().numpy(), keys):
        image = Image.fromarray(np.ascontiguousarray(labels), 'L')
        image.putpalette(palette)
        path = file_in(folder, parse_result_name(key))
        atomic_write(path, lambda tmp_path, image=image: image.save(tmp_path, format='PNG'))


def save_mgvton_results(inputs, out, results):
    keys = inputs['key']
    save_parses(out['parse'], keys, results.kind_dir('parse'))
    if 'warped_cloth' in out:
        save_images(out['warped_cloth'], keys, results.kind_dir('warp-cloth'))
        save_images(out['warped_mask'] * 2 - 1, keys, results.kind_dir('warp-mask'))
    if 'composition_mask' in out:
        save_images(out['coarse'], keys, results.kind_dir('coarse-person'))
    if 'p_tryon' in out:
        save_images(out['p_tryon'], keys, results.kind_dir('try-on'))


# --------------------------------------------------------------------------- flags

WEIGHTS = (('gan', 1.0, 'adversarial (LSGAN) loss of stages I and II (the paper\'s cGAN; the weight is ours)'),
           ('parse_l1', 10.0, 'L1 between the parse\'s softmax and the one-hot target parse (stage I; ours)'),
           ('parse_ce', 10.0, 'pixel-wise cross-entropy of the parse (stage I; ours)'),
           ('fm', 10.0, 'discriminator feature matching (stage II; pix2pixHD\'s 10)'),
           ('perceptual', 10.0, 'VGG perceptual loss (stages II and III; pix2pixHD\'s 10)'),
           ('coarse_l1', 1.0, 'L1 of the Warp-GAN try-on (stage II; ours)'),
           ('match', 1.0, 'L1 of the parse matcher: warped person-A parse vs synthesised parse (stage II; ours)'),
           ('mask', 1.0, 'mu of mean |1 - G_p| (stage III; ours, CP-VTON\'s mask weight)'))
MODEL_OPTIONS = ('mgvton_ngf', 'mgvton_blocks')


def add_arguments(parser, training):
    group = parser.add_argument_group('MG-VTON options (--stage MGVTON_*; README "Methods": which are the paper\'s)')
    group.add_argument('--mgvton_ngf', type=flags.positive_int, default=64,
                       help="base filters of the generators (the paper's 64)")
    group.add_argument('--mgvton_blocks', type=flags.positive_int, default=9,
                       help="residual blocks of the stage I and II generators (the paper's 9)")
    if training:
        group.add_argument('--previous_checkpoint', default='',
                           help='the previous stage\'s final checkpoint (MGVTON_GMM: mgvton_parse_final.pth, ...): '
                                'its modules are loaded and frozen')
        for name, default, meaning in WEIGHTS:
            group.add_argument(f'--{name}_weight', type=flags.float_at_least(0), default=default,
                               help=f'weight of the {meaning}')


def check_mgvton_options(stage):
    def check(parser, opt, training):
        refuse_cpvton_representation_options(parser, opt, 'MG-VTON does not read')
        check_gmm_options(parser, opt, training)
        if not training or opt.resume is not None or opt.checkpoint or stage == STAGE_NAMES[0]:
            return   # nothing to build on: the first stage, or the whole model from --resume or --checkpoint
        previous = STAGE_NAMES[STAGE_NAMES.index(stage) - 1]
        fix = (f'train --stage {previous} first and pass its final checkpoint '
               f'({FINAL_CHECKPOINTS[previous]}); scripts/mgvton/ run the stages in order')
        if not opt.previous_checkpoint:
            parser.error(f'--stage {stage} builds on --stage {previous}: --previous_checkpoint is missing; {fix}')
        if not osp.isfile(opt.previous_checkpoint):
            parser.error(f'--previous_checkpoint {opt.previous_checkpoint}: no such file; {fix}')
    return check


FINAL_CHECKPOINTS = {name: f'{name.lower()}_final.pth' for name in STAGE_NAMES}
MGVTON_DATA = DataSpec(layout='mpv')


def stage_entry(stage):
    owned = ('previous_checkpoint',) if stage != STAGE_NAMES[0] else ()
    uses = {'MGVTON_PARSE': ('gan', 'parse_l1', 'parse_ce'), 'MGVTON_GMM': (),
            'MGVTON_WARP': ('gan', 'fm', 'perceptual', 'coarse_l1', 'match'),
            'MGVTON_REFINE': ('perceptual', 'mask')}[stage]
    return Stage(stage, 'MG-VTON', MGVTON_DATA, FINAL_CHECKPOINTS[stage], build_model=build_mgvton(stage),
                 build_loss=build_loss(stage), run=run_mgvton, visuals=mgvton_visuals,
                 save_results=save_mgvton_results, log_terms=log_terms(stage),
                 options=MODEL_OPTIONS + owned + tuple(f'{name}_weight' for name in uses),
                 model_options=MODEL_OPTIONS, trainable=trained_parameters, check_options=check_mgvton_options(stage),
                 dataset=MPVDataset)


STAGES = tuple(stage_entry(stage) for stage in STAGE_NAMES)
