"""WUTON (Issenhuth et al., 2019, arXiv 1906.01347): the warp learned end to end, on feature maps, with an
adversarial loss on try-ons with other clothes (--stage WUTON). No official code is public: this follows the
paper's text; every choice the text leaves open is ours, a flag, and named in README.md ("Methods").

    geometric module: CP-VTON's GMM (networks.GMM) between the agnostic person and the cloth -> TPS grid;
    generator: a U-Net with two encoders that share no weights, E1 (cloth) and E2 (agnostic person), instance
        norm; at every scale E1's features are warped by the same TPS grid (resized to that scale, grid_sample
        align_corners=True) and concatenated with E2's into the decoder's skips; the output is the person, no
        composition mask;
    losses: paired (the person's own cloth): warp L1 between the image-space warp T(c) and the person's cloth
        region, L1 and VGG perceptual against the person; unpaired (another cloth, no ground truth): a
        relativistic adversarial loss only, its gradient reaching the geometric module too; the discriminator
        compares those try-ons with the batch's real photos, with a gradient penalty.

Inputs (cp_dataset.CPDataset with WUTON_DATA; B = batch, H x W = the model size): cloth [B,3,H,W] in [-1,1],
cloth_mask [B,1,H,W] in {0,1}, masked_photo [B,3,H,W] in [-1,1] (the agnostic photo, cp_dataset.masked_photo) or
agnostic [B,22,H,W] (--wuton_agnostic cpvton), image [B,3,H,W]; in training also unpaired_cloth [B,3,H,W].
Outputs: grid [B,H,W,2], theta, warped_cloth [B,3,H,W] in [-1,1] and warped_mask [B,1,H,W] in [0,1] (the image-
space warp with the same theta), p_tryon [B,3,H,W] in [-1,1] (tanh); in training also unpaired_tryon and the
discriminator's logits [B,1,h,w]. Results (test.py): warp-cloth/, warp-mask/ and try-on/ in the result layout.
"""
import os.path as osp

import torch
import torch.nn as nn
import torch.nn.functional as F

import flags
from cp_dataset import DEFAULT_NECK_BOX, DataSpec
from cpvton import check_gmm_options, refuse_cpvton_representation_options, save_tryon_results, save_warp_results
from networks import GMM, build_vgg_loss, frozen_call, load_checkpoint, unwrap_model, warp, warp_cloth
from stages import Stage

AGNOSTIC_KINDS = {'photo': 3, 'cpvton': 22}     # --wuton_agnostic -> input channels of E2 and of the GMM
FIRST_PERSON_CONV = 'extractionA.model.0.weight'  # the one GMM tensor whose shape depends on the agnostic input


# --------------------------------------------------------------------------- the feature warp

def resized_grid(grid, height, width):
    """A sampling grid [B,H,W,2] resized to [B,height,width,2] (bilinear, align_corners=True: the corner
    samples keep the corners, so a scale's grid is the full one seen at that scale's pixel centres)."""
    if grid.shape[1:3] == (height, width):
        return grid
    return F.interpolate(grid.permute(0, 3, 1, 2), size=(height, width), mode='bilinear',
                         align_corners=True).permute(0, 2, 3, 1)


def warp_features(features, grid):
    """Features [B,C,h,w] warped by the TPS ``grid`` [B,H,W,2] resized to h x w; zeros outside (ours: the cloth
    features have nothing there)."""
    return warp(features, resized_grid(grid, features.shape[2], features.shape[3]), 'zeros')


# --------------------------------------------------------------------------- the networks

def down(in_channels, out_channels, first=False):
    """4x4 stride-2 conv (-> instance norm), after LReLU(0.2) except for the first level (pix2pix's U-Net)."""
    if first:
        return nn.Conv2d(in_channels, out_channels, 4, 2, 1)
    return nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(in_channels, out_channels, 4, 2, 1),
                         nn.InstanceNorm2d(out_channels))


def up(in_channels, out_channels):
    return nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1),
                         nn.InstanceNorm2d(out_channels))


