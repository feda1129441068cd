"""The anonymization-aware loss on anon masks computed from real anonymized heads.

The masks come from the masks stage's maths (:func:`curate.stages.masks.compute_masks`,
template-free rules) on the CI subset of the anonymization corpus
(``tests/curate/masks/ci_cases.py``: quickshear, pydeface's face mask, plane
cuts, noise refacing, face blur, MNI-mask strips, a real brain-only
release), so the check covers every class with masks of real shapes, not
synthetic boxes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pretrain.loss import loss_weights, masked_l2_loss

CASES = ("quickshear", "pydeface", "plane45_noisebg", "reface_noise", "blur3",
         "strip_mni_zero", "strip_mni_noise", "real_mni152")


@pytest.fixture(scope="module")
def anon_masks() -> dict[str, tuple[str, np.ndarray]]:
    from curate.config import MasksConfig
    from curate.stages.masks import compute_masks
    from tests.curate.masks.ci_cases import case_zooms, ci_cases

    cfg = MasksConfig(brain_model="none")
    out = {}
    for name in CASES:
        case = ci_cases()[name]
        _, anon, kind, _ = compute_masks(case.image, case.affine, case_zooms(case), cfg)
        out[name] = (kind, anon[::2, ::2, ::2].copy())  # every voxel's rule is local; halve the size
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_anonymized_voxels_of_real_masks_get_zero_weight_and_gradient(anon_masks, name) -> None:
    kind, anon_np = anon_masks[name]
    anon = torch.from_numpy(anon_np)[None, None]
    assert int(anon.sum()) > 1000, (name, kind)  # the mask is real, not empty
    g = torch.Generator().manual_seed(0)
    target = torch.randn(anon.shape, generator=g)
    pred = torch.randn(anon.shape, generator=g, requires_grad=True)
    visible = (torch.rand(anon.shape, generator=g) > 0.75).float()
    weights = loss_weights(visible, anon)
    assert not weights[anon == 1].any()
    loss = masked_l2_loss(pred, target, visible, anon)
    loss.backward()
    assert torch.all(pred.grad[anon == 1] == 0)
    assert torch.all(pred.grad[weights] != 0)
    # whatever the model predicts inside the anon mask leaves the loss unchanged
    changed = pred.detach().clone()
    changed[anon == 1] = 1e6
    torch.testing.assert_close(masked_l2_loss(changed, target, visible, anon), loss.detach())


@pytest.mark.slow
def test_every_class_is_covered(anon_masks) -> None:
    kinds = {kind for kind, _ in anon_masks.values()}
    assert {"defaced", "face_blurred", "skull_stripped"} <= kinds
