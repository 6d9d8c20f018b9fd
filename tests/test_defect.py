"""The learned defect segmenter (codec/heads/defect.py)."""

import pytest
import torch

from codec.heads import anomaly, defect


def _crops(n=6, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)


def test_synthesized_defects_change_only_their_masks():
    x = _crops()
    g = torch.Generator().manual_seed(1)
    xd, mask = defect.synthesize(x, g, p_clean=0.0)
    assert mask.shape == (6, 1, 64, 64) and set(mask.unique().tolist()) <= {0.0, 1.0}
    outside = (mask == 0).expand_as(x)
    assert (xd[outside] - x[outside]).abs().max() <= 1.5 / 255  # nothing visible moves outside a mask
    assert (mask.sum((1, 2, 3)) > 0).all()                  # every crop got a defect
    assert (xd >= 0).all() and (xd <= 1).all()


def test_a_fill_that_changes_nothing_is_not_a_defect():
    flat = torch.full((3, 32, 32), 0.4)
    m = torch.zeros(32, 32)
    m[8:24, 8:24] = 1
    assert defect.changed_mask(flat, defect._blur(flat, 3.0), m).sum() == 0     # a blurred flat area
    fill = flat.clone()
    fill[:, 16, 16] += 0.1                                                     # one changed pixel
    got = defect.changed_mask(flat, fill, m)
    assert got.sum() == 25 and got[14:19, 14:19].eq(1).all()                   # it and its 2-px neighbours
    fill[:, 2, 2] += 0.1                                                       # a change outside the shape
    assert defect.changed_mask(flat, fill, m).sum() == 25


def test_clean_crops_stay_clean():
    x = _crops()
    xd, mask = defect.synthesize(x, torch.Generator().manual_seed(2), p_clean=1.0)
    assert torch.equal(xd, x) and mask.sum() == 0


def test_masks_cover_a_plausible_share():
    g = torch.Generator().manual_seed(3)
    shares = [float(defect.blob_mask(128, g).mean()) for _ in range(20)]
    assert 0.015 < min(shares) and max(shares) < 0.16
    stroke = defect.stroke_mask(128, g)
    assert 0 < float(stroke.mean()) < 0.05


def test_strokes_are_thin_and_some_are_straight():
    g = torch.Generator().manual_seed(5)
    straight = 0
    for _ in range(20):
        m = defect.stroke_mask(96, g)
        ys, xs = torch.nonzero(m, as_tuple=True)
        pts = torch.stack([ys, xs], 1).float()
        centred = pts - pts.mean(0)
        # the smaller principal axis of a straight stroke is its width (<= 3 px)
        small = torch.linalg.eigvalsh(centred.T @ centred / len(pts))[0].sqrt()
        straight += bool(small < 1.0)
    assert 3 <= straight <= 17


def test_image_logit_is_the_score_in_logit_space():
    from codec.heads.anomaly import image_score
    logits = torch.randn(3, 1, 20, 20)
    for b in range(3):
        want = image_score(logits[b, 0].numpy(), "max", 2)
        assert abs(float(defect.image_logit(logits)[b]) - want) < 1e-5


def test_the_image_term_presses_on_a_false_alarm():
    """On a clean crop, a lone high spot is diluted in the per-pixel loss; the
    image term puts its whole gradient there, and nothing elsewhere."""
    def grad(loss_of):
        logits = torch.full((1, 1, 16, 16), -6.0)
        logits[0, 0, 3:5, 3:5] = 4.0
        logits.requires_grad_(True)
        loss_of(logits).backward()
        return logits.grad[0, 0]
    img = grad(lambda lg: defect.IMAGE_WEIGHT * torch.nn.functional.binary_cross_entropy_with_logits(
        defect.image_logit(lg), torch.zeros(1)))
    pix = grad(lambda lg: defect.focal_loss(lg, torch.zeros_like(lg)))
    assert img[3:5, 3:5].min() > 2 * pix[3:5, 3:5].max() > 0
    assert img[8:, 8:].abs().max() == 0


def test_views_average_turned_looks(tiny_model):
    from codec.pipeline import load_model
    net = load_model(tiny_model).net
    torch.manual_seed(0)
    head = defect.DefectNet(defect.DefectConfig(width=8)).eval()
    x = torch.rand(1, 3, 64, 128)
    one = defect.probability(head, x, net, views=1)
    assert torch.equal(one, torch.sigmoid(head(defect.features(x, net))))
    two = defect.probability(head, x, net, views=2)
    # the two views of the flipped image are those of the image: the same map, flipped
    assert torch.equal(defect.probability(head, x.flip(-1), net, views=2), two.flip(-1))
    four = defect.probability(head, x, net, views=4)
    assert four.shape == one.shape and not torch.equal(four, one)
    with pytest.raises(ValueError, match="views must be"):
        defect.probability(head, x, net, views=3)


def test_features_and_the_defect_map(tiny_model, photo):
    from codec.pipeline import load_model
    net = load_model(tiny_model).net
    x = torch.rand(2, 3, 64, 64)
    f = defect.features(x, net)
    assert f.shape == (2, 8, 64, 64) and torch.equal(f[:, :3], x)
    head = defect.DefectNet()
    m = anomaly.maps(photo, model=tiny_model, defect_head=head)
    assert m["defect"].shape == photo.shape[:2] and (m["defect"] >= 0).all() and (m["defect"] <= 1).all()


def test_training_steps_lower_the_focal_loss(tiny_model):
    """The head learns where a synthetic defect is (a few steps, fixed batch)."""
    from codec.pipeline import load_model
    net = load_model(tiny_model).net
    torch.manual_seed(0)
    x = _crops(4)
    xd, mask = defect.synthesize(x, torch.Generator().manual_seed(4), p_clean=0.0)
    feats = defect.features(xd, net)
    head = defect.DefectNet(defect.DefectConfig(width=8))
    opt = torch.optim.Adam(head.parameters(), 1e-2)
    with torch.no_grad():
        first = float(defect.focal_loss(head(feats), mask))
    for _ in range(30):
        loss = defect.focal_loss(head(feats), mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


def test_unknown_score_kind_is_refused(photo):
    with pytest.raises(ValueError, match="score kind"):
        anomaly.score(photo, kind="nope")