class SiameseUnetGenerator(nn.Module):
    """Two encoders (cloth, person) of ``levels`` 4x4 stride-2 levels, 64-128-256-512-512-512 channels, and one
    decoder whose skips are [warped cloth features, person features] of each scale. (cloth [B,3,H,W], person
    [B,P,H,W], grid [B,H,W,2]) -> [B,3,H,W] in [-1,1]; H and W multiples of 2 ** levels."""

    def __init__(self, cloth_nc=3, person_nc=3, output_nc=3, ngf=64, levels=6):
        super().__init__()
        widths = [min(ngf * 2 ** level, ngf * 8) for level in range(levels)]
        self.cloth_encoder = nn.ModuleList([down(a, b, first=i == 0)
                                            for i, (a, b) in enumerate(zip([cloth_nc] + widths, widths))])
        self.person_encoder = nn.ModuleList([down(a, b, first=i == 0)
                                             for i, (a, b) in enumerate(zip([person_nc] + widths, widths))])
        decoders, in_channels = [], 2 * widths[-1]
        for level in range(levels - 2, -1, -1):
            decoders.append(up(in_channels, widths[level]))
            in_channels = 3 * widths[level]    # its output, the warped cloth's and the person's features
        self.decoders = nn.ModuleList(decoders)
        self.output = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(in_channels, output_nc, 4, 2, 1), nn.Tanh())

    @staticmethod
    def encode(encoder, x):
        features = []
        for level in encoder:
            x = level(x)
            features.append(x)
        return features

    def forward(self, cloth, person, grid):
        cloth_features = [warp_features(f, grid) for f in self.encode(self.cloth_encoder, cloth)]
        person_features = self.encode(self.person_encoder, person)
        x = torch.cat([cloth_features.pop(), person_features.pop()], 1)
        for decoder in self.decoders:
            x = torch.cat([decoder(x), cloth_features.pop(), person_features.pop()], 1)
        return self.output(x)


def define_D(input_nc=3, ndf=64, n_layers=3):
    """A PatchGAN discriminator (pix2pix's NLayerDiscriminator, 70x70 receptive field at n_layers 3) without
    normalisation (ours: batch statistics would fight the gradient penalty): [B,C,H,W] -> logits [B,1,h,w]."""
    layers = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
    width = ndf
    for n in range(1, n_layers + 1):
        wider = ndf * min(2 ** n, 8)
        layers += [nn.Conv2d(width, wider, 4, 2 if n < n_layers else 1, 1), nn.LeakyReLU(0.2)]
        width = wider
    layers.append(nn.Conv2d(width, 1, 4, 1, 1))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- the adversarial losses

def relativistic_discriminator_loss(real_logits, fake_logits):
    """Relativistic average GAN (Jolicoeur-Martineau 2018), BCE with logits: real judged against the average
    fake as real, fake against the average real as fake."""
    return (F.binary_cross_entropy_with_logits(real_logits - fake_logits.mean(), torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits - real_logits.mean(), torch.zeros_like(fake_logits)))


def relativistic_generator_loss(real_logits, fake_logits):
    """The same with the roles swapped: the generator wants fakes judged more real than the average real."""
    return relativistic_discriminator_loss(fake_logits, real_logits)


def gradient_penalty(discriminator, real, fake):
    """WGAN-GP's penalty (||grad D(x)||_2 - 1)^2 at random interpolates x of real and fake images, batch mean."""
    alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(discriminator(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


# --------------------------------------------------------------------------- the model

class WutonModel(nn.Module):
    """The geometric module (``gmm``), the generator and the discriminator, trained together in one optimizer
    step (ours: simultaneous updates; each loss reaches only its own players, see forward)."""

    def __init__(self, opt):
        super().__init__()
        self.agnostic_kind = getattr(opt, 'wuton_agnostic', 'photo')
        agnostic_nc = AGNOSTIC_KINDS[self.agnostic_kind]
        self.gmm = GMM(opt, agnostic_nc)
        self.generator = SiameseUnetGenerator(person_nc=agnostic_nc)
        self.discriminator = define_D()

    def forward(self, agnostic, cloth, cloth_mask, unpaired_cloth=None, real=None):
        grid, theta = self.gmm(agnostic, cloth)
        warped_cloth, warped_mask = warp_cloth(cloth, cloth_mask, grid)
        out = {'grid': grid, 'theta': theta, 'warped_cloth': warped_cloth, 'warped_mask': warped_mask,
               'p_tryon': self.generator(cloth, agnostic, grid), 'agnostic_channels': agnostic.shape[1]}
        if unpaired_cloth is not None:
            unpaired_grid, _ = self.gmm(agnostic, unpaired_cloth)
            fake = self.generator(unpaired_cloth, agnostic, unpaired_grid)
            out.update(unpaired_grid=unpaired_grid, unpaired_tryon=fake, **self.judged(real, fake))
        return out

    def judged(self, real, fake):
        """The discriminator's logits: for its own loss on real and on the detached fake (gradients into the
        discriminator only), and for the generator's on the fake through a frozen copy of its parameters
        (gradients into the generator and the geometric module only); and the gradient penalty.

        Also under DistributedDataParallel: every parameter gets its gradient from the one backward of the summed
        loss, and the penalty's autograd.grad is taken with respect to the images only."""
        return {'real_logits': self.discriminator(real),
                'fake_logits': self.discriminator(fake.detach()),
                'generator_fake_logits': frozen_call(self.discriminator, fake),
                'gradient_penalty': gradient_penalty(self.discriminator, real, fake.detach())}


def build_wuton(opt):
    """WutonModel; its geometric module from a trained CP-VTON GMM with --gmm_checkpoint (not on --resume: the
    resume state holds the weights)."""
    model = WutonModel(opt)
    if getattr(opt, 'gmm_checkpoint', '') and getattr(opt, 'resume', None) is None:
        init_gmm(model.gmm, opt)
    return model


def init_gmm(gmm, opt):
    """Load --gmm_checkpoint (a CP-VTON GMM, checked whole) into ``gmm``. With the 3-channel agnostic photo the
    first person convolution (22 input channels there) cannot be taken: it keeps its initialisation, and the
    log says so."""
    donor = GMM(opt)
    load_checkpoint(donor, opt.gmm_checkpoint, torch.device('cpu'))
    if AGNOSTIC_KINDS[opt.wuton_agnostic] == 22:
        gmm.load_state_dict(donor.state_dict())
        print(f'geometric module initialised from {opt.gmm_checkpoint}', flush=True)
        return
    gmm.load_state_dict({k: v for k, v in donor.state_dict().items() if k != FIRST_PERSON_CONV}, strict=False)
    print(f'geometric module initialised from {opt.gmm_checkpoint}, except {FIRST_PERSON_CONV} (22 input channels '
          f'there, 3 for the agnostic photo: it keeps its initialisation; --wuton_agnostic cpvton takes it too)',
          flush=True)


def agnostic_input(model, inputs):
    return inputs['agnostic'] if unwrap_model(model).agnostic_kind == 'cpvton' else inputs['masked_photo']


def run_wuton(model, inputs):
    """Training: the paired try-on and the try-on with the item's unpaired cloth; testing: the pairs list's."""
    training = unwrap_model(model).training
    return model(agnostic_input(model, inputs), inputs['cloth'], inputs['cloth_mask'],
                 unpaired_cloth=inputs['unpaired_cloth'] if training else None,
                 real=inputs['image'] if training else None)


class WutonLoss(nn.Module):
    """warp_weight * L1(T(c), cloth region) + l1_weight * L1 + vgg_weight * VGG (paired) + adv_weight * the
    generator's relativistic loss (unpaired) + the discriminator's relativistic loss + gp_weight * its gradient
    penalty. CP-VTON's VGG loss (networks.VGGLoss) is the perceptual term (ours)."""

    def __init__(self, vgg_loss, opt):
        super().__init__()
        self.vgg_loss = vgg_loss
        self.weights = {name: getattr(opt, f'{name}_weight') for name in ('warp', 'l1', 'vgg', 'adv', 'gp')}

    def forward(self, inputs, out):
        w = self.weights
        terms = {'Lwarp': F.l1_loss(out['warped_cloth'], inputs['parse_cloth']),
                 'L1': F.l1_loss(out['p_tryon'], inputs['image']),
                 'VGG': self.vgg_loss(out['p_tryon'], inputs['image'])}
        loss = w['warp'] * terms['Lwarp'] + w['l1'] * terms['L1'] + w['vgg'] * terms['VGG']
        if 'unpaired_tryon' in out:
            terms['G_adv'] = relativistic_generator_loss(out['real_logits'].detach(), out['generator_fake_logits'])
            terms['D_adv'] = relativistic_discriminator_loss(out['real_logits'], out['fake_logits'])
            terms['GP'] = out['gradient_penalty']
            loss = loss + w['adv'] * terms['G_adv'] + terms['D_adv'] + w['gp'] * terms['GP']
        return loss, {'metric': loss, **terms}


def wuton_visuals(inputs, out):
    """Rows: agnostic (the photo the model saw; CP-VTON's head with --wuton_agnostic cpvton)/cloth/warped cloth
    (same theta) . paired try-on/unpaired try-on (training; else the warped mask)/person."""
    agnostic = inputs['head'] if out['agnostic_channels'] == AGNOSTIC_KINDS['cpvton'] else inputs['masked_photo']
    second = out['unpaired_tryon'] if 'unpaired_tryon' in out else out['warped_mask'] * 2 - 1
    return [[agnostic, inputs['cloth'], out['warped_cloth']], [out['p_tryon'], second, inputs['image']]]


def save_wuton_results(inputs, out, results):
    save_warp_results(inputs, out, results)
    save_tryon_results(inputs, out, results)


def wuton_log_terms(values):
    line = 'loss: %.4f, warp: %.4f, l1: %.4f, vgg: %.4f' % (values['metric'], values['Lwarp'], values['L1'],
                                                            values['VGG'])
    if 'G_adv' in values:
        line += ', adv G: %.4f, D: %.4f, gp: %.4f' % (values['G_adv'], values['D_adv'], values['GP'])
    return line


def check_wuton_options(parser, opt, training):
    check_gmm_options(parser, opt, training)
    if opt.wuton_agnostic == 'photo':
        refuse_cpvton_representation_options(parser, opt, 'WUTON reads only with --wuton_agnostic cpvton')
    if training and opt.gmm_checkpoint and opt.resume is None and not osp.isfile(opt.gmm_checkpoint):
        parser.error(f'--gmm_checkpoint {opt.gmm_checkpoint}: no such file; train CP-VTON\'s GMM first '
                     f'(scripts/step1-train-gmm.sh) or leave the flag out')


def add_arguments(parser, training):
    group = parser.add_argument_group('WUTON options (--stage WUTON; README "Methods": which are the paper\'s)')
    group.add_argument('--wuton_agnostic', default='photo', choices=tuple(AGNOSTIC_KINDS),
                       help="the agnostic person: the photo with arms, upper clothes and a neck box masked out (3 "
                            "channels, the paper's) or CP-VTON's 22-channel representation")
    group.add_argument('--neck_box', type=flags.non_negative_int, default=DEFAULT_NECK_BOX,
                       help='side in pixels (model size) of the square masked out around the neck keypoint (ours)')
    if training:
        group.add_argument('--gmm_checkpoint', default='',
                           help='initialise the geometric module from a trained CP-VTON GMM (gmm_final.pth)')
        for name, default, meaning in (('warp', 1.0, 'warp L1'), ('l1', 1.0, 'try-on L1'),
                                       ('vgg', 1.0, 'try-on VGG perceptual loss'),
                                       ('adv', 1.0, "generator's relativistic adversarial loss (unpaired)"),
                                       ('gp', 10.0, "discriminator's gradient penalty")):
            group.add_argument(f'--{name}_weight', type=flags.float_at_least(0), default=default,
                               help=f'weight of the {meaning} (ours)')


WUTON_DATA = DataSpec(cloth='in-shop', representation='cpvton', reserved_for='GMM', masked_photo=True,
                      unpaired_cloth=True)
WUTON_TEST_DATA = DataSpec(cloth='in-shop', representation='cpvton', reserved_for='GMM', masked_photo=True)

STAGES = (
    Stage('WUTON', 'WUTON', WUTON_DATA, 'wuton_final.pth', build_model=build_wuton,
          build_loss=lambda opt, log: WutonLoss(build_vgg_loss(opt.vgg_init, opt.vgg_weights, log), opt),
          run=run_wuton, visuals=wuton_visuals, save_results=save_wuton_results, log_terms=wuton_log_terms,
          options=('wuton_agnostic', 'neck_box', 'gmm_checkpoint', 'warp_weight', 'l1_weight', 'vgg_weight',
                   'adv_weight', 'gp_weight'),
          model_options=('wuton_agnostic', 'neck_box'), check_options=check_wuton_options,
          test_data=WUTON_TEST_DATA),
)
